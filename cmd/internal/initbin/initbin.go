// Package initbin finds kiln-init, the small container init that `make
// kiln` builds beside kiln.
//
// Every container kiln starts begins as a copy of a Go program that sets up
// its namespaces, mounts and process. kiln itself can be that program (it
// re-executes /proc/self/exe), but the Go runtime and package start of a
// binary as large as kiln costs ~20 ms on a small VM, against ~8 ms for
// kiln-init, which links the executor alone. kiln uses kiln-init only when
// it was built from the same sources: both carry a build token, set with
// -ldflags "-X .../initbin.buildToken=T", and kiln reads the token kiln-init
// was linked with from its build information before using it. A kiln built
// without a token (plain go build) always uses itself.
package initbin

import (
	"debug/buildinfo"
	"os"
	"path/filepath"
	"runtime"
	"strings"
)

// Name is kiln-init's file name, looked up in the directory of the running
// executable.
const Name = "kiln-init"

// ShimName is the file name of kiln-shim, the container monitor binary
// built the same way (it links the executor and the container store).
const ShimName = "kiln-shim"

// buildToken is set by the linker to the same value in kiln and kiln-init
// when they are built together; empty otherwise.
var buildToken string

// tokenFlag is how the token appears in a binary's -ldflags.
const tokenFlag = "github.com/kiln-build/kiln/cmd/internal/initbin.buildToken="

// Find returns the path of a kiln-init beside the running executable that
// was built with this binary's token and Go version, or "" when there is
// none (or this binary has no token).
func Find() string { return FindProgram(Name) }

// FindProgram is Find for another of kiln's binaries, by file name.
func FindProgram(name string) string {
	if buildToken == "" {
		return ""
	}
	exe, err := os.Executable()
	if err != nil {
		return ""
	}
	p := filepath.Join(filepath.Dir(exe), name)
	if !Matches(p, buildToken) {
		return ""
	}
	return p
}

// Matches reports whether the binary at path is a Go program built with
// the running Go version and linked with token as its build token.
func Matches(path, token string) bool {
	if token == "" {
		return false
	}
	bi, err := buildinfo.ReadFile(path)
	if err != nil || bi.GoVersion != runtime.Version() {
		return false
	}
	for _, s := range bi.Settings {
		if s.Key != "-ldflags" {
			continue
		}
		for _, f := range strings.Fields(s.Value) {
			if strings.TrimPrefix(strings.Trim(f, `"'`), "-X=") == tokenFlag+token {
				return true
			}
		}
	}
	return false
}
