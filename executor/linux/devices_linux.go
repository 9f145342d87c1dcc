package linux

import (
	"bufio"
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"unsafe"

	"github.com/kiln-build/kiln/executor"
	"golang.org/x/sys/unix"
)

// deviceRule allows some access to the device nodes of a type and number.
type deviceRule struct {
	typ          byte   // 'c', 'b', or 'a' for both
	major, minor int64  // -1 matches any number
	access       string // letters of "rwm": read, write, mknod
}

// buildDeviceRules are the devices a build step may use, as under
// BuildKit (containerd's default list, checked against dockerd 20.10's
// builder): make any node, and read and write null, zero, full, random,
// urandom, tty, ptmx, the pty slaves and tun. Anything else, even a node
// the step made itself, fails to open with EPERM.
var buildDeviceRules = []deviceRule{
	{'b', -1, -1, "m"},
	{'c', -1, -1, "m"},
	{'c', 1, 3, "rwm"},    // null
	{'c', 1, 5, "rwm"},    // zero
	{'c', 1, 7, "rwm"},    // full
	{'c', 1, 8, "rwm"},    // random
	{'c', 1, 9, "rwm"},    // urandom
	{'c', 5, 0, "rwm"},    // tty
	{'c', 5, 2, "rwm"},    // ptmx
	{'c', 10, 200, "rwm"}, // net/tun
	{'c', 136, -1, "rwm"}, // pts/*
}

// runDeviceRules are the devices a docker run container may use: a build
// step's and the console, as under dockerd 20.10, the nodes of devs
// (--device) with their permissions and the extra rules
// (--device-cgroup-rule).
func runDeviceRules(devs []executor.Device, extra []string) ([]deviceRule, error) {
	rules := append(slices.Clone(buildDeviceRules), deviceRule{'c', 5, 1, "rwm"})
	for _, d := range devs {
		var st unix.Stat_t
		if err := unix.Stat(d.HostPath, &st); err != nil {
			return nil, fmt.Errorf("device %s: %w", d.HostPath, err)
		}
		r := deviceRule{major: int64(unix.Major(st.Rdev)), minor: int64(unix.Minor(st.Rdev)), access: d.Permissions}
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFCHR:
			r.typ = 'c'
		case unix.S_IFBLK:
			r.typ = 'b'
		default:
			return nil, fmt.Errorf("device %s: not a device node", d.HostPath)
		}
		if r.access == "" {
			r.access = "rwm"
		}
		rules = append(rules, r)
	}
	for _, s := range extra {
		typ, major, minor, access, err := executor.ParseDeviceRule(s)
		if err != nil {
			return nil, err
		}
		rules = append(rules, deviceRule{typ, major, minor, access})
	}
	// In the order dockerd lists them in the container's devices.list.
	slices.SortStableFunc(rules, func(a, b deviceRule) int {
		return cmp.Or(cmp.Compare(a.major, b.major), cmp.Compare(a.minor, b.minor), cmp.Compare(a.typ, b.typ))
	})
	return rules, nil
}

// v1 is the rule as a cgroup v1 devices.allow line.
func (r deviceRule) v1() string {
	num := func(n int64) string {
		if n < 0 {
			return "*"
		}
		return strconv.FormatInt(n, 10)
	}
	return fmt.Sprintf("%c %s:%s %s", r.typ, num(r.major), num(r.minor), r.access)
}

// setV1DeviceRules makes the v1 devices cgroup dir allow rules and nothing
// else.
func setV1DeviceRules(dir string, rules []deviceRule) error {
	if err := os.WriteFile(filepath.Join(dir, "devices.deny"), []byte("a"), 0); err != nil {
		return fmt.Errorf("set the device rules: %w", err)
	}
	for _, r := range rules {
		if err := os.WriteFile(filepath.Join(dir, "devices.allow"), []byte(r.v1()), 0); err != nil {
			return fmt.Errorf("allow devices %q: %w", r.v1(), err)
		}
	}
	return nil
}

