package cache

import (
	"errors"
	"os"
	"syscall"
)

// renameNoReplaceFallback renames a directory src onto dst, reporting
// os.ErrExist when dst is already there. Renaming onto an empty directory
// would replace it, so it checks first; a race with another process then
// replaces an identical snapshot, which is harmless.
func renameNoReplaceFallback(src, dst string) error {
	if _, err := os.Lstat(dst); err == nil {
		return &os.LinkError{Op: "rename", Old: src, New: dst, Err: os.ErrExist}
	}
	err := os.Rename(src, dst)
	if errors.Is(err, syscall.ENOTEMPTY) || errors.Is(err, syscall.EEXIST) {
		return &os.LinkError{Op: "rename", Old: src, New: dst, Err: os.ErrExist}
	}
	return err
}
