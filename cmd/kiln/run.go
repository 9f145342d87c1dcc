package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"golang.org/x/sys/unix"

	"github.com/kiln-build/kiln/cmd/internal/app"
	"github.com/kiln-build/kiln/cmd/internal/shim"
	"github.com/kiln-build/kiln/executor"
	"github.com/kiln-build/kiln/executor/containers"
)

// containerFlags are the flags of kiln create and kiln run.
type containerFlags struct {
	name         string
	env          []string
	envFiles     []string
	workdir      string
	user         string
	entrypoint   string
	hostname     string
	volumes      []string
	tmpfs        []string
	mounts       []string
	volumesFrom  []string
	publish      []string
	network      string
	memory       string
	memorySwap   string
	memoryRes    string
	cpus         float64
	cpuShares    int64
	cpuPeriod    int64
	cpuQuota     int64
	cpusetCPUs   string
	cpusetMems   string
	blkioWeight  uint16
	throttles    map[string]*[]string // --device-read-bps and friends, by kind
	pidsLimit    int64
	readOnly     bool
	capAdd       []string
	capDrop      []string
	securityOpt  []string
	addHosts     []string
	aliases      []string
	domainname   string
	oomScoreAdj  int
	oomKillOff   bool
	swappiness   int64
	devRules     []string
	userns       string
	trustOff     bool
	sysctls      []string
	publishAll   bool
	ip           string
	init         bool
	stopSignal   string
	stopTimeout  int
	restart      string
	rm           bool
	interactive  bool
	tty          bool
	labels       []string
	labelFiles   []string
	pull         string
	cidfile      string
	platform     string
	expose       []string
	sigProxy     bool
	attach       []string
	cgroupParent string
	macAddress   string
	cgroupNS     string
	health       healthFlags
	shmSize      string
	ulimits      []string
	groupAdd     []string
	dns          []string
	dnsSearch    []string
	dnsOptions   []string
	privileged   bool
	devices      []string
	pid, ipc     string
	uts          string
	logDriver    string
	logOpts      []string
}

// healthFlags override the image's HEALTHCHECK, field by field.
type healthFlags struct {
	none        bool
	cmd         string
	interval    time.Duration
	timeout     time.Duration
	startPeriod time.Duration
	retries     int
}

