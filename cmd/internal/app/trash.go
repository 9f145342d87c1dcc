package app

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
)

// TrashArg is the hidden first argument that makes the kiln binary delete a
// directory of a store's trash and exit (see RunTrash).
const TrashArg = "kiln-remove-trash"

// IsTrash reports whether the process was started to empty the trash.
func IsTrash() bool { return len(os.Args) == 3 && os.Args[1] == TrashArg }

// RunTrash deletes the trash directory named by os.Args[2] and returns the
// exit code. Only a directory directly under a "trash" directory is
// accepted.
func RunTrash() int {
	dir := filepath.Clean(os.Args[2])
	if filepath.Base(filepath.Dir(dir)) != "trash" || !filepath.IsAbs(dir) {
		return 2
	}
	if err := os.RemoveAll(dir); err != nil {
		return 1
	}
	return 0
}

// spawnTrash deletes dir in a detached kiln process, so the command that
// discarded it does not wait for the unlinks; a failure to start it
// deletes in place.
func spawnTrash(dir string) {
	if !strings.Contains(dir, string(filepath.Separator)+"trash"+string(filepath.Separator)) {
		return
	}
	cmd := exec.Command("/proc/self/exe", TrashArg, dir)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return
	}
	cmd.Process.Release()
}
