package frontend

import "github.com/kiln-build/kiln/solver/ops/fileop"

// preserveOwner marks a copy from another stage or image: owners are kept
// unless --chown is given.
func preserveOwner(cp *fileop.Copy) { cp.PreserveOwner = true }