func addContainerFlags(fl *pflag.FlagSet, f *containerFlags) {
	fl.SetInterspersed(false)
	fl.StringVar(&f.name, "name", "", "assign a name to the container")
	fl.StringArrayVarP(&f.attach, "attach", "a", nil, "attach to STDIN, STDOUT or STDERR only (kiln run; default: STDOUT and STDERR)")
	fl.StringArrayVarP(&f.env, "env", "e", nil, "set an environment variable KEY=VALUE (KEY alone: from the environment)")
	fl.StringArrayVar(&f.envFiles, "env-file", nil, "read environment variables from a file")
	fl.StringVarP(&f.workdir, "workdir", "w", "", "working directory inside the container")
	fl.StringVarP(&f.user, "user", "u", "", "user name or uid[:gid]")
	fl.StringVar(&f.entrypoint, "entrypoint", "", "override the image's entrypoint")
	fl.StringVarP(&f.hostname, "hostname", "h", "", "container host name")
	fl.StringArrayVarP(&f.volumes, "volume", "v", nil, "bind mount HOST:CTR[:ro], named volume NAME:CTR[:ro] or anonymous volume CTR")
	fl.StringArrayVar(&f.tmpfs, "tmpfs", nil, "mount a tmpfs CTR[:OPTIONS]")
	fl.StringArrayVar(&f.volumesFrom, "volumes-from", nil, "mount the volumes of another container CONTAINER[:ro|rw]")
	fl.StringArrayVar(&f.mounts, "mount", nil, "attach a mount: type=bind|volume|tmpfs,source=SRC,target=CTR[,readonly][,volume-nocopy][,tmpfs-size=S][,tmpfs-mode=M]")
	fl.StringArrayVarP(&f.publish, "publish", "p", nil, "publish a container port [IP:][HOST:]CTR[/udp]")
	fl.StringVar(&f.network, "network", "bridge", "network: bridge, none, host, a network name, or container:NAME to share that container's")
	f.addLimitFlags(fl)
	fl.StringVar(&f.macAddress, "mac-address", "", "MAC address of the container's interface on a bridge network")
	fl.StringVar(&f.cgroupParent, "cgroup-parent", "", "cgroup to make the container's in (default kiln)")
	fl.StringVar(&f.cgroupNS, "cgroupns", "", "cgroup namespace: host (default) or private (rooted at the container's cgroup)")
	fl.BoolVar(&f.readOnly, "read-only", false, "mount the root filesystem read-only")
	fl.StringArrayVar(&f.capAdd, "cap-add", nil, "add a Linux capability")
	fl.StringArrayVar(&f.capDrop, "cap-drop", nil, "drop a Linux capability")
	fl.StringArrayVar(&f.addHosts, "add-host", nil, "add a host to /etc/hosts: NAME:IP")
	fl.StringVar(&f.domainname, "domainname", "", "NIS domain name of the container")
	fl.IntVar(&f.oomScoreAdj, "oom-score-adj", 0, "oom_score_adj of the container's process (-1000 to 1000)")
	fl.BoolVar(&f.oomKillOff, "oom-kill-disable", false, "turn the OOM killer off (cgroup v1)")
	fl.Int64Var(&f.swappiness, "memory-swappiness", -1, "swappiness of the container's memory, 0 to 100 (cgroup v1)")
	fl.StringArrayVar(&f.devRules, "device-cgroup-rule", nil, "allow more devices: TYPE MAJOR:MINOR ACCESS, like 'c 1:3 rwm'")
	fl.StringVar(&f.userns, "userns", "", "user namespace: only host (kiln maps no users)")
	fl.BoolVar(&f.trustOff, "disable-content-trust", true, "accepted for docker compatibility; kiln does not verify signatures")
	fl.StringArrayVar(&f.sysctls, "sysctl", nil, "namespaced kernel parameter: net.*, fs.mqueue.* or kernel IPC ones (NAME=VALUE)")
	fl.BoolVarP(&f.publishAll, "publish-all", "P", false, "publish every exposed port on a free host port")
	fl.StringArrayVar(&f.aliases, "network-alias", nil, "another name the containers of a user network resolve to this one")
	fl.StringVar(&f.ip, "ip", "", "IPv4 address on a user network created with --subnet")
	fl.StringArrayVar(&f.securityOpt, "security-opt", nil, "security option: seccomp=unconfined runs without the default seccomp profile")
	fl.BoolVar(&f.init, "init", false, "run an init inside the container that forwards signals and reaps processes")
	fl.StringVar(&f.stopSignal, "stop-signal", "", "signal to stop the container (default: the image's, else SIGTERM)")
	fl.IntVar(&f.stopTimeout, "stop-timeout", -1, "seconds to wait for the container to stop before killing it")
	fl.StringVar(&f.restart, "restart", "no", "restart policy: no, on-failure[:N], always, unless-stopped")
	fl.BoolVar(&f.rm, "rm", false, "remove the container when it exits")
	fl.BoolVarP(&f.interactive, "interactive", "i", false, "keep stdin open")
	fl.BoolVarP(&f.tty, "tty", "t", false, "allocate a pseudo terminal")
	fl.StringArrayVarP(&f.labels, "label", "l", nil, "set a label KEY=VALUE")
	fl.StringVar(&f.pull, "pull", "missing", "pull the image: missing, always or never")
	fl.StringArrayVar(&f.labelFiles, "label-file", nil, "read labels KEY=VALUE from a file")
	fl.StringVar(&f.cidfile, "cidfile", "", "write the container ID to this file")
	fl.StringVar(&f.platform, "platform", "", "platform of the image (only linux/amd64)")
	fl.StringArrayVar(&f.expose, "expose", nil, "expose a port or a range of ports PORT[-PORT][/PROTO]")
	fl.StringVar(&f.shmSize, "shm-size", "", "size of /dev/shm (default 64m)")
	fl.StringArrayVar(&f.groupAdd, "group-add", nil, "add a supplementary group (name or gid)")
	fl.StringVar(&f.pid, "pid", "", "PID namespace: host shares kiln's (the host's), container:NAME that container's")
	fl.StringVar(&f.uts, "uts", "", "UTS namespace: host shares the host's (its host name)")
	fl.StringVar(&f.ipc, "ipc", "", "IPC namespace: host shares the host's, with its /dev/shm")
	fl.StringArrayVar(&f.devices, "device", nil, "add a host device HOST[:CONTAINER[:PERMISSIONS]]")
	fl.BoolVar(&f.privileged, "privileged", false, "give the container every capability, no seccomp profile, writable /sys and the host's devices")
	fl.StringVar(&f.logDriver, "log-driver", "", "logging driver: json-file or local (kiln's own log file, rotated)")
	fl.StringArrayVar(&f.logOpts, "log-opt", nil, "log option: max-size=SIZE or max-file=N")
	fl.StringArrayVar(&f.dns, "dns", nil, "a DNS server for the container's /etc/resolv.conf")
	fl.StringArrayVar(&f.dnsSearch, "dns-search", nil, "a DNS search domain (. for none)")
	fl.StringArrayVar(&f.dnsOptions, "dns-option", nil, "a resolver option (resolv.conf options line)")
	fl.StringArrayVar(&f.ulimits, "ulimit", nil, "resource limit NAME=SOFT[:HARD] (nofile, nproc, core, memlock, stack, ...)")
	fl.BoolVar(&f.sigProxy, "sig-proxy", true, "pass the signals kiln gets on to the container (without -t)")
	fl.BoolVar(&f.health.none, "no-healthcheck", false, "disable the image's HEALTHCHECK")
	fl.StringVar(&f.health.cmd, "health-cmd", "", "command to check health (run by the shell)")
	fl.DurationVar(&f.health.interval, "health-interval", 0, "time between health checks")
	fl.DurationVar(&f.health.timeout, "health-timeout", 0, "time a health check may take")
	fl.DurationVar(&f.health.startPeriod, "health-start-period", 0, "time to start before failed checks count")
	fl.IntVar(&f.health.retries, "health-retries", 0, "consecutive failures that make the container unhealthy")
	fl.Bool("help", false, "help for this command")
}

