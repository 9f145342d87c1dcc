package linux

import "testing"

func BenchmarkSeccompPolicy(b *testing.B) {
	for b.Loop() {
		p, err := seccompPolicy(defaultCapMask())
		if err != nil {
			b.Fatal(err)
		}
		if _, err := p.Assemble(); err != nil {
			b.Fatal(err)
		}
	}
}
