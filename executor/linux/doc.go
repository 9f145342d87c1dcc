// Package linux implements executor.Executor with Linux namespaces and
// overlayfs. Run re-executes the current binary (/proc/self/exe) with InitArg
// as its first argument; main must call RunInit first thing so the child
// becomes the container's init.
package linux