// request turns the flags into an app request.
func (f *containerFlags) request(fl *pflag.FlagSet, args []string) (app.ContainerRequest, error) {
	req := app.ContainerRequest{
		Image: args[0], Args: args[1:], Name: f.name, Workdir: f.workdir, User: f.user, Hostname: f.hostname,
		Tty: f.tty, OpenStdin: f.interactive, Volumes: f.volumes, Mounts: f.mounts, VolumesFrom: f.volumesFrom, Tmpfs: f.tmpfs, Publish: f.publish, DeviceSpecs: f.devices,
		RunOptions: executor.RunOptions{GroupAdd: f.groupAdd, DNS: f.dns, DNSSearch: f.dnsSearch, DNSOptions: f.dnsOptions, Privileged: f.privileged},
		PID:        f.pid, IPC: f.ipc, UTS: f.uts,
		Network: f.network, CgroupParent: f.cgroupParent, CgroupNS: f.cgroupNS, MacAddress: f.macAddress, PublishAll: f.publishAll, NetworkAliases: f.aliases, IP: f.ip, ReadOnly: f.readOnly, CapAdd: f.capAdd, CapDrop: f.capDrop, SecurityOpt: f.securityOpt, Init: f.init,
		StopSignal: f.stopSignal, StopTimeout: -1, Restart: f.restart, AutoRemove: f.rm,
	}
	if f.stopTimeout >= 0 {
		req.StopTimeout = time.Duration(f.stopTimeout) * time.Second
	}
	if fl.Changed("entrypoint") {
		req.Entrypoint = []string{f.entrypoint}
	}
	pull, err := app.ParsePullPolicy(f.pull)
	if err != nil {
		return req, err
	}
	if req.ExtraHosts, err = parseAddHosts(f.addHosts); err != nil {
		return req, err
	}
	req.Registry.Pull = pull
	for _, file := range f.envFiles {
		env, err := readEnvFile(file)
		if err != nil {
			return req, err
		}
		req.Env = append(req.Env, env...)
	}
	for _, e := range f.env {
		if !strings.Contains(e, "=") {
			v, ok := os.LookupEnv(e)
			if !ok {
				continue
			}
			e += "=" + v
		}
		req.Env = append(req.Env, e)
	}
	if req.Resources, err = f.resources(); err != nil {
		return req, err
	}
	req.Domainname, req.OomScoreAdj, req.DeviceCgroupRules = f.domainname, f.oomScoreAdj, f.devRules
	if f.userns != "" && f.userns != "host" {
		return req, fmt.Errorf("--userns %s: kiln runs containers in the host's user namespace only (host)", f.userns)
	}
	if req.Sysctls, err = sysctlMap(f.sysctls); err != nil {
		return req, err
	}
	if req.Labels, err = f.labelMap(); err != nil {
		return req, err
	}
	switch f.platform {
	case "", "linux/amd64", "linux/amd64/v1", "amd64":
	default:
		return req, fmt.Errorf("--platform=%s: kiln runs linux/amd64 images only", f.platform)
	}
	for _, e := range f.expose {
		ports, err := parseExpose(e)
		if err != nil {
			return req, err
		}
		req.Expose = append(req.Expose, ports...)
	}
	hc, err := f.health.override(fl)
	if err != nil {
		return req, err
	}
	req.Healthcheck = hc
	if f.shmSize != "" {
		if req.ShmSize, err = app.ParseMemory(f.shmSize); err != nil || req.ShmSize == 0 {
			return req, fmt.Errorf("--shm-size %s: want a size such as 64m", f.shmSize)
		}
	}
	if req.LogMaxSize, req.LogMaxFiles, err = f.logOptions(); err != nil {
		return req, err
	}
	for _, u := range f.ulimits {
		l, err := parseUlimit(u)
		if err != nil {
			return req, err
		}
		req.Ulimits = append(req.Ulimits, l)
	}
	return req, nil
}

