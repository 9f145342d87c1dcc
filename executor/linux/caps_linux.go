package linux

import (
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// capNames maps capability names without the CAP_ prefix to their numbers.
var capNames = map[string]uint{
	"CHOWN": unix.CAP_CHOWN, "DAC_OVERRIDE": unix.CAP_DAC_OVERRIDE, "DAC_READ_SEARCH": unix.CAP_DAC_READ_SEARCH,
	"FOWNER": unix.CAP_FOWNER, "FSETID": unix.CAP_FSETID, "KILL": unix.CAP_KILL, "SETGID": unix.CAP_SETGID,
	"SETUID": unix.CAP_SETUID, "SETPCAP": unix.CAP_SETPCAP, "LINUX_IMMUTABLE": unix.CAP_LINUX_IMMUTABLE,
	"NET_BIND_SERVICE": unix.CAP_NET_BIND_SERVICE, "NET_BROADCAST": unix.CAP_NET_BROADCAST,
	"NET_ADMIN": unix.CAP_NET_ADMIN, "NET_RAW": unix.CAP_NET_RAW, "IPC_LOCK": unix.CAP_IPC_LOCK,
	"IPC_OWNER": unix.CAP_IPC_OWNER, "SYS_MODULE": unix.CAP_SYS_MODULE, "SYS_RAWIO": unix.CAP_SYS_RAWIO,
	"SYS_CHROOT": unix.CAP_SYS_CHROOT, "SYS_PTRACE": unix.CAP_SYS_PTRACE, "SYS_PACCT": unix.CAP_SYS_PACCT,
	"SYS_ADMIN": unix.CAP_SYS_ADMIN, "SYS_BOOT": unix.CAP_SYS_BOOT, "SYS_NICE": unix.CAP_SYS_NICE,
	"SYS_RESOURCE": unix.CAP_SYS_RESOURCE, "SYS_TIME": unix.CAP_SYS_TIME, "SYS_TTY_CONFIG": unix.CAP_SYS_TTY_CONFIG,
	"MKNOD": unix.CAP_MKNOD, "LEASE": unix.CAP_LEASE, "AUDIT_WRITE": unix.CAP_AUDIT_WRITE,
	"AUDIT_CONTROL": unix.CAP_AUDIT_CONTROL, "SETFCAP": unix.CAP_SETFCAP, "MAC_OVERRIDE": unix.CAP_MAC_OVERRIDE,
	"MAC_ADMIN": unix.CAP_MAC_ADMIN, "SYSLOG": unix.CAP_SYSLOG, "WAKE_ALARM": unix.CAP_WAKE_ALARM,
	"BLOCK_SUSPEND": unix.CAP_BLOCK_SUSPEND, "AUDIT_READ": unix.CAP_AUDIT_READ, "PERFMON": unix.CAP_PERFMON,
	"BPF": unix.CAP_BPF, "CHECKPOINT_RESTORE": unix.CAP_CHECKPOINT_RESTORE,
}

// defaultCapMask is defaultCaps as a bit mask.
func defaultCapMask() uint64 {
	var m uint64
	for _, c := range defaultCaps {
		m |= 1 << c
	}
	return m
}

// capMask applies add and drop to Docker's default set like docker run's
// --cap-add and --cap-drop: names with or without CAP_, any case; "ALL" in
// add starts from every capability, "ALL" in drop from none.
func capMask(add, drop []string) (uint64, error) {
	parse := func(names []string) (mask uint64, all bool, err error) {
		for _, n := range names {
			n = strings.TrimPrefix(strings.ToUpper(strings.TrimSpace(n)), "CAP_")
			if n == "ALL" {
				all = true
				continue
			}
			c, ok := capNames[n]
			if !ok {
				return 0, false, fmt.Errorf("unknown capability %q", n)
			}
			mask |= 1 << c
		}
		return mask, all, nil
	}
	addMask, addAll, err := parse(add)
	if err != nil {
		return 0, err
	}
	dropMask, dropAll, err := parse(drop)
	if err != nil {
		return 0, err
	}
	set := defaultCapMask()
	switch {
	case addAll:
		set = allCaps()
	case dropAll:
		set = 0
	}
	if addAll {
		return set &^ dropMask, nil
	}
	return (set | addMask) &^ dropMask, nil
}

// allCaps is every capability the kernel knows that kiln's bounding set
// holds.
func allCaps() uint64 {
	last := uint64(unix.CAP_LAST_CAP)
	if b, err := os.ReadFile("/proc/sys/kernel/cap_last_cap"); err == nil {
		if n, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 8); err == nil && n < 64 {
			last = n
		}
	}
	all := uint64(1)<<(last+1) - 1
	// Only what kiln's own bounding set holds can be given (some hosts
	// run everything without CAP_SYS_RESOURCE, say); asking for more fails
	// the start.
	for c := uint64(0); c <= last; c++ {
		if r, err := unix.PrctlRetInt(unix.PR_CAPBSET_READ, uintptr(c), 0, 0, 0); err == nil && r == 0 {
			all &^= 1 << c
		}
	}
	return all
}
