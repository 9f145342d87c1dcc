package frontend

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/moby/buildkit/frontend/dockerfile/parser"
)

// flags20 returns the flags Docker 20.10's builder knows for an
// instruction that takes flags (lower case), and false for the others. The
// newer parser kiln uses knows more (RUN --network and --security, COPY and
// ADD --link, ADD --checksum and --keep-git-dir, HEALTHCHECK
// --start-interval, ...), which 20.10 refuses as unknown flags, and so
// does kiln.
func flags20(verb string) ([]string, bool) {
	switch verb {
	case "from":
		return []string{"platform"}, true
	case "run":
		return []string{"mount"}, true
	case "copy":
		return []string{"from", "chown", "chmod"}, true
	case "add":
		return []string{"chown", "chmod"}, true
	case "healthcheck":
		return []string{"interval", "timeout", "start-period", "retries"}, true
	}
	return nil, false
}

// checkFlags refuses the flags of n that Docker 20.10's builder does not
// know (see flags20). Instructions missing from flags20 are left to the
// parser, which refuses any flag on them.
func checkFlags(n *parser.Node) error {
	verb := strings.ToLower(n.Value)
	known, ok := flags20(verb)
	if !ok {
		return nil
	}
	for _, f := range n.Flags {
		name, _, _ := strings.Cut(strings.TrimPrefix(f, "--"), "=")
		if !slices.Contains(known, name) {
			hint := ""
			if verb == "run" && name == "network" {
				hint = "; choose the network of every RUN with kiln build --network"
			}
			return fmt.Errorf("unknown flag %s --%s: kiln follows the Dockerfile syntax of Docker 20.10, which has no such flag%s", strings.ToUpper(verb), name, hint)
		}
	}
	return nil
}

// checkHealthcheckFlags refuses what Docker 20.10's builder refuses in
// HEALTHCHECK options and the newer parser kiln uses accepts: --retries=0
// and zero durations ("0s"), which 20.10 reads as "less than 1ms".
func checkHealthcheckFlags(n *parser.Node) error {
	if !strings.EqualFold(n.Value, "healthcheck") {
		return nil
	}
	for _, f := range n.Flags {
		name, val, ok := strings.Cut(strings.TrimPrefix(f, "--"), "=")
		if !ok {
			continue
		}
		switch name {
		case "retries":
			if r, err := strconv.ParseInt(val, 10, 32); err == nil && r == 0 {
				return errors.New("--retries must be at least 1 (not 0)")
			}
		case "interval", "timeout", "start-period", "start-interval":
			if d, err := time.ParseDuration(val); err == nil && d == 0 {
				return fmt.Errorf("interval %q cannot be less than 1ms", name)
			}
		}
	}
	return nil
}