// bpfInsn is one eBPF instruction (struct bpf_insn).
type bpfInsn struct {
	code uint8
	regs uint8 // dst in the low nibble, src in the high one
	off  int16
	imm  int32
}

// The eBPF opcodes the device program uses.
const (
	bpfLdxMemW  = 0x61 // dst = *(u32 *)(src + off)
	bpfMovImm   = 0xb7 // dst = imm
	bpfMovReg   = 0xbf // dst = src
	bpfAndImm   = 0x57 // dst &= imm
	bpfRshImm   = 0x77 // dst >>= imm
	bpfJneImm   = 0x55 // if dst != imm: pc += off
	bpfExit     = 0x95
	bpfAccRead  = unix.BPF_DEVCG_ACC_READ
	bpfAccWrite = unix.BPF_DEVCG_ACC_WRITE
	bpfAccMknod = unix.BPF_DEVCG_ACC_MKNOD
)

func insn(code, dst, src uint8, off int16, imm int32) bpfInsn {
	return bpfInsn{code: code, regs: dst | src<<4, off: off, imm: imm}
}

// deviceProgram assembles a BPF_PROG_TYPE_CGROUP_DEVICE program that allows
// an access when one of rules allows it and refuses it otherwise. The
// context is struct bpf_cgroup_dev_ctx: access_type (the access bits above
// the device type, in the low 16 bits), major, minor.
func deviceProgram(rules []deviceRule) ([]bpfInsn, error) {
	prog := []bpfInsn{
		insn(bpfLdxMemW, 2, 1, 0, 0), // r2 = access_type
		insn(bpfMovReg, 3, 2, 0, 0),  // r3 = type
		insn(bpfAndImm, 3, 0, 0, 0xffff),
		insn(bpfRshImm, 2, 0, 0, 16), // r2 = access
		insn(bpfLdxMemW, 4, 1, 4, 0), // r4 = major
		insn(bpfLdxMemW, 5, 1, 8, 0), // r5 = minor
	}
	for _, r := range rules {
		var block []bpfInsn
		switch r.typ {
		case 'c':
			block = append(block, insn(bpfJneImm, 3, 0, 0, unix.BPF_DEVCG_DEV_CHAR))
		case 'b':
			block = append(block, insn(bpfJneImm, 3, 0, 0, unix.BPF_DEVCG_DEV_BLOCK))
		case 'a':
		default:
			return nil, fmt.Errorf("device rule: unknown type %q", r.typ)
		}
		for _, n := range []struct {
			reg uint8
			v   int64
		}{{4, r.major}, {5, r.minor}} {
			if n.v < -1 || n.v > 1<<31-1 {
				return nil, fmt.Errorf("device rule: number %d out of range", n.v)
			}
			if n.v >= 0 {
				block = append(block, insn(bpfJneImm, n.reg, 0, 0, int32(n.v)))
			}
		}
		allowed := int32(0)
		for _, c := range r.access {
			switch c {
			case 'r':
				allowed |= bpfAccRead
			case 'w':
				allowed |= bpfAccWrite
			case 'm':
				allowed |= bpfAccMknod
			default:
				return nil, fmt.Errorf("device rule: unknown access %q", c)
			}
		}
		// Allowed when no asked-for access is outside the rule's.
		block = append(block,
			insn(bpfMovReg, 0, 2, 0, 0),
			insn(bpfAndImm, 0, 0, 0, ^allowed),
			insn(bpfJneImm, 0, 0, 0, 0),
			insn(bpfMovImm, 0, 0, 0, 1),
			insn(bpfExit, 0, 0, 0, 0),
		)
		// Every jump in the block goes to the next block.
		for i := range block {
			if block[i].code == bpfJneImm {
				block[i].off = int16(len(block) - i - 1)
			}
		}
		prog = append(prog, block...)
	}
	return append(prog, insn(bpfMovImm, 0, 0, 0, 0), insn(bpfExit, 0, 0, 0, 0)), nil
}

