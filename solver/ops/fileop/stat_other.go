//go:build !linux

package fileop

import (
	"io/fs"
	"os"
)

// statInfo is unused here: os.Root.Lstat makes the stat info.
type statInfo struct{}

// lstatAt returns the stat info of name, an entry of the directory root is
// rooted at, without following a symlink.
func lstatAt(root *os.Root, _ *os.File, name string, _ *statInfo) (fs.FileInfo, error) {
	return root.Lstat(name)
}

// statSlab returns nothing to fill: see lstatAt.
func statSlab(int) []statInfo { return nil }
