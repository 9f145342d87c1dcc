package linux

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/kiln-build/kiln/executor"
	"golang.org/x/sys/unix"
)

// cpuPeriod is the CFS period for Resources.CPUs, in microseconds.
const cpuPeriod = 100000

// v1Controllers are the cgroup v1 hierarchies a container gets a cgroup in
// (cpuset only when it asks for CPUs or memory nodes; cpuacct and blkio for
// kiln stats).
var v1Controllers = []string{"memory", "cpu", "pids", "freezer", "devices", "cpuset", "cpuacct", "blkio"}

// cgroup is a container's cgroup: one directory on cgroup v2, one per
// controller on v1.
type cgroup struct {
	v2   bool
	dir  string            // v2
	dirs map[string]string // v1: controller → directory
	// devicesFiltered: the cgroup allows the devices newCgroup was given
	// and no others (v1's devices controller, or a BPF program on v2).
	devicesFiltered bool
}

// checkCgroupPath rejects cgroup paths that are not clean relative paths.
func checkCgroupPath(p string) error {
	if p == "" || path.IsAbs(p) || path.Clean(p) != p || p == "." || strings.HasPrefix(p, "../") || p == ".." {
		return fmt.Errorf("invalid cgroup path %q: want a clean relative path like kiln/<id>", p)
	}
	return nil
}

// cgroupMounts are the cgroup filesystems of this process's mount namespace.
type cgroupMounts struct {
	v2 string            // cgroup2 mount point, "" when none
	v1 map[string]string // controller → mount point
}

func findCgroupMounts() (cgroupMounts, error) {
	m := cgroupMounts{v1: map[string]string{}}
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return m, err
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		// id parent major:minor root mountpoint opts [optional...] - fstype source superopts
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		if !ok {
			continue
		}
		f, g := strings.Fields(pre), strings.Fields(post)
		if len(f) < 5 || len(g) < 3 {
			continue
		}
		switch g[0] {
		case "cgroup2":
			if m.v2 == "" {
				m.v2 = f[4]
			}
		case "cgroup":
			for _, opt := range strings.Split(g[2], ",") {
				for _, c := range v1Controllers {
					if opt == c {
						m.v1[c] = f[4]
					}
				}
			}
		}
	}
	return m, nil
}

// useV2 decides between the hierarchies: v2 when it has the memory or pids
// controller (a pure v2 host) or there is no v1 controller at all; v1 on
// hybrid hosts, whose v2 hierarchy has none of the controllers kiln uses.
func (m cgroupMounts) useV2() bool {
	if m.v2 == "" {
		return false
	}
	if len(m.v1) == 0 {
		return true
	}
	b, _ := os.ReadFile(filepath.Join(m.v2, "cgroup.controllers"))
	for _, c := range strings.Fields(string(b)) {
		if c == "memory" || c == "pids" {
			return true
		}
	}
	return false
}

// newCgroup creates the cgroup at rel with the limits of r (may be nil)
// and, when devices is not nil, allowing those devices only where the
// system can filter them (see cgroup.devicesFiltered). forceV2 uses the v2
// hierarchy even on a hybrid host (tests).
func newCgroup(rel string, r *executor.Resources, devices []deviceRule, forceV2 bool) (*cgroup, error) {
	if r == nil {
		r = &executor.Resources{}
	}
	mounts, err := findCgroupMounts()
	if err != nil {
		return nil, fmt.Errorf("find cgroup mounts: %w", err)
	}
	cg := &cgroup{}
	if mounts.useV2() || forceV2 && mounts.v2 != "" {
		cg.v2 = true
		cg.dir = filepath.Join(mounts.v2, filepath.FromSlash(rel))
		err = cg.createV2(mounts.v2, rel, r)
	} else if len(mounts.v1) > 0 {
		cg.dirs = map[string]string{}
		err = cg.createV1(mounts.v1, rel, r)
	} else {
		return nil, errors.New("create cgroup: no cgroup filesystem is mounted")
	}
	if err == nil && devices != nil {
		err = cg.filterDevices(devices)
	}
	if err != nil {
		_ = cg.remove()
		return nil, fmt.Errorf("create cgroup %s: %w", rel, err)
	}
	return cg, nil
}

