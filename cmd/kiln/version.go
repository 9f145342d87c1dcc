package main

import (
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/spf13/cobra"
)

// linkedCommit is the commit the Makefile links in (-X main.linkedCommit),
// used when the binary carries no VCS stamp of Go's own.
var linkedCommit string

// buildVersion describes this binary from the build information Go
// embeds: the module version when installed with go install, "devel"
// otherwise, and the commit it was built from (marked "-dirty" when the
// tree had changes).
func buildVersion(info *debug.BuildInfo, ok bool) (version, commit string) {
	version, commit = "devel", "unknown"
	if linkedCommit != "" && linkedCommit != "-dirty" {
		commit = linkedCommit
	}
	if !ok || info == nil {
		return version, commit
	}
	if v := info.Main.Version; v != "" && v != "(devel)" {
		version = v
	}
	dirty := false
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			commit = s.Value
			if len(commit) > 7 {
				commit = commit[:7]
			}
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if dirty && commit != "unknown" {
		commit += "-dirty"
	}
	return version, commit
}

// versionLine is the line kiln --version prints, in docker --version's
// shape.
func versionLine() string {
	v, c := buildVersion(debug.ReadBuildInfo())
	return fmt.Sprintf("kiln version %s, build %s", v, c)
}

func (c *cli) versionCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Show the kiln version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			v, commit := buildVersion(debug.ReadBuildInfo())
			fmt.Fprintf(c.stdout, "Version:     %s\nGit commit:  %s\nGo version:  %s\nOS/Arch:     %s/%s\n",
				v, commit, runtime.Version(), runtime.GOOS, runtime.GOARCH)
			return nil
		},
	}
}