// bpfPointer is a pointer in a bpf_attr, where it takes 64 bits. Held as
// unsafe.Pointer, what it points to stays alive, and in place, while the
// attr is. (On 32-bit builds the padding would come first, in the wrong
// half: attachDeviceFilter refuses those.)
type bpfPointer struct {
	_ [8 - unsafe.Sizeof(uintptr(0))]byte
	p unsafe.Pointer
}

// progLoadAttr is the start of bpf_attr for BPF_PROG_LOAD.
type progLoadAttr struct {
	progType, insnCnt  uint32
	insns, license     bpfPointer
	logLevel, logSize  uint32
	logBuf             bpfPointer
	kernVersion, flags uint32
	name               [16]byte
	ifindex, attachTo  uint32
}

// attachDeviceFilter loads the device program for rules and attaches it to
// the cgroup (v2) open as cgfd, replacing any program attached there; the
// cgroup keeps it after the fd of the program is closed.
func attachDeviceFilter(cgfd int, rules []deviceRule) error {
	if unsafe.Sizeof(uintptr(0)) != 8 {
		return errors.New("the device filter needs a 64-bit build")
	}
	prog, err := deviceProgram(rules)
	if err != nil {
		return err
	}
	license := []byte("Apache-2.0\x00")
	attr := progLoadAttr{
		progType: unix.BPF_PROG_TYPE_CGROUP_DEVICE,
		insnCnt:  uint32(len(prog)),
		insns:    bpfPointer{p: unsafe.Pointer(&prog[0])},
		license:  bpfPointer{p: unsafe.Pointer(&license[0])},
		attachTo: unix.BPF_CGROUP_DEVICE,
	}
	copy(attr.name[:], "kiln_devices")
	fd, err := bpfProgLoad(&attr)
	if err != nil {
		// Again with the verifier's log, to say why.
		log := make([]byte, 64<<10)
		attr.logLevel, attr.logSize, attr.logBuf = 1, uint32(len(log)), bpfPointer{p: unsafe.Pointer(&log[0])}
		if fd2, err2 := bpfProgLoad(&attr); err2 == nil {
			unix.Close(fd2)
		} else if msg := strings.TrimSpace(string(bytes.TrimRight(log, "\x00"))); msg != "" {
			return fmt.Errorf("load the device filter: %w (verifier: %s)", err, msg)
		}
		return fmt.Errorf("load the device filter: %w", err)
	}
	defer unix.Close(fd)
	attach := struct {
		target, prog, attachType, flags uint32
	}{target: uint32(cgfd), prog: uint32(fd), attachType: unix.BPF_CGROUP_DEVICE}
	if _, _, errno := unix.Syscall(unix.SYS_BPF, unix.BPF_PROG_ATTACH, uintptr(unsafe.Pointer(&attach)), unsafe.Sizeof(attach)); errno != 0 {
		return fmt.Errorf("attach the device filter: %w", errno)
	}
	return nil
}

// bpfProgLoad loads a program and returns its fd.
func bpfProgLoad(attr *progLoadAttr) (int, error) {
	fd, _, errno := unix.Syscall(unix.SYS_BPF, unix.BPF_PROG_LOAD, uintptr(unsafe.Pointer(attr)), unsafe.Sizeof(*attr))
	if errno != 0 {
		return -1, errno
	}
	return int(fd), nil
}

// deviceCgroup is a cgroup v2, below kiln's own, whose device filter
// confines the containers of build steps: their inits are cloned straight
// into it (CLONE_INTO_CGROUP, no migration), so a step can open the nodes
// BuildKit allows, its own mknod'ed /dev/null included, and no other. It
// is made on first use and removed by close; without cgroup v2, BPF or
// clone3 it is unavailable, and containers fall back to nodev mounts.
type deviceCgroup struct {
	mu  sync.Mutex
	fd  int // the cgroup's directory, open; -1 when not set up
	dir string
	// failed is why setting up failed; it is not tried again.
	failed error
}

