//go:build !linux

package cache

// renameNoReplace renames src to dst unless dst exists, in which case it
// returns an error satisfying errors.Is(err, os.ErrExist).
func renameNoReplace(src, dst string) error {
	return renameNoReplaceFallback(src, dst)
}

// syncFS is a no-op where syncfs(2) does not exist; blob files are still
// fsync'ed one by one.
func syncFS(path string) error { return nil }
