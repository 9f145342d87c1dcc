//go:build !linux

package fileop

import (
	"io/fs"
	"os"
)

// lstatAt returns the stat info of name, an entry of the directory root is
// rooted at, without following a symlink.
func lstatAt(root *os.Root, _ *os.File, name string) (fs.FileInfo, error) {
	return root.Lstat(name)
}