// filterDevices makes the cgroup allow rules only: through the devices
// controller on v1, a BPF program on v2. Without either (no devices
// hierarchy, no BPF) the cgroup is left as it is, and not devicesFiltered.
func (cg *cgroup) filterDevices(rules []deviceRule) error {
	if !cg.v2 {
		dir, ok := cg.dirs["devices"]
		if !ok {
			return nil
		}
		if err := setV1DeviceRules(dir, rules); err != nil {
			return err
		}
		cg.devicesFiltered = true
		return nil
	}
	fd, err := unix.Open(cg.dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	cg.devicesFiltered = attachDeviceFilter(fd, rules) == nil
	return nil
}

// cpuLimited and cpusetLimited tell which controllers r needs.
func cpuLimited(r *executor.Resources) bool {
	return r.CPUs > 0 || r.CPUShares > 0 || r.CPUPeriod > 0 || r.CPUQuota > 0
}

func cpusetLimited(r *executor.Resources) bool { return r.CPUSetCPUs != "" || r.CPUSetMems != "" }

// memorySwap is the memory plus swap limit for r (-1: none): docker's
// default is twice the memory limit.
func memorySwap(r *executor.Resources) int64 {
	if r.MemorySwap == 0 {
		return 2 * r.Memory
	}
	return r.MemorySwap
}

// cfsLimits are the CFS period and quota of r, 0 where unset.
func cfsLimits(r *executor.Resources) (period, quota int64) {
	if r.CPUs > 0 {
		return cpuPeriod, cpuQuota(r.CPUs)
	}
	return r.CPUPeriod, r.CPUQuota
}

func (cg *cgroup) createV2(root, rel string, r *executor.Resources) error {
	want := []string{"pids"} // pids also counts the tasks for cleanup
	if r.Memory > 0 || r.MemoryReservation > 0 {
		want = append(want, "memory")
	}
	if cpuLimited(r) {
		want = append(want, "cpu")
	}
	if cpusetLimited(r) {
		want = append(want, "cpuset")
	}
	if r.BlkioWeight > 0 || len(r.IOThrottles) > 0 {
		want = append(want, "io")
	}
	// Enable the controllers on the way down; a controller the parent
	// does not offer shows as a missing limit file below.
	dir := root
	for _, part := range strings.Split(rel, "/") {
		avail, _ := os.ReadFile(filepath.Join(dir, "cgroup.controllers"))
		have := strings.Fields(string(avail))
		for _, c := range want {
			for _, h := range have {
				if h == c {
					_ = os.WriteFile(filepath.Join(dir, "cgroup.subtree_control"), []byte("+"+c), 0)
				}
			}
		}
		dir = filepath.Join(dir, part)
		if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
			return err
		}
	}
	return setLimitsV2(dir, r)
}

