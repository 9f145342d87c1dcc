package containers

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"golang.org/x/sys/unix"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/kiln-build/kiln/executor"
)

// Errors callers check with errors.Is.
var (
	// ErrNotFound is a container (or volume) that does not exist.
	ErrNotFound = errors.New("not found")
	// ErrNameTaken is a container name another container has.
	ErrNameTaken = errors.New("name already in use")
	// ErrNotRunning is an operation that needs a running container.
	ErrNotRunning = errors.New("container is not running")
	// ErrRunning is an operation that needs a stopped container.
	ErrRunning = errors.New("container is running")
	// ErrInUse is a volume a container uses.
	ErrInUse = errors.New("in use")
)

// Status is a container's state, as docker names them.
type Status string

// The statuses of a container.
const (
	Created    Status = "created"
	Running    Status = "running"
	Paused     Status = "paused"
	Restarting Status = "restarting"
	Exited     Status = "exited"
	Dead       Status = "dead"
)

// Mount types of Mount.Type.
const (
	MountBind   = "bind"
	MountVolume = "volume"
	MountTmpfs  = "tmpfs"
)

// Mount is a mount of a container.
type Mount struct {
	// Type is MountBind, MountVolume or MountTmpfs.
	Type string `json:"Type"`
	// Name is the volume name (MountVolume).
	Name string `json:"Name,omitempty"`
	// Anonymous marks a volume made for this container only (an image
	// VOLUME or -v /path); kiln rm -v and --rm remove it.
	Anonymous bool `json:"Anonymous,omitempty"`
	// Source is the host path (the volume's data dir for a volume).
	Source string `json:"Source"`
	// Target is the path inside the container.
	Target   string   `json:"Destination"`
	ReadOnly bool     `json:"ReadOnly,omitempty"`
	Options  []string `json:"Options,omitempty"`
	// NoCopy keeps an empty volume empty (-v NAME:PATH:nocopy) instead of
	// filling it with what the image has at Target.
	NoCopy bool `json:"NoCopy,omitempty"`
}

// Port is a published port (-p [IP:]HOST:CTR[/udp]).
type Port struct {
	HostIP        string `json:"HostIp"`
	HostPort      uint16 `json:"HostPort"`
	ContainerPort uint16 `json:"ContainerPort"`
	Proto         string `json:"Proto"`
}

// Healthcheck is an image's HEALTHCHECK. Test is docker's form: ["NONE"],
// ["CMD", args...] or ["CMD-SHELL", command].
type Healthcheck struct {
	Test        []string      `json:"Test,omitempty"`
	Interval    time.Duration `json:"Interval,omitempty"`
	Timeout     time.Duration `json:"Timeout,omitempty"`
	StartPeriod time.Duration `json:"StartPeriod,omitempty"`
	Retries     int           `json:"Retries,omitempty"`
}

