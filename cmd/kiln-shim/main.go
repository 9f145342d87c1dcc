// Command kiln-shim is the monitor of a kiln run container as a binary of
// its own: it links the executor and the container store alone, so it
// starts in about half the time kiln takes. `make kiln` builds it beside
// kiln with the same build token; kiln starts it only then (see
// cmd/internal/initbin) and otherwise runs itself as the shim.
package main

import (
	"fmt"
	"os"

	"github.com/kiln-build/kiln/cmd/internal/shim"
	"github.com/kiln-build/kiln/executor/containers"
)

func main() {
	if !containers.IsShim() {
		fmt.Fprintln(os.Stderr, "kiln-shim: this is the container monitor of kiln; kiln starts it, it is not a command")
		os.Exit(2)
	}
	os.Exit(shim.Main())
}
