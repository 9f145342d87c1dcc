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

func TestResolvConf(t *testing.T) {
	host := []byte("# generated\nnameserver 10.0.0.1\nnameserver 10.0.0.2\nsearch corp.example lan\noptions ndots:1\n")
	tests := []struct {
		name                 string
		dns, search, options []string
		want                 string
	}{
		{"none given", nil, nil, nil, string(host)},
		{"dns", []string{"1.1.1.1"}, nil, nil, "search corp.example lan\nnameserver 1.1.1.1\noptions ndots:1\n"},
		{"search and options", nil, []string{"a.example"}, []string{"ndots:2", "timeout:1"}, "search a.example\nnameserver 10.0.0.1\nnameserver 10.0.0.2\noptions ndots:2 timeout:1\n"},
		{"no search", nil, []string{"."}, nil, "nameserver 10.0.0.1\nnameserver 10.0.0.2\noptions ndots:1\n"},
	}
	for _, tc := range tests {
		if got := string(ResolvConf(host, tc.dns, tc.search, tc.options)); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
}
