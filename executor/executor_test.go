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
