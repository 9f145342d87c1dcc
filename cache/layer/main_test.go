package layer

import (
	"flag"
	"os"
	"testing"
)

// TestMain shortens the fuzzer's minimization of new inputs from 60s to 5s
// unless -fuzzminimizetime is given: tar inputs are kilobytes long, and
// minimizing one can otherwise take a whole short -fuzztime run.
func TestMain(m *testing.M) {
	flag.Parse()
	set := false
	flag.Visit(func(f *flag.Flag) { set = set || f.Name == "test.fuzzminimizetime" })
	if f := flag.Lookup("test.fuzzminimizetime"); f != nil && !set {
		f.Value.Set("5s")
	}
	os.Exit(m.Run())
}
