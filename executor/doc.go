// Package executor defines how kiln runs a process (or a file operation) in
// an isolated root filesystem. It has no OS code; executor/linux implements
// it with namespaces and overlayfs.
package executor
