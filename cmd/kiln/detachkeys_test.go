package main

import (
	"bytes"
	"strings"
	"testing"
)

func TestParseDetachKeys(t *testing.T) {
	tests := []struct {
		in      string
		want    []byte
		wantErr string
	}{
		{"", []byte{0x10, 0x11}, ""},
		{"ctrl-p,ctrl-q", []byte{0x10, 0x11}, ""},
		{"ctrl-a", []byte{0x01}, ""},
		{"ctrl-z,x", []byte{0x1a, 'x'}, ""},
		{"ctrl-@,ctrl-[,ctrl-\\,ctrl-],ctrl-^,ctrl-_", []byte{0, 0x1b, 0x1c, 0x1d, 0x1e, 0x1f}, ""},
		{"a,b,c", []byte("abc"), ""},
		{",", nil, `unknown key ""`},
		{"DEL", []byte{0x7f}, ""},
		{"ctrl-P", nil, `unknown key "ctrl-P"`},
		{"ctrl-1", nil, `unknown key "ctrl-1"`},
		{"ctrl-", nil, `unknown key "ctrl-"`},
		{"ab", nil, `unknown key "ab"`},
		{"a,,b", nil, `unknown key ""`},
		{"ctrl-p,", nil, `unknown key ""`},
	}
	for _, tc := range tests {
		got, err := parseDetachKeys(tc.in)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("parseDetachKeys(%q) = %v, %v; want error with %s", tc.in, got, err, tc.wantErr)
			}
			continue
		}
		if err != nil || !bytes.Equal(got, tc.want) {
			t.Errorf("parseDetachKeys(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
}

func FuzzParseDetachKeys(f *testing.F) {
	for _, s := range []string{"", "ctrl-p,ctrl-q", "a,b", "DEL", "ctrl-", ",,"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		keys, err := parseDetachKeys(s)
		if err != nil {
			return
		}
		if s == "" {
			s = defaultDetachKeys
		}
		// One key per comma-separated item.
		if items := strings.Split(s, ","); len(items) != len(keys) {
			t.Fatalf("parseDetachKeys(%q) = %d keys for %d items", s, len(keys), len(items))
		}
	})
}