// setLimitsV2 writes the limits of r into the v2 cgroup dir; zero fields
// are left as they are.
func setLimitsV2(dir string, r *executor.Resources) error {
	if r.Memory > 0 {
		if err := writeLimit(dir, "memory.max", strconv.FormatInt(r.Memory, 10), "memory"); err != nil {
			return err
		}
		// Swap beyond the memory limit, as docker's --memory-swap
		// (v2 counts swap alone).
		if _, err := os.Stat(filepath.Join(dir, "memory.swap.max")); err == nil {
			swap := "max"
			if sw := memorySwap(r); sw >= 0 {
				swap = strconv.FormatInt(sw-r.Memory, 10)
			}
			if err := writeLimit(dir, "memory.swap.max", swap, "memory"); err != nil {
				return err
			}
		}
	}
	if r.MemoryReservation > 0 {
		if err := writeLimit(dir, "memory.low", strconv.FormatInt(r.MemoryReservation, 10), "memory"); err != nil {
			return err
		}
	}
	if r.CPUShares > 0 {
		// runc's mapping of shares (2-262144) onto weights (1-10000).
		weight := 1 + (min(max(r.CPUShares, 2), 262144)-2)*9999/262142
		if err := writeLimit(dir, "cpu.weight", strconv.FormatInt(weight, 10), "cpu"); err != nil {
			return err
		}
	}
	if period, quota := cfsLimits(r); period > 0 || quota > 0 {
		q := "max"
		if quota > 0 {
			q = strconv.FormatInt(quota, 10)
		}
		if period == 0 {
			period = cpuPeriod
		}
		if err := writeLimit(dir, "cpu.max", fmt.Sprintf("%s %d", q, period), "cpu"); err != nil {
			return err
		}
	}
	if err := setCpuset(dir, r); err != nil {
		return err
	}
	if r.BlkioWeight > 0 && exists(filepath.Join(dir, "io.weight")) {
		if err := writeLimit(dir, "io.weight", fmt.Sprintf("default %d", r.BlkioWeight), "io"); err != nil {
			return err
		}
	}
	v2Keys := map[string]string{"read_bps": "rbps", "write_bps": "wbps", "read_iops": "riops", "write_iops": "wiops"}
	for _, t := range r.IOThrottles {
		if err := writeLimit(dir, "io.max", fmt.Sprintf("%d:%d %s=%d", t.Major, t.Minor, v2Keys[t.Kind], t.Rate), "io"); err != nil {
			return err
		}
	}
	if r.PidsLimit > 0 {
		if err := writeLimit(dir, "pids.max", strconv.FormatInt(r.PidsLimit, 10), "pids"); err != nil {
			return err
		}
	}
	return nil
}

func (cg *cgroup) createV1(mounts map[string]string, rel string, r *executor.Resources) error {
	need := map[string]bool{"memory": r.Memory > 0 || r.MemoryReservation > 0 || r.MemorySwappiness != nil || r.OomKillDisable, "cpu": cpuLimited(r), "pids": r.PidsLimit > 0, "cpuset": cpusetLimited(r), "blkio": len(r.IOThrottles) > 0}
	for _, c := range v1Controllers {
		mnt, ok := mounts[c]
		if !ok {
			if need[c] {
				return fmt.Errorf("the %s controller is not available (%w)", c, errors.ErrUnsupported)
			}
			continue
		}
		if c == "cpuset" && !need[c] {
			continue
		}
		dir := filepath.Join(mnt, filepath.FromSlash(rel))
		if c == "cpuset" {
			if err := makeCpusetDir(mnt, rel); err != nil {
				return err
			}
		} else if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		cg.dirs[c] = dir
	}
	return setLimitsV1(cg.dirs, r)
}

