package containers

import "errors"

// ErrDetached is what Session.Stream returns when the user typed the
// detach keys (Streams.DetachKeys): the session ended, the process keeps
// running. Its text is docker's for the same event.
var ErrDetached = errors.New("read escape sequence")

// detachFilter watches a stdin stream for the detach key sequence. Bytes
// that may begin the sequence are held back until later bytes decide: the
// sequence itself never reaches the process, anything else does, in order.
// The search is Knuth-Morris-Pratt's, so a sequence whose start repeats
// ("a,a,b" in "aaab") is found where it first ends.
type detachFilter struct {
	keys []byte
	fail []int // fail[i]: the longest proper prefix of keys[:i+1] that is also its suffix
	pos  int   // how many keys are matched and held back
}

func newDetachFilter(keys []byte) *detachFilter {
	fail := make([]int, len(keys))
	for i, k := 1, 0; i < len(keys); i++ {
		for k > 0 && keys[i] != keys[k] {
			k = fail[k-1]
		}
		if keys[i] == keys[k] {
			k++
		}
		fail[i] = k
	}
	return &detachFilter{keys: keys, fail: fail}
}

// feed appends to out the bytes of p that go to the process and reports
// whether the sequence was completed; the bytes after it are dropped.
func (f *detachFilter) feed(out, p []byte) ([]byte, bool) {
	for _, b := range p {
		for f.pos > 0 && f.keys[f.pos] != b {
			// The held bytes that can no longer start a match go out.
			next := f.fail[f.pos-1]
			out = append(out, f.keys[:f.pos-next]...)
			f.pos = next
		}
		if f.keys[f.pos] != b {
			out = append(out, b)
			continue
		}
		f.pos++
		if f.pos == len(f.keys) {
			f.pos = 0
			return out, true
		}
	}
	return out, false
}

// held returns the bytes held back as a possible start of the sequence
// and forgets them: what the process gets when stdin ends in between.
func (f *detachFilter) held() []byte {
	h := f.keys[:f.pos]
	f.pos = 0
	return h
}
