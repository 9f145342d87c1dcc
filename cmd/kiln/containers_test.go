package main

import (
	"runtime/debug"
	"testing"

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

func TestParseMemory(t *testing.T) {
	tests := []struct {
		in   string
		want int64
		err  bool
	}{
		{"256m", 256 << 20, false}, {"1g", 1 << 30, false}, {"512k", 512 << 10, false}, {"1000", 1000, false},
		{"100b", 100, false}, {"1.5g", 3 << 29, false}, {"x", 0, true}, {"-1m", 0, true}, {"", 0, true},
	}
	for _, tc := range tests {
		got, err := parseMemory(tc.in)
		if (err != nil) != tc.err || got != tc.want {
			t.Errorf("parseMemory(%q) = %d, %v; want %d, error %v", tc.in, got, err, tc.want, tc.err)
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
