package linux

import "github.com/kiln-build/kiln/executor"

// File descriptors the parent hands to the init (os/exec ExtraFiles start at 3).
const (
	configFD = 3 // JSON initConfig; EOF after it once the init may start the process
	statusFD = 4 // JSON status lines written by the init; closed by exec
	// consoleFD is a unix socket, passed only for a Tty process, over
	// which the init sends the pty master (SCM_RIGHTS) to the parent.
	consoleFD = 5
)

// initConfig is what the parent sends the init over configFD.
type initConfig struct {
	// RunDir is the per-run scratch dir (absolute, on the host).
	RunDir    string   `json:"runDir"`
	LowerDirs []string `json:"lowerDirs,omitempty"` // bottom first
	UpperDir  string   `json:"upperDir"`
	WorkDir   string   `json:"workDir"`
	ReadOnly  bool     `json:"readOnly,omitempty"`
	// Once: the upper is used for this run only (Rootfs.Once); mount it
	// volatile.
	Once     bool `json:"once,omitempty"`
	CopyMode bool `json:"copyMode,omitempty"` // copy the root (copy_linux.go), no overlayfs
	// LinkMount mounts overlays with mount(2) and a link dir even where
	// the kernel takes one lowerdir+ per layer (tests of older kernels).
	LinkMount bool             `json:"linkMount,omitempty"`
	Process   *processConfig   `json:"process,omitempty"`
	Func      *funcConfig      `json:"func,omitempty"`
	Inputs    []executor.Input `json:"inputs,omitempty"`
	Hostname  string           `json:"hostname"`
	// EtcHostname binds the generated hostname file over /etc/hostname.
	EtcHostname bool `json:"etcHostname,omitempty"`
	// ReadOnlyEtc mounts the /etc files read-only (Spec.ReadOnlyEtc).
	ReadOnlyEtc bool `json:"readOnlyEtc,omitempty"`
	NewNetwork  bool `json:"newNetwork,omitempty"`
	// JoinedNetwork: the parent started the init in an existing network
	// namespace (Spec.NetNSPath); the init brings up its loopback.
	JoinedNetwork bool          `json:"joinedNetwork,omitempty"`
	Mounts        []mountConfig `json:"mounts,omitempty"`
	// Caps is the capability set of the process (bit n: capability n);
	// nil means Docker's default set.
	Caps *uint64 `json:"caps,omitempty"`
	// CgroupDirs are the container's cgroup directories on the host, by
	// controller (v1) or under "" (v2), shown read-only in /sys/fs/cgroup.
	CgroupDirs map[string]string `json:"cgroupDirs,omitempty"`
	// Seccomp is the BPF program of Docker's default seccomp profile for
	// the process's capabilities, assembled by the parent (packed
	// sock_filter instructions); empty without one.
	Seccomp []byte `json:"seccomp,omitempty"`
	// RunOptions are Spec.RunOptions (the init uses ShmSize, Ulimits,
	// GroupAdd, HostIPC, HostUTS, Devices and Privileged; Privileged
	// also means the parent sent all caps and no seccomp program).
	executor.RunOptions
	// DevicesFiltered: the init was cloned into a cgroup whose device
	// filter refuses every node but the standard ones (see deviceCgroup),
	// so the root filesystem and /dev need not be nodev, and /dev gets
	// nodes of its own instead of the host's bound in.
	DevicesFiltered bool `json:"devicesFiltered,omitempty"`
	// ShmDir is Spec.ShmDir.
	ShmDir string `json:"shmDir,omitempty"`
	// DisableIPv6 (Spec.DisableIPv6) applies to a new or joined network.
	DisableIPv6 bool `json:"disableIPv6,omitempty"`
	// Init keeps the init as PID 1 (Spec.Init); it listens for signal
	// requests on InitSocket, a path in RunDir.
	Init       bool   `json:"init,omitempty"`
	InitSocket string `json:"initSocket,omitempty"`
}

