package contenthash

import (
	"io/fs"
	"syscall"
)

// key is the stat data of fi that changes when its content does.
func key(fi fs.FileInfo) (entry, bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return entry{}, false
	}
	return entry{
		Size:  fi.Size(),
		Mtime: st.Mtim.Nano(),
		Ctime: st.Ctim.Nano(),
		Ino:   st.Ino,
		Mode:  st.Mode,
	}, true
}