// setLimitsV1 writes the limits of r into the v1 cgroup dirs (by
// controller); zero fields are left as they are.
func setLimitsV1(dirs map[string]string, r *executor.Resources) error {
	if d := dirs["memory"]; r.Memory > 0 {
		limit := strconv.FormatInt(r.Memory, 10)
		memsw := filepath.Join(d, "memory.memsw.limit_in_bytes")
		if _, err := os.Stat(memsw); err != nil {
			// No swap accounting.
			if err := writeLimit(d, "memory.limit_in_bytes", limit, "memory"); err != nil {
				return err
			}
		} else {
			// Memory plus swap: docker's --memory-swap, twice the memory
			// by default. The limit may not pass memory plus swap, so
			// when it grows past the current one, that goes first.
			files := []string{"memory.limit_in_bytes", "memory.memsw.limit_in_bytes"}
			vals := []string{limit, strconv.FormatInt(memorySwap(r), 10)}
			if b, _ := os.ReadFile(memsw); strings.TrimSpace(string(b)) != "" {
				if cur, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64); err == nil && cur < r.Memory {
					slices.Reverse(files)
					slices.Reverse(vals)
				}
			}
			for i := range files {
				if err := writeLimit(d, files[i], vals[i], "memory"); err != nil {
					return err
				}
			}
		}
	}
	if d := dirs["memory"]; r.MemoryReservation > 0 {
		if err := writeLimit(d, "memory.soft_limit_in_bytes", strconv.FormatInt(r.MemoryReservation, 10), "memory"); err != nil {
			return err
		}
	}
	if d := dirs["memory"]; r.MemorySwappiness != nil {
		if err := writeLimit(d, "memory.swappiness", strconv.FormatInt(*r.MemorySwappiness, 10), "memory"); err != nil {
			return err
		}
	}
	if d := dirs["memory"]; r.OomKillDisable {
		if err := writeLimit(d, "memory.oom_control", "1", "memory"); err != nil {
			return err
		}
	}
	if d := dirs["cpu"]; cpuLimited(r) {
		if r.CPUShares > 0 {
			if err := writeLimit(d, "cpu.shares", strconv.FormatInt(r.CPUShares, 10), "cpu"); err != nil {
				return err
			}
		}
		period, quota := cfsLimits(r)
		if period > 0 {
			if err := writeLimit(d, "cpu.cfs_period_us", strconv.FormatInt(period, 10), "cpu"); err != nil {
				return err
			}
		}
		if quota > 0 {
			if err := writeLimit(d, "cpu.cfs_quota_us", strconv.FormatInt(quota, 10), "cpu"); err != nil {
				return err
			}
		}
	}
	if d := dirs["cpuset"]; d != "" {
		if err := setCpuset(d, r); err != nil {
			return err
		}
	}
	if d := dirs["pids"]; r.PidsLimit > 0 {
		if err := writeLimit(d, "pids.max", strconv.FormatInt(r.PidsLimit, 10), "pids"); err != nil {
			return err
		}
	}
	if d := dirs["blkio"]; d != "" {
		if r.BlkioWeight > 0 && exists(filepath.Join(d, "blkio.weight")) {
			if err := writeLimit(d, "blkio.weight", strconv.Itoa(int(r.BlkioWeight)), "blkio"); err != nil {
				return err
			}
		}
		for _, t := range r.IOThrottles {
			if err := writeLimit(d, "blkio.throttle."+t.Kind+"_device", fmt.Sprintf("%d:%d %d", t.Major, t.Minor, t.Rate), "blkio"); err != nil {
				return err
			}
		}
	}
	return nil
}

// makeCpusetDir makes the v1 cpuset cgroup rel below the hierarchy at mnt,
// each new level given its parent's CPUs and memory nodes (a v1 cpuset
// starts with none, and takes no task so).
func makeCpusetDir(mnt, rel string) error {
	dir := mnt
	for _, part := range strings.Split(rel, "/") {
		parent := dir
		dir = filepath.Join(dir, part)
		if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
			return err
		}
		for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
			cur, err := os.ReadFile(filepath.Join(dir, f))
			if err != nil {
				return err
			}
			if strings.TrimSpace(string(cur)) != "" {
				continue
			}
			v, err := os.ReadFile(filepath.Join(parent, f))
			if err == nil {
				err = writeLimit(dir, f, strings.TrimSpace(string(v)), "cpuset")
			}
			if err != nil {
				return err
			}
		}
	}
	return nil
}

// setCpuset writes r's CPUs and memory nodes into the cpuset cgroup dir,
// saying what is available when the kernel refuses them.
func setCpuset(dir string, r *executor.Resources) error {
	for _, s := range []struct{ file, val, what string }{{"cpuset.cpus", r.CPUSetCPUs, "CPUs"}, {"cpuset.mems", r.CPUSetMems, "memory nodes"}} {
		if s.val == "" {
			continue
		}
		if err := writeLimit(dir, s.file, s.val, "cpuset"); err != nil {
			if errors.Is(err, errors.ErrUnsupported) {
				return err
			}
			avail, _ := os.ReadFile(filepath.Join(filepath.Dir(dir), s.file+".effective"))
			if len(avail) == 0 {
				avail, _ = os.ReadFile(filepath.Join(filepath.Dir(dir), s.file))
			}
			return fmt.Errorf("requested %s are not available - requested %s, available: %s", s.what, s.val, strings.TrimSpace(string(avail)))
		}
	}
	return nil
}

