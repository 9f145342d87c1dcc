package main

import (
	"runtime/debug"
	"strings"
	"testing"

	"github.com/spf13/pflag"
	"golang.org/x/sys/unix"

	"github.com/kiln-build/kiln/cmd/internal/app"
	"github.com/kiln-build/kiln/executor"
	"github.com/kiln-build/kiln/executor/containers"
)

func TestPsFilter(t *testing.T) {
	r := &containers.Record{
		Config: containers.Config{ID: "abcdef0123", Name: "web-1", Image: "busybox", Labels: map[string]string{"tier": "front"}},
		State:  containers.State{Status: containers.Running},
	}
	tests := []struct {
		filters []string
		want    bool
		wantErr bool
	}{
		{nil, true, false},
		{[]string{"status=running"}, true, false},
		{[]string{"status=exited"}, false, false},
		{[]string{"status=exited", "status=running"}, true, false},
		{[]string{"name=web"}, true, false},
		{[]string{"name=db"}, false, false},
		{[]string{"id=abc"}, true, false},
		{[]string{"id=bcd"}, false, false},
		{[]string{"label=tier"}, true, false},
		{[]string{"label=tier=back"}, false, false},
		{[]string{"ancestor=busybox", "status=running"}, true, false},
		{[]string{"status=sleeping"}, false, true},
		{[]string{"color=red"}, false, true},
		{[]string{"status"}, false, true},
	}
	for _, tc := range tests {
		match, err := psFilter(tc.filters)
		if (err != nil) != tc.wantErr {
			t.Errorf("psFilter(%q) error %v, want error %v", tc.filters, err, tc.wantErr)
			continue
		}
		if err == nil && match(r) != tc.want {
			t.Errorf("psFilter(%q) matched %v, want %v", tc.filters, !tc.want, tc.want)
		}
	}
}

func TestSplitContainerPath(t *testing.T) {
	tests := []struct {
		in       string
		ctr, p   string
		isCtrRef bool
	}{
		{"web:/etc/hosts", "web", "/etc/hosts", true},
		{"/tmp/x", "", "/tmp/x", false},
		{"./a:b", "", "./a:b", false},
		{"-", "", "-", false},
		{"file", "", "file", false},
	}
	for _, tc := range tests {
		ctr, p, ok := splitContainerPath(tc.in)
		if ctr != tc.ctr || p != tc.p || ok != tc.isCtrRef {
			t.Errorf("splitContainerPath(%q) = %q %q %v", tc.in, ctr, p, ok)
		}
	}
}

func TestBuildVersion(t *testing.T) {
	tests := []struct {
		name          string
		info          *debug.BuildInfo
		ok            bool
		version, want string
	}{
		{"no info", nil, false, "devel", "unknown"},
		{"clean tree", &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}, Settings: []debug.BuildSetting{
			{Key: "vcs.revision", Value: "7ece39512345678"}, {Key: "vcs.modified", Value: "false"}}}, true, "devel", "7ece395"},
		{"dirty tree", &debug.BuildInfo{Settings: []debug.BuildSetting{
			{Key: "vcs.revision", Value: "7ece39512345678"}, {Key: "vcs.modified", Value: "true"}}}, true, "devel", "7ece395-dirty"},
		{"go install", &debug.BuildInfo{Main: debug.Module{Version: "v0.3.0"}}, true, "v0.3.0", "unknown"},
	}
	for _, tc := range tests {
		v, c := buildVersion(tc.info, tc.ok)
		if v != tc.version || c != tc.want {
			t.Errorf("%s: buildVersion = %q, %q; want %q, %q", tc.name, v, c, tc.version, tc.want)
		}
	}
}

