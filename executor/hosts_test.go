package executor

import "testing"

func TestParseExtraHost(t *testing.T) {
	for _, tc := range []struct{ in, name, ip string }{
		{"db 10.0.0.7", "db", "10.0.0.7"},
		{"reg:10.1.2.3", "reg", "10.1.2.3"},
		{"eq=192.168.0.1", "eq", "192.168.0.1"},
		{"v6:::1", "v6", "::1"},
		{"br:[fe80::1]", "br", "fe80::1"},
	} {
		name, ip, err := ParseExtraHost(tc.in)
		if err != nil || name != tc.name || ip.String() != tc.ip {
			t.Errorf("ParseExtraHost(%q) = %q, %v, %v; want %q %q", tc.in, name, ip, err, tc.name, tc.ip)
		}
	}
	for _, bad := range []string{"noip", ":1.2.3.4", "name:notanip", "a b:1.2.3.4", "a b c"} {
		if _, _, err := ParseExtraHost(bad); err == nil {
			t.Errorf("ParseExtraHost(%q) accepted", bad)
		}
	}
}