func cpuQuota(cpus float64) int64 {
	q := int64(math.Round(cpus * cpuPeriod))
	return max(q, 1000) // the kernel's minimum quota is 1ms
}

// writeLimit writes a limit file, saying which controller is missing when
// the file is not there (opened without O_CREAT: creating a file in a
// cgroup directory fails with EACCES, which would hide that).
func writeLimit(dir, name, val, controller string) error {
	f, err := os.OpenFile(filepath.Join(dir, name), os.O_WRONLY|os.O_TRUNC, 0)
	if err == nil {
		_, err = f.WriteString(val)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("set %s: the %s controller is not available (%w)", name, controller, errors.ErrUnsupported)
	}
	if err != nil {
		return fmt.Errorf("set %s to %s: %w", name, val, err)
	}
	return nil
}

// add moves the process pid (all its threads) into the cgroup.
func (cg *cgroup) add(pid int) error {
	v := []byte(strconv.Itoa(pid))
	for _, d := range cg.all() {
		if err := os.WriteFile(filepath.Join(d, "cgroup.procs"), v, 0); err != nil {
			return fmt.Errorf("move the container into cgroup %s: %w", d, err)
		}
	}
	return nil
}

// addThread moves the calling thread (not its process) into the cgroup on
// v1, whose tasks files take thread ids; the processes it forks are born
// there. On v2, which moves whole processes only, it returns an open fd of
// the cgroup for CLONE_INTO_CGROUP instead (close it), and -1 on v1.
func (cg *cgroup) addThread() (int, error) {
	if cg.v2 {
		fd, err := unix.Open(cg.dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			return -1, fmt.Errorf("open cgroup %s: %w", cg.dir, err)
		}
		return fd, nil
	}
	v := []byte(strconv.Itoa(unix.Gettid()))
	for _, d := range cg.all() {
		if err := os.WriteFile(filepath.Join(d, "tasks"), v, 0); err != nil {
			return -1, fmt.Errorf("move into cgroup %s: %w", d, err)
		}
	}
	return -1, nil
}

func (cg *cgroup) all() []string {
	if cg.v2 {
		return []string{cg.dir}
	}
	var out []string
	for _, c := range v1Controllers {
		if d, ok := cg.dirs[c]; ok {
			out = append(out, d)
		}
	}
	return out
}

