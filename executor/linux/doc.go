// Package linux implements executor.Executor with Linux namespaces and
// overlayfs. Run starts Options.InitPath (a small binary, see cmd/kiln-init)
// or re-executes the current binary (/proc/self/exe) with InitArg as its
// first argument; main must call RunInit first thing so the child becomes
// the container's init.
//
// The init runs in new mount, PID, UTS and IPC namespaces (and a new network
// namespace with only loopback for executor.NetworkNone). It mounts the
// overlay root filesystem, /proc, a tmpfs /dev, a read-only /sys and the
// generated /etc/hosts, /etc/resolv.conf and /etc/hostname, pivots into the
// root, masks sensitive /proc entries like Docker, resolves the user in the
// container's /etc/passwd and /etc/group, limits the capabilities to
// Docker's default set (no_new_privs stays off, as in Docker) and execs the
// process. Every mount
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
// Executor also implements executor.Starter for kiln run. Start returns
// once the process runs; the Container's Wait reaps it and removes the run
// dir and the cgroup. The Spec fields for containers work as follows:
//
//   - Init: the init stays PID 1 (docker run --init). Its main goroutine,
//     locked to a thread whose bounding set and ambient set confine what
//     it execs, forks the process with the Spec's user, reaps every child,
//     forwards SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2 and
//     SIGWINCH to the process and exits with its status. It serves Signal
//     requests on a SOCK_SEQPACKET socket in the run dir (outside the
//     container's root). Without Init the init execs the process, which is
//     PID 1, as under docker run.
//   - Exec: as docker exec, not through PID 1: kiln forks the process from
//     a thread that moves into the container's cgroup (v1: the thread's
//     own tasks entry; v2: CLONE_INTO_CGROUP), unshares its filesystem
//     attributes, joins the container's namespaces through a pidfd of its
//     PID 1, takes the container's bounding set and seccomp filter and then
//     ends. Inits of Start's containers are forked by one thread kept for
//     that, since Pdeathsig follows the thread that forked.
//   - Process.Tty: the init opens a pty in the container's own devpts and
//     sends the master to the parent over an extra socket; the process
//     gets the slave as controlling terminal and stdio. Resize sets
//     TIOCSWINSZ on the master.
//   - Mounts: bind sources are opened (open_tree) before pivot_root;
//     targets are resolved and created after it, so image symlinks
//     resolve inside the container. Created targets are stubs, removed
//     from the upper dir afterwards.
//   - NetNSPath: the parent forks the init from a thread that joined the
//     namespace, so the whole init (and the sysfs it mounts) lives there.
//   - CgroupPath and Resources: cgroup v2, or v1 (memory, cpu, pids,
//     freezer, devices) on hybrid hosts whose v2 hierarchy lacks the
//     controllers. The parent moves the init into it while it sets up its
//     mounts. Memory limits allow as much swap again unless MemorySwap
//     says otherwise, as docker run's --memory-swap. Pause
//     and Resume use the freezer. The cgroup allows the devices docker
//     run allows, and Devices with their permissions (devices.allow on v1,
//     a BPF device program on v2).
//   - CapAdd and CapDrop adjust Docker's default capability set.
//
// A build run (Process or Func without those fields) creates no cgroup,
// socket or pty of its own: its init is cloned (CLONE_INTO_CGROUP) into
// one cgroup v2 per Executor, below kiln's own, whose BPF device program
// allows what BuildKit's containers may open (see deviceCgroup). Without
// it, and for a container from Start without CgroupPath, the root
// filesystem and /dev are mounted nodev, the host's standard nodes bound
// in.
//
// Not supported yet: user namespaces (rootless).
package linux
