package frontend

import (
	"strings"
	"testing"
)

// TestStopSignal checks STOPSIGNAL as Docker 20.10 does: a known name
// (any case, SIG optional) or a number is kept as written, anything else
// is refused.
func TestStopSignal(t *testing.T) {
	for _, sig := range []string{"SIGTERM", "KILL", "9", "sigusr1", "SIGRTMIN+3"} {
		plan, err := convert(t, "FROM busybox\nSTOPSIGNAL "+sig+"\n", Options{})
		if err != nil || plan.Config.Config.StopSignal != sig {
			t.Errorf("STOPSIGNAL %s: %v, config %q", sig, err, plan.Config.Config.StopSignal)
		}
	}
	for _, sig := range []string{"BOGUS", "0"} {
		if _, err := convert(t, "FROM busybox\nSTOPSIGNAL "+sig+"\n", Options{}); err == nil || !strings.Contains(err.Error(), "Dockerfile:2") {
			t.Errorf("STOPSIGNAL %s: %v, want an error at line 2", sig, err)
		}
	}
}

// TestHealthcheckZeroFlags refuses --retries=0 and zero durations, as
// Docker 20.10 does; other values pass.
func TestHealthcheckZeroFlags(t *testing.T) {
	for _, flags := range []string{"--retries=0", "--start-period=0s", "--interval=0s", "--timeout=0"} {
		if _, err := convert(t, "FROM busybox\nHEALTHCHECK "+flags+" CMD true\n", Options{}); err == nil || !strings.Contains(err.Error(), "Dockerfile:2") {
			t.Errorf("HEALTHCHECK %s: %v, want an error at line 2", flags, err)
		}
	}
	if _, err := convert(t, "FROM busybox\nHEALTHCHECK --retries=1 --start-period=2s CMD true\n", Options{}); err != nil {
		t.Error(err)
	}
}
