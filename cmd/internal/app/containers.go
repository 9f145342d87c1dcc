package app

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/opencontainers/go-digest"

	"github.com/kiln-build/kiln/cache"
	"github.com/kiln-build/kiln/executor"
	"github.com/kiln-build/kiln/executor/containers"
	"github.com/kiln-build/kiln/executor/linux"
	"github.com/kiln-build/kiln/executor/network"
	"github.com/kiln-build/kiln/exporter"
)

// ContainerRequest is a container to create (kiln create, kiln run).
type ContainerRequest struct {
	// Image is the image name or ID; it is pulled when missing.
	Image string
	// Args replace the image's Cmd (after the entrypoint).
	Args []string
	// Entrypoint, when not nil, replaces the image's entrypoint (and
	// drops its Cmd when Args is empty).
	Entrypoint []string
	Name       string
	Env        []string
	Workdir    string
	User       string
	Hostname   string
	Tty        bool
	OpenStdin  bool
	// Volumes are -v values: HOST:CTR[:ro], NAME:CTR[:ro] or CTR.
	Volumes []string
	// Mounts are --mount values: type=bind|volume|tmpfs,target=CTR,...
	Mounts []string
	// VolumesFrom are --volumes-from values: CONTAINER[:ro|rw].
	VolumesFrom []string
	// Tmpfs are --tmpfs values: CTR[:OPTIONS].
	Tmpfs []string
	// Publish are -p values: [IP:][HOST:]CTR[/udp].
	Publish []string
	// PublishAll publishes every exposed port on a free host port (-P);
	// ignored off a bridge network, as by docker run.
	PublishAll bool
	// Network is bridge (default), none, host or a user network.
	Network   string
	Resources executor.Resources
	ReadOnly  bool
	CapAdd    []string
	CapDrop   []string
	// SecurityOpt are --security-opt values; only seccomp=unconfined is
	// known.
	SecurityOpt []string
	// ExtraHosts are added to /etc/hosts ("name ip", --add-host).
	ExtraHosts []string
	// MacAddress is --mac-address (bridge networks only).
	MacAddress string
	// CgroupParent is --cgroup-parent, CgroupNS --cgroupns.
	CgroupParent, CgroupNS string
	// NetworkAliases are --network-alias names and IP the --ip address
	// (user networks only).
	NetworkAliases []string
	IP             string
	// RunOptions are docker run's container options the flags give as
	// they are (--shm-size, --ulimit, --group-add, --privileged, --dns*);
	// Devices, HostPID, HostIPC and HostUTS come from DeviceSpecs, PID,
	// IPC and UTS.
	executor.RunOptions
	// DeviceSpecs are --device values: HOST[:CONTAINER[:PERMISSIONS]].
	DeviceSpecs []string
	// PID, IPC and UTS are --pid, --ipc and --uts: "" (the container's
	// own) or host.
	PID, IPC, UTS string
	// LogMaxSize and LogMaxFiles rotate the log (--log-opt max-size,
	// max-file); 0 means the defaults.
	LogMaxSize  int64
	LogMaxFiles int
	Init        bool
	StopSignal  string
	// StopTimeout is the stop grace period; < 0: the default (10s).
	StopTimeout time.Duration
	Restart     string
	AutoRemove  bool
	Labels      map[string]string
	// Expose adds exposed ports ("80/tcp", --expose).
	Expose []string
	// Healthcheck, when not nil, overrides the image's field by field
	// (docker run --health-*; Test NONE for --no-healthcheck).
	Healthcheck *containers.Healthcheck
	// Registry configures pulls of a missing image.
	Registry RegistryOptions
}

// Containers returns the container store under the App's root.
func (a *App) Containers() (*containers.Store, error) {
	return containers.Open(a.Store.Root())
}

// Networks returns the network manager under the App's root.
func (a *App) Networks() (*network.Manager, error) {
	return network.New(network.Options{StateDir: filepath.Join(a.Store.Root(), "network")})
}

