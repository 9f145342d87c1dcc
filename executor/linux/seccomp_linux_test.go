package linux

import (
	"reflect"
	"testing"

	seccomp "github.com/elastic/go-seccomp-bpf"
	specs "github.com/opencontainers/runtime-spec/specs-go"
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
		p, err := seccompPolicy(caps)
		if err != nil {
			t.Fatal(err)
		}
		prog, err := p.Assemble()
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
