//go:build !linux

package fileop

import "os"

// xattr is one extended attribute.
type xattr struct {
	key   string
	value []byte
}

// readXattrs is a no-op where extended attributes are not supported.
func readXattrs(*os.File) []xattr { return nil }