// mountConfig is an executor.Mount checked by the parent.
type mountConfig struct {
	Type      string   `json:"type"` // "bind", "tmpfs" or "layers"
	KeepStub  bool     `json:"keepStub,omitempty"`
	Source    string   `json:"source,omitempty"`
	LowerDirs []string `json:"lowerDirs,omitempty"`
	Data      []byte   `json:"data,omitempty"`
	Target    string   `json:"target"`
	ReadOnly  bool     `json:"readOnly,omitempty"`
	Options   []string `json:"options,omitempty"`
}

func newMountConfig(m executor.Mount) mountConfig {
	return mountConfig{Type: m.Type, Source: m.Source, LowerDirs: m.LowerDirs, Data: m.Data, Target: m.Target, ReadOnly: m.ReadOnly, Options: m.Options, KeepStub: m.KeepMountPoint}
}

type processConfig struct {
	Args []string `json:"args"`
	Env  []string `json:"env,omitempty"`
	Cwd  string   `json:"cwd"`
	User string   `json:"user,omitempty"`
	Tty  bool     `json:"tty,omitempty"`
	// EmptyStdin: the init gives the process a pipe at its end as stdin
	// (Process.EmptyStdin).
	EmptyStdin bool `json:"emptyStdin,omitempty"`
	// RunGroups: supplementary groups as docker run picks them
	// (Process.RunGroups).
	RunGroups bool `json:"runGroups,omitempty"`
}

type funcConfig struct {
	Name    string `json:"name"`
	Payload []byte `json:"payload,omitempty"`
}

// Files the parent writes into RunDir and the init binds into the container.
const (
	hostsFile    = "hosts"
	resolvFile   = "resolv.conf"
	hostnameFile = "hostname"
)

// status is one line the init writes to statusFD. A line with Error ends the
// run: the parent returns it as the run's error.
type status struct {
	// Stubs are mount points the init created in the root filesystem.
	Stubs []stub `json:"stubs,omitempty"`
	// Error is a setup failure or the Func's error, worded for users.
	Error string `json:"error,omitempty"`
	// Code is the exit code to report with Error (126 or 127 for a command
	// that cannot be executed or found), or 0 for a plain error.
	Code int `json:"code,omitempty"`
	// Copied is sent before the init starts copying the root filesystem
	// into copyDirName in the work dir: the parent writes the changes to
	// the upper dir afterwards and removes the copy.
	Copied bool `json:"copied,omitempty"`
	// Started is sent right before the init execs the process (or, with
	// Init, once it started it): an init that ends without sending it or
	// an Error died during its setup.
	Started bool `json:"started,omitempty"`
	// Fallback is why overlayfs could not be mounted, when the init fell
	// back to copying; the parent then copies in later runs right away.
	Fallback string `json:"fallback,omitempty"`
}

// stub is a path the init created so it could mount on it. The parent
// removes it from the upper dir afterwards when it is still empty.
type stub struct {
	// Path is the resolved path in the container ("/etc/hosts").
	Path string `json:"path"`
	// Parent is set when the stub went into a directory that existed before;
	// creating the stub may have copied that directory up, which the parent
	// undoes when nothing else changed in it.
	Parent *parentInfo `json:"parent,omitempty"`
	// Keep leaves a directory stub in place (mountConfig.KeepStub).
	Keep bool `json:"keep,omitempty"`
}

// parentInfo is the state of a directory before the init added a stub to it.
type parentInfo struct {
	Path string `json:"path"`
	// InUpper: the directory already existed in the upper dir.
	InUpper bool   `json:"inUpper"`
	Mode    uint32 `json:"mode"`
	UID     uint32 `json:"uid"`
	GID     uint32 `json:"gid"`
	Atime   int64  `json:"atime"` // ns since the epoch
	Mtime   int64  `json:"mtime"`
}

// initRequest is one request to the init's socket (Spec.Init), sent as a
// single SOCK_SEQPACKET message: a signal to pass on to the process.
type initRequest struct {
	Signal int `json:"signal,omitempty"`
}

// initReply answers an initRequest; Error is empty when the signal is
// on its way.
type initReply struct {
	Error string `json:"error,omitempty"`
}

// maxInitRequest bounds the size of an initRequest or initReply message.
const maxInitRequest = 4 << 10
