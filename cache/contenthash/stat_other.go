//go:build !linux

package contenthash

import "io/fs"

// key is the stat data of fi that changes when its content does; without
// ctime and inode (not portable) only size, mtime and mode.
func key(fi fs.FileInfo) (entry, bool) {
	return entry{Size: fi.Size(), Mtime: fi.ModTime().UnixNano(), Mode: uint32(fi.Mode())}, true
}
