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
// Where overlayfs cannot be mounted (the kernel has none, a container
// forbids it, or the upper dir is on a filesystem overlayfs rejects, such as
// another overlayfs), the init falls back to copy mode: it copies the layers
// and the upper dir's content into a scratch dir in the work dir (reflinks
// where the filesystem has them), runs the container in that copy, and the
// parent then writes what changed into the upper dir in overlayfs' format
// (whiteouts, opaque directories), so callers see no difference. The
// Executor remembers the failure and copies straight away in later runs.
// Copy mode costs a copy of the root filesystem per run. Setting
// KILN_SNAPSHOTTER=copy (read by New) forces it, as a debugging aid. Copy
// mode needs a filesystem that can hold overlayfs whiteouts (0:0 character
// devices) for runs that delete files; overlayfs itself cannot.
//
// Not supported yet: Process.Tty, user namespaces (rootless), cgroups.
package linux