// ulimitResource is the RLIMIT_* number of a docker run --ulimit name.
func ulimitResource(name string) (int, bool) {
	switch name {
	case "core":
		return unix.RLIMIT_CORE, true
	case "cpu":
		return unix.RLIMIT_CPU, true
	case "data":
		return unix.RLIMIT_DATA, true
	case "fsize":
		return unix.RLIMIT_FSIZE, true
	case "locks":
		return unix.RLIMIT_LOCKS, true
	case "memlock":
		return unix.RLIMIT_MEMLOCK, true
	case "msgqueue":
		return unix.RLIMIT_MSGQUEUE, true
	case "nice":
		return unix.RLIMIT_NICE, true
	case "nofile":
		return unix.RLIMIT_NOFILE, true
	case "nproc":
		return unix.RLIMIT_NPROC, true
	case "rss":
		return unix.RLIMIT_RSS, true
	case "rtprio":
		return unix.RLIMIT_RTPRIO, true
	case "rttime":
		return unix.RLIMIT_RTTIME, true
	case "sigpending":
		return unix.RLIMIT_SIGPENDING, true
	case "stack":
		return unix.RLIMIT_STACK, true
	}
	return 0, false
}

// parseUlimit reads a --ulimit value, NAME=SOFT[:HARD], as docker does: one
// number sets both limits, -1 is unlimited, and soft may not exceed hard.
func parseUlimit(v string) (executor.Ulimit, error) {
	name, limits, ok := strings.Cut(v, "=")
	res, known := ulimitResource(name)
	if !ok || !known {
		return executor.Ulimit{}, fmt.Errorf("--ulimit %s: want NAME=SOFT[:HARD] with a NAME such as nofile or nproc", v)
	}
	num := func(s string) (uint64, error) {
		if s == "-1" || s == "unlimited" {
			return unix.RLIM_INFINITY, nil
		}
		return strconv.ParseUint(s, 10, 64)
	}
	softS, hardS, two := strings.Cut(limits, ":")
	if !two {
		hardS = softS
	}
	soft, err1 := num(softS)
	hard, err2 := num(hardS)
	if err1 != nil || err2 != nil {
		return executor.Ulimit{}, fmt.Errorf("--ulimit %s: the limits must be numbers (or -1 for none)", v)
	}
	if soft > hard {
		return executor.Ulimit{}, fmt.Errorf("--ulimit %s: the soft limit %d exceeds the hard limit %d", v, soft, hard)
	}
	return executor.Ulimit{Resource: res, Soft: soft, Hard: hard}, nil
}

// addLimitFlags declares the cgroup limit flags (kiln run, create and
// update).
func (f *containerFlags) addLimitFlags(fl *pflag.FlagSet) {
	fl.StringVarP(&f.memory, "memory", "m", "", "memory limit (e.g. 256m)")
	fl.StringVar(&f.memorySwap, "memory-swap", "", "memory plus swap limit (-1: unlimited; default twice --memory)")
	fl.StringVar(&f.memoryRes, "memory-reservation", "", "memory soft limit")
	fl.Float64Var(&f.cpus, "cpus", 0, "number of CPUs (e.g. 1.5)")
	fl.Int64VarP(&f.cpuShares, "cpu-shares", "c", 0, "CPU shares (relative weight; 1024 is the default)")
	fl.Int64Var(&f.cpuPeriod, "cpu-period", 0, "CPU CFS period in microseconds")
	fl.Int64Var(&f.cpuQuota, "cpu-quota", 0, "CPU CFS quota in microseconds")
	fl.StringVar(&f.cpusetCPUs, "cpuset-cpus", "", "CPUs the container may use (0-3, 0,1)")
	fl.StringVar(&f.cpusetMems, "cpuset-mems", "", "memory nodes the container may use (0-3, 0,1)")
	fl.Int64Var(&f.pidsLimit, "pids-limit", 0, "limit the number of processes")
	fl.Uint16Var(&f.blkioWeight, "blkio-weight", 0, "block I/O weight, 10 to 1000")
	f.throttles = map[string]*[]string{}
	for _, k := range throttleFlags {
		v := new([]string)
		f.throttles[k.kind] = v
		fl.StringArrayVar(v, k.flag, nil, "limit a device's "+k.what+": DEVICE:RATE")
	}
}

// throttleFlags are the device I/O limit flags, by executor.IOThrottle
// kind, in the order their values are read.
var throttleFlags = []struct{ kind, flag, what string }{
	{"read_bps", "device-read-bps", "read rate (bytes per second, e.g. 1mb)"},
	{"write_bps", "device-write-bps", "write rate (bytes per second, e.g. 1mb)"},
	{"read_iops", "device-read-iops", "read rate (I/O operations per second)"},
	{"write_iops", "device-write-iops", "write rate (I/O operations per second)"},
}

