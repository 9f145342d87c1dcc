package linux

import (
	"encoding/binary"
	"reflect"
	"runtime"
	"testing"

	seccomp "github.com/elastic/go-seccomp-bpf"
	"github.com/elastic/go-seccomp-bpf/arch"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

func TestSeccompConditions(t *testing.T) {
	tests := []struct {
		name    string
		args    []specs.LinuxSeccompArg
		want    []seccomp.ArgumentConditions
		wantErr bool
	}{
		{name: "none"},
		{
			name: "different arguments all hold",
			args: []specs.LinuxSeccompArg{{Index: 0, Value: 1, Op: specs.OpEqualTo}, {Index: 2, Value: 5, Op: specs.OpGreaterEqual}},
			want: []seccomp.ArgumentConditions{{
				{Argument: 0, Operation: seccomp.Equal, Value: 1},
				{Argument: 2, Operation: seccomp.GreaterOrEqual, Value: 5},
			}},
		},
		{
			name: "one argument twice is either",
			args: []specs.LinuxSeccompArg{{Index: 0, Value: 1, Op: specs.OpEqualTo}, {Index: 0, Value: 8, Op: specs.OpEqualTo}},
			want: []seccomp.ArgumentConditions{
				{{Argument: 0, Operation: seccomp.Equal, Value: 1}},
				{{Argument: 0, Operation: seccomp.Equal, Value: 8}},
			},
		},
		{
			name: "mask with no bit set",
			args: []specs.LinuxSeccompArg{{Index: 1, Value: unix.CLONE_NEWUSER, ValueTwo: 0, Op: specs.OpMaskedEqual}},
			want: []seccomp.ArgumentConditions{{{Argument: 1, Operation: seccomp.BitsNotSet, Value: unix.CLONE_NEWUSER}}},
		},
		{name: "mask with bits wanted", args: []specs.LinuxSeccompArg{{Index: 0, Value: 3, ValueTwo: 1, Op: specs.OpMaskedEqual}}, wantErr: true},
		{name: "unknown comparison", args: []specs.LinuxSeccompArg{{Index: 0, Op: "SCMP_CMP_BOGUS"}}, wantErr: true},
		{name: "argument out of range", args: []specs.LinuxSeccompArg{{Index: 6, Op: specs.OpEqualTo}}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := seccompConditions(tt.args)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, want error %v", err, tt.wantErr)
			}
			if !tt.wantErr && !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestPolicyFromProfile(t *testing.T) {
	nosys := uint(unix.ENOSYS)
	prof := &specs.LinuxSeccomp{
		DefaultAction: specs.ActErrno,
		Syscalls: []specs.LinuxSyscall{
			{Names: []string{"read", "write", "no_such_call"}, Action: specs.ActAllow},
			{Names: []string{"write", "close"}, Action: specs.ActAllow},
			{Names: []string{"personality"}, Action: specs.ActAllow, Args: []specs.LinuxSeccompArg{{Index: 0, Value: 0, Op: specs.OpEqualTo}}},
			{Names: []string{"clone3"}, Action: specs.ActErrno, ErrnoRet: &nosys},
		},
	}
	known := map[string]int{"read": 0, "write": 1, "close": 3, "personality": 135, "clone3": 435}
	p, err := policyFromProfile(prof, known)
	if err != nil {
		t.Fatal(err)
	}
	want := &seccomp.Policy{
		DefaultAction: seccomp.ActionErrno,
		Syscalls: []seccomp.SyscallGroup{
			{Action: seccomp.ActionErrno | seccomp.Action(unix.ENOSYS), Names: []string{"clone3"}},
			{Action: seccomp.ActionAllow, Names: []string{"read", "write", "close"}},
			{Action: seccomp.ActionAllow, NamesWithCondtions: []seccomp.NameWithConditions{
				{Name: "personality", Conditions: seccomp.ArgumentConditions{{Argument: 0, Operation: seccomp.Equal, Value: 0}}},
			}},
		},
	}
	if !reflect.DeepEqual(p, want) {
		t.Errorf("policy:\n%+v\nwant:\n%+v", p, want)
	}

	if _, err := policyFromProfile(&specs.LinuxSeccomp{DefaultAction: specs.ActTrace}, known); err == nil {
		t.Error("a trace default action was accepted")
	}
	if _, err := policyFromProfile(&specs.LinuxSeccomp{DefaultAction: specs.ActErrno,
		Syscalls: []specs.LinuxSyscall{{Names: []string{"no_such_call"}, Action: specs.ActAllow}}}, known); err == nil {
		t.Error("a profile naming no known call was accepted")
	}
}

// TestDefaultSeccompPolicy assembles Docker's profile for the default
// capabilities and for all of them: the one with CAP_SYS_ADMIN allows more.
func TestDefaultSeccompPolicy(t *testing.T) {
	size := func(caps uint64) int {
		prog, err := seccompInstructions(caps)
		if err != nil {
			t.Fatal(err)
		}
		if len(prog) > 4096 {
			t.Fatalf("%d instructions, more than the kernel takes", len(prog))
		}
		return len(prog)
	}
	if def, all := size(defaultCapMask()), size(allCaps()); all <= def {
		t.Errorf("all capabilities: %d instructions, default: %d; want more allowed with CAP_SYS_ADMIN", all, def)
	}
}

// TestSeccompProgramCached assembles a profile once per capability set,
// and refuses to load what is no BPF program.
func TestSeccompProgramCached(t *testing.T) {
	var sp seccompPrograms
	a, err := sp.program(defaultCapMask())
	if err != nil {
		t.Fatal(err)
	}
	if len(a) == 0 || len(a)%8 != 0 {
		t.Fatalf("program of %d bytes", len(a))
	}
	b, _ := sp.program(defaultCapMask())
	if &a[0] != &b[0] {
		t.Error("the same capabilities were assembled twice")
	}
	if c, _ := sp.program(allCaps()); len(c) <= len(a) {
		t.Errorf("all capabilities: %d bytes, default: %d; want more allowed", len(c), len(a))
	}
	if err := loadSeccomp(make([]byte, 12)); err == nil {
		t.Error("a program of 12 bytes was loaded")
	}
	if err := loadSeccomp(nil); err != nil {
		t.Errorf("no program: %v", err)
	}
}

// seccompData is a seccomp_data for the x/net/bpf VM, which loads words
// big-endian where the kernel loads them in native order: each 32-bit word
// is written big-endian at the offset the kernel reads it from.
func seccompData(archID uint32, nr int32, args ...uint64) []byte {
	b := make([]byte, 64)
	put := func(off int, v uint32) { binary.BigEndian.PutUint32(b[off:], v) }
	put(seccompNrOffset, uint32(nr))
	put(seccompArchOffset, archID)
	for i, a := range args {
		put(seccompArgsOffset+8*i+lowWord, uint32(a))
		put(seccompArgsOffset+8*i+4-lowWord, uint32(a>>32))
	}
	return b
}

// TestSeccompVerdicts runs the assembled filter in a BPF interpreter for
// both x86 ABIs: the same calls are allowed and refused on each, by number
// and by argument, and an unknown architecture gets the default.
func TestSeccompVerdicts(t *testing.T) {
	if runtime.GOARCH != "amd64" {
		t.Skip("the compat section is for amd64")
	}
	insts, err := seccompInstructions(defaultCapMask())
	if err != nil {
		t.Fatal(err)
	}
	vm, err := bpf.NewVM(insts)
	if err != nil {
		t.Fatal(err)
	}
	const (
		allow  = uint32(unix.SECCOMP_RET_ALLOW)
		eperm  = uint32(unix.SECCOMP_RET_ERRNO) | uint32(unix.EPERM)
		enosys = uint32(unix.SECCOMP_RET_ERRNO) | uint32(unix.ENOSYS)
	)
	x64, x86 := uint32(arch.X86_64.ID), uint32(arch.I386.ID)
	newUser := uint64(unix.CLONE_NEWUSER)
	tests := []struct {
		name string
		in   []byte
		want uint32
	}{
		{"x86_64 read", seccompData(x64, 0), allow},
		{"x86_64 unshare", seccompData(x64, 272), eperm},
		{"x86_64 clone", seccompData(x64, 56, uint64(unix.SIGCHLD)), allow},
		{"x86_64 clone newuser", seccompData(x64, 56, newUser), eperm},
		{"x86_64 clone3", seccompData(x64, 435), enosys},
		{"x86_64 personality 0", seccompData(x64, 135, 0), allow},
		{"x86_64 personality other", seccompData(x64, 135, 0x1234), eperm},
		{"i386 read", seccompData(x86, 3), allow},
		{"i386 exit_group", seccompData(x86, 252), allow},
		{"i386 socketcall", seccompData(x86, 102), allow},
		{"i386 unshare", seccompData(x86, 310), eperm},
		{"i386 clone", seccompData(x86, 120, uint64(unix.SIGCHLD)), allow},
		{"i386 clone newuser", seccompData(x86, 120, newUser), eperm},
		{"i386 clone3", seccompData(x86, 435), enosys},
		{"i386 personality 0", seccompData(x86, 136, 0), allow},
		{"i386 personality other", seccompData(x86, 136, 0x1234), eperm},
		{"i386 keyctl", seccompData(x86, 288), eperm},
		{"i386 unknown number", seccompData(x86, 4000), eperm},
		{"aarch64", seccompData(uint32(arch.AARCH64.ID), 63), eperm},
	}
	for _, tc := range tests {
		got, err := vm.Run(tc.in)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if uint32(got) != tc.want {
			t.Errorf("%s: %#x, want %#x", tc.name, uint32(got), tc.want)
		}
	}
}