// Config is what a container is; it does not change after create (except
// the name, by Rename).
type Config struct {
	ID      string    `json:"Id"`
	Name    string    `json:"Name"`
	Created time.Time `json:"Created"`

	// Image is the image as the user named it; ImageID its config digest
	// and ImageManifest its manifest digest.
	Image         string `json:"Image"`
	ImageID       string `json:"ImageID"`
	ImageManifest string `json:"ImageManifest"`
	// ImageChain is the image's layer stack as the store records it
	// (opaque here), so a prune keeps it even once the image is gone.
	ImageChain json.RawMessage `json:"ImageChain,omitempty"`

	// Entrypoint and Cmd are what Args was made of (for inspect).
	Entrypoint []string `json:"Entrypoint"`
	Cmd        []string `json:"Cmd"`
	// Args is the command run: Entrypoint then Cmd.
	Args         []string          `json:"Args"`
	Env          []string          `json:"Env"`
	WorkingDir   string            `json:"WorkingDir"`
	User         string            `json:"User"`
	Hostname     string            `json:"Hostname"`
	Tty          bool              `json:"Tty"`
	OpenStdin    bool              `json:"OpenStdin"`
	StdinOnce    bool              `json:"StdinOnce"`
	Labels       map[string]string `json:"Labels,omitempty"`
	ExposedPorts []string          `json:"ExposedPorts,omitempty"`
	StopSignal   string            `json:"StopSignal,omitempty"`
	// StopTimeout is how long stop waits before SIGKILL; 0 means 10s.
	StopTimeout time.Duration `json:"StopTimeout,omitempty"`
	Healthcheck *Healthcheck  `json:"Healthcheck,omitempty"`

	// LowerDirs are the image's snapshot dirs, bottom first; the writable
	// layer is UpperDir and WorkDir in the container's directory.
	LowerDirs []string `json:"LowerDirs"`
	ReadOnly  bool     `json:"ReadonlyRootfs"`
	Mounts    []Mount  `json:"Mounts"`
	// Network is host, none, a kiln network's name, or container:ID to
	// share that container's network namespace (NetworkContainer).
	Network   string             `json:"NetworkMode"`
	Ports     []Port             `json:"Ports,omitempty"`
	Resources executor.Resources `json:"Resources"`
	CapAdd    []string           `json:"CapAdd,omitempty"`
	CapDrop   []string           `json:"CapDrop,omitempty"`
	// SecurityOpt holds "seccomp=unconfined" to run without the default
	// seccomp profile.
	SecurityOpt []string `json:"SecurityOpt,omitempty"`
	// ExtraHosts are added to /etc/hosts ("name ip", --add-host).
	ExtraHosts []string `json:"ExtraHosts,omitempty"`
	// NetworkAliases are more names other containers of its user network
	// resolve to it (--network-alias); IPAddress is the address it asks
	// for there (--ip).
	NetworkAliases []string `json:"NetworkAliases,omitempty"`
	IPAddress      string   `json:"IPAddress,omitempty"`
	// MacAddress is its eth0's hardware address on a bridge (--mac-address).
	MacAddress string `json:"MacAddress,omitempty"`
	// CgroupParent is the cgroup its own is made in (--cgroup-parent),
	// relative to the cgroup roots; "" is DefaultCgroupParent.
	CgroupParent string `json:"CgroupParent,omitempty"`
	// PIDContainer is the ID of the container whose PID namespace this
	// one shares (--pid container:NAME).
	PIDContainer string `json:"PidContainer,omitempty"`
	// IpcMode is "shareable" (others may join its IPC namespace and
	// /dev/shm) or container:ID (it joins that one's); "" is private, and
	// --ipc host is RunOptions.HostIPC.
	IpcMode string `json:"IpcMode,omitempty"`
	// RunOptions are --shm-size, --ulimit, --group-add, --pid, --ipc,
	// --uts, --device, --privileged and the --dns flags.
	executor.RunOptions
	Init    bool          `json:"Init"`
	Restart RestartPolicy `json:"RestartPolicy"`
	// AutoRemove removes the container when it exits (--rm).
	AutoRemove bool `json:"AutoRemove"`
	// LogMaxSize and LogMaxFiles rotate the log; 0 means 10 MiB and 3.
	LogMaxSize  int64 `json:"LogMaxSize,omitempty"`
	LogMaxFiles int   `json:"LogMaxFiles,omitempty"`
}

// ContainerModePrefix starts a namespace mode that shares another
// container's: Config.Network and IpcMode container:ID, and the
// container:NAME values of --network, --pid and --ipc.
const ContainerModePrefix = "container:"

// NetworkContainer is the ID of the container whose network namespace
// this one shares, or "".
func (c *Config) NetworkContainer() string {
	id, _ := strings.CutPrefix(c.Network, ContainerModePrefix)
	if id == c.Network {
		return ""
	}
	return id
}

// Health is the health check's record.
type Health struct {
	// Status is "starting", "healthy" or "unhealthy".
	Status        string        `json:"Status"`
	FailingStreak int           `json:"FailingStreak"`
	Log           []HealthProbe `json:"Log"`
}

// HealthProbe is one run of the health check.
type HealthProbe struct {
	Start    time.Time `json:"Start"`
	End      time.Time `json:"End"`
	ExitCode int       `json:"ExitCode"`
	Output   string    `json:"Output"`
}

// State is what a container is doing. The shim writes it while it runs.
type State struct {
	Status   Status `json:"Status"`
	Pid      int    `json:"Pid"`
	ExitCode int    `json:"ExitCode"`
	// Error is why the last start failed.
	Error      string    `json:"Error"`
	StartedAt  time.Time `json:"StartedAt"`
	FinishedAt time.Time `json:"FinishedAt"`
	// RestartCount counts restarts by the restart policy.
	RestartCount int     `json:"RestartCount"`
	Health       *Health `json:"Health,omitempty"`
	// ShimPid and ShimStart (its start time in clock ticks since boot,
	// from /proc/PID/stat) identify the shim process.
	ShimPid   int    `json:"ShimPid"`
	ShimStart uint64 `json:"ShimStart"`
	// The network endpoint while running.
	IPAddress string `json:"IPAddress,omitempty"`
	Gateway   string `json:"Gateway,omitempty"`
	// Ports are the published ports, host ports filled in.
	Ports []Port `json:"Ports,omitempty"`
}

