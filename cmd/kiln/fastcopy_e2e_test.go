package main

import (
	"os"
	"path/filepath"
	"testing"
)

// TestCopyFastPathMatchesContainerPath builds the same COPY steps with the
// hard-link fast path and with the container path (KILN_NO_FASTCOPY=1) and
// compares every copied entry's type, mode, owner, size, mtime, link target
// and content.
func TestCopyFastPathMatchesContainerPath(t *testing.T) {
	ctx := writeCtx(t, map[string]string{
		"Dockerfile":        "FROM busybox\nCOPY . /app/\nCOPY sub /x/y/z\nCOPY sub/deeper /etc/newdir\nRUN cat /app/sub/a.txt > /check\n",
		"sub/a.txt":         "a\n",
		"sub/deeper/b.txt":  "b\n",
		"secret.txt":        "no\n",
		"sub/ignored.log":   "no\n",
		".dockerignore":     "secret.txt\n**/*.log\n",
		"modes/private":     "p\n",
		"modes/setuid":      "s\n",
		"links/placeholder": "",
		"same/one.txt":      "same\n",
		"same/two.txt":      "same\n",
		"zero-length/e.txt": "",
	})
	os.Chmod(filepath.Join(ctx, "modes/private"), 0o600)
	os.Chmod(filepath.Join(ctx, "modes/setuid"), 0o4755)
	os.Chmod(filepath.Join(ctx, "modes"), 0o700)
	os.Mkdir(filepath.Join(ctx, "empty"), 0o750)
	os.Symlink("../sub/a.txt", filepath.Join(ctx, "links/rel"))
	os.Symlink("/etc/passwd", filepath.Join(ctx, "links/abs"))
	os.Symlink("missing", filepath.Join(ctx, "links/dangling"))
	list := "cd / && find app x/y/z etc/newdir from/f from/dir/g from/link etc/f-from-stage | sort | while read f; do stat -c '%n %F %a %u %g %s %Y %N' \"$f\"; [ -f \"$f\" ] && md5sum < \"$f\"; done"

	fast := newEnv(t)
	fast.must("build", "-q", "-t", "c:1", ctx)
	want := fast.must("run", "--rm", "--network", "none", "c:1", "sh", "-c", list).stdout

	t.Setenv("KILN_NO_FASTCOPY", "1")
	slow := newEnv(t)
	slow.must("build", "-q", "-t", "c:1", ctx)
	got := slow.must("run", "--rm", "--network", "none", "c:1", "sh", "-c", list).stdout
	if got != want {
		t.Errorf("fast path differs from the container path\nfast:\n%s\ncontainer:\n%s", want, got)
	}
}
