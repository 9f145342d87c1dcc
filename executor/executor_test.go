package executor

import "testing"

func TestCheckSysctl(t *testing.T) {
	for _, tc := range []struct {
		name, value    string
		ownNet, ownIPC bool
		ok             bool
	}{
		{"net.ipv4.ip_forward", "1", true, true, true},
		{"net.ipv4.ip_forward", "1", false, true, false},
		{"kernel.shmmax", "1", true, true, true},
		{"kernel.shmmax", "1", true, false, false},
		{"fs.mqueue.msg_max", "20", false, true, true},
		{"kernel.hostname", "x", true, true, false},
		{"vm.swappiness", "1", true, true, false},
		{"net.ipv4.ip_forward", "1\n2", true, true, false},
		{"net/../../x", "1", true, true, false},
	} {
		err := CheckSysctl(tc.name, tc.value, tc.ownNet, tc.ownIPC)
		if (err == nil) != tc.ok {
			t.Errorf("CheckSysctl(%q, %q, net %v, ipc %v) = %v, want ok %v", tc.name, tc.value, tc.ownNet, tc.ownIPC, err, tc.ok)
		}
	}
}

func TestParseDeviceRule(t *testing.T) {
	for _, tc := range []struct {
		in           string
		typ          byte
		major, minor int64
		access       string
		ok           bool
	}{
		{"c 1:3 rwm", 'c', 1, 3, "rwm", true},
		{"b 7:* r", 'b', 7, -1, "r", true},
		{"a *:* m", 'a', -1, -1, "m", true},
		{"  c  10:229   rw ", 'c', 10, 229, "rw", true},
		{"x 1:2 r", 0, 0, 0, "", false},
		{"c 1 r", 0, 0, 0, "", false},
		{"c 1:3", 0, 0, 0, "", false},
		{"c 1:3 rx", 0, 0, 0, "", false},
		{"c -1:3 r", 0, 0, 0, "", false},
		{"c 99999999999:3 r", 0, 0, 0, "", false},
	} {
		typ, major, minor, access, err := ParseDeviceRule(tc.in)
		if (err == nil) != tc.ok || tc.ok && (typ != tc.typ || major != tc.major || minor != tc.minor || access != tc.access) {
			t.Errorf("ParseDeviceRule(%q) = %c %d %d %q %v", tc.in, typ, major, minor, access, err)
		}
	}
}