// Record is a container's config and state.
type Record struct {
	Config Config
	State  State
	// Dir is the container's directory.
	Dir string
}

// UpperDir is the container's writable layer.
func (r *Record) UpperDir() string { return filepath.Join(r.Dir, "upper") }

// WorkDir is overlayfs' work dir for UpperDir.
func (r *Record) WorkDir() string { return filepath.Join(r.Dir, "work") }

// LogPath is the container's log file.
func (r *Record) LogPath() string { return filepath.Join(r.Dir, logName) }

// Running reports whether the container is running or paused (its shim is
// alive).
func (r *Record) Running() bool {
	return r.State.Status == Running || r.State.Status == Paused || r.State.Status == Restarting
}

// Names of files in a container's directory.
const (
	configName = "config.json"
	stateName  = "state.json"
	logName    = "container.log"
	sockName   = "shim.sock"
	shimLog    = "shim.log"
)

// Store is the containers and volumes under a store root. It keeps no
// state in memory: every method reads the disk, so several processes can
// use one root.
type Store struct {
	root string
}

// Open returns the Store under root, creating its directories.
func Open(root string) (*Store, error) {
	abs, err := filepath.Abs(root)
	if err != nil {
		return nil, err
	}
	s := &Store{root: abs}
	for _, d := range []string{s.containersDir(), s.volumesDir()} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("open container store: %w", err)
		}
	}
	return s, nil
}

// Root is the store root.
func (s *Store) Root() string { return s.root }

func (s *Store) containersDir() string { return filepath.Join(s.root, "containers") }
func (s *Store) volumesDir() string    { return filepath.Join(s.root, "volumes") }

// Dir is the directory of container id.
func (s *Store) Dir(id string) string { return filepath.Join(s.containersDir(), id) }

// NewID returns a random container ID: 64 hexadecimal digits.
func NewID() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// ShortID is the first 12 digits of an ID.
func ShortID(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

// Create records a new container in state created: it reserves the name
// (a random one when cfg.Name is empty), makes the directory with empty
// upper and work dirs and writes the config. cfg.ID is set when empty.
func (s *Store) Create(ctx context.Context, cfg *Config) (*Record, error) {
	if cfg.ID == "" {
		cfg.ID = NewID()
	}
	if cfg.Created.IsZero() {
		cfg.Created = time.Now().UTC()
	}
	name, err := s.reserveName(ctx, cfg.Name, cfg.ID)
	if err != nil {
		return nil, err
	}
	cfg.Name = name
	r := &Record{Config: *cfg, State: State{Status: Created}, Dir: s.Dir(cfg.ID)}
	if err := s.create(r); err != nil {
		_ = os.RemoveAll(r.Dir)
		_ = s.releaseName(ctx, name, cfg.ID)
		return nil, fmt.Errorf("create container: %w", err)
	}
	return r, nil
}

func (s *Store) create(r *Record) error {
	if err := os.Mkdir(r.Dir, 0o700); err != nil {
		return err
	}
	if err := os.Mkdir(r.UpperDir(), 0o755); err != nil {
		return err
	}
	if err := os.Mkdir(r.WorkDir(), 0o700); err != nil {
		return err
	}
	if err := writeJSON(filepath.Join(r.Dir, configName), r.Config); err != nil {
		return err
	}
	return writeJSON(filepath.Join(r.Dir, stateName), r.State)
}

// SaveConfig rewrites the container's config.
func (s *Store) SaveConfig(cfg *Config) error {
	return writeJSON(filepath.Join(s.Dir(cfg.ID), configName), cfg)
}

// SaveState rewrites the container's state.
func (s *Store) SaveState(id string, st *State) error {
	return writeJSON(filepath.Join(s.Dir(id), stateName), st)
}

// Load reads container id (a full ID) as it is on disk, without checking
// its shim.
func (s *Store) Load(id string) (*Record, error) {
	r := &Record{Dir: s.Dir(id)}
	if err := readJSON(filepath.Join(r.Dir, configName), &r.Config); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("no such container: %s: %w", ShortID(id), ErrNotFound)
		}
		return nil, fmt.Errorf("read container %s: %w", ShortID(id), err)
	}
	if err := readJSON(filepath.Join(r.Dir, stateName), &r.State); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("read container %s: %w", ShortID(id), err)
	}
	return r, nil
}

// Get finds a container by name, ID or unique ID prefix and checks that
// the shim of a running container is still there (else it reports it
// exited, with code 137 unless the shim recorded one).
func (s *Store) Get(ctx context.Context, ref string) (*Record, error) {
	id, err := s.resolve(ctx, ref)
	if err != nil {
		return nil, err
	}
	r, err := s.Load(id)
	if err != nil {
		return nil, err
	}
	s.checkShim(r)
	return r, nil
}

