// Command kiln-init is the container init of kiln's RUN steps and
// containers, as a binary of its own: it links the executor alone, so it
// starts in a fraction of the time kiln takes. `make kiln` builds it beside
// kiln with the same build token; kiln starts it only then (see
// cmd/internal/initbin) and otherwise runs itself as the init.
package main

import (
	"fmt"
	"os"

	"github.com/kiln-build/kiln/executor/linux"
)

func main() {
	if !linux.IsInit() {
		fmt.Fprintln(os.Stderr, "kiln-init: this is the container init of kiln; kiln starts it, it is not a command")
		os.Exit(2)
	}
	// No handlers: kiln starts itself for steps that run a function.
	linux.RunInit(nil)
	os.Exit(125)
}
