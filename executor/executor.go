package executor

import (
	"context"
	"fmt"
	"io"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"syscall"
)

// Executor runs one container to completion.
type Executor interface {
	// Run blocks until the process (or function) exits. Cancelling ctx
	// kills everything in the container. A non-zero exit is reported as
	// *ExitError. The upper directory holds the changes afterwards; mount
	// point stubs the executor had to create (/proc, /dev, /etc/hosts, ...)
	// are removed again when they were not there before and are still empty.
	Run(ctx context.Context, spec Spec) error
}

// Network selects the network namespace of the container.
type Network string

// Networks a container can have.
const (
	NetworkHost Network = "host" // share the host's network namespace (docker build default)
	NetworkNone Network = "none" // a new namespace with only loopback
)

// Spec describes one container run.
type Spec struct {
	// Rootfs is the root filesystem, built from overlayfs.
	Rootfs Rootfs
	// Process is run as the container's PID 1. Exactly one of Process and
	// Func is set.
	Process *Process
	// Func names a function registered with the executor's init that runs
	// inside the container, chrooted to the root filesystem, instead of a
	// process. Used by COPY/ADD, which must see the merged root.
	Func *Func
	// Inputs are extra read-only trees handed to Func, in order (for
	// example the build context or another stage's root filesystem). They
	// are not visible inside the root filesystem.
	Inputs []Input
	// Hostname of the container; default "kiln".
	Hostname string
	// Network of the container; default NetworkHost.
	Network Network
	// ExtraHosts are added to /etc/hosts ("name ip").
	ExtraHosts []string
	// ReadOnlyEtc mounts the generated /etc/hosts and /etc/resolv.conf
	// read-only, as Docker 20.10's builder does for RUN steps (docker run
	// mounts them read-write).
	ReadOnlyEtc bool

	// The fields below serve kiln run (containers); builds leave them
	// zero.

	// EtcHostname binds a generated /etc/hostname into the container, as
	// docker run does; build steps have none, as in BuildKit.
	EtcHostname bool
	// RunOptions are docker run's per-container options.
	RunOptions
	// DisableIPv6 turns IPv6 off in the container's own network namespace
	// (none, or a network kiln made), as docker run does on networks
	// without IPv6; kiln's networks are IPv4 only.
	DisableIPv6 bool
	// NetNSPath, when set, is a network namespace (e.g. a bind-mounted
	// /run/kiln/netns/ID prepared by the network code, or another
	// container's /proc/PID/ns/net) the container joins instead of
	// NetworkHost/NetworkNone.
	NetNSPath string
	// PIDNSPath, when set, is a PID namespace (another container's
	// /proc/PID/ns/pid: docker run --pid container:NAME) the container's
	// processes are born in instead of a new one; none is PID 1 then.
	PIDNSPath string
	// IPCNSPath, when set, is an IPC namespace (another container's
	// /proc/PID/ns/ipc: docker run --ipc container:NAME) the container
	// joins instead of making one.
	IPCNSPath string
	// ShmDir, when set, is a host directory (a tmpfs) bound at /dev/shm
	// instead of a new tmpfs: docker run --ipc shareable and the
	// containers that join it.
	ShmDir string
	// Mounts are extra mounts inside the container, in order.
	Mounts []Mount
	// Resources are cgroup limits; nil means none beyond a cgroup of
	// its own when CgroupPath is set.
	Resources *Resources
	// CgroupPath is the container's cgroup, relative to the cgroup root
	// (v2) or to each controller's root (v1), e.g. "kiln/<id>". Empty:
	// no cgroup of its own.
	CgroupPath string
	// CapAdd and CapDrop adjust Docker's default capability set
	// ("NET_ADMIN", "CAP_NET_ADMIN" or "ALL").
	CapAdd, CapDrop []string
	// SeccompUnconfined runs the process without Docker's default seccomp
	// profile (docker run --security-opt seccomp=unconfined); builds keep
	// the profile, as Docker's builder does.
	SeccompUnconfined bool
	// Init keeps kiln's init as PID 1: it reaps zombies, forwards
	// signals to the process and exits with its status (docker run
	// --init). Without it the process is PID 1, as under docker run.
	Init bool
	// StopSignal is the signal Container.Stop sends first; default SIGTERM.
	StopSignal string
}