// deviceCgroupPrefix starts the names of build cgroups: the pid of the
// kiln process that made them follows, so one left by a killed process can
// be told apart and removed.
const deviceCgroupPrefix = "kiln-build-"

// get returns the open cgroup directory, setting it up on first use, or -1
// when containers cannot be confined this way.
func (d *deviceCgroup) get() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.dir != "" || d.failed != nil {
		return d.fdOrNone()
	}
	if err := d.setup(); err != nil {
		d.failed = err
	}
	return d.fdOrNone()
}

func (d *deviceCgroup) fdOrNone() int {
	if d.dir == "" {
		return -1
	}
	return d.fd
}

func (d *deviceCgroup) setup() error {
	if !cloneIntoCgroupSupported() {
		return errors.New("the kernel cannot clone into a cgroup (Linux 5.7)")
	}
	mounts, err := findCgroupMounts()
	if err != nil {
		return err
	}
	if mounts.v2 == "" {
		return errors.New("no cgroup v2 hierarchy")
	}
	own, err := ownCgroupV2()
	if err != nil {
		return err
	}
	parent := filepath.Join(mounts.v2, own)
	removeStaleDeviceCgroups(parent)
	dir, err := os.MkdirTemp(parent, fmt.Sprintf("%s%d-", deviceCgroupPrefix, os.Getpid()))
	if err != nil {
		return fmt.Errorf("create the build cgroup: %w", err)
	}
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err == nil {
		if err = attachDeviceFilter(fd, buildDeviceRules); err != nil {
			unix.Close(fd)
		}
	}
	if err != nil {
		_ = unix.Rmdir(dir)
		return err
	}
	d.fd, d.dir = fd, dir
	return nil
}

// close removes the cgroup (once the containers in it are gone; a
// container still running keeps it, and a later kiln removes it); a later
// get sets up a new one.
func (d *deviceCgroup) close() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.dir == "" {
		return
	}
	unix.Close(d.fd)
	_ = unix.Rmdir(d.dir)
	d.fd, d.dir = -1, ""
}

// ownCgroupV2 is this process's cgroup v2 path ("/" at the top).
func ownCgroupV2() (string, error) {
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return "", err
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if p, ok := strings.CutPrefix(sc.Text(), "0::"); ok {
			return p, nil
		}
	}
	return "", errors.New("this process has no cgroup v2")
}

// removeStaleDeviceCgroups removes the build cgroups in parent whose kiln
// process is gone (killed before it could remove its own).
func removeStaleDeviceCgroups(parent string) {
	entries, err := os.ReadDir(parent)
	if err != nil {
		return
	}
	for _, e := range entries {
		rest, ok := strings.CutPrefix(e.Name(), deviceCgroupPrefix)
		if !ok || !e.IsDir() {
			continue
		}
		pidStr, _, _ := strings.Cut(rest, "-")
		pid, err := strconv.Atoi(pidStr)
		if err != nil || pid <= 0 || unix.Kill(pid, 0) != unix.ESRCH {
			continue
		}
		_ = unix.Rmdir(filepath.Join(parent, e.Name()))
	}
}

// cloneIntoCgroupSupported reports whether the kernel is 5.7 or later, the
// first with clone3's CLONE_INTO_CGROUP.
func cloneIntoCgroupSupported() bool {
	var u unix.Utsname
	if unix.Uname(&u) != nil {
		return false
	}
	release := unix.ByteSliceToString(u.Release[:])
	majorStr, rest, _ := strings.Cut(release, ".")
	minorStr := rest
	if i := strings.IndexFunc(rest, func(r rune) bool { return r < '0' || r > '9' }); i >= 0 {
		minorStr = rest[:i]
	}
	major, err1 := strconv.Atoi(majorStr)
	minor, err2 := strconv.Atoi(minorStr)
	return err1 == nil && err2 == nil && (major > 5 || major == 5 && minor >= 7)
}
