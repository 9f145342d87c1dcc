package containers

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// RestartPolicy is docker's --restart: "no", "on-failure[:N]", "always"
// (and "unless-stopped", which kiln treats as always).
type RestartPolicy struct {
	Name string `json:"Name"`
	// MaxRetries bounds on-failure restarts; 0 means no limit.
	MaxRetries int `json:"MaximumRetryCount"`
}

// ParseRestartPolicy reads a --restart value.
func ParseRestartPolicy(s string) (RestartPolicy, error) {
	name, count, hasCount := strings.Cut(s, ":")
	switch name {
	case "", "no":
		if hasCount {
			break
		}
		return RestartPolicy{Name: "no"}, nil
	case "always", "unless-stopped":
		if hasCount {
			return RestartPolicy{}, fmt.Errorf("--restart=%s: a retry count only goes with on-failure", s)
		}
		return RestartPolicy{Name: name}, nil
	case "on-failure":
		p := RestartPolicy{Name: name}
		if hasCount {
			n, err := strconv.Atoi(count)
			if err != nil || n < 0 {
				return RestartPolicy{}, fmt.Errorf("--restart=%s: the retry count must be a number >= 0", s)
			}
			p.MaxRetries = n
		}
		return p, nil
	}
	return RestartPolicy{}, fmt.Errorf("--restart=%s: want no, on-failure[:N], always or unless-stopped", s)
}

// ShouldRestart says whether a container that exited with code, after
// restarts restarts so far, is started again. A container stopped by the
// user (stop, kill) is never restarted.
func (p RestartPolicy) ShouldRestart(code, restarts int, stoppedByUser bool) bool {
	if stoppedByUser {
		return false
	}
	switch p.Name {
	case "always", "unless-stopped":
		return true
	case "on-failure":
		return code != 0 && (p.MaxRetries == 0 || restarts < p.MaxRetries)
	}
	return false
}

// RestartDelay is how long to wait before restart number n (0-based):
// 100ms doubling up to a minute, like docker.
func RestartDelay(n int) time.Duration {
	d := 100 * time.Millisecond
	for i := 0; i < n && d < time.Minute; i++ {
		d *= 2
	}
	return min(d, time.Minute)
}

// String is the policy as --restart takes it.
func (p RestartPolicy) String() string {
	if p.Name == "on-failure" && p.MaxRetries > 0 {
		return fmt.Sprintf("on-failure:%d", p.MaxRetries)
	}
	if p.Name == "" {
		return "no"
	}
	return p.Name
}