// checkShim marks r exited when its state says running but its shim is
// gone.
func (s *Store) checkShim(r *Record) {
	if !r.Running() {
		return
	}
	if ShimAlive(r.State.ShimPid, r.State.ShimStart) {
		return
	}
	r.State.Status = Exited
	if r.State.ExitCode == 0 {
		r.State.ExitCode = 137
	}
	if r.State.FinishedAt.IsZero() {
		r.State.FinishedAt = time.Now().UTC()
	}
	r.State.Pid = 0
	r.State.Health = nil
	r.State.Ports = nil
	r.State.IPAddress, r.State.Gateway = "", ""
}

// List returns every container, newest first.
func (s *Store) List(ctx context.Context) ([]*Record, error) {
	ents, err := os.ReadDir(s.containersDir())
	if err != nil {
		return nil, fmt.Errorf("list containers: %w", err)
	}
	var out []*Record
	for _, e := range ents {
		if !e.IsDir() || !isID(e.Name()) {
			continue
		}
		r, err := s.Load(e.Name())
		if err != nil {
			if errors.Is(err, ErrNotFound) {
				continue // being created or removed
			}
			return nil, err
		}
		s.checkShim(r)
		out = append(out, r)
	}
	slices.SortFunc(out, func(a, b *Record) int { return b.Config.Created.Compare(a.Config.Created) })
	return out, ctx.Err()
}

// resolve turns a name, ID or ID prefix into an ID.
func (s *Store) resolve(ctx context.Context, ref string) (string, error) {
	ref = strings.TrimPrefix(ref, "/")
	if ref == "" {
		return "", fmt.Errorf("no such container: %q: %w", ref, ErrNotFound)
	}
	names, err := s.names(ctx)
	if err != nil {
		return "", err
	}
	if id, ok := names[ref]; ok {
		return id, nil
	}
	if !isHex(ref) {
		return "", fmt.Errorf("no such container: %s: %w", ref, ErrNotFound)
	}
	ents, err := os.ReadDir(s.containersDir())
	if err != nil {
		return "", err
	}
	var found []string
	for _, e := range ents {
		if isID(e.Name()) && strings.HasPrefix(e.Name(), ref) {
			found = append(found, e.Name())
		}
	}
	switch len(found) {
	case 0:
		return "", fmt.Errorf("no such container: %s: %w", ref, ErrNotFound)
	case 1:
		return found[0], nil
	}
	return "", fmt.Errorf("container ID prefix %s is ambiguous: %d containers match; give more digits", ref, len(found))
}

// Delete removes the container's directory and name. The caller stops it
// first and removes its volumes.
func (s *Store) Delete(ctx context.Context, id string) error {
	r, err := s.Load(id)
	if err != nil {
		return err
	}
	// A shareable container's /dev/shm, left mounted by a killed shim.
	_ = unix.Unmount(filepath.Join(r.Dir, shmDirName), unix.MNT_DETACH)
	// Rename first, so a half-removed container is never listed.
	trash := filepath.Join(s.containersDir(), ".rm-"+id)
	if err := os.Rename(r.Dir, trash); err != nil {
		return fmt.Errorf("remove container %s: %w", ShortID(id), err)
	}
	if err := s.releaseName(ctx, r.Config.Name, id); err != nil {
		return err
	}
	if err := os.RemoveAll(trash); err != nil {
		return fmt.Errorf("remove container %s: %w", ShortID(id), err)
	}
	return nil
}

func isHex(s string) bool {
	for _, c := range s {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return s != ""
}

func isID(s string) bool { return len(s) == 64 && isHex(s) }

// writeJSON writes v to path atomically.
func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(path), ".tmp-")
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		_ = os.Remove(f.Name())
	}
	return err
}

func readJSON(path string, v any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}

// SeccompUnconfined is the security option that runs a container without
// the default seccomp profile.
const SeccompUnconfined = "seccomp=unconfined"

// ParseSecurityOpts checks docker run's --security-opt values and returns
// them in their canonical form. Only seccomp=unconfined (or the older
// seccomp:unconfined) is known.
func ParseSecurityOpts(opts []string) ([]string, error) {
	var out []string
	for _, o := range opts {
		switch o {
		case SeccompUnconfined, "seccomp:unconfined":
			if !slices.Contains(out, SeccompUnconfined) {
				out = append(out, SeccompUnconfined)
			}
		default:
			return nil, fmt.Errorf("--security-opt %q: kiln knows only %s", o, SeccompUnconfined)
		}
	}
	return out, nil
}