func TestParseExpose(t *testing.T) {
	tests := []struct {
		in   string
		want []string
		err  bool
	}{
		{"80", []string{"80/tcp"}, false},
		{"53/UDP", []string{"53/udp"}, false},
		{"7000-7002/sctp", []string{"7000/sctp", "7001/sctp", "7002/sctp"}, false},
		{"80/icmp", nil, true}, {"x", nil, true}, {"90-80", nil, true}, {"70000", nil, true}, {"", nil, true},
	}
	for _, tc := range tests {
		got, err := parseExpose(tc.in)
		if (err != nil) != tc.err || strings.Join(got, ",") != strings.Join(tc.want, ",") {
			t.Errorf("parseExpose(%q) = %q, %v; want %q, error %v", tc.in, got, err, tc.want, tc.err)
		}
	}
}

func TestHealthFlags(t *testing.T) {
	parse := func(args ...string) (*containers.Healthcheck, error) {
		var f containerFlags
		fl := pflag.NewFlagSet("run", pflag.ContinueOnError)
		addContainerFlags(fl, &f)
		if err := fl.Parse(args); err != nil {
			t.Fatal(err)
		}
		return f.health.override(fl)
	}
	if hc, err := parse(); hc != nil || err != nil {
		t.Errorf("no flags: %+v, %v; want the image's (nil)", hc, err)
	}
	if hc, err := parse("--no-healthcheck"); err != nil || hc == nil || strings.Join(hc.Test, " ") != "NONE" {
		t.Errorf("--no-healthcheck: %+v, %v", hc, err)
	}
	if hc, err := parse("--health-cmd", "curl -f x", "--health-retries", "2"); err != nil || hc == nil || strings.Join(hc.Test, "|") != "CMD-SHELL|curl -f x" || hc.Retries != 2 {
		t.Errorf("--health-cmd: %+v, %v", hc, err)
	}
	for _, bad := range [][]string{{"--no-healthcheck", "--health-retries", "1"}, {"--health-interval", "-1s"}, {"--health-retries", "-1"}} {
		if _, err := parse(bad...); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

func TestParseUlimit(t *testing.T) {
	tests := []struct {
		in   string
		want executor.Ulimit
		err  bool
	}{
		{"nofile=1024", executor.Ulimit{Resource: unix.RLIMIT_NOFILE, Soft: 1024, Hard: 1024}, false},
		{"nofile=512:1024", executor.Ulimit{Resource: unix.RLIMIT_NOFILE, Soft: 512, Hard: 1024}, false},
		{"core=-1", executor.Ulimit{Resource: unix.RLIMIT_CORE, Soft: unix.RLIM_INFINITY, Hard: unix.RLIM_INFINITY}, false},
		{"nofile=2048:1024", executor.Ulimit{}, true},
		{"bogus=1", executor.Ulimit{}, true},
		{"nofile", executor.Ulimit{}, true},
		{"nofile=x", executor.Ulimit{}, true},
	}
	for _, tc := range tests {
		got, err := parseUlimit(tc.in)
		if (err != nil) != tc.err || got != tc.want {
			t.Errorf("parseUlimit(%q) = %+v, %v; want %+v, error %v", tc.in, got, err, tc.want, tc.err)
		}
	}
}

func TestLogFlags(t *testing.T) {
	req := func(args ...string) (app.ContainerRequest, error) {
		var f containerFlags
		fl := pflag.NewFlagSet("run", pflag.ContinueOnError)
		addContainerFlags(fl, &f)
		if err := fl.Parse(append(args, "busybox")); err != nil {
			t.Fatal(err)
		}
		return f.request(fl, fl.Args())
	}
	r, err := req("--log-driver", "json-file", "--log-opt", "max-size=1k", "--log-opt", "max-file=2", "--log-opt", "compress=true")
	if err != nil || r.LogMaxSize != 1024 || r.LogMaxFiles != 2 {
		t.Errorf("log options: %d, %d, %v; want 1024, 2", r.LogMaxSize, r.LogMaxFiles, err)
	}
	for _, bad := range [][]string{{"--log-driver", "syslog"}, {"--log-opt", "max-file=0"}, {"--log-opt", "max-size=x"}, {"--log-opt", "bogus=1"}} {
		if _, err := req(bad...); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}
