package containers

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// cgroupRoot is where the cgroup filesystems are mounted.
const cgroupRoot = "/sys/fs/cgroup"

// DefaultCgroupParent is the cgroup containers are made in without
// --cgroup-parent.
const DefaultCgroupParent = "kiln"

// CgroupPath is the container's cgroup, relative to the cgroup root (v2)
// or each controller's root (v1): its parent (CgroupParent, by default
// kiln) and its ID.
func (c *Config) CgroupPath() string {
	parent := c.CgroupParent
	if parent == "" {
		parent = DefaultCgroupParent
	}
	return parent + "/" + c.ID
}

// CleanCgroupParent checks a --cgroup-parent value and returns it as a
// path relative to the cgroup roots ("/a/b" and "a/b" are the same).
func CleanCgroupParent(p string) (string, error) {
	c := path.Clean("/" + p)[1:]
	if c == "" || strings.Contains(p, "..") {
		return "", fmt.Errorf("invalid cgroup parent %q: want a path like /mygroup", p)
	}
	return c, nil
}

// RemoveCgroup removes what is left of container c's cgroup when the
// executor could not clean up after it (its shim was killed): the empty
// directories under each hierarchy, deepest first. A cgroup that still has
// processes stays; that is not an error.
func RemoveCgroup(c *Config) error {
	var dirs []string
	if _, err := os.Stat(filepath.Join(cgroupRoot, "cgroup.controllers")); err == nil {
		dirs = append(dirs, filepath.Join(cgroupRoot, c.CgroupPath()))
	} else {
		ents, _ := os.ReadDir(cgroupRoot)
		for _, e := range ents {
			if e.IsDir() {
				dirs = append(dirs, filepath.Join(cgroupRoot, e.Name(), c.CgroupPath()))
			}
		}
	}
	var errs []error
	for _, d := range dirs {
		var sub []string
		_ = filepath.WalkDir(d, func(p string, de fs.DirEntry, err error) error {
			if err == nil && de.IsDir() {
				sub = append(sub, p)
			}
			return nil
		})
		slices.Reverse(sub)
		for _, p := range sub {
			if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, os.ErrExist) && !isBusy(err) {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

func isBusy(err error) bool {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err.Error() == "device or resource busy"
	}
	return false
}

// Stats are a container's resource figures, as docker stats shows them.
type Stats struct {
	// CPUNanos is the CPU time its processes used so far.
	CPUNanos uint64
	// MemUsage is the memory it uses, less the inactive page cache (as
	// docker counts it); MemLimit its limit, or the host's memory.
	MemUsage, MemLimit uint64
	PIDs               uint64
	// NetRx and NetTx are the bytes its network interfaces (not lo)
	// received and sent; BlockRead and BlockWrite the bytes it read from
	// and wrote to block devices.
	NetRx, NetTx          uint64
	BlockRead, BlockWrite uint64
}

// ReadStats reads the figures of container c, whose PID 1 is pid (host
// PID), from its cgroup (v2, or the v1 hierarchies) and network namespace.
// A figure the host does not keep stays 0.
func ReadStats(c *Config, pid int) (Stats, error) {
	var st Stats
	id := c.ID
	rel := c.CgroupPath()
	v2 := filepath.Join(cgroupRoot, rel)
	if _, err := os.Stat(filepath.Join(cgroupRoot, "cgroup.controllers")); err == nil {
		if _, err := os.Stat(v2); err != nil {
			return st, fmt.Errorf("stats of %s: %w", ShortID(id), err)
		}
		st.CPUNanos = statField(filepath.Join(v2, "cpu.stat"), "usage_usec") * 1000
		st.MemUsage = sub(readUint(filepath.Join(v2, "memory.current")), statField(filepath.Join(v2, "memory.stat"), "inactive_file"))
		st.MemLimit = readUint(filepath.Join(v2, "memory.max"))
		st.PIDs = readUint(filepath.Join(v2, "pids.current"))
		st.BlockRead, st.BlockWrite = ioStat(filepath.Join(v2, "io.stat"))
	} else {
		mem := filepath.Join(cgroupRoot, "memory", rel)
		if _, err := os.Stat(mem); err != nil {
			return st, fmt.Errorf("stats of %s: %w", ShortID(id), err)
		}
		st.CPUNanos = readUint(filepath.Join(cgroupRoot, "cpuacct", rel, "cpuacct.usage"))
		st.MemUsage = sub(readUint(filepath.Join(mem, "memory.usage_in_bytes")), statField(filepath.Join(mem, "memory.stat"), "total_inactive_file"))
		st.MemLimit = readUint(filepath.Join(mem, "memory.limit_in_bytes"))
		st.PIDs = readUint(filepath.Join(cgroupRoot, "pids", rel, "pids.current"))
		st.BlockRead, st.BlockWrite = blkioStat(filepath.Join(cgroupRoot, "blkio", rel, "blkio.throttle.io_service_bytes"))
	}
	if host := HostMemory(); host > 0 && (st.MemLimit == 0 || st.MemLimit > host) {
		st.MemLimit = host
	}
	st.NetRx, st.NetTx = netDev(fmt.Sprintf("/proc/%d/net/dev", pid))
	return st, nil
}

// HostMemory is the host's RAM in bytes (0 when unknown).
func HostMemory() uint64 {
	var si unix.Sysinfo_t
	if unix.Sysinfo(&si) != nil {
		return 0
	}
	return uint64(si.Totalram) * uint64(si.Unit)
}

func sub(a, b uint64) uint64 {
	if b > a {
		return 0
	}
	return a - b
}

// readUint reads a file holding one number ("max" and errors give 0).
func readUint(p string) uint64 {
	b, err := os.ReadFile(p)
	if err != nil {
		return 0
	}
	n, _ := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	return n
}

// statField reads the value of key in a "key value" lines file.
func statField(p, key string) uint64 {
	b, err := os.ReadFile(p)
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, " "); ok && k == key {
			n, _ := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
			return n
		}
	}
	return 0
}

// ioStat sums rbytes and wbytes over the devices of a v2 io.stat.
func ioStat(p string) (read, write uint64) {
	b, _ := os.ReadFile(p)
	for _, f := range strings.Fields(string(b)) {
		if v, ok := strings.CutPrefix(f, "rbytes="); ok {
			n, _ := strconv.ParseUint(v, 10, 64)
			read += n
		} else if v, ok := strings.CutPrefix(f, "wbytes="); ok {
			n, _ := strconv.ParseUint(v, 10, 64)
			write += n
		}
	}
	return read, write
}

// blkioStat sums the Read and Write lines of a v1
// blkio.throttle.io_service_bytes.
func blkioStat(p string) (read, write uint64) {
	b, _ := os.ReadFile(p)
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) != 3 {
			continue
		}
		n, _ := strconv.ParseUint(f[2], 10, 64)
		switch f[1] {
		case "Read":
			read += n
		case "Write":
			write += n
		}
	}
	return read, write
}

// netDev sums the received and sent bytes of the interfaces in a
// /proc/PID/net/dev, lo left out.
func netDev(p string) (rx, tx uint64) {
	b, _ := os.ReadFile(p)
	for _, line := range strings.Split(string(b), "\n") {
		name, rest, ok := strings.Cut(line, ":")
		if !ok || strings.TrimSpace(name) == "lo" {
			continue
		}
		f := strings.Fields(rest)
		if len(f) < 9 {
			continue
		}
		r, _ := strconv.ParseUint(f[0], 10, 64)
		t, _ := strconv.ParseUint(f[8], 10, 64)
		rx, tx = rx+r, tx+t
	}
	return rx, tx
}
