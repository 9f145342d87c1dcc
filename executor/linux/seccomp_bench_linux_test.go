package linux

import "testing"

func BenchmarkSeccompPolicy(b *testing.B) {
	for b.Loop() {
		if _, err := seccompInstructions(defaultCapMask()); err != nil {
			b.Fatal(err)
		}
	}
}