// resources reads the cgroup limit flags.
func (f *containerFlags) resources() (executor.Resources, error) {
	r := executor.Resources{CPUs: f.cpus, CPUShares: f.cpuShares, CPUPeriod: f.cpuPeriod, CPUQuota: f.cpuQuota,
		CPUSetCPUs: f.cpusetCPUs, CPUSetMems: f.cpusetMems, OomKillDisable: f.oomKillOff, PidsLimit: max(f.pidsLimit, 0)}
	for _, m := range []struct {
		flag, val string
		dst       *int64
	}{{"--memory", f.memory, &r.Memory}, {"--memory-swap", f.memorySwap, &r.MemorySwap}, {"--memory-reservation", f.memoryRes, &r.MemoryReservation}} {
		if m.val == "" {
			continue
		}
		if m.flag == "--memory-swap" && m.val == "-1" {
			*m.dst = -1
			continue
		}
		n, err := app.ParseMemory(m.val)
		if err != nil {
			return r, fmt.Errorf("%s: %w", m.flag, err)
		}
		*m.dst = n
	}
	if f.cpus < 0 {
		return r, errors.New("--cpus: must be positive")
	}
	if f.blkioWeight != 0 && (f.blkioWeight < 10 || f.blkioWeight > 1000) {
		return r, errors.New("range of blkio weight is from 10 to 1000")
	}
	r.BlkioWeight = f.blkioWeight
	for _, k := range throttleFlags {
		if f.throttles[k.kind] == nil {
			continue
		}
		for _, v := range *f.throttles[k.kind] {
			t, err := parseThrottle(k.kind, v)
			if err != nil {
				return r, err
			}
			r.IOThrottles = append(r.IOThrottles, t)
		}
	}
	if f.swappiness != -1 {
		if f.swappiness < 0 || f.swappiness > 100 {
			return r, fmt.Errorf("invalid value: %d, valid memory swappiness range is 0-100", f.swappiness)
		}
		sw := f.swappiness
		r.MemorySwappiness = &sw
	}
	return r, nil
}

// dropUnsupported drops, with docker's warning, what the host cannot
// enforce and docker discards: a block I/O weight without weight support.
func (c *cli) dropUnsupported(req *app.ContainerRequest) {
	if req.Resources.BlkioWeight > 0 && !blkioWeightSupported() {
		fmt.Fprintln(c.stderr, "WARNING: Your kernel does not support Block I/O weight or the cgroup is not mounted. Weight discarded.")
		req.Resources.BlkioWeight = 0
	}
}

// blkioWeightSupported reports whether the host's cgroups keep block I/O
// weights (cgroup v2's io controller, or v1's blkio.weight, which needs
// the BFQ or CFQ scheduler).
func blkioWeightSupported() bool {
	if b, err := os.ReadFile("/sys/fs/cgroup/cgroup.controllers"); err == nil {
		return slices.Contains(strings.Fields(string(b)), "io")
	}
	_, err := os.Stat("/sys/fs/cgroup/blkio/blkio.weight")
	return err == nil
}