// Mount is an extra mount in a container.
type Mount struct {
	// Type is "bind", "tmpfs", "layers" or "file".
	Type string
	// Source is the host path of a bind mount (a named volume's data dir
	// is a bind source too). For "layers" it is the path inside the
	// stack that is mounted ("" or "/" for all of it), resolved inside the
	// stack (symlinks cannot lead out of it).
	Source string
	// LowerDirs is the overlay stack of a "layers" mount, bottom first (an
	// empty list is an empty tree), such as another stage's root
	// filesystem. Writes to a read-write one go to a scratch dir and are
	// discarded with the container.
	LowerDirs []string
	// Target is the absolute path inside the container; created when
	// missing.
	Target string
	// ReadOnly mounts it read-only.
	ReadOnly bool
	// Options are extra mount options (tmpfs: "size=64m", "mode=1777";
	// file: "mode=0400", "uid=N", "gid=N").
	Options []string
	// Data is the content of a "file" mount: a read-only file written to
	// a tmpfs private to the container, so it never reaches the host's
	// disk and goes away with the container even when kiln is killed
	// (RUN --mount=type=secret).
	Data []byte
	// KeepMountPoint leaves the directories made for the mount point (the
	// target and the missing dirs above it) in the upper dir, as Docker
	// 20.10's builder leaves RUN --mount targets in the layer; a file made
	// as the mount point is removed all the same.
	KeepMountPoint bool
}

// Resources are cgroup limits.
type Resources struct {
	// Memory limit in bytes (0: none).
	Memory int64
	// MemorySwap is memory plus swap, as docker's --memory-swap: 0 means
	// twice Memory, -1 no limit. Only with Memory.
	MemorySwap int64 `json:",omitempty"`
	// MemoryReservation is a soft memory limit (--memory-reservation).
	MemoryReservation int64 `json:",omitempty"`
	// MemorySwappiness, when set, is the cgroup's swappiness, 0 to 100
	// (--memory-swappiness; cgroup v1 only, dropped on v2 as by docker).
	MemorySwappiness *int64 `json:",omitempty"`
	// OomKillDisable turns the OOM killer off for the cgroup
	// (--oom-kill-disable; cgroup v1 only, dropped on v2 as by docker).
	OomKillDisable bool `json:",omitempty"`
	// CPUs is a CPU quota in CPUs, e.g. 1.5 (0: none).
	CPUs float64
	// CPUShares is the CPU weight relative to other cgroups, 1024 being
	// the default (--cpu-shares).
	CPUShares int64 `json:",omitempty"`
	// CPUPeriod and CPUQuota are the CFS period and quota in
	// microseconds (--cpu-period, --cpu-quota), instead of CPUs.
	CPUPeriod int64 `json:",omitempty"`
	CPUQuota  int64 `json:",omitempty"`
	// CPUSetCPUs and CPUSetMems are the CPUs and memory nodes allowed,
	// in cpuset list form like "0-2,4" (--cpuset-cpus, --cpuset-mems).
	CPUSetCPUs string `json:",omitempty"`
	CPUSetMems string `json:",omitempty"`
	// PidsLimit caps the number of tasks (0: none).
	PidsLimit int64
	// BlkioWeight is the relative block I/O weight, 10 to 1000
	// (--blkio-weight); dropped where the kernel keeps no weights, as by
	// docker.
	BlkioWeight uint16 `json:",omitempty"`
	// IOThrottles limit block devices' I/O (--device-read-bps,
	// --device-write-bps, --device-read-iops, --device-write-iops).
	IOThrottles []IOThrottle `json:",omitempty"`
}

// IsZero reports whether r sets no limit at all.
func (r *Resources) IsZero() bool { return reflect.ValueOf(*r).IsZero() }

// IOThrottle caps one kind of block I/O on a device.
type IOThrottle struct {
	Major, Minor int64
	// Kind is "read_bps", "write_bps", "read_iops" or "write_iops".
	Kind string
	Rate uint64
}

// Starter is implemented by executors that can start a container and
// return while it runs (kiln run -d, exec, pause).
type Starter interface {
	// Start starts the container. ctx bounds the start only; the
	// container runs until it exits or is killed. The caller must Wait.
	Start(ctx context.Context, spec Spec) (Container, error)
}

// Container is a running container started by a Starter.
type Container interface {
	// Pid is the host PID of the container's PID 1.
	Pid() int
	// Wait blocks until PID 1 exits and returns its status (128+n for a
	// signal); it then cleans up (mounts live in the container's own
	// mount namespace; the executor removes its state and cgroup).
	Wait() (int, error)
	// Signal sends sig to the container's process (through the init when
	// Spec.Init).
	Signal(sig syscall.Signal) error
	// Exec runs another process inside the container's namespaces,
	// root and cgroup, as docker exec does, and returns its exit status.
	Exec(ctx context.Context, p Process) (int, error)
	// Pause and Resume freeze and thaw the container's cgroup (requires
	// CgroupPath).
	Pause() error
	Resume() error
	// Resize sets the terminal size of a Tty process.
	Resize(rows, cols uint16) error
}

