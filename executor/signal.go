package executor

import (
	"fmt"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// Real-time signals as the C library numbers them (glibc keeps 32 and 33
// for itself), which is how Docker names them: RTMIN+n and RTMAX-n.
const (
	sigRTMin = 34
	sigRTMax = 64
)

// ParseSignal reads a signal name ("TERM", "SIGTERM", "sigkill",
// "SIGRTMIN+3") or number.
func ParseSignal(s string) (syscall.Signal, error) {
	if n, err := strconv.Atoi(s); err == nil {
		if n <= 0 || n > 64 {
			return 0, fmt.Errorf("invalid signal %q", s)
		}
		return syscall.Signal(n), nil
	}
	name := strings.ToUpper(s)
	if !strings.HasPrefix(name, "SIG") {
		name = "SIG" + name
	}
	if rt, ok := realTimeSignal(strings.TrimPrefix(name, "SIG")); ok {
		return rt, nil
	}
	sig := unix.SignalNum(name)
	if sig == 0 {
		return 0, fmt.Errorf("invalid signal %q", s)
	}
	return sig, nil
}

// realTimeSignal reads RTMIN, RTMIN+n, RTMAX and RTMAX-n.
func realTimeSignal(name string) (syscall.Signal, bool) {
	base, sign, rest := 0, 1, ""
	switch {
	case strings.HasPrefix(name, "RTMIN"):
		base, rest = sigRTMin, strings.TrimPrefix(name, "RTMIN")
		if rest != "" && rest[0] != '+' {
			return 0, false
		}
	case strings.HasPrefix(name, "RTMAX"):
		base, sign, rest = sigRTMax, -1, strings.TrimPrefix(name, "RTMAX")
		if rest != "" && rest[0] != '-' {
			return 0, false
		}
	default:
		return 0, false
	}
	n := 0
	if rest != "" {
		digits := rest[1:]
		if digits == "" || strings.Trim(digits, "0123456789") != "" || len(digits) > 2 {
			return 0, false
		}
		n, _ = strconv.Atoi(digits)
	}
	sig := base + sign*n
	if sig < sigRTMin || sig > sigRTMax {
		return 0, false
	}
	return syscall.Signal(sig), true
}
