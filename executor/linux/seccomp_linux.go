package linux

import (
	"encoding/binary"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync"
	"unsafe"

	seccomp "github.com/elastic/go-seccomp-bpf"
	"github.com/elastic/go-seccomp-bpf/arch"
	profiles "github.com/moby/profiles/seccomp"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// Processes run under Docker's default seccomp profile, as in docker run
// and in Docker's builder: the profile (moby/profiles/seccomp, Docker's own
// data) is resolved for the process's capabilities and the kernel, then
// assembled into a BPF filter (elastic/go-seccomp-bpf, pure Go: kiln is
// built without cgo, so libseccomp is out of reach).
//
// The assembler serves the native architecture; on amd64 kiln adds the
// rules for 32-bit x86 calls itself (seccomp_compat_linux.go), as Docker's
// filter covers them too.

// seccompPrograms assembles Docker's default profile into BPF in the
// parent, once per capability set; the init only loads the result.
type seccompPrograms struct {
	mu    sync.Mutex
	progs map[uint64][]byte
}

// program returns the assembled profile for the bounding set caps as
// packed sock_filter instructions, or nil when the kernel has no seccomp
// filters (the process then runs without one, as under Docker).
func (sp *seccompPrograms) program(caps uint64) ([]byte, error) {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	if prog, ok := sp.progs[caps]; ok {
		return prog, nil
	}
	var prog []byte
	if seccomp.Supported() {
		insts, err := seccompInstructions(caps)
		if err != nil {
			return nil, fmt.Errorf("seccomp profile: %w", err)
		}
		raw, err := bpf.Assemble(insts)
		if err != nil {
			return nil, fmt.Errorf("seccomp profile: %w", err)
		}
		prog = make([]byte, 0, 8*len(raw))
		for _, r := range raw {
			prog = binary.NativeEndian.AppendUint16(prog, r.Op)
			prog = append(prog, r.Jt, r.Jf)
			prog = binary.NativeEndian.AppendUint32(prog, r.K)
		}
	}
	if sp.progs == nil {
		sp.progs = map[uint64][]byte{}
	}
	sp.progs[caps] = prog
	return prog, nil
}

// loadSeccomp installs prog (packed sock_filter instructions, see
// seccompPrograms) on every thread of the calling process. It needs
// CAP_SYS_ADMIN (no_new_privs stays off, as in Docker), so it runs before
// the capabilities are dropped; what runs after it (the privilege drop and
// exec) is allowed by the profile.
func loadSeccomp(prog []byte) error {
	return installSeccomp(prog, unix.SECCOMP_FILTER_FLAG_TSYNC)
}

// loadSeccompThread installs prog on the calling thread only (a thread
// that forks one process and is then discarded, see Exec).
func loadSeccompThread(prog []byte) error {
	return installSeccomp(prog, 0)
}

func installSeccomp(prog []byte, flags uintptr) error {
	if len(prog) == 0 {
		return nil
	}
	if len(prog)%8 != 0 || len(prog)/8 > 0xffff {
		return fmt.Errorf("seccomp profile: %d bytes is no BPF program", len(prog))
	}
	insts := make([]unix.SockFilter, len(prog)/8)
	for i := range insts {
		b := prog[8*i:]
		insts[i] = unix.SockFilter{Code: binary.NativeEndian.Uint16(b), Jt: b[2], Jf: b[3], K: binary.NativeEndian.Uint32(b[4:])}
	}
	fprog := unix.SockFprog{Len: uint16(len(insts)), Filter: &insts[0]}
	_, _, e := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, flags, uintptr(unsafe.Pointer(&fprog)))
	runtime.KeepAlive(insts)
	if e != 0 {
		return fmt.Errorf("seccomp profile: load the filter: %w", e)
	}
	return nil
}

// seccompPolicy is Docker's default profile for the bounding set caps, as
// a policy for the native architecture and, on amd64, one for 32-bit x86
// (nil elsewhere).
func seccompPolicy(caps uint64) (native, compat *seccomp.Policy, err error) {
	rs := &specs.Spec{Process: &specs.Process{Capabilities: &specs.LinuxCapabilities{Bounding: capList(caps)}}}
	prof, err := profiles.GetDefaultProfile(rs)
	if err != nil {
		return nil, nil, err
	}
	info, err := arch.GetInfo("")
	if err != nil {
		return nil, nil, err
	}
	if native, err = policyFromProfile(prof, info.SyscallNames); err != nil {
		return nil, nil, err
	}
	if runtime.GOARCH == "amd64" {
		if compat, err = policyFromProfile(prof, arch.I386.SyscallNames); err != nil {
			return nil, nil, err
		}
	}
	return native, compat, nil
}

// seccompInstructions is the whole filter for the bounding set caps: the
// native program, behind a section for 32-bit x86 on amd64.
func seccompInstructions(caps uint64) ([]bpf.Instruction, error) {
	native, compat, err := seccompPolicy(caps)
	if err != nil {
		return nil, err
	}
	insts, err := native.Assemble()
	if err != nil {
		return nil, err
	}
	if compat == nil {
		return insts, nil
	}
	return withCompat(insts, compat, arch.I386)
}

// capList names the capabilities in the mask caps ("CAP_SYS_ADMIN").
func capList(caps uint64) []string {
	var out []string
	for name, c := range capNames {
		if caps&(1<<c) != 0 {
			out = append(out, "CAP_"+name)
		}
	}
	slices.Sort(out)
	return out
}

