package linux

import (
	"fmt"

	seccomp "github.com/elastic/go-seccomp-bpf"
	"github.com/elastic/go-seccomp-bpf/arch"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// The assembler kiln uses serves one architecture, the native one. On
// amd64 a process can also make 32-bit x86 system calls (int 0x80, or a
// 32-bit program), which Docker's filter covers with the same rules; kiln
// adds a section of its own for them, ahead of the native program:
//
//	ld arch; jeq i386 → the i386 section; else the native program
//
// The i386 section tests one rule after another (runs of syscall numbers
// that share a return, then a short block per rule with conditions) and
// ends in the default action. Arguments of 32-bit
// calls are 32 bits wide (the kernel zero-extends them), so conditions
// compare the low word; a condition on a wider value never matches.

// seccomp_data offsets (include/uapi/linux/seccomp.h); lowWord is where the
// low 32 bits of an argument sit in it on amd64 (little-endian), the only
// architecture kiln adds a compat section for.
const (
	seccompNrOffset   = 0
	seccompArchOffset = 4
	seccompArgsOffset = 16
	lowWord           = 0
)

// withCompat returns native, the assembled native program, preceded by a
// dispatch on the architecture and followed by the section for compat (the
// 32-bit ABI of the native architecture), which decides by p's rules.
func withCompat(native []bpf.Instruction, p *seccomp.Policy, compat *arch.Info) ([]bpf.Instruction, error) {
	section, err := compatSection(p, compat)
	if err != nil {
		return nil, err
	}
	prog := []bpf.Instruction{
		bpf.LoadAbsolute{Off: seccompArchOffset, Size: 4},
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: uint32(compat.ID), SkipTrue: 0, SkipFalse: 1},
		bpf.Jump{Skip: uint32(len(native))},
	}
	prog = append(prog, native...)
	return append(prog, section...), nil
}

// compatSection decides the syscalls of arch a by the rules of p, in order.
func compatSection(p *seccomp.Policy, a *arch.Info) ([]bpf.Instruction, error) {
	var out []bpf.Instruction
	ret := func(act seccomp.Action) bpf.Instruction {
		if act == seccomp.ActionErrno {
			act |= seccomp.Action(unix.EPERM) // as the assembler writes it
		}
		return bpf.RetConstant{Val: uint32(act)}
	}
	loadNr := bpf.LoadAbsolute{Off: seccompNrOffset, Size: 4}
	for _, g := range p.Syscalls {
		var nrs []uint32
		for _, name := range g.Names {
			if nr, ok := a.SyscallNames[name]; ok {
				nrs = append(nrs, uint32(nr))
			}
		}
		// A holds the number through each run of tests, which share one
		// return (a test can jump at most 255 instructions ahead).
		for len(nrs) > 0 {
			chunk := nrs[:min(len(nrs), 250)]
			nrs = nrs[len(chunk):]
			out = append(out, loadNr)
			for i, nr := range chunk {
				out = append(out, bpf.JumpIf{Cond: bpf.JumpEqual, Val: nr, SkipTrue: uint8(len(chunk) - i)})
			}
			out = append(out, bpf.Jump{Skip: 1}, ret(g.Action))
		}
		for _, nc := range g.NamesWithCondtions {
			nr, ok := a.SyscallNames[nc.Name]
			if !ok {
				continue
			}
			block, err := condBlock(uint32(nr), nc.Conditions, ret(g.Action))
			if err != nil {
				return nil, fmt.Errorf("%s: %w", nc.Name, err)
			}
			out = append(out, block...)
		}
	}
	return append(out, ret(p.DefaultAction)), nil
}

// condBlock is one rule: the syscall nr with all of conds on its low
// argument words; it ends in action, and any test that fails jumps past it.
func condBlock(nr uint32, conds seccomp.ArgumentConditions, action bpf.Instruction) ([]bpf.Instruction, error) {
	n := 2 + 2*len(conds) + 1 // load nr, test nr, (load arg, test)..., ret
	if n > 255 {
		return nil, fmt.Errorf("%d conditions in one rule", len(conds))
	}
	block := []bpf.Instruction{bpf.LoadAbsolute{Off: seccompNrOffset, Size: 4}}
	skip := func() uint8 { return uint8(n - len(block) - 1) } // past the block from the next instruction
	block = append(block, bpf.JumpIf{Cond: bpf.JumpEqual, Val: nr, SkipFalse: skip()})
	for _, c := range conds {
		if c.Value > 0xffffffff {
			// A 32-bit argument never equals or passes a wider value
			// the way the profile means; leave the rule out.
			return nil, nil
		}
		v := uint32(c.Value)
		block = append(block, bpf.LoadAbsolute{Off: seccompArgsOffset + 8*c.Argument + lowWord, Size: 4})
		var test bpf.JumpIf
		switch c.Operation {
		case seccomp.Equal:
			test = bpf.JumpIf{Cond: bpf.JumpEqual, Val: v}
		case seccomp.NotEqual:
			test = bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: v}
		case seccomp.LessThan:
			test = bpf.JumpIf{Cond: bpf.JumpLessThan, Val: v}
		case seccomp.LessOrEqual:
			test = bpf.JumpIf{Cond: bpf.JumpLessOrEqual, Val: v}
		case seccomp.GreaterThan:
			test = bpf.JumpIf{Cond: bpf.JumpGreaterThan, Val: v}
		case seccomp.GreaterOrEqual:
			test = bpf.JumpIf{Cond: bpf.JumpGreaterOrEqual, Val: v}
		case seccomp.BitsNotSet:
			test = bpf.JumpIf{Cond: bpf.JumpBitsNotSet, Val: v}
		case seccomp.BitsSet:
			test = bpf.JumpIf{Cond: bpf.JumpBitsSet, Val: v}
		default:
			return nil, fmt.Errorf("comparison %s is not supported", c.Operation)
		}
		test.SkipFalse = skip()
		block = append(block, test)
	}
	return append(block, action), nil
}
