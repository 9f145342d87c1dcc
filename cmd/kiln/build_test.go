package main

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseSSH(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "agent.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	key := filepath.Join(dir, "id_ed25519")
	os.WriteFile(key, []byte("not a socket"), 0o600)
	t.Setenv("SSH_AUTH_SOCK", sock)
	got, closeAgents, err := parseSSH([]string{"default", "deploy=" + sock})
	if err != nil || len(got) != 2 || got["default"] != sock || got["deploy"] != sock {
		t.Fatalf("parseSSH = %v, %v", got, err)
	}
	closeAgents()
	for _, tc := range []struct{ spec, want string }{
		{"=" + sock, "no id"},
		{"default=" + key, "not a private key"},
		{"default=" + sock + "," + key, "not a private key"},
		{"default=" + filepath.Join(dir, "missing"), "no such file"},
	} {
		if _, _, err := parseSSH([]string{tc.spec}); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("parseSSH(%q) = %v, want an error with %q", tc.spec, err, tc.want)
		}
	}
	t.Setenv("SSH_AUTH_SOCK", "")
	if _, _, err := parseSSH([]string{"default"}); err == nil || !strings.Contains(err.Error(), "SSH_AUTH_SOCK") {
		t.Errorf("parseSSH(default) without SSH_AUTH_SOCK: %v", err)
	}
}

func TestParseAddHosts(t *testing.T) {
	got, err := parseAddHosts([]string{"reg:10.1.2.3", "v6:::1", "eq=192.168.0.1", "br:[fe80::1]"})
	want := []string{"reg 10.1.2.3", "v6 ::1", "eq 192.168.0.1", "br fe80::1"}
	if err != nil || strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("parseAddHosts = %q, %v; want %q", got, err, want)
	}
	for _, bad := range []string{"noip", ":1.2.3.4", "name:notanip", "a b:1.2.3.4"} {
		if _, err := parseAddHosts([]string{bad}); err == nil {
			t.Errorf("parseAddHosts(%q) accepted", bad)
		}
	}
}

// TestBuildClassicFlags checks that docker build's classic-builder flags,
// which Docker 20.10's BuildKit builder takes and ignores, parse, and that
// --squash and --security-opt are refused as there.
func TestBuildClassicFlags(t *testing.T) {
	c := &cli{}
	cmd := c.buildCommand()
	args := []string{"-m", "64m", "--memory-swap", "-1", "--shm-size", "64m", "-c", "512", "--cpu-period", "100000",
		"--cpu-quota", "50000", "--cpuset-cpus", "0", "--cpuset-mems", "0", "--isolation", "default",
		"--cgroup-parent", "p", "--ulimit", "nofile=1024:1024", "--compress", "--disable-content-trust=false", "--rm=false", "--force-rm"}
	if err := cmd.ParseFlags(args); err != nil {
		t.Fatalf("parse %q: %v", args, err)
	}
	for _, refused := range [][]string{{"--squash"}, {"--security-opt", "seccomp=unconfined"}} {
		cmd := c.buildCommand()
		if err := cmd.ParseFlags(refused); err != nil {
			t.Fatalf("parse %q: %v", refused, err)
		}
		if err := cmd.RunE(cmd, []string{t.TempDir()}); err == nil || !strings.Contains(err.Error(), refused[0]) {
			t.Errorf("build %q: %v, want an error naming the flag", refused, err)
		}
	}
}