// parseThrottle reads a --device-read-bps (and friends) value,
// DEVICE:RATE, DEVICE a block device node; bps rates take docker's sizes.
func parseThrottle(kind, v string) (executor.IOThrottle, error) {
	flag := "--device-" + strings.ReplaceAll(kind, "_", "-")
	dev, rate, ok := strings.Cut(v, ":")
	if !ok || dev == "" {
		return executor.IOThrottle{}, fmt.Errorf("%s %s: want DEVICE:RATE", flag, v)
	}
	var st unix.Stat_t
	if err := unix.Stat(dev, &st); err != nil {
		return executor.IOThrottle{}, fmt.Errorf("%s %s: %w", flag, v, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFBLK {
		return executor.IOThrottle{}, fmt.Errorf("%s %s: %s is not a block device", flag, v, dev)
	}
	var n uint64
	if strings.HasSuffix(kind, "_bps") {
		b, err := app.ParseMemory(rate)
		if err != nil || b < 0 {
			return executor.IOThrottle{}, fmt.Errorf("%s %s: invalid rate", flag, v)
		}
		n = uint64(b)
	} else {
		i, err := strconv.ParseUint(rate, 10, 64)
		if err != nil {
			return executor.IOThrottle{}, fmt.Errorf("%s %s: invalid rate", flag, v)
		}
		n = i
	}
	return executor.IOThrottle{Major: int64(unix.Major(st.Rdev)), Minor: int64(unix.Minor(st.Rdev)), Kind: kind, Rate: n}, nil
}

// sysctlMap reads --sysctl NAME=VALUE values.
func sysctlMap(values []string) (map[string]string, error) {
	var m map[string]string
	for _, s := range values {
		name, value, ok := strings.Cut(s, "=")
		if !ok || name == "" {
			return nil, fmt.Errorf("--sysctl %s: want NAME=VALUE", s)
		}
		if m == nil {
			m = map[string]string{}
		}
		m[name] = value
	}
	return m, nil
}

// labelMap is --label-file and --label (which wins) as a map; nil for none.
func (f *containerFlags) labelMap() (map[string]string, error) {
	labels := slices.Clone(f.labels)
	for _, file := range f.labelFiles {
		l, err := readLines(file)
		if err != nil {
			return nil, fmt.Errorf("--label-file: %w", err)
		}
		labels = append(l, labels...)
	}
	if len(labels) == 0 {
		return nil, nil
	}
	m := map[string]string{}
	for _, l := range labels {
		k, v, _ := strings.Cut(l, "=")
		m[k] = v
	}
	return m, nil
}

// logOptions reads --log-driver and --log-opt: kiln keeps its own log file,
// as docker's json-file and local drivers do, rotated at maxSize bytes
// into maxFiles files (0: the defaults).
func (f *containerFlags) logOptions() (maxSize int64, maxFiles int, err error) {
	switch f.logDriver {
	case "", "json-file", "local":
	default:
		return 0, 0, fmt.Errorf("--log-driver %s: kiln keeps its own log file (json-file or local)", f.logDriver)
	}
	for _, o := range f.logOpts {
		k, v, _ := strings.Cut(o, "=")
		switch k {
		case "max-size":
			if maxSize, err = app.ParseMemory(v); err != nil {
				return 0, 0, fmt.Errorf("--log-opt %s: %w", o, err)
			}
		case "max-file":
			if maxFiles, err = strconv.Atoi(v); err != nil || maxFiles < 1 {
				return 0, 0, fmt.Errorf("--log-opt %s: want a count of at least 1", o)
			}
		case "compress", "labels", "env", "env-regex", "tag", "mode", "max-buffer-size":
			// Accepted, as docker's json-file driver takes them; kiln's
			// log does not use them.
		default:
			return 0, 0, fmt.Errorf("--log-opt %s: unknown log option (kiln knows max-size and max-file)", o)
		}
	}
	return maxSize, maxFiles, nil
}

// override is the health check the flags ask for: nil when they leave the
// image's as it is, Test NONE with --no-healthcheck, else the fields given
// (the rest come from the image's, as docker merges them).
func (h healthFlags) override(fl *pflag.FlagSet) (*containers.Healthcheck, error) {
	set := false
	for _, name := range []string{"health-cmd", "health-interval", "health-timeout", "health-start-period", "health-retries"} {
		set = set || fl.Changed(name)
	}
	if h.none {
		if set {
			return nil, errors.New("--no-healthcheck conflicts with --health-* options")
		}
		return &containers.Healthcheck{Test: []string{"NONE"}}, nil
	}
	if !set {
		return nil, nil
	}
	for name, d := range map[string]time.Duration{"--health-interval": h.interval, "--health-timeout": h.timeout, "--health-start-period": h.startPeriod} {
		if d < 0 {
			return nil, fmt.Errorf("%s cannot be negative", name)
		}
	}
	if h.retries < 0 {
		return nil, errors.New("--health-retries cannot be negative")
	}
	hc := &containers.Healthcheck{Interval: h.interval, Timeout: h.timeout, StartPeriod: h.startPeriod, Retries: h.retries}
	if h.cmd != "" {
		hc.Test = []string{"CMD-SHELL", h.cmd}
	}
	return hc, nil
}

// parseExpose reads an --expose value, PORT[-PORT][/PROTO], as docker run
// does, into "PORT/PROTO" entries.
func parseExpose(v string) ([]string, error) {
	spec, proto, _ := strings.Cut(v, "/")
	if proto == "" {
		proto = "tcp"
	}
	proto = strings.ToLower(proto)
	if proto != "tcp" && proto != "udp" && proto != "sctp" {
		return nil, fmt.Errorf("--expose %s: invalid protocol %q", v, proto)
	}
	lo, hi, isRange := strings.Cut(spec, "-")
	if !isRange {
		hi = lo
	}
	a, err1 := strconv.ParseUint(lo, 10, 16)
	b, err2 := strconv.ParseUint(hi, 10, 16)
	if err1 != nil || err2 != nil || b < a {
		return nil, fmt.Errorf("--expose %s: invalid port or range", v)
	}
	var out []string
	for p := a; p <= b; p++ {
		out = append(out, fmt.Sprintf("%d/%s", p, proto))
	}
	return out, nil
}

// checkCidfile fails when the --cidfile file exists already, as docker run
// does before it creates anything.
func checkCidfile(file string) error {
	if file == "" {
		return nil
	}
	if _, err := os.Lstat(file); err == nil {
		return fmt.Errorf("container ID file found, make sure the other container isn't running or delete %s", file)
	}
	return nil
}

// writeCidfile writes the container ID to file, which must not exist yet
// (as docker run --cidfile).
func writeCidfile(file, id string) error {
	if file == "" {
		return nil
	}
	f, err := os.OpenFile(file, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if errors.Is(err, fs.ErrExist) {
		return checkCidfile(file)
	}
	if err != nil {
		return fmt.Errorf("--cidfile: %w", err)
	}
	_, err = f.WriteString(id)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("--cidfile: %w", err)
	}
	return nil
}

// readEnvFile reads KEY=VALUE lines (KEY alone: from the environment);
// blank lines and # comments are skipped.
func readEnvFile(file string) ([]string, error) {
	lines, err := readLines(file)
	if err != nil {
		return nil, fmt.Errorf("--env-file: %w", err)
	}
	var env []string
	for _, line := range lines {
		if !strings.Contains(line, "=") {
			v, ok := os.LookupEnv(line)
			if !ok {
				continue
			}
			line += "=" + v
		}
		env = append(env, line)
	}
	return env, nil
}

// readLines returns the lines of file that are neither blank nor # comments,
// trimmed: the format of --env-file and --label-file.
func readLines(file string) ([]string, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		out = append(out, line)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	return out, nil
}

func (c *cli) createCommand() *cobra.Command {
	var f containerFlags
	cmd := &cobra.Command{
		Use:   "create [OPTIONS] IMAGE [COMMAND] [ARG...]",
		Short: "Create a new container",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			req, err := f.request(cmd.Flags(), args)
			if err != nil {
				return asKilnError(err)
			}
			c.dropUnsupported(&req)
			a, err := c.open(ctx)
			if err != nil {
				return asKilnError(err)
			}
			defer a.Close()
			if err := checkCidfile(f.cidfile); err != nil {
				return asKilnError(err)
			}
			r, err := a.CreateContainer(ctx, req)
			if err != nil {
				return asKilnError(err)
			}
			if err := writeCidfile(f.cidfile, r.Config.ID); err != nil {
				return asKilnError(err)
			}
			fmt.Fprintln(c.stdout, r.Config.ID)
			return nil
		},
	}
	addContainerFlags(cmd.Flags(), &f)
	cmd.SetFlagErrorFunc(flagError)
	return cmd
}

// flagError makes a bad flag of a container command exit 125, like docker.
func flagError(_ *cobra.Command, err error) error { return asKilnError(err) }

func (c *cli) runCommand() *cobra.Command {
	var f containerFlags
	var detach bool
	var flagKeys string
	cmd := &cobra.Command{
		Use:   "run [OPTIONS] IMAGE [COMMAND] [ARG...]",
		Short: "Run a command in a new container",
		Long: `run creates a container from an image and starts it. In the foreground it
streams the container's output and exits with its status; -d prints the
container ID and leaves it running. Exit codes: the container's own, 125
when kiln fails, 126 when the command cannot be invoked, 127 when it is not
found.`,
		Example: `  kiln run --rm busybox echo hello
  kiln run -it --rm busybox sh
  kiln run -d --name web -p 8080:80 busybox httpd -f -p 80
  kiln run --rm -v data:/data busybox sh -c 'date >> /data/log'`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return c.run(cmd, args, &f, detach, flagKeys)
		},
	}
	addContainerFlags(cmd.Flags(), &f)
	cmd.SetFlagErrorFunc(flagError)
	cmd.Flags().BoolVarP(&detach, "detach", "d", false, "run in the background and print the container ID")
	addDetachKeysFlag(cmd, &flagKeys)
	return cmd
}