// CreateContainer makes a container from req: it resolves (or pulls) the
// image, composes the command and environment like docker, prepares the
// mounts and volumes and the writable layer, and records the container in
// state created. On error nothing is left behind.
func (a *App) CreateContainer(ctx context.Context, req ContainerRequest) (_ *containers.Record, err error) {
	cs, err := a.Containers()
	if err != nil {
		return nil, err
	}
	policy, err := containers.ParseRestartPolicy(req.Restart)
	if err != nil {
		return nil, err
	}
	if req.AutoRemove && policy.Name != "no" {
		return nil, errors.New("--restart and --rm cannot be used together")
	}
	if req.StopSignal != "" {
		if _, err := executor.ParseSignal(req.StopSignal); err != nil {
			return nil, fmt.Errorf("--stop-signal: %w", err)
		}
	}
	if err := checkResources(req.Resources); err != nil {
		return nil, err
	}
	secOpts, err := containers.ParseSecurityOpts(req.SecurityOpt)
	if err != nil {
		return nil, err
	}
	net, err := a.resolveNetwork(ctx, cs, req)
	if err != nil {
		return nil, err
	}

	img, err := localResolver{a: a, opts: req.Registry}.resolve(ctx, req.Image, req.Registry)
	if err != nil {
		var nf *exporter.NotFoundError
		if errors.As(err, &nf) {
			return nil, fmt.Errorf("unable to find image %q: %w", req.Image, err)
		}
		return nil, err
	}
	ic := img.Config.Config
	cfg := containers.Config{
		ID:             containers.NewID(),
		Name:           req.Name,
		Image:          req.Image,
		ImageID:        string(img.ID),
		ImageManifest:  string(img.ManifestDigest),
		Entrypoint:     ic.Entrypoint,
		Cmd:            ic.Cmd,
		Env:            append([]string(nil), ic.Env...),
		WorkingDir:     ic.WorkingDir,
		User:           ic.User,
		Hostname:       req.Hostname,
		Tty:            req.Tty,
		OpenStdin:      req.OpenStdin,
		StdinOnce:      req.OpenStdin,
		Labels:         map[string]string{},
		StopSignal:     ic.StopSignal,
		ReadOnly:       req.ReadOnly,
		Network:        net.name,
		Ports:          net.ports,
		Resources:      req.Resources,
		CapAdd:         req.CapAdd,
		CapDrop:        req.CapDrop,
		SecurityOpt:    secOpts,
		ExtraHosts:     req.ExtraHosts,
		NetworkAliases: req.NetworkAliases,
		IPAddress:      req.IP,
		MacAddress:     req.MacAddress,
		LogMaxSize:     req.LogMaxSize,
		LogMaxFiles:    req.LogMaxFiles,
		Init:           req.Init,
		RunOptions:     req.RunOptions,
		Restart:        policy,
		AutoRemove:     req.AutoRemove,
	}
	if req.Entrypoint != nil {
		cfg.Entrypoint = req.Entrypoint
		if len(req.Entrypoint) == 1 && req.Entrypoint[0] == "" {
			cfg.Entrypoint = nil
		}
		cfg.Cmd = nil
	}
	if len(req.Args) > 0 {
		cfg.Cmd = req.Args
	}
	cfg.Args = append(slices.Clone(cfg.Entrypoint), cfg.Cmd...)
	if len(cfg.Args) == 0 {
		return nil, errors.New("no command specified: the image has no entrypoint or command; give one after the image name")
	}
	if !hasEnvKey(cfg.Env, "PATH") {
		cfg.Env = append(cfg.Env, "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
	}
	for _, e := range req.Env {
		cfg.Env = containers.MergeEnv(cfg.Env, e)
	}
	if cfg.Tty && !hasEnvKey(cfg.Env, "TERM") {
		cfg.Env = append(cfg.Env, "TERM=xterm")
	}
	if req.Workdir != "" {
		if !path.IsAbs(req.Workdir) {
			return nil, fmt.Errorf("the working directory '%s' is invalid, it needs to be an absolute path", req.Workdir)
		}
		cfg.WorkingDir = req.Workdir
	}
	if req.User != "" {
		cfg.User = req.User
	}
	if req.StopSignal != "" {
		cfg.StopSignal = req.StopSignal
	}
	if req.StopTimeout >= 0 {
		cfg.StopTimeout = req.StopTimeout
		if req.StopTimeout == 0 {
			cfg.StopTimeout = time.Nanosecond // "no grace period", distinct from unset
		}
	}
	if net.donor != nil {
		cfg.Hostname = net.donor.Config.Hostname
	}
	if cfg.Hostname == "" {
		cfg.Hostname = containers.ShortID(cfg.ID)
		if net.name == network.Host {
			// As docker run: the host network brings the host's name.
			if h, err := os.Hostname(); err == nil {
				cfg.Hostname = h
			}
		}
	}
	for k, v := range ic.Labels {
		cfg.Labels[k] = v
	}
	for k, v := range req.Labels {
		cfg.Labels[k] = v
	}
	for p := range ic.ExposedPorts {
		cfg.ExposedPorts = append(cfg.ExposedPorts, p)
	}
	for _, p := range req.Expose {
		if !slices.Contains(cfg.ExposedPorts, p) {
			cfg.ExposedPorts = append(cfg.ExposedPorts, p)
		}
	}
	sort.Strings(cfg.ExposedPorts)
	if req.PublishAll && net.name != network.Host && net.name != network.None && net.donor == nil {
		if cfg.Ports, err = publishAll(cfg.Ports, cfg.ExposedPorts); err != nil {
			return nil, err
		}
	}
	cfg.Healthcheck = mergeHealthcheck(healthcheck(ic.Healthcheck), req.Healthcheck)
	if err := setProcessOptions(ctx, cs, req, &cfg, net); err != nil {
		return nil, err
	}
	if req.CgroupParent != "" {
		if cfg.CgroupParent, err = containers.CleanCgroupParent(req.CgroupParent); err != nil {
			return nil, err
		}
	}
	if cfg.HostUTS {
		if req.Hostname != "" {
			return nil, errors.New("--hostname and --uts host cannot be used together")
		}
		if h, err := os.Hostname(); err == nil {
			cfg.Hostname = h
		}
	}
	for _, d := range req.DeviceSpecs {
		dev, err := parseDevice(d)
		if err != nil {
			return nil, err
		}
		cfg.Devices = append(cfg.Devices, dev)
	}

	// From here on, undo what was made when something fails.
	var anon []string
	defer func() {
		if err != nil {
			for _, v := range anon {
				_ = cs.RemoveVolume(context.WithoutCancel(ctx), v)
			}
		}
	}()
	mounts, made, err := a.mounts(ctx, cs, req, ic)
	anon = made
	if err != nil {
		return nil, err
	}
	cfg.Mounts = mounts

	active, err := a.Store.Prepare(ctx, img.Chain)
	if err != nil {
		return nil, err
	}
	defer active.Discard()
	cfg.LowerDirs = active.LowerDirs
	if cfg.ImageChain, err = json.Marshal(img.Chain); err != nil {
		return nil, err
	}
	// As docker does, an empty volume starts as a copy of what the image
	// has where it is mounted.
	for _, m := range cfg.Mounts {
		if m.Type != containers.MountVolume || m.NoCopy {
			continue
		}
		if err := containers.PopulateVolume(ctx, containers.ImageLayers(cfg.LowerDirs), m.Target, m.Source); err != nil {
			return nil, err
		}
	}
	rec, err := cs.Create(ctx, &cfg)
	if err != nil {
		return nil, err
	}
	// The writable layer (its root dir already carrying the image
	// root's owner and mode) moves from the store's temp dir into the
	// container's dir (same filesystem), where it stays until rm; the
	// empty dirs Create made there give way.
	err = replaceDir(active.UpperDir, rec.UpperDir())
	if err == nil {
		err = replaceDir(active.WorkDir, rec.WorkDir())
	}
	if err != nil {
		_ = cs.Remove(context.WithoutCancel(ctx), cfg.ID, false)
		return nil, fmt.Errorf("create container: move its writable layer: %w", err)
	}
	return rec, nil
}

// replaceDir renames the directory src to dst, an empty directory that
// it replaces (os.Rename refuses to replace a directory).
func replaceDir(src, dst string) error {
	if err := os.Remove(dst); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return os.Rename(src, dst)
}

// checkNetwork fails when the user network name does not exist.
func (a *App) checkNetwork(ctx context.Context, name string) error {
	m, err := a.Networks()
	if err != nil {
		return err
	}
	nets, err := m.List(ctx)
	if err != nil {
		return fmt.Errorf("network %s: %w", name, err)
	}
	for _, n := range nets {
		if n.Name == name {
			return nil
		}
	}
	return fmt.Errorf("network %s not found", name)
}

// mounts turns -v, --tmpfs and the image's VOLUMEs into mounts; it returns
// the anonymous volumes it made.
func (a *App) mounts(ctx context.Context, cs *containers.Store, req ContainerRequest, ic v1.Config) ([]containers.Mount, []string, error) {
	var out []containers.Mount
	var anon []string
	targets := map[string]bool{}
	add := func(m containers.Mount) error {
		m.Target = path.Clean(m.Target)
		if !path.IsAbs(m.Target) {
			return fmt.Errorf("invalid mount %s: the container path must be absolute", m.Target)
		}
		if m.Target == "/" {
			return errors.New("invalid mount: cannot mount over the container's /")
		}
		if targets[m.Target] {
			return fmt.Errorf("duplicate mount point: %s", m.Target)
		}
		targets[m.Target] = true
		out = append(out, m)
		return nil
	}
	specs := make([]containers.Mount, 0, len(req.Volumes)+len(req.Mounts))
	for _, spec := range req.Volumes {
		m, err := parseVolume(spec)
		if err != nil {
			return out, anon, err
		}
		specs = append(specs, m)
	}
	for _, spec := range req.Mounts {
		m, err := parseMount(spec)
		if err != nil {
			return out, anon, err
		}
		specs = append(specs, m)
	}
	for _, m := range specs {
		if m.Type == containers.MountTmpfs {
			if err := add(m); err != nil {
				return out, anon, err
			}
			continue
		}
		switch {
		case m.Type == containers.MountBind:
			if _, err := os.Stat(m.Source); err != nil {
				return out, anon, fmt.Errorf("invalid mount config: bind source path does not exist: %s", m.Source)
			}
		case m.Name == "":
			v, err := cs.CreateVolume(ctx, "", nil)
			if err != nil {
				return out, anon, err
			}
			anon = append(anon, v.Name)
			m.Name, m.Source, m.Anonymous = v.Name, v.Mountpoint, true
		default:
			v, err := cs.CreateVolume(ctx, m.Name, nil)
			if err != nil {
				return out, anon, err
			}
			m.Source = v.Mountpoint
		}
		if err := add(m); err != nil {
			return out, anon, err
		}
	}
	for _, spec := range req.Tmpfs {
		target, opts, _ := strings.Cut(spec, ":")
		// noexec by default, as docker run --tmpfs mounts; "exec" in
		// OPTIONS comes later and wins.
		m := containers.Mount{Type: containers.MountTmpfs, Source: "tmpfs", Target: target, Options: []string{"noexec"}}
		if opts != "" {
			m.Options = append(m.Options, strings.Split(opts, ",")...)
		}
		if err := add(m); err != nil {
			return out, anon, err
		}
	}
	// --volumes-from: another container's volumes and binds, at the same
	// paths, after the user's own mounts (which win) and before the
	// image's VOLUMEs; never removed with this container.
	for _, spec := range req.VolumesFrom {
		ref, mode, _ := strings.Cut(spec, ":")
		if mode != "" && mode != "ro" && mode != "rw" {
			return out, anon, fmt.Errorf("--volumes-from %s: the mode must be ro or rw", spec)
		}
		src, err := cs.Get(ctx, ref)
		if err != nil {
			return out, anon, fmt.Errorf("--volumes-from %s: %w", spec, err)
		}
		for _, m := range src.Config.Mounts {
			if m.Type == containers.MountTmpfs || targets[path.Clean(m.Target)] {
				continue
			}
			m.Anonymous = false
			m.NoCopy = true
			if mode != "" {
				m.ReadOnly = mode == "ro"
			}
			if err := add(m); err != nil {
				return out, anon, err
			}
		}
	}
	var vols []string
	for p := range ic.Volumes {
		vols = append(vols, p)
	}
	sort.Strings(vols)
	for _, p := range vols {
		if targets[path.Clean(p)] {
			continue
		}
		v, err := cs.CreateVolume(ctx, "", nil)
		if err != nil {
			return out, anon, err
		}
		anon = append(anon, v.Name)
		if err := add(containers.Mount{Type: containers.MountVolume, Name: v.Name, Anonymous: true, Source: v.Mountpoint, Target: p}); err != nil {
			return out, anon, err
		}
	}
	return out, anon, nil
}

// parseVolume reads a -v value: HOST:CTR[:OPTS], NAME:CTR[:OPTS] or CTR.
// OPTS is a comma list of ro and rw.
func parseVolume(spec string) (containers.Mount, error) {
	parts := strings.Split(spec, ":")
	var m containers.Mount
	var opts string
	switch len(parts) {
	case 1:
		m = containers.Mount{Type: containers.MountVolume, Target: parts[0]}
	case 2, 3:
		src, target := parts[0], parts[1]
		if len(parts) == 3 {
			opts = parts[2]
		}
		switch {
		case strings.HasPrefix(src, "/"):
			m = containers.Mount{Type: containers.MountBind, Source: filepath.Clean(src), Target: target}
		case src == "":
			return m, fmt.Errorf("invalid volume %q: empty source", spec)
		case containers.IsVolumeName(src):
			m = containers.Mount{Type: containers.MountVolume, Name: src, Target: target}
		default:
			return m, fmt.Errorf("invalid volume %q: %q is neither an absolute host path nor a volume name", spec, src)
		}
	default:
		return m, fmt.Errorf("invalid volume %q: want HOST-PATH:CONTAINER-PATH[:ro], NAME:CONTAINER-PATH[:ro] or CONTAINER-PATH", spec)
	}
	if m.Target == "" || !strings.HasPrefix(m.Target, "/") {
		return m, fmt.Errorf("invalid volume %q: the container path must be absolute", spec)
	}
	if opts != "" {
		for _, o := range strings.Split(opts, ",") {
			switch o {
			case "ro":
				m.ReadOnly = true
			case "rw":
				m.ReadOnly = false
			case "nocopy":
				m.NoCopy = true
			case "z", "Z", "private", "rprivate", "shared", "rshared", "slave", "rslave":
			default:
				return m, fmt.Errorf("invalid volume %q: unknown option %q", spec, o)
			}
		}
	}
	return m, nil
}

// parseDevice reads a --device value, HOST[:CONTAINER[:PERMISSIONS]], as
// docker run does: the host path must be a device node; PERMISSIONS (rwm,
// the default) are what the container's device filter allows on it.
func parseDevice(v string) (executor.Device, error) {
	parts := strings.Split(v, ":")
	if len(parts) > 3 || parts[0] == "" {
		return executor.Device{}, fmt.Errorf("--device %s: want HOST[:CONTAINER[:PERMISSIONS]]", v)
	}
	d := executor.Device{HostPath: parts[0], ContainerPath: parts[0]}
	if len(parts) >= 2 && parts[1] != "" {
		if strings.Trim(parts[1], "rwm") == "" && len(parts) == 2 {
			parts = []string{parts[0], parts[0], parts[1]} // HOST:PERMISSIONS
		} else {
			d.ContainerPath = parts[1]
		}
	}
	if len(parts) == 3 {
		if parts[2] == "" || strings.Trim(parts[2], "rwm") != "" {
			return executor.Device{}, fmt.Errorf("--device %s: permissions %q are not r, w and m", v, parts[2])
		}
		d.Permissions = parts[2]
	}
	if !path.IsAbs(d.HostPath) || !path.IsAbs(d.ContainerPath) {
		return executor.Device{}, fmt.Errorf("--device %s: paths must be absolute", v)
	}
	fi, err := os.Stat(d.HostPath)
	if err != nil {
		return executor.Device{}, fmt.Errorf("--device %s: %w", v, err)
	}
	if fi.Mode()&fs.ModeDevice == 0 {
		return executor.Device{}, fmt.Errorf("--device %s: %s is not a device", v, d.HostPath)
	}
	d.ContainerPath = path.Clean(d.ContainerPath)
	return d, nil
}

// parseMount reads a --mount value as docker run does: comma-separated
// KEY=VALUE fields, type bind, volume (the default) or tmpfs. Bind
// sources must be absolute; a volume without a source is anonymous; tmpfs
// mounts are noexec like --tmpfs ones, with tmpfs-size and tmpfs-mode.
func parseMount(spec string) (containers.Mount, error) {
	m := containers.Mount{Type: containers.MountVolume}
	bad := func(format string, a ...any) (containers.Mount, error) {
		return containers.Mount{}, fmt.Errorf("invalid --mount %q: "+format, append([]any{spec}, a...)...)
	}
	var src string
	var tmpfsOpts []string
	for _, field := range strings.Split(spec, ",") {
		key, val, hasVal := strings.Cut(field, "=")
		flag := func() (bool, error) {
			switch strings.ToLower(val) {
			case "", "1", "true":
				return true, nil
			case "0", "false":
				return false, nil
			}
			return false, fmt.Errorf("invalid --mount %q: %s=%s is no boolean", spec, key, val)
		}
		var err error
		switch strings.ToLower(key) {
		case "type":
			m.Type = val
		case "source", "src":
			src = val
		case "target", "destination", "dst":
			m.Target = val
		case "readonly", "ro":
			if !hasVal {
				val = "true"
			}
			m.ReadOnly, err = flag()
		case "volume-nocopy":
			m.NoCopy, err = flag()
		case "tmpfs-size":
			n, perr := ParseMemory(val)
			if perr != nil {
				return bad("tmpfs-size %q: %v", val, perr)
			}
			tmpfsOpts = append(tmpfsOpts, fmt.Sprintf("size=%d", n))
		case "tmpfs-mode":
			mode, perr := strconv.ParseUint(val, 8, 32)
			if perr != nil {
				return bad("tmpfs-mode %q is no octal mode", val)
			}
			tmpfsOpts = append(tmpfsOpts, fmt.Sprintf("mode=%o", mode))
		case "bind-propagation", "consistency", "bind-nonrecursive":
			// Accepted; kiln's binds are recursive and private.
		default:
			return bad("unknown field %q", key)
		}
		if err != nil {
			return containers.Mount{}, err
		}
	}
	if m.Target == "" {
		return bad("target is required")
	}
	if !strings.HasPrefix(m.Target, "/") {
		return bad("the target must be an absolute path")
	}
	switch m.Type {
	case containers.MountBind:
		if src == "" {
			return bad("a bind mount needs a source")
		}
		if !strings.HasPrefix(src, "/") {
			return bad("the bind source must be an absolute path")
		}
		m.Source = filepath.Clean(src)
	case containers.MountVolume:
		if src != "" && !containers.IsVolumeName(src) {
			return bad("%q is no volume name", src)
		}
		m.Name = src
	case containers.MountTmpfs:
		if src != "" {
			return bad("a tmpfs mount takes no source")
		}
		m.Source = "tmpfs"
		m.Options = append([]string{"noexec"}, tmpfsOpts...)
	default:
		return bad("mount type %q unknown (want bind, volume or tmpfs)", m.Type)
	}
	if len(tmpfsOpts) > 0 && m.Type != containers.MountTmpfs {
		return bad("tmpfs options on a %s mount", m.Type)
	}
	return m, nil
}

// netChoice is the network a container asked for, resolved: host, none,
// bridge, a user network's name, or container:ID with the donor's record,
// and the ports to publish.
type netChoice struct {
	name  string
	donor *containers.Record
	ports []containers.Port
}

// user reports whether the network is a user-defined one.
func (n netChoice) user() bool {
	return n.name != network.Host && n.name != network.None && n.name != network.Bridge && n.donor == nil
}

// ownNamespace reports whether the container gets a network namespace of
// its own (not the host's, not another container's).
func (n netChoice) ownNamespace() bool { return n.name != network.Host && n.donor == nil }

// resolveNetwork checks req's network options as docker run does and
// resolves its --network.
func (a *App) resolveNetwork(ctx context.Context, cs *containers.Store, req ContainerRequest) (netChoice, error) {
	n := netChoice{name: req.Network}
	switch n.name {
	case "", "default":
		n.name = network.Bridge
	}
	if ref, ok := strings.CutPrefix(n.name, containers.ContainerModePrefix); ok {
		// As docker run: the other container's network namespace, name
		// and files; what would set them here conflicts.
		for _, c := range []struct {
			set  bool
			what string
		}{{req.Hostname != "", "hostname"}, {len(req.Publish) > 0, "port publishing"}, {len(req.DNS) > 0 || len(req.DNSSearch) > 0 || len(req.DNSOptions) > 0, "dns"}, {len(req.ExtraHosts) > 0, "custom host-to-IP mapping"}} {
			if c.set {
				return n, fmt.Errorf("conflicting options: %s and the network mode %s", c.what, n.name)
			}
		}
		donor, err := cs.Get(ctx, ref)
		if err != nil {
			return n, fmt.Errorf("--network %s: %w", n.name, err)
		}
		n.name, n.donor = containers.ContainerModePrefix+donor.Config.ID, donor
	}
	for _, p := range req.Publish {
		pm, err := network.ParsePortMapping(p)
		if err != nil {
			return n, err
		}
		port := containers.Port{HostPort: pm.HostPort, ContainerPort: pm.ContainerPort, Proto: pm.Proto}
		if pm.HostIP.IsValid() {
			port.HostIP = pm.HostIP.String()
		}
		n.ports = append(n.ports, port)
	}
	if len(n.ports) > 0 && (n.name == network.Host || n.name == network.None) {
		return n, fmt.Errorf("-p: published ports need a bridge network, not --network=%s", n.name)
	}
	if len(req.NetworkAliases) > 0 && !n.user() {
		return n, errors.New("network-scoped aliases are only supported for user-defined networks")
	}
	for _, alias := range req.NetworkAliases {
		if alias == "" || strings.ContainsAny(alias, " \t\n#") {
			return n, fmt.Errorf("--network-alias %q: not a host name", alias)
		}
	}
	if req.MacAddress != "" {
		mac, err := net.ParseMAC(req.MacAddress)
		if err != nil || len(mac) != 6 {
			return n, fmt.Errorf("%s is not a valid mac address", req.MacAddress)
		}
		if n.name == network.Host || n.name == network.None || n.donor != nil {
			return n, fmt.Errorf("conflicting options: mac-address and the network mode %s", n.name)
		}
	}
	if req.IP != "" {
		ip, err := netip.ParseAddr(req.IP)
		if err != nil || !ip.Is4() {
			return n, fmt.Errorf("invalid IPv4 address: %s", req.IP)
		}
		if !n.user() {
			return n, errors.New("user specified IP address is supported on user defined networks only")
		}
	}
	if n.user() {
		if err := a.checkNetwork(ctx, n.name); err != nil {
			return n, err
		}
	}
	return n, nil
}

// setProcessOptions checks and records req's namespace options (--pid,
// --ipc, --uts), the process's kernel settings (--oom-score-adj,
// --domainname, --sysctl) and device rules into cfg, as docker run does.
func setProcessOptions(ctx context.Context, cs *containers.Store, req ContainerRequest, cfg *containers.Config, net netChoice) error {
	if ref, ok := strings.CutPrefix(req.PID, containers.ContainerModePrefix); ok {
		donor, err := cs.Get(ctx, ref)
		if err != nil {
			return fmt.Errorf("--pid %s: %w", req.PID, err)
		}
		cfg.PIDContainer = donor.Config.ID
		req.PID = ""
	}
	switch ref, joins := strings.CutPrefix(req.IPC, containers.ContainerModePrefix); {
	case joins:
		donor, err := cs.Get(ctx, ref)
		if err != nil {
			return fmt.Errorf("--ipc %s: %w", req.IPC, err)
		}
		if donor.Config.IpcMode != "shareable" {
			return fmt.Errorf("cannot join IPC of container %s: non-shareable IPC (hint: use --ipc shareable for the donor container)", ref)
		}
		cfg.IpcMode = containers.ContainerModePrefix + donor.Config.ID
		req.IPC = ""
	case req.IPC == "shareable":
		cfg.IpcMode = "shareable"
		req.IPC = ""
	case req.IPC == "none":
		// A private IPC namespace without /dev/shm.
		cfg.NoShm = true
		req.IPC = ""
	}
	switch req.CgroupNS {
	case "", "host":
	case "private":
		cfg.PrivateCgroupNS = true
	default:
		return fmt.Errorf("--cgroupns %s: want host or private", req.CgroupNS)
	}
	for flag, v := range map[string]string{"--pid": req.PID, "--ipc": req.IPC, "--uts": req.UTS} {
		switch v {
		case "", "host", "private":
		default:
			return fmt.Errorf("%s %s: kiln knows host, private, container:NAME and, for --ipc, shareable and none", flag, v)
		}
	}
	cfg.HostPID, cfg.HostIPC, cfg.HostUTS = req.PID == "host", req.IPC == "host", req.UTS == "host"
	if cfg.OomScoreAdj < -1000 || cfg.OomScoreAdj > 1000 {
		return fmt.Errorf("invalid value %d, range for oom score adj is [-1000, 1000]", cfg.OomScoreAdj)
	}
	if cfg.Domainname != "" && cfg.HostUTS {
		return errors.New("--domainname and --uts host cannot be used together")
	}
	for _, r := range cfg.DeviceCgroupRules {
		if _, _, _, _, err := executor.ParseDeviceRule(r); err != nil {
			return err
		}
	}
	for name, value := range cfg.Sysctls {
		// A shared network namespace is the other container's (maybe the
		// host's) to set up.
		if err := executor.CheckSysctl(name, value, net.ownNamespace(), !cfg.HostIPC && !strings.HasPrefix(cfg.IpcMode, containers.ContainerModePrefix)); err != nil {
			return err
		}
	}
	return nil
}

// publishAll adds to ports a mapping from a free host port for each of the
// exposed ports ("80/tcp", "53/udp") not published already.
func publishAll(ports []containers.Port, exposed []string) ([]containers.Port, error) {
	for _, e := range exposed {
		num, proto, _ := strings.Cut(e, "/")
		if proto == "" {
			proto = "tcp"
		}
		if proto != "tcp" && proto != "udp" {
			continue // sctp: kiln publishes tcp and udp only
		}
		n, err := strconv.ParseUint(num, 10, 16)
		if err != nil || n == 0 {
			return nil, fmt.Errorf("-P: exposed port %q is not a port number", e)
		}
		if slices.ContainsFunc(ports, func(p containers.Port) bool { return p.ContainerPort == uint16(n) && p.Proto == proto }) {
			continue
		}
		ports = append(ports, containers.Port{ContainerPort: uint16(n), Proto: proto})
	}
	return ports, nil
}

// checkResources refuses what dockerd 20.10 refuses, in its words.
func checkResources(r executor.Resources) error {
	switch {
	case r.MemorySwap != 0 && r.Memory == 0:
		return errors.New("you should always set the memory limit when using the memoryswap limit, see usage")
	case r.MemorySwap > 0 && r.MemorySwap < r.Memory:
		return errors.New("minimum memoryswap limit should be larger than memory limit, see usage")
	case r.MemorySwap < -1:
		return errors.New("--memory-swap: want a size or -1")
	case r.Memory > 0 && r.MemoryReservation > r.Memory:
		return errors.New("minimum memory limit can not be less than memory reservation limit, see usage")
	case r.CPUs > 0 && r.CPUQuota > 0:
		return errors.New("conflicting options: Nano CPUs and CPU Quota cannot both be set")
	case r.CPUs > 0 && r.CPUPeriod > 0:
		return errors.New("conflicting options: Nano CPUs and CPU Period cannot both be set")
	case r.CPUPeriod != 0 && (r.CPUPeriod < 1000 || r.CPUPeriod > 1000000):
		return errors.New("CPU cfs period can not be less than 1ms (i.e. 1000) or larger than 1s (i.e. 1000000)")
	case r.CPUQuota != 0 && r.CPUQuota < 1000:
		return errors.New("CPU cfs quota can not be less than 1ms (i.e. 1000)")
	case r.CPUShares < 0 || r.MemoryReservation < 0:
		return errors.New("--cpu-shares and --memory-reservation must not be negative")
	}
	for _, s := range []struct{ flag, v string }{{"--cpuset-cpus", r.CPUSetCPUs}, {"--cpuset-mems", r.CPUSetMems}} {
		if s.v != "" && strings.Trim(s.v, "0123456789,-") != "" {
			return fmt.Errorf("invalid value %s for %s: want a list like 0-2,4", s.v, s.flag)
		}
	}
	return nil
}

// ParseMemory reads docker's memory sizes (--memory, --shm-size,
// tmpfs-size): a byte count with an optional
// binary unit b, k, m or g ("256m" is 256 MiB).
func ParseMemory(s string) (int64, error) {
	// docker's RAMInBytes: a number, an optional space, then k, m, g, t
	// or p, optionally followed by i and b (1g, 1gb, 1GiB, 512 m), or b.
	t := strings.ToLower(strings.TrimSpace(s))
	t = strings.TrimSuffix(t, "b")
	unit := ""
	if n := len(t); n > 0 && strings.ContainsRune("kmgtp", rune(t[n-1])) {
		unit, t = t[n-1:], t[:n-1]
	} else if n > 1 && t[n-1] == 'i' && strings.ContainsRune("kmgtp", rune(t[n-2])) {
		unit, t = t[n-2:n-1], t[:n-2]
	}
	mult := map[string]int64{"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}[unit]
	n, err := strconv.ParseFloat(strings.TrimSpace(t), 64)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("%q is not a size like 256m", s)
	}
	return int64(n * float64(mult)), nil
}

func hasEnvKey(env []string, key string) bool {
	for _, e := range env {
		if strings.HasPrefix(e, key+"=") {
			return true
		}
	}
	return false
}

func healthcheck(h *v1.HealthConfig) *containers.Healthcheck {
	if h == nil || len(h.Test) == 0 {
		return nil
	}
	return &containers.Healthcheck{Test: h.Test, Interval: h.Interval, Timeout: h.Timeout, StartPeriod: h.StartPeriod, Retries: h.Retries}
}

// mergeHealthcheck applies the run flags' health check over the image's,
// as docker does: NONE disables it, unset fields come from the image.
func mergeHealthcheck(img, flags *containers.Healthcheck) *containers.Healthcheck {
	if flags == nil {
		return img
	}
	if len(flags.Test) == 1 && flags.Test[0] == "NONE" {
		return nil
	}
	out := *flags
	if img != nil {
		if len(out.Test) == 0 {
			out.Test = img.Test
		}
		if out.Interval == 0 {
			out.Interval = img.Interval
		}
		if out.Timeout == 0 {
			out.Timeout = img.Timeout
		}
		if out.StartPeriod == 0 {
			out.StartPeriod = img.StartPeriod
		}
		if out.Retries == 0 {
			out.Retries = img.Retries
		}
	}
	if len(out.Test) == 0 {
		return nil // timing options and no command to run
	}
	return &out
}

// container opens the container store and finds container ref in it.
func (a *App) container(ctx context.Context, ref string) (*containers.Store, *containers.Record, error) {
	cs, err := a.Containers()
	if err != nil {
		return nil, nil, err
	}
	r, err := cs.Get(ctx, ref)
	return cs, r, err
}

// RemoveContainer removes a container: its network attachment, writable
// layer, logs and (with volumes) anonymous volumes. A running container
// is refused unless force, which kills it first.
func (a *App) RemoveContainer(ctx context.Context, ref string, force, volumes bool) error {
	cs, r, err := a.container(ctx, ref)
	if err != nil {
		return err
	}
	if r.Running() {
		if !force {
			return fmt.Errorf("cannot remove container %s: it is %s; stop it first or use rm -f", r.Config.Name, r.State.Status)
		}
		if err := cs.Stop(ctx, r.Config.ID, 0); err != nil && !errors.Is(err, containers.ErrNotRunning) {
			return err
		}
	}
	if r.Config.Network != network.Host && r.Config.Network != network.None {
		if m, err := a.Networks(); err == nil {
			_ = m.Detach(ctx, r.Config.ID)
		}
	}
	// Left over when the container's shim was killed.
	_ = containers.RemoveCgroup(&r.Config)
	return cs.Remove(ctx, r.Config.ID, volumes)
}

// ContainerImage returns the image a container was created from.
func (a *App) ContainerImage(ctx context.Context, r *containers.Record) (*exporter.Image, error) {
	img, err := exporter.Read(ctx, a.Store, digest.Digest(r.Config.ImageManifest))
	if err != nil {
		return nil, fmt.Errorf("image of container %s: %w", r.Config.Name, err)
	}
	return img, nil
}

// LeaseContainerImages keeps the layers of every container's image safe
// from a Prune of the App's store (their snapshots are the containers'
// lower dirs) until release is called. Containers whose image cannot be
// read are skipped.
func (a *App) LeaseContainerImages(ctx context.Context) (release func(), err error) {
	list, err := a.ContainerList(ctx)
	if err != nil {
		return nil, err
	}
	var releases []func()
	for _, r := range list {
		var chain cache.Chain
		if err := json.Unmarshal(r.Config.ImageChain, &chain); err != nil || len(chain) == 0 {
			continue
		}
		releases = append(releases, a.Store.Lease(chain))
	}
	return func() {
		for _, f := range releases {
			f()
		}
	}, nil
}

// UpdateContainer changes the limits of container ref to the non-zero
// fields of patch, as docker update does: in its record, for its next
// runs, and in its cgroup when it runs. The result must pass the checks
// docker makes (see checkResources).
func (a *App) UpdateContainer(ctx context.Context, ref string, patch executor.Resources) error {
	cs, r, err := a.container(ctx, ref)
	if err != nil {
		return err
	}
	res := r.Config.Resources
	mergeResources(&res, patch)
	if err := checkResources(res); err != nil {
		return err
	}
	if r.Running() {
		// The memory-swap default follows the memory limit.
		apply := patch
		if patch.Memory > 0 {
			apply.MemorySwap = res.MemorySwap
		}
		if err := linux.UpdateCgroup(r.Config.CgroupPath(), apply); err != nil {
			return fmt.Errorf("update container %s: %w", r.Config.Name, err)
		}
	}
	r.Config.Resources = res
	return cs.SaveConfig(&r.Config)
}

// mergeResources sets the non-zero fields of patch in res; --cpus
// replaces a CFS period and quota.
func mergeResources(res *executor.Resources, patch executor.Resources) {
	if patch.CPUs != 0 {
		res.CPUPeriod, res.CPUQuota = 0, 0
	}
	setNonZero(&res.Memory, patch.Memory)
	setNonZero(&res.MemorySwap, patch.MemorySwap)
	setNonZero(&res.MemoryReservation, patch.MemoryReservation)
	setNonZero(&res.CPUs, patch.CPUs)
	setNonZero(&res.CPUShares, patch.CPUShares)
	setNonZero(&res.CPUPeriod, patch.CPUPeriod)
	setNonZero(&res.CPUQuota, patch.CPUQuota)
	setNonZero(&res.CPUSetCPUs, patch.CPUSetCPUs)
	setNonZero(&res.CPUSetMems, patch.CPUSetMems)
	setNonZero(&res.PidsLimit, patch.PidsLimit)
	setNonZero(&res.BlkioWeight, patch.BlkioWeight)
}

// setNonZero sets *dst to v unless v is the zero value.
func setNonZero[T comparable](dst *T, v T) {
	var zero T
	if v != zero {
		*dst = v
	}
}
