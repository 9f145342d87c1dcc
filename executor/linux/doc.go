// Package linux implements executor.Executor with Linux namespaces and
// overlayfs. Run re-executes the current binary (/proc/self/exe) with InitArg
// as its first argument; main must call RunInit first thing so the child
// becomes the container's init.
//
// The init runs in new mount, PID, UTS and IPC namespaces (and a new network
// namespace with only loopback for executor.NetworkNone). It mounts the
// overlay root filesystem, /proc, a tmpfs /dev, a read-only /sys and the
// generated /etc/hosts, /etc/resolv.conf and /etc/hostname, pivots into the
// root, masks sensitive /proc entries like Docker, resolves the user in the
// container's /etc/passwd and /etc/group, sets no_new_privs, limits the
// capabilities to Docker's default set and execs the process. Every mount
// lives in the init's mount namespace, so nothing is left behind on the host
// when kiln dies. Mount points the init had to create are removed from the
// upper dir after the run.
//
// Not supported yet: Process.Tty, user namespaces (rootless), cgroups.
package linux