// addDetachKeysFlag adds --detach-keys, the sequence that leaves an
// interactive tty session with the process still running.
func addDetachKeysFlag(cmd *cobra.Command, keys *string) {
	cmd.Flags().StringVar(keys, "detach-keys", "", "key sequence that detaches from a -it session, leaving the process running (default "+defaultDetachKeys+")")
}

func (c *cli) run(cmd *cobra.Command, args []string, f *containerFlags, detach bool, flagKeys string) error {
	ctx := cmd.Context()
	req, err := f.request(cmd.Flags(), args)
	if err != nil {
		return asKilnError(err)
	}
	keys, err := detachKeys(flagKeys, f.tty && f.interactive && !detach)
	if err != nil {
		return asKilnError(err)
	}
	c.dropUnsupported(&req)
	if f.tty && f.interactive && !detach && !isTerminal(c.stdin) {
		return asKilnError(errors.New("the input device is not a TTY; drop -t or run from a terminal"))
	}
	if err := checkCidfile(f.cidfile); err != nil {
		return asKilnError(err)
	}
	streams, err := attachedStreams(f.attach, detach)
	if err != nil {
		return asKilnError(err)
	}
	a, err := c.open(ctx)
	if err != nil {
		return asKilnError(err)
	}
	r, err := a.CreateContainer(ctx, req)
	if err != nil {
		a.Close()
		return asKilnError(err)
	}
	if err := writeCidfile(f.cidfile, r.Config.ID); err != nil {
		_ = a.RemoveContainer(context.WithoutCancel(ctx), r.Config.ID, true, true)
		a.Close()
		return asKilnError(err)
	}
	cs, err := a.Containers()
	if err != nil {
		a.Close()
		return asKilnError(err)
	}
	// The store is not needed while the container runs; closing it
	// keeps a long-running kiln run from holding up a prune.
	a.Close()
	id := r.Config.ID
	stdin := f.interactive && !detach && streams["stdin"]
	sess, err := cs.Start(ctx, id, containers.StartOptions{Attach: !detach, Stdin: stdin, Exe: shim.Exe()})
	if err != nil {
		c.removeAfterFailedStart(ctx, id)
		return startErr(err)
	}
	if detach {
		fmt.Fprintln(c.stdout, id)
		return nil
	}
	if !streams["stdout"] {
		c.stdout = io.Discard
	}
	if !streams["stderr"] {
		c.stderr = io.Discard
	}
	// With --rm the shim removed the container before it reported the
	// exit (or, after a detach, removes it when it exits).
	return c.streamExit(ctx, sess, f.tty, stdin, f.sigProxy, keys, true)
}

