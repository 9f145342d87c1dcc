package executor

import (
	"syscall"
	"testing"
)

func TestParseSignal(t *testing.T) {
	tests := []struct {
		in   string
		want syscall.Signal
	}{
		{"TERM", syscall.SIGTERM}, {"SIGKILL", syscall.SIGKILL}, {"sigint", syscall.SIGINT}, {"9", syscall.SIGKILL}, {"hup", syscall.SIGHUP},
		{"SIGRTMIN+3", 37}, {"rtmin", 34}, {"RTMAX", 64}, {"SIGRTMAX-2", 62},
	}
	for _, tc := range tests {
		if got, err := ParseSignal(tc.in); err != nil || got != tc.want {
			t.Errorf("ParseSignal(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
	for _, bad := range []string{"", "NOPE", "0", "99", "RTMIN+31", "RTMAX-31", "RTMIN-1", "RTMAX+1", "RTMINX", "RTMIN+"} {
		if _, err := ParseSignal(bad); err == nil {
			t.Errorf("ParseSignal(%q) succeeded", bad)
		}
	}
}
