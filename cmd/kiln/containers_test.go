package main

import (
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