// attachedStreams reads kiln run's -a values: the streams a foreground
// run copies (all three without -a; stdin only with -i).
func attachedStreams(attach []string, detach bool) (map[string]bool, error) {
	if len(attach) == 0 {
		return map[string]bool{"stdin": true, "stdout": true, "stderr": true}, nil
	}
	if detach {
		return nil, errors.New("conflicting options: -a and -d cannot be used together")
	}
	out := map[string]bool{}
	for _, a := range attach {
		s := strings.ToLower(a)
		if s != "stdin" && s != "stdout" && s != "stderr" {
			return nil, fmt.Errorf("invalid argument %q for -a: valid streams are STDIN, STDOUT and STDERR", a)
		}
		out[s] = true
	}
	return out, nil
}

// removeAfterFailedStart removes a container kiln run created but could
// not start, so nothing is left behind.
func (c *cli) removeAfterFailedStart(ctx context.Context, id string) {
	ctx = context.WithoutCancel(ctx)
	a, err := c.open(ctx)
	if err != nil {
		return
	}
	defer a.Close()
	_ = a.RemoveContainer(ctx, id, true, true)
}

// stream runs an attached session with the local terminal: raw mode and
// resizes with a tty, signals forwarded without one. With a tty and stdin,
// typing keys ends it with containers.ErrDetached.
func (c *cli) stream(ctx context.Context, sess *containers.Session, tty, stdin, sigProxy bool, keys []byte) (int, error) {
	st := containers.Streams{Stdout: c.stdout, Stderr: c.stderr}
	if stdin {
		st.Stdin = c.stdin
		if tty {
			st.DetachKeys = keys
		}
	}
	// The container decides when the session ends: Ctrl-C is forwarded
	// (or, with a tty, typed into it), not a reason to hang up.
	ctx = context.WithoutCancel(ctx)
	if tty {
		restore, resize := c.terminal()
		defer restore()
		st.Resize = resize
	} else if sigProxy {
		sigs, stop := forwardSignals()
		defer stop()
		st.Signals = sigs
	}
	return sess.Stream(ctx, st)
}

// streamExit runs stream and makes kiln exit with the container's status
// (125 when the session itself fails). A detach exits 0 when quietDetach
// (docker run, docker start), else 1 with a message (docker attach).
func (c *cli) streamExit(ctx context.Context, sess *containers.Session, tty, stdin, sigProxy bool, keys []byte, quietDetach bool) error {
	code, err := c.stream(ctx, sess, tty, stdin, sigProxy, keys)
	if errors.Is(err, containers.ErrDetached) {
		if quietDetach {
			return nil
		}
		return err
	}
	if err != nil {
		return asKilnError(err)
	}
	return exitWith(code)
}

// asKilnError wraps an error of kiln itself: exit status 125.
func asKilnError(err error) error {
	if err == nil {
		return nil
	}
	var ee *exitError
	var ce *exitCodeErr
	if errors.As(err, &ee) || errors.As(err, &ce) {
		return err
	}
	return &exitCodeErr{code: 125, err: err}
}

// startErr maps a failed start to its exit status: 126/127 for a command
// that cannot be run, else 125.
func startErr(err error) error {
	var se *containers.StartError
	if errors.As(err, &se) && (se.Code == 126 || se.Code == 127) {
		return &exitCodeErr{code: se.Code, err: err}
	}
	return asKilnError(err)
}

// exitWith makes kiln exit with code, printing nothing.
func exitWith(code int) error {
	if code == 0 {
		return nil
	}
	return &exitError{Code: code}
}

// exitCodeErr is an error with a specific process exit code.
type exitCodeErr struct {
	code int
	err  error
}

func (e *exitCodeErr) Error() string { return e.err.Error() }
func (e *exitCodeErr) Unwrap() error { return e.err }

// isTerminal reports whether r is a terminal.
func isTerminal(r io.Reader) bool {
	f, ok := r.(*os.File)
	return ok && termIsTerminal(int(f.Fd()))
}
