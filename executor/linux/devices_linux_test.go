package linux

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// devFilterEnv tells TestDeviceFilterHelper which directory to probe.
const devFilterEnv = "KILN_TEST_DEVICE_FILTER_DIR"

// TestDeviceFilter clones a process into the build cgroup and checks what
// its device filter lets it open and make, against what BuildKit allows.
func TestDeviceFilter(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root: makes a cgroup, loads a BPF program and makes device nodes")
	}
	var d deviceCgroup
	fd := d.get()
	if fd < 0 {
		t.Fatalf("no build cgroup: %v", d.failed)
	}
	dir := t.TempDir()
	for _, n := range []struct {
		name         string
		mode         uint32
		major, minor uint32
	}{
		{"null", unix.S_IFCHR, 1, 3},
		{"zero", unix.S_IFCHR, 1, 5},
		{"tun", unix.S_IFCHR, 10, 200},
		{"kvm", unix.S_IFCHR, 10, 232},
		{"fuse", unix.S_IFCHR, 10, 229},
		{"mem", unix.S_IFCHR, 1, 1},
		{"loop", unix.S_IFBLK, 7, 0},
	} {
		if err := unix.Mknod(filepath.Join(dir, n.name), n.mode|0o666, int(unix.Mkdev(n.major, n.minor))); err != nil {
			t.Fatal(err)
		}
	}
	probe := func(cgfd int) string {
		t.Helper()
		cmd := exec.Command(os.Args[0], "-test.run=^TestDeviceFilterHelper$")
		cmd.Env = append(os.Environ(), devFilterEnv+"="+dir)
		if cgfd >= 0 {
			cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: cgfd}
		}
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("probe: %v\n%s", err, out)
		}
		return string(out)
	}
	got := probe(fd)
	for _, want := range []string{
		"open null: ok", "open zero: ok", "open tun: ok",
		"open kvm: operation not permitted", "open fuse: operation not permitted",
		"open mem: operation not permitted", "open loop: operation not permitted",
		"mknod c 1 3: ok", "mknod c 10 232: ok", "mknod b 7 0: ok",
	} {
		if !strings.Contains(got, want+"\n") {
			t.Errorf("in the build cgroup, want %q; the probe said:\n%s", want, got)
		}
	}
	// Outside it, nothing is refused: the filter is what refuses.
	if got := probe(-1); strings.Contains(got, "not permitted") {
		t.Errorf("outside the build cgroup, the probe was refused:\n%s", got)
	}
	d.close()
	if _, err := os.Stat(d.dir); d.dir != "" || err == nil {
		t.Errorf("close left the cgroup %q", d.dir)
	}
	// A new one is made on the next use.
	if d.get() < 0 {
		t.Fatalf("no build cgroup after close: %v", d.failed)
	}
	d.close()
}

// TestDeviceFilterHelper is the probe TestDeviceFilter runs.
func TestDeviceFilterHelper(t *testing.T) {
	dir := os.Getenv(devFilterEnv)
	if dir == "" {
		t.Skip("the probe of TestDeviceFilter")
	}
	result := func(err error) string {
		if err != nil {
			var errno syscall.Errno
			if errors.As(err, &errno) {
				return errno.Error()
			}
			return err.Error()
		}
		return "ok"
	}
	for _, name := range []string{"null", "zero", "tun", "kvm", "fuse", "mem", "loop"} {
		f, err := os.OpenFile(filepath.Join(dir, name), os.O_RDONLY, 0)
		if err == nil {
			f.Close()
		}
		fmt.Printf("open %s: %s\n", name, result(err))
	}
	for i, n := range []struct {
		typ          string
		mode         uint32
		major, minor uint32
	}{{"c", unix.S_IFCHR, 1, 3}, {"c", unix.S_IFCHR, 10, 232}, {"b", unix.S_IFBLK, 7, 0}} {
		err := unix.Mknod(filepath.Join(dir, fmt.Sprint("made", i)), n.mode|0o600, int(unix.Mkdev(n.major, n.minor)))
		fmt.Printf("mknod %s %d %d: %s\n", n.typ, n.major, n.minor, result(err))
	}
}

// TestDeviceProgramRefusesBadRules checks the assembler's validation.
func TestDeviceProgramRefusesBadRules(t *testing.T) {
	for _, r := range []deviceRule{
		{'x', 1, 3, "rwm"},
		{'c', 1, 3, "rwx"},
		{'c', -2, 3, "r"},
		{'c', 1, 1 << 32, "r"},
	} {
		if _, err := deviceProgram([]deviceRule{r}); err == nil {
			t.Errorf("deviceProgram(%+v) took it", r)
		}
	}
	prog, err := deviceProgram(buildDeviceRules)
	if err != nil {
		t.Fatal(err)
	}
	last := prog[len(prog)-1]
	if last.code != bpfExit || prog[len(prog)-2].imm != 0 {
		t.Errorf("the program does not end refusing: %+v", prog[len(prog)-2:])
	}
}

// TestDeviceCgroupRemovesStale checks that a build cgroup left by a kiln
// process that is gone (killed before it could remove it) is removed by
// the next one, and one of a live process is left alone.
func TestDeviceCgroupRemovesStale(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root: makes cgroups")
	}
	mounts, err := findCgroupMounts()
	if err != nil || mounts.v2 == "" {
		t.Skip("no cgroup v2 hierarchy mounted")
	}
	own, err := ownCgroupV2()
	if err != nil {
		t.Fatal(err)
	}
	parent := filepath.Join(mounts.v2, own)
	// A pid that is not running: a child that has exited and been reaped.
	cmd := exec.Command("/bin/true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	stale := filepath.Join(parent, fmt.Sprintf("%s%d-test", deviceCgroupPrefix, cmd.Process.Pid))
	live := filepath.Join(parent, fmt.Sprintf("%s%d-test", deviceCgroupPrefix, os.Getppid()))
	for _, d := range []string{stale, live} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() { os.Remove(stale); os.Remove(live) })
	var d deviceCgroup
	if d.get() < 0 {
		t.Fatalf("no build cgroup: %v", d.failed)
	}
	d.close()
	if _, err := os.Stat(stale); err == nil {
		t.Errorf("the stale cgroup %s is still there", stale)
	}
	if _, err := os.Stat(live); err != nil {
		t.Errorf("the cgroup of a live process went: %v", err)
	}
}