// policyFromProfile turns a resolved runtime-spec seccomp profile into a
// policy, keeping the syscalls known (by name) to the architecture. Rules
// are evaluated in order and the first match decides, so rules that refuse
// come before rules that allow, and each action's unconditional names
// before its conditional ones.
func policyFromProfile(prof *specs.LinuxSeccomp, known map[string]int) (*seccomp.Policy, error) {
	def, err := seccompAction(prof.DefaultAction, prof.DefaultErrnoRet)
	if err != nil {
		return nil, err
	}
	if def != seccomp.ActionErrno && def != seccomp.ActionAllow {
		return nil, fmt.Errorf("default action %s is not supported", prof.DefaultAction)
	}
	type group struct {
		names []string
		conds []seccomp.NameWithConditions
	}
	groups := map[seccomp.Action]*group{}
	var order []seccomp.Action
	for _, sc := range prof.Syscalls {
		action, err := seccompAction(sc.Action, sc.ErrnoRet)
		if err != nil {
			return nil, err
		}
		g := groups[action]
		if g == nil {
			g = &group{}
			groups[action] = g
			order = append(order, action)
		}
		conds, err := seccompConditions(sc.Args)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", strings.Join(sc.Names, ", "), err)
		}
		for _, name := range sc.Names {
			if _, ok := known[name]; !ok {
				continue
			}
			if len(conds) == 0 {
				if !slices.Contains(g.names, name) {
					g.names = append(g.names, name)
				}
				continue
			}
			for _, c := range conds {
				g.conds = append(g.conds, seccomp.NameWithConditions{Name: name, Conditions: c})
			}
		}
	}
	// Refusals first, in the profile's order; allows last.
	slices.SortStableFunc(order, func(a, b seccomp.Action) int {
		return btoi(a == seccomp.ActionAllow) - btoi(b == seccomp.ActionAllow)
	})
	p := &seccomp.Policy{DefaultAction: def}
	for _, a := range order {
		g := groups[a]
		if len(g.names) > 0 {
			p.Syscalls = append(p.Syscalls, seccomp.SyscallGroup{Action: a, Names: g.names})
		}
		if len(g.conds) > 0 {
			p.Syscalls = append(p.Syscalls, seccomp.SyscallGroup{Action: a, NamesWithCondtions: g.conds})
		}
	}
	if len(p.Syscalls) == 0 {
		return nil, errors.New("the profile names no system call of this architecture")
	}
	return p, nil
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// seccompAction maps a profile action (and its errno) to the assembler's.
func seccompAction(a specs.LinuxSeccompAction, errno *uint) (seccomp.Action, error) {
	switch a {
	case specs.ActAllow:
		return seccomp.ActionAllow, nil
	case specs.ActErrno:
		if errno == nil || *errno == uint(unix.EPERM) {
			return seccomp.ActionErrno, nil // EPERM
		}
		if *errno > 0xffff {
			return 0, fmt.Errorf("errno %d out of range", *errno)
		}
		return seccomp.ActionErrno | seccomp.Action(*errno), nil
	case specs.ActKillThread, specs.ActKill:
		return seccomp.ActionKillThread, nil
	case specs.ActKillProcess:
		return seccomp.ActionKillProcess, nil
	case specs.ActTrap:
		return seccomp.ActionTrap, nil
	case specs.ActLog:
		return seccomp.ActionLog, nil
	}
	return 0, fmt.Errorf("seccomp action %s is not supported", a)
}

// seccompConditions turns the argument checks of one profile rule into
// alternatives, each a list of checks that must all hold. As in runc, checks
// of different arguments must all hold, while several checks of the same
// argument are alternatives. No checks: no alternatives.
func seccompConditions(args []specs.LinuxSeccompArg) ([]seccomp.ArgumentConditions, error) {
	if len(args) == 0 {
		return nil, nil
	}
	conds := make(seccomp.ArgumentConditions, 0, len(args))
	seen := map[uint]bool{}
	repeated := false
	for _, a := range args {
		c, err := seccompCondition(a)
		if err != nil {
			return nil, err
		}
		repeated = repeated || seen[a.Index]
		seen[a.Index] = true
		conds = append(conds, c)
	}
	if !repeated {
		return []seccomp.ArgumentConditions{conds}, nil
	}
	alts := make([]seccomp.ArgumentConditions, len(conds))
	for i, c := range conds {
		alts[i] = seccomp.ArgumentConditions{c}
	}
	return alts, nil
}

func seccompCondition(a specs.LinuxSeccompArg) (seccomp.Condition, error) {
	if a.Index > 5 {
		return seccomp.Condition{}, fmt.Errorf("argument index %d out of range", a.Index)
	}
	c := seccomp.Condition{Argument: uint32(a.Index), Value: a.Value}
	switch a.Op {
	case specs.OpEqualTo:
		c.Operation = seccomp.Equal
	case specs.OpNotEqual:
		c.Operation = seccomp.NotEqual
	case specs.OpLessThan:
		c.Operation = seccomp.LessThan
	case specs.OpLessEqual:
		c.Operation = seccomp.LessOrEqual
	case specs.OpGreaterThan:
		c.Operation = seccomp.GreaterThan
	case specs.OpGreaterEqual:
		c.Operation = seccomp.GreaterOrEqual
	case specs.OpMaskedEqual:
		// (arg & Value) == ValueTwo; the profile only asks for no bit
		// of the mask set.
		if a.ValueTwo != 0 {
			return seccomp.Condition{}, fmt.Errorf("masked comparison with %#x is not supported", a.ValueTwo)
		}
		c.Operation = seccomp.BitsNotSet
	default:
		return seccomp.Condition{}, fmt.Errorf("comparison %s is not supported", a.Op)
	}
	return c, nil
}