// Rootfs is an overlay stack.
type Rootfs struct {
	// LowerDirs are the read-only layers, bottom first. May be empty.
	LowerDirs []string
	// UpperDir receives the changes; WorkDir is overlayfs' work directory
	// on the same filesystem. Both must exist and be empty before the run
	// (UpperDir may hold prepared content).
	UpperDir string
	WorkDir  string
	// ReadOnly mounts the root filesystem read-only.
	ReadOnly bool
	// Once says UpperDir and WorkDir are used for this run only (a build
	// step, or a container removed when it ends): they are read right
	// after it, or deleted, and never mounted again, even after a crash. The executor may then skip flushing them to disk
	// (overlayfs "volatile"), which otherwise syncs the whole filesystem
	// holding them when the container ends.
	Once bool
}

// RunOptions are the options docker run gives a container beyond its
// process and mounts. kiln run records them with the container
// (containers.Config) and the executor hands them to the init as they
// are, so each one is named once.
type RunOptions struct {
	// ShmSize is the size of /dev/shm in bytes; 0 means 64 MiB, Docker's
	// default (--shm-size).
	ShmSize int64 `json:"ShmSize,omitempty"`
	// Ulimits are the resource limits of the container's process and of
	// the processes Exec runs (--ulimit); unset ones are kiln's.
	Ulimits []Ulimit `json:"Ulimits,omitempty"`
	// GroupAdd are supplementary groups, names or gids, of the container's
	// process and of the processes Exec runs (--group-add).
	GroupAdd []string `json:"GroupAdd,omitempty"`
	// HostPID, HostIPC and HostUTS keep the container in kiln's PID, IPC
	// or UTS namespace (--pid host, --ipc host, --uts host; with HostIPC
	// the host's /dev/shm is bound in, with HostUTS the host name is left
	// alone and Spec.Hostname should be the host's).
	HostPID bool `json:"HostPID,omitempty"`
	HostIPC bool `json:"HostIPC,omitempty"`
	HostUTS bool `json:"HostUTS,omitempty"`
	// Devices are host device nodes bound into the container (--device),
	// with the access their Permissions allow.
	Devices []Device `json:"Devices,omitempty"`
	// Privileged gives the container every capability, no seccomp
	// profile, /proc without masked or read-only paths, a writable /sys
	// and cgroups, and the host's devices in /dev (--privileged).
	Privileged bool `json:"Privileged,omitempty"`
	// DNS, DNSSearch and DNSOptions replace those parts of the host's
	// resolv.conf (--dns, --dns-search, --dns-option; see ResolvConf).
	DNS        []string `json:"Dns,omitempty"`
	DNSSearch  []string `json:"DnsSearch,omitempty"`
	DNSOptions []string `json:"DnsOptions,omitempty"`
	// Sysctls are namespaced kernel parameters set in the container
	// (--sysctl; see CheckSysctl), by dotted name.
	Sysctls map[string]string `json:"Sysctls,omitempty"`
	// Domainname is the NIS domain name of the container's UTS namespace
	// (--domainname).
	Domainname string `json:"Domainname,omitempty"`
	// OomScoreAdj is the container process's oom_score_adj (--oom-score-adj,
	// -1000 to 1000); 0 keeps kiln's.
	OomScoreAdj int `json:"OomScoreAdj,omitempty"`
	// DeviceCgroupRules allow more devices, in devices.allow form: "c 1:3
	// rwm", "b 7:* r", "a *:* m" (--device-cgroup-rule).
	DeviceCgroupRules []string `json:"DeviceCgroupRules,omitempty"`
	// NoShm leaves /dev/shm out (--ipc none).
	NoShm bool `json:"NoShm,omitempty"`
	// PrivateCgroupNS gives the container a cgroup namespace rooted at its
	// own cgroup (--cgroupns private); without, it sees the host's paths.
	PrivateCgroupNS bool `json:"CgroupnsPrivate,omitempty"`
}

// ParseDeviceRule checks a device rule in devices.allow form (TYPE
// MAJOR:MINOR ACCESS, with * for any number) and returns its parts, a
// number -1 for *.
func ParseDeviceRule(s string) (typ byte, major, minor int64, access string, err error) {
	f := strings.Fields(s)
	bad := func() (byte, int64, int64, string, error) {
		return 0, 0, 0, "", fmt.Errorf("invalid device cgroup rule %q: want TYPE MAJOR:MINOR ACCESS, like \"c 1:3 rwm\"", s)
	}
	if len(f) != 3 || len(f[0]) != 1 || !strings.Contains("abc", f[0]) || f[2] == "" || strings.Trim(f[2], "rwm") != "" {
		return bad()
	}
	ma, mi, ok := strings.Cut(f[1], ":")
	if !ok {
		return bad()
	}
	num := func(v string) (int64, bool) {
		if v == "*" {
			return -1, true
		}
		n, err := strconv.ParseInt(v, 10, 32)
		return n, err == nil && n >= 0
	}
	major, ok1 := num(ma)
	minor, ok2 := num(mi)
	if !ok1 || !ok2 {
		return bad()
	}
	return f[0][0], major, minor, f[2], nil
}

