package containers

import (
	"bytes"
	"testing"
)

func TestDetachFilter(t *testing.T) {
	pq := []byte{0x10, 0x11} // Ctrl-P Ctrl-Q
	tests := []struct {
		name    string
		keys    []byte
		reads   []string
		want    string // what reaches the process
		detach  bool
		pending string // held back at the end
	}{
		{"plain", pq, []string{"ls\r"}, "ls\r", false, ""},
		{"sequence", pq, []string{"ab\x10\x11cd"}, "ab", true, ""},
		{"split over reads", pq, []string{"ab\x10", "\x11cd"}, "ab", true, ""},
		{"one key per read", pq, []string{"\x10", "\x11"}, "", true, ""},
		{"first key alone is held", pq, []string{"x\x10"}, "x", false, "\x10"},
		{"first key then other", pq, []string{"\x10", "a"}, "\x10a", false, ""},
		{"second key alone", pq, []string{"\x11\x11"}, "\x11\x11", false, ""},
		{"first key twice then second", pq, []string{"\x10\x10\x11"}, "\x10", true, ""},
		{"three keys", []byte("abc"), []string{"xab", "ac", "abc!"}, "xabac", true, ""},
		{"one key", []byte{0x01}, []string{"hi\x01there"}, "hi", true, ""},
		{"repeating start", []byte("001"), []string{"0001001"}, "0", true, ""},
		{"repeating start held", []byte("aab"), []string{"aaa"}, "a", false, "aa"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newDetachFilter(tc.keys)
			var got []byte
			detached := false
			for _, r := range tc.reads {
				var hit bool
				got, hit = f.feed(got, []byte(r))
				if hit {
					detached = true
					break
				}
			}
			if string(got) != tc.want || detached != tc.detach {
				t.Errorf("forwarded %q, detached %v; want %q, %v", got, detached, tc.want, tc.detach)
			}
			if h := f.held(); string(h) != tc.pending {
				t.Errorf("held back %q, want %q", h, tc.pending)
			}
		})
	}
}

// FuzzDetachFilter checks that the filter loses and reorders nothing: the
// bytes forwarded plus those held back are the input up to the end of the
// sequence, less the sequence.
func FuzzDetachFilter(f *testing.F) {
	f.Add([]byte{0x10, 0x11}, []byte("ab\x10\x11cd"), 3)
	f.Add([]byte("aab"), []byte("aaab"), 1)
	f.Fuzz(func(t *testing.T, keys, in []byte, split int) {
		if len(keys) == 0 || len(keys) > 8 {
			return
		}
		d := newDetachFilter(keys)
		if split < 0 {
			split = -split
		}
		split %= len(in) + 1
		var out []byte
		out, hit := d.feed(out, in[:split])
		if !hit {
			out, hit = d.feed(out, in[split:])
		}
		if !hit {
			out = append(out, d.held()...)
			if !bytes.Equal(out, in) {
				t.Fatalf("keys %q: forwarded %q, input %q", keys, out, in)
			}
			return
		}
		// The input holds out followed by the keys.
		i := bytes.Index(in, keys)
		if i < 0 || !bytes.HasPrefix(in, out) {
			t.Fatalf("keys %q: detached on %q, forwarded %q", keys, in, out)
		}
		if len(out) != i {
			t.Fatalf("keys %q: forwarded %q, want the input up to the first sequence at %d in %q", keys, out, i, in)
		}
	})
}
