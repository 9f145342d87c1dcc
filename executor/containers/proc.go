package containers

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// ProcStart returns the start time of process pid (field 22 of
// /proc/PID/stat, clock ticks since boot) and whether it is alive (exists
// and is not a zombie).
func ProcStart(pid int) (start uint64, alive bool) {
	if pid <= 0 {
		return 0, false
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, false
	}
	// The command name (field 2) is in parentheses and may hold spaces.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, false
	}
	f := strings.Fields(s[i+1:])
	// f[0] is field 3 (state), so field 22 is f[19].
	if len(f) < 20 || f[0] == "Z" || f[0] == "X" {
		return 0, false
	}
	start, err = strconv.ParseUint(f[19], 10, 64)
	return start, err == nil
}

// ShimAlive reports whether the process pid is alive and started at start
// (so it is the same process, not a reused PID).
func ShimAlive(pid int, start uint64) bool {
	got, alive := ProcStart(pid)
	return alive && got == start
}

// Process is a process of a container, for kiln top.
type Process struct {
	Pid, PPid, UID int
	Started        time.Time
	Cmd            string
}

// Processes lists the processes in the PID namespace of pid (a container's
// PID 1), by host PID.
func Processes(pid int) ([]Process, error) {
	ns, err := os.Readlink("/proc/" + strconv.Itoa(pid) + "/ns/pid")
	if err != nil {
		return nil, fmt.Errorf("list the container's processes: %w", err)
	}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil, fmt.Errorf("list the container's processes: %w", err)
	}
	boot := bootTime()
	var out []Process
	for _, e := range ents {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		dir := "/proc/" + e.Name()
		if l, err := os.Readlink(dir + "/ns/pid"); err != nil || l != ns {
			continue
		}
		pr := Process{Pid: p}
		if b, err := os.ReadFile(dir + "/status"); err == nil {
			for _, line := range strings.Split(string(b), "\n") {
				f := strings.Fields(line)
				if len(f) >= 2 && f[0] == "PPid:" {
					pr.PPid, _ = strconv.Atoi(f[1])
				}
				if len(f) >= 2 && f[0] == "Uid:" {
					pr.UID, _ = strconv.Atoi(f[1])
				}
			}
		}
		if start, ok := ProcStart(p); ok {
			pr.Started = boot.Add(time.Duration(start) * time.Second / 100)
		}
		if b, err := os.ReadFile(dir + "/cmdline"); err == nil {
			pr.Cmd = strings.TrimSpace(strings.ReplaceAll(string(b), "\x00", " "))
		}
		out = append(out, pr)
	}
	return out, nil
}

// bootTime reads the boot time from /proc/stat.
func bootTime() time.Time {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return time.Time{}
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "btime "); ok {
			n, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			return time.Unix(n, 0)
		}
	}
	return time.Time{}
}
