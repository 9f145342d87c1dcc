package frontend

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/moby/buildkit/frontend/dockerfile/parser"
)

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