// ipcSysctls are the kernel parameters of the IPC namespace docker run
// allows besides fs.mqueue.*.
var ipcSysctls = []string{"kernel.msgmax", "kernel.msgmnb", "kernel.msgmni", "kernel.sem", "kernel.shmall", "kernel.shmmax", "kernel.shmmni", "kernel.shm_rmid_forced"}

// CheckSysctl refuses what docker run refuses: a parameter that is not
// one of a namespace the container has of its own (net.* in its network
// namespace, the IPC ones in its IPC namespace), or a value with a line
// break.
func CheckSysctl(name, value string, ownNetwork, ownIPC bool) error {
	if strings.ContainsAny(value, "\n") || strings.ContainsAny(name, "/ ") {
		return fmt.Errorf("sysctl %s=%q: not a valid setting", name, value)
	}
	switch {
	case strings.HasPrefix(name, "net."):
		if !ownNetwork {
			return fmt.Errorf("sysctl %q is not allowed in the host network namespace", name)
		}
	case strings.HasPrefix(name, "fs.mqueue.") || slices.Contains(ipcSysctls, name):
		if !ownIPC {
			return fmt.Errorf("sysctl %q is not allowed in the host IPC namespace", name)
		}
	default:
		return fmt.Errorf("sysctl '%s' is not whitelisted", name)
	}
	return nil
}

// Device is a host device node and where it shows in the container.
type Device struct {
	// HostPath is the node on the host; ContainerPath an absolute path
	// in the container (default HostPath).
	HostPath, ContainerPath string
	// Permissions are what the container may do with the node: letters
	// of "rwm" (read, write, mknod); "" means all three.
	Permissions string `json:",omitempty"`
}

// Ulimit is one resource limit (docker run --ulimit NAME=SOFT[:HARD]).
type Ulimit struct {
	// Resource is the Linux RLIMIT_* number.
	Resource   int
	Soft, Hard uint64
}

// Process is the command to run.
type Process struct {
	// Args is argv; Args[0] is looked up in the container's PATH (from Env)
	// when it has no slash.
	Args []string
	// Env is the complete environment, KEY=VALUE.
	Env []string
	// Cwd is the working directory inside the container; created when
	// missing. Default "/".
	Cwd string
	// User is "name", "uid", "name:group" or "uid:gid", resolved against the
	// container's /etc/passwd and /etc/group. Default root.
	User string
	// Stdin, Stdout and Stderr of the process; nil means /dev/null.
	Stdin          io.Reader
	Stdout, Stderr io.Writer
	// EmptyStdin, with no Stdin, makes stdin a pipe at its end, as in
	// Docker's RUN steps (a script testing for a pipe on stdin sees one),
	// instead of /dev/null.
	EmptyStdin bool
	// Tty allocates a pseudo terminal (for kiln run -t).
	Tty bool
	// RunGroups picks the supplementary groups as docker run does: the
	// groups of /etc/group that have the user as a member or are its
	// primary group, or only the group given in User ("uid:gid"). Without
	// it they are those the user is a member of, as in Docker's RUN.
	RunGroups bool
}

// Func is a file operation run inside the container's mount namespace.
type Func struct {
	// Name is the handler name registered with the init.
	Name string
	// Payload is handed to the handler as is (usually JSON).
	Payload []byte
	// Stdout and Stderr receive what the handler prints; nil discards it.
	Stdout, Stderr io.Writer
}

// Input is a read-only tree for a Func.
type Input struct {
	// Dir is a host directory bound read-only (the build context).
	Dir string
	// LowerDirs is an overlay stack, bottom first, mounted read-only
	// (another stage's root filesystem). Used when Dir is empty; an empty
	// list is an empty tree.
	LowerDirs []string
}

// ExitError reports a process that exited non-zero or was killed.
type ExitError struct {
	// Code is the exit status, or 128+signal when killed by a signal.
	Code int
}

func (e *ExitError) Error() string {
	if e.Code > 128 {
		return fmt.Sprintf("process exited with code %d (signal %d)", e.Code, e.Code-128)
	}
	return fmt.Sprintf("process exited with code %d", e.Code)
}