// freeze freezes (or thaws) every process in the cgroup and waits until
// the kernel reports it done.
func (cg *cgroup) freeze(frozen bool) error {
	op := "pause"
	if !frozen {
		op = "resume"
	}
	var file, val, stateFile, want string
	switch {
	case cg.v2:
		file, val, stateFile, want = "cgroup.freeze", "0", "cgroup.events", "frozen 0"
		if frozen {
			val, want = "1", "frozen 1"
		}
		file, stateFile = filepath.Join(cg.dir, file), filepath.Join(cg.dir, stateFile)
	case cg.dirs["freezer"] != "":
		file, val, want = filepath.Join(cg.dirs["freezer"], "freezer.state"), "THAWED", "THAWED"
		if frozen {
			val, want = "FROZEN", "FROZEN"
		}
		stateFile = file
	default:
		return fmt.Errorf("%s container: the freezer cgroup controller is not available (%w)", op, errors.ErrUnsupported)
	}
	if err := os.WriteFile(file, []byte(val), 0); err != nil {
		return fmt.Errorf("%s container: %w", op, err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		b, err := os.ReadFile(stateFile)
		if err != nil {
			return fmt.Errorf("%s container: %w", op, err)
		}
		for _, line := range strings.Split(string(b), "\n") {
			if strings.TrimSpace(line) == want {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s container: the cgroup did not reach %q", op, want)
		}
		if !cg.v2 && frozen {
			// v1 may stay FREEZING: ask again.
			_ = os.WriteFile(file, []byte(val), 0)
		}
		time.Sleep(time.Millisecond)
	}
}

// remove kills whatever is left in the cgroup and removes it. Parent
// directories stay: other containers may use them.
func (cg *cgroup) remove() error {
	if !cg.v2 {
		if d := cg.dirs["freezer"]; d != "" {
			// Frozen tasks would not die.
			_ = os.WriteFile(filepath.Join(d, "freezer.state"), []byte("THAWED"), 0)
		}
	} else if cg.dir != "" {
		if err := os.WriteFile(filepath.Join(cg.dir, "cgroup.kill"), []byte("1"), 0); err != nil {
			_ = os.WriteFile(filepath.Join(cg.dir, "cgroup.freeze"), []byte("0"), 0)
		}
	}
	var errs []error
	for _, d := range cg.all() {
		errs = append(errs, removeCgroupDir(d))
	}
	return errors.Join(errs...)
}

// removeCgroupDir kills the tasks of one cgroup dir and removes it,
// retrying while dying tasks keep it busy.
func removeCgroupDir(dir string) error {
	deadline := time.Now().Add(5 * time.Second)
	for {
		if b, err := os.ReadFile(filepath.Join(dir, "cgroup.procs")); err == nil {
			for _, f := range strings.Fields(string(b)) {
				if pid, err := strconv.Atoi(f); err == nil && pid > 0 {
					_ = syscall.Kill(pid, syscall.SIGKILL)
				}
			}
		}
		err := syscall.Rmdir(dir)
		if err == nil || errors.Is(err, syscall.ENOENT) {
			return nil
		}
		if !errors.Is(err, syscall.EBUSY) || time.Now().After(deadline) {
			return &fs.PathError{Op: "remove", Path: dir, Err: err}
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// UpdateCgroup writes the limits of r (zero fields are left as they are)
// into the existing cgroup at rel, a running container's CgroupPath, as
// docker update does. On cgroup v1 a container made without a cpuset
// cgroup gets one, its processes moved in.
func UpdateCgroup(rel string, r executor.Resources) error {
	if err := checkCgroupPath(rel); err != nil {
		return err
	}
	mounts, err := findCgroupMounts()
	if err != nil {
		return fmt.Errorf("find cgroup mounts: %w", err)
	}
	if mounts.useV2() {
		dir := filepath.Join(mounts.v2, filepath.FromSlash(rel))
		if _, err := os.Stat(dir); err != nil {
			return fmt.Errorf("update cgroup %s: %w", rel, err)
		}
		return setLimitsV2(dir, &r)
	}
	dirs := map[string]string{}
	for c, mnt := range mounts.v1 {
		if d := filepath.Join(mnt, filepath.FromSlash(rel)); exists(d) {
			dirs[c] = d
		}
	}
	if dirs["memory"] == "" {
		return fmt.Errorf("update cgroup %s: no such cgroup", rel)
	}
	if mnt, ok := mounts.v1["cpuset"]; ok && dirs["cpuset"] == "" && cpusetLimited(&r) {
		if err := makeCpusetDir(mnt, rel); err != nil {
			return err
		}
		dirs["cpuset"] = filepath.Join(mnt, filepath.FromSlash(rel))
		procs, err := os.ReadFile(filepath.Join(dirs["memory"], "cgroup.procs"))
		if err != nil {
			return err
		}
		for _, pid := range strings.Fields(string(procs)) {
			if err := os.WriteFile(filepath.Join(dirs["cpuset"], "cgroup.procs"), []byte(pid), 0); err != nil && !errors.Is(err, syscall.ESRCH) {
				return fmt.Errorf("move %s into its cpuset cgroup: %w", pid, err)
			}
		}
	}
	return setLimitsV1(dirs, &r)
}

// exists reports whether path exists.
func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
