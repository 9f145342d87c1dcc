package linux

import "golang.org/x/sys/unix"

// fileID is what tells a file apart from one put in its place.
type fileID struct {
	dev, ino uint64
	size     int64
	mtime    int64
}

func statID(p string) (fileID, error) {
	var st unix.Stat_t
	if err := unix.Stat(p, &st); err != nil {
		return fileID{}, err
	}
	return fileID{dev: st.Dev, ino: st.Ino, size: st.Size, mtime: st.Mtim.Nano()}, nil
}

// initExe is the binary to start as the init of a process container:
// opts.InitPath while it is the file New found, else /proc/self/exe.
func (e *Executor) initExe() string {
	if e.opts.InitPath == selfExe || e.initGone.Load() {
		return selfExe
	}
	if id, err := statID(e.opts.InitPath); err != nil || id != e.initID {
		e.initGone.Store(true)
		return selfExe
	}
	return e.opts.InitPath
}

// noteInit records the identity of opts.InitPath, or gives it up when it
// is no executable file.
func (e *Executor) noteInit() {
	if e.opts.InitPath == selfExe {
		return
	}
	id, err := statID(e.opts.InitPath)
	if err != nil || unix.Access(e.opts.InitPath, unix.X_OK) != nil {
		e.initGone.Store(true)
	}
	e.initID = id
}
