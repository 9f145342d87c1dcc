//go:build unix

package fileop

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
)

func TestMain(m *testing.M) {
	// Fixture modes are set explicitly, but implicit parents follow umask.
	syscall.Umask(0o022)
	os.Exit(m.Run())
}

// baseSrc is the source tree most copy cases read.
var baseSrc = []node{
	file("a.txt", "A", 0o644),
	file("b.txt", "B", 0o600),
	dir("dir", 0o750),
	file("dir/x", "X", 0o644),
	file("dir/c.txt", "C", 0o644),
	dir("dir/sub", 0o700),
	file("dir/sub/y", "Y", 0o444),
	dir("dir/empty", 0o755),
}

// dirContents is what copying baseSrc's dir into to yields below to.
func dirContents(to string, m map[string]string) map[string]string {
	if m == nil {
		m = map[string]string{}
	}
	m[to+"/x"] = "file 0644 X"
	m[to+"/c.txt"] = "file 0644 C"
	m[to+"/sub"] = "dir 0700"
	m[to+"/sub/y"] = "file 0444 Y"
	m[to+"/empty"] = "dir 0755"
	return m
}

type copyCase struct {
	name    string
	src     []node // nil means baseSrc
	dst     []node
	copy    Copy
	want    map[string]string // the whole destination tree
	wantErr string
	owners  bool // compare owners too (needs root)
}

func runCopyCases(t *testing.T, cases []copyCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if tc.owners {
				requireRoot(t)
			}
			parent := t.TempDir()
			// A decoy next to the source root: no source may reach it.
			mkTree(t, parent, file("secret.txt", "DECOY", 0o644))
			src := filepath.Join(parent, "ctx")
			if err := os.Mkdir(src, 0o755); err != nil {
				t.Fatal(err)
			}
			nodes := tc.src
			if nodes == nil {
				nodes = baseSrc
			}
			mkTree(t, src, nodes...)
			dst := t.TempDir()
			mkTree(t, dst, tc.dst...)

			c := tc.copy
			err := apply(t, src, dst, Action{Copy: &c})
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error = %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if d := diffMaps(snapshot(t, dst, tc.owners), tc.want); d != "" {
				t.Errorf("destination tree:\n%s", d)
			}
		})
	}
}

func TestCopyPaths(t *testing.T) {
	runCopyCases(t, []copyCase{
		{
			name: "dir without slash to new dest: made 0755, not given the source dir's mode (Docker 20.10)",
			copy: Copy{Sources: []string{"dir"}, Dest: "/app"},
			want: dirContents("app", map[string]string{"app": "dir 0755"}),
		},
		{
			name: "dir with slash to existing dest keeps the dest",
			dst:  []node{dir("app", 0o711)},
			copy: Copy{Sources: []string{"dir/"}, Dest: "/app/"},
			want: dirContents("app", map[string]string{"app": "dir 0711"}),
		},
		{
			name: "several files to a dest without a slash: copied over each other (Docker 20.10)",
			copy: Copy{Sources: []string{"a.txt", "b.txt"}, Dest: "/o"},
			want: map[string]string{"o": "file 0600 B"},
		},
		{
			name: "dir to nested new dest creates parents 0755",
			copy: Copy{Sources: []string{"dir"}, Dest: "/srv/www/app"},
			want: dirContents("srv/www/app", map[string]string{
				"srv": "dir 0755", "srv/www": "dir 0755", "srv/www/app": "dir 0755",
			}),
		},
		{
			name: "context root",
			src:  []node{file("a.txt", "A", 0o644), dir("d", 0o755), file("d/e", "E", 0o600)},
			copy: Copy{Sources: []string{"."}, Dest: "/ctx/"},
			want: map[string]string{
				"ctx": "dir 0755", "ctx/a.txt": "file 0644 A", "ctx/d": "dir 0755", "ctx/d/e": "file 0600 E",
			},
		},
		{
			name: "file to file path creates parents",
			copy: Copy{Sources: []string{"a.txt"}, Dest: "/out/b.txt"},
			want: map[string]string{"out": "dir 0755", "out/b.txt": "file 0644 A"},
		},
		{
			name: "file to existing dir without slash",
			dst:  []node{dir("existing", 0o711)},
			copy: Copy{Sources: []string{"a.txt"}, Dest: "/existing"},
			want: map[string]string{"existing": "dir 0711", "existing/a.txt": "file 0644 A"},
		},
		{
			name: "file to new dir with slash",
			copy: Copy{Sources: []string{"b.txt"}, Dest: "/new/"},
			want: map[string]string{"new": "dir 0755", "new/b.txt": "file 0600 B"},
		},
		{
			name: "file to root",
			copy: Copy{Sources: []string{"a.txt"}, Dest: "/"},
			want: map[string]string{"a.txt": "file 0644 A"},
		},
		{
			name: "multiple sources merge into dest dir",
			copy: Copy{Sources: []string{"a.txt", "dir"}, Dest: "/m/"},
			want: dirContents("m", map[string]string{"m": "dir 0755", "m/a.txt": "file 0644 A"}),
		},
		{
			name: "existing file is overwritten",
			dst:  []node{dir("out", 0o755), file("out/b.txt", "old content", 0o600)},
			copy: Copy{Sources: []string{"a.txt"}, Dest: "/out/b.txt"},
			want: map[string]string{"out": "dir 0755", "out/b.txt": "file 0644 A"},
		},
		{
			name: "existing symlink at the destination name is followed inside the root (Docker 20.10)",
			dst: []node{
				dir("out", 0o755), dir("etc", 0o755), file("etc/target", "T", 0o644),
				symlink("out/b.txt", "/etc/target"), symlink("out/dangling", "/etc/new"),
			},
			copy: Copy{Sources: []string{"a.txt"}, Dest: "/out/b.txt"},
			want: map[string]string{
				"out": "dir 0755", "out/b.txt": "link /etc/target", "etc": "dir 0755", "etc/target": "file 0644 A",
				"out/dangling": "link /etc/new",
			},
		},
		{
			name: "a dangling symlink at the destination name gets its target made",
			dst: []node{
				dir("out", 0o755), dir("etc", 0o755), symlink("out/dangling", "/etc/new"),
			},
			copy: Copy{Sources: []string{"a.txt"}, Dest: "/out/dangling"},
			want: map[string]string{
				"out": "dir 0755", "out/dangling": "link /etc/new", "etc": "dir 0755", "etc/new": "file 0644 A",
			},
		},
		{
			name: "a symlink to a missing dir on the way gets its target made (Docker 20.10)",
			dst:  []node{symlink("ml", "/missing")},
			copy: Copy{Sources: []string{"a.txt"}, Dest: "/ml/x"},
			want: map[string]string{"ml": "link /missing", "missing": "dir 0755", "missing/x": "file 0644 A"},
		},
		{
			name: "dest ending in /. names the path itself",
			copy: Copy{Sources: []string{"a.txt"}, Dest: "/d1/."},
			want: map[string]string{"d1": "file 0644 A"},
		},
		{
			name: "destination dir behind an absolute symlink resolves inside the root",
			dst:  []node{dir("real", 0o755), symlink("app", "/real")},
			copy: Copy{Sources: []string{"a.txt"}, Dest: "/app/"},
			want: map[string]string{"real": "dir 0755", "real/a.txt": "file 0644 A", "app": "link /real"},
		},
		{
			name: "destination symlink climbing out is clamped to the root",
			dst:  []node{symlink("up", "../../../..")},
			copy: Copy{Sources: []string{"a.txt"}, Dest: "/up/z.txt"},
			want: map[string]string{"up": "link ../../../..", "z.txt": "file 0644 A"},
		},
		{
			name:    "dir over an existing file",
			dst:     []node{file("app", "F", 0o644)},
			copy:    Copy{Sources: []string{"dir"}, Dest: "/app"},
			wantErr: "not a directory",
		},
		{
			name:    "file over an existing dir in a dest dir",
			dst:     []node{dir("o", 0o755), dir("o/a.txt", 0o755)},
			copy:    Copy{Sources: []string{"a.txt"}, Dest: "/o/"},
			wantErr: "cannot replace directory",
		},
		{
			name:    "missing source",
			copy:    Copy{Sources: []string{"missing.txt"}, Dest: "/o/"},
			wantErr: "file not found in build context or excluded by .dockerignore: stat missing.txt: file does not exist",
		},
		{
			name:    "path through a file",
			copy:    Copy{Sources: []string{"a.txt/x"}, Dest: "/o/"},
			wantErr: "stat a.txt/x: file does not exist",
		},
	})
}

func TestCopyWildcards(t *testing.T) {
	runCopyCases(t, []copyCase{
		{
			name: "star matches top-level names only",
			copy: Copy{Sources: []string{"*.txt"}, Dest: "/w/"},
			want: map[string]string{"w": "dir 0755", "w/a.txt": "file 0644 A", "w/b.txt": "file 0600 B"},
		},
		{
			name: "question mark and class",
			copy: Copy{Sources: []string{"[a].tx?"}, Dest: "/w/"},
			want: map[string]string{"w": "dir 0755", "w/a.txt": "file 0644 A"},
		},
		{
			name: "class never matches into a subdirectory",
			copy: Copy{Sources: []string{"[a-z]*.txt"}, Dest: "/w/"},
			want: map[string]string{"w": "dir 0755", "w/a.txt": "file 0644 A", "w/b.txt": "file 0600 B"},
		},
		{
			name:    "class holding a slash matches nothing",
			copy:    Copy{Sources: []string{"dir[/]x"}, Dest: "/w/"},
			wantErr: "invalid pattern",
		},
		{
			name: "wildcard directory component",
			copy: Copy{Sources: []string{"d*/?.txt"}, Dest: "/w/"},
			want: map[string]string{"w": "dir 0755", "w/c.txt": "file 0644 C"},
		},
		{
			name: "single wildcard match of a dir copies its contents",
			copy: Copy{Sources: []string{"di?"}, Dest: "/w"},
			want: dirContents("w", map[string]string{"w": "dir 0755"}),
		},
		{
			name: "escaped wildcard is literal",
			src:  []node{file("a*b", "S", 0o644), file("aXb", "X", 0o644)},
			copy: Copy{Sources: []string{`a\*b`}, Dest: "/w/"},
			want: map[string]string{"w": "dir 0755", "w/a*b": "file 0644 S"},
		},
		{
			name: "wildcard matching nothing copies nothing, without an error (Docker 20.10)",
			copy: Copy{Sources: []string{"*.none"}, Dest: "/w/"},
			want: map[string]string{},
		},
		{
			name: "empty wildcard next to a match",
			copy: Copy{Sources: []string{"*.none", "a.txt"}, Dest: "/w/"},
			want: map[string]string{"w": "dir 0755", "w/a.txt": "file 0644 A"},
		},
		{
			name:    "missing plain source",
			copy:    Copy{Sources: []string{"none.txt", "a.txt"}, Dest: "/w/"},
			wantErr: "stat none.txt: file does not exist",
		},
	})
}

func TestCopyStaysInSourceRoot(t *testing.T) {
	src := []node{
		file("a.txt", "A", 0o644),
		symlink("esc", "../secret.txt"),
		symlink("abs", "/a.txt"),
		symlink("up", ".."),
		symlink("absdir", "/"),
	}
	runCopyCases(t, []copyCase{
		{
			name:    "dotdot is clamped: the decoy next to the root is not read",
			src:     src,
			copy:    Copy{Sources: []string{"../secret.txt"}, Dest: "/o/"},
			wantErr: "stat ../secret.txt: file does not exist",
		},
		{
			name: "dotdot is clamped to a file in the root",
			src:  src,
			copy: Copy{Sources: []string{"../../a.txt", "/a.txt"}, Dest: "/o/"},
			want: map[string]string{"o": "dir 0755", "o/a.txt": "file 0644 A"},
		},
		{
			name:    "symlink source climbing out is clamped",
			src:     src,
			copy:    Copy{Sources: []string{"esc"}, Dest: "/o/"},
			wantErr: "stat esc: file does not exist",
		},
		{
			name:    "symlinked parent climbing out is clamped",
			src:     src,
			copy:    Copy{Sources: []string{"up/secret.txt"}, Dest: "/o/"},
			wantErr: "file does not exist",
		},
		{
			name: "absolute symlink source is followed inside the root",
			src:  src,
			copy: Copy{Sources: []string{"abs", "absdir/a.txt"}, Dest: "/o/"},
			want: map[string]string{"o": "dir 0755", "o/abs": "file 0644 A", "o/a.txt": "file 0644 A"},
		},
	})
}

func TestCopySymlinks(t *testing.T) {
	src := []node{
		file("a.txt", "A", 0o644),
		symlink("link", "a.txt"),
		dir("dir", 0o750),
		file("dir/x", "X", 0o644),
		symlink("dl", "dir"),
		dir("s", 0o755),
		symlink("s/rel", "x"),
		symlink("s/dangling", "nope"),
		symlink("s/abs", "/etc/passwd"),
		symlink("s/up", "../../../secret.txt"),
	}
	runCopyCases(t, []copyCase{
		{
			name: "symlink source is followed",
			src:  src,
			copy: Copy{Sources: []string{"link"}, Dest: "/o/"},
			want: map[string]string{"o": "dir 0755", "o/link": "file 0644 A"},
		},
		{
			name: "symlink to a dir copies the dir contents",
			src:  src,
			copy: Copy{Sources: []string{"dl"}, Dest: "/o"},
			want: map[string]string{"o": "dir 0755", "o/x": "file 0644 X"},
		},
		{
			name: "symlinks inside a dir are copied as symlinks",
			src:  src,
			copy: Copy{Sources: []string{"s"}, Dest: "/o"},
			want: map[string]string{
				"o": "dir 0755", "o/rel": "link x", "o/dangling": "link nope",
				"o/abs": "link /etc/passwd", "o/up": "link ../../../secret.txt",
			},
		},
		{
			name: "a wildcard matching symlinks follows them",
			src:  src,
			copy: Copy{Sources: []string{"[ld]*"}, Dest: "/o/"},
			want: map[string]string{"o": "dir 0755", "o/link": "file 0644 A", "o/x": "file 0644 X"},
		},
		{
			name:    "a wildcard matching a dangling symlink fails, as in Docker 20.10",
			src:     src,
			copy:    Copy{Sources: []string{"s/d*"}, Dest: "/o/"},
			wantErr: "s/dangling, a symbolic link to something that does not exist",
		},
	})
}

func TestCopyMetadata(t *testing.T) {
	src := []node{
		dir("m", 0o755),
		file("m/ro", "R", 0o444),
		file("m/priv", "P", 0o600),
		file("m/suid", "S", 0o4755),
		file("m/sgid", "G", 0o2755),
		dir("m/d", 0o700),
		dir("m/sticky", 0o1777),
		dir("m/empty", 0o555),
		{path: "m/fifo", kind: 'p', mode: 0o640, uid: -1},
	}
	runCopyCases(t, []copyCase{
		{
			name: "modes are kept; FIFOs are left out, as Docker 20.10 does",
			src:  src,
			copy: Copy{Sources: []string{"m"}, Dest: "/o"},
			want: map[string]string{
				"o": "dir 0755", "o/ro": "file 0444 R", "o/priv": "file 0600 P",
				"o/suid": "file 4755 S", "o/sgid": "file 2755 G", "o/d": "dir 0700",
				"o/sticky": "dir 1777", "o/empty": "dir 0555",
			},
		},
		{
			name: "chmod applies to copied files and dirs, not the made dest or parents",
			copy: Copy{Sources: []string{"dir"}, Dest: "/p/q", Chmod: "775"},
			want: map[string]string{
				"p": "dir 0755", "p/q": "dir 0755", "p/q/x": "file 0775 X", "p/q/c.txt": "file 0775 C",
				"p/q/sub": "dir 0775", "p/q/sub/y": "file 0775 Y", "p/q/empty": "dir 0775",
			},
		},
		{
			name: "chmod with setuid on a file",
			copy: Copy{Sources: []string{"a.txt"}, Dest: "/bin/tool", Chmod: "4755"},
			want: map[string]string{"bin": "dir 0755", "bin/tool": "file 4755 A"},
		},
		{
			name:    "bad chmod",
			copy:    Copy{Sources: []string{"a.txt"}, Dest: "/o/", Chmod: "u+x"},
			wantErr: `invalid chmod "u+x"`,
		},
	})
}

func TestCopyKeepsMtimes(t *testing.T) {
	src, dst := t.TempDir(), t.TempDir()
	mkTree(t, src, append(slices.Clone(baseSrc), symlink("dir/l", "x"))...)
	if err := apply(t, src, dst, Action{Copy: &Copy{Sources: []string{"dir"}, Dest: "/o"}}); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"o", "o/x", "o/sub", "o/sub/y", "o/empty", "o/l"} {
		fi, err := os.Lstat(filepath.Join(dst, p))
		if err != nil {
			t.Fatal(err)
		}
		if !fi.ModTime().Equal(testTime) {
			t.Errorf("%s: mtime %v, want %v", p, fi.ModTime(), testTime)
		}
	}
}

func TestCopyExcludes(t *testing.T) {
	src := []node{
		file("a.txt", "A", 0o644),
		file("app.log", "L", 0o644),
		dir("dir", 0o755),
		file("dir/x", "X", 0o644),
		file("dir/debug.log", "D", 0o644),
		dir("build", 0o755),
		file("build/out.bin", "O", 0o644),
		file("build/keep.txt", "K", 0o644),
		dir("node_modules", 0o755),
		file("node_modules/m/index.js", "J", 0o644),
		file("deep/a/b/c.tmp", "T", 0o644),
		file("deep/a/b/d.txt", "T", 0o644),
		symlink("tolog", "app.log"),
	}
	excludes := []string{"*.log", "**/*.log", "build", "!build/keep.txt", "node_modules", "**/*.tmp"}
	reach := []node{
		file("d/s/f", "f", 0o644), file("d/f", "f", 0o644),
		file("e/s/f", "f", 0o644), file("e/s/g", "g", 0o644),
		file("g/f", "f", 0o644), file("k/k.x", "k", 0o644),
		file("top", "t", 0o644),
	}
	runCopyCases(t, []copyCase{
		{
			name: "excluded paths are invisible, re-included ones are copied",
			src:  src,
			copy: Copy{Sources: []string{"."}, Dest: "/c/", Excludes: excludes},
			want: map[string]string{
				"c": "dir 0755", "c/a.txt": "file 0644 A", "c/dir": "dir 0755", "c/dir/x": "file 0644 X",
				"c/build": "dir 0755", "c/build/keep.txt": "file 0644 K", "c/deep": "dir 0755",
				"c/deep/a": "dir 0755", "c/deep/a/b": "dir 0755", "c/deep/a/b/d.txt": "file 0644 T",
				"c/tolog": "link app.log",
			},
		},
		{
			name: "excluded dir named directly holds only its re-included child",
			src:  src,
			copy: Copy{Sources: []string{"build"}, Dest: "/b", Excludes: excludes},
			want: map[string]string{"b": "dir 0755", "b/keep.txt": "file 0644 K"},
		},
		{
			name:    "excluded file named directly",
			src:     src,
			copy:    Copy{Sources: []string{"app.log"}, Dest: "/o/", Excludes: excludes},
			wantErr: "stat app.log: file does not exist",
		},
		{
			name:    "excluded dir named directly",
			src:     src,
			copy:    Copy{Sources: []string{"node_modules/m"}, Dest: "/o/", Excludes: excludes},
			wantErr: "file not found in build context or excluded by .dockerignore",
		},
		{
			name:    "symlink to an excluded file",
			src:     src,
			copy:    Copy{Sources: []string{"tolog"}, Dest: "/o/", Excludes: excludes},
			wantErr: "stat tolog: file does not exist",
		},
		{
			name: "wildcards do not match excluded files",
			src:  src,
			copy: Copy{Sources: []string{"*.log"}, Dest: "/o/", Excludes: excludes},
			want: map[string]string{},
		},
		// Docker 20.10 walks an excluded dir only when an exception's
		// text starts with the dir's path; such a dir is copied even if
		// nothing in it survives.
		{
			name: "an exception reaches only dirs its text starts with",
			src:  reach,
			copy: Copy{Sources: []string{"."}, Dest: "/c/", Excludes: []string{"d", "!d/*/f", "e", "!e/s/f", "g", "!g/none", "*.x", "!**/k.x"}},
			want: map[string]string{
				"c": "dir 0755", "c/d": "dir 0755", "c/e": "dir 0755", "c/e/s": "dir 0755", "c/e/s/f": "file 0644 f",
				"c/g": "dir 0755", "c/k": "dir 0755", "c/k/k.x": "file 0644 k", "c/top": "file 0644 t",
			},
		},
		{
			name: "a double star exception does not reach into an excluded dir",
			src:  reach,
			copy: Copy{Sources: []string{"."}, Dest: "/c/", Excludes: []string{"*", "!**/f", "!top"}},
			want: map[string]string{"c": "dir 0755", "c/top": "file 0644 t"},
		},
		{
			name:    "a source below an unreached excluded dir does not exist",
			src:     reach,
			copy:    Copy{Sources: []string{"d/s/f"}, Dest: "/o", Excludes: []string{"d", "!d/*/f"}},
			wantErr: "file not found in build context or excluded by .dockerignore",
		},
		{
			name:    "bad pattern",
			src:     src,
			copy:    Copy{Sources: []string{"."}, Dest: "/o/", Excludes: []string{"!"}},
			wantErr: "parse .dockerignore patterns",
		},
	})
}

func TestCopyOwners(t *testing.T) {
	etc := []node{
		dir("etc", 0o755),
		file("etc/passwd", "root:x:0:0:root:/root:/bin/sh\n# comment\napp:x:1001:1002::/home/app:/bin/sh\n", 0o644),
		file("etc/group", "root:x:0:\nstaff:x:50:app\napp:x:1002:\n", 0o644),
	}
	etcWant := func(m map[string]string) map[string]string {
		m["etc"] = "dir 0755 0:0"
		m["etc/passwd"] = "file 0644 root:x:0:0:root:/root:/bin/sh\n# comment\napp:x:1001:1002::/home/app:/bin/sh\n 0:0"
		m["etc/group"] = "file 0644 root:x:0:\nstaff:x:50:app\napp:x:1002:\n 0:0"
		return m
	}
	ownedSrc := []node{
		owned(dir("d", 0o750), 1234, 5678),
		owned(file("d/f", "F", 0o640), 1234, 5678),
		owned(symlink("d/l", "f"), 42, 43),
	}
	chowned := func(own string) map[string]string {
		return etcWant(map[string]string{"o": "dir 0755 " + own, "o/a.txt": "file 0644 A " + own})
	}
	runCopyCases(t, []copyCase{
		{
			name:   "context owners become root",
			src:    ownedSrc,
			copy:   Copy{Sources: []string{"d"}, Dest: "/p/o"},
			owners: true,
			want:   map[string]string{"p": "dir 0755 0:0", "p/o": "dir 0755 0:0", "p/o/f": "file 0640 F 0:0", "p/o/l": "link f 0:0"},
		},
		{
			name:   "owners kept from another stage",
			src:    ownedSrc,
			copy:   Copy{Sources: []string{"d"}, Dest: "/p/o", PreserveOwner: true},
			owners: true,
			want: map[string]string{
				"p": "dir 0755 0:0", "p/o": "dir 0755 0:0", "p/o/f": "file 0640 F 1234:5678", "p/o/l": "link f 42:43",
			},
		},
		{
			name:   "chown overrides preserved owners and owns created parents",
			src:    ownedSrc,
			copy:   Copy{Sources: []string{"d"}, Dest: "/p/o", PreserveOwner: true, Chown: "1000:1001"},
			owners: true,
			want: map[string]string{
				"p": "dir 0755 1000:1001", "p/o": "dir 0755 1000:1001", "p/o/f": "file 0640 F 1000:1001", "p/o/l": "link f 1000:1001",
			},
		},
		{
			name:   "chown keeps the owner of an existing dest dir",
			dst:    []node{owned(dir("keep", 0o755), 7, 7)},
			copy:   Copy{Sources: []string{"a.txt"}, Dest: "/keep/", Chown: "1000"},
			owners: true,
			want:   map[string]string{"keep": "dir 0755 7:7", "keep/a.txt": "file 0644 A 1000:1000"},
		},
		{name: "chown uid", dst: etc, copy: Copy{Sources: []string{"a.txt"}, Dest: "/o/", Chown: "1000"}, owners: true, want: chowned("1000:1000")},
		{name: "chown name", dst: etc, copy: Copy{Sources: []string{"a.txt"}, Dest: "/o/", Chown: "app"}, owners: true, want: chowned("1001:1002")},
		{name: "chown name:group", dst: etc, copy: Copy{Sources: []string{"a.txt"}, Dest: "/o/", Chown: "app:staff"}, owners: true, want: chowned("1001:50")},
		{name: "chown name:gid", dst: etc, copy: Copy{Sources: []string{"a.txt"}, Dest: "/o/", Chown: "app:60"}, owners: true, want: chowned("1001:60")},
		{name: "chown uid:group", dst: etc, copy: Copy{Sources: []string{"a.txt"}, Dest: "/o/", Chown: "1003:staff"}, owners: true, want: chowned("1003:50")},
		{name: "chown uid:gid", dst: etc, copy: Copy{Sources: []string{"a.txt"}, Dest: "/o/", Chown: "5:6"}, owners: true, want: chowned("5:6")},
		// Docker 20.10's numbers: int32 range with sign and leading
		// zeros; -1 leaves the copy's owner (root); others are names.
		{name: "chown signed and padded ids", dst: etc, copy: Copy{Sources: []string{"a.txt"}, Dest: "/o/", Chown: "+5:007"}, owners: true, want: chowned("5:7")},
		{name: "chown group -1", dst: etc, copy: Copy{Sources: []string{"a.txt"}, Dest: "/o/", Chown: "5:-1"}, owners: true, want: chowned("5:0")},
		{name: "chown uid past int32 is a name", dst: etc, copy: Copy{Sources: []string{"a.txt"}, Dest: "/o/", Chown: "2147483648"}, owners: true, want: chowned("0:0")},
		{name: "chown gid past int32 is a name", dst: etc, copy: Copy{Sources: []string{"a.txt"}, Dest: "/o/", Chown: "5:3000000000"}, owners: true, want: chowned("5:5")},
		{
			name:   "chown unknown user is root (Docker 20.10)",
			dst:    etc,
			copy:   Copy{Sources: []string{"a.txt"}, Dest: "/o/", Chown: "nobody2"},
			owners: true,
			want: map[string]string{
				"etc": "dir 0755 0:0", "etc/group": "file 0644 root:x:0:\nstaff:x:50:app\napp:x:1002:\n 0:0",
				"etc/passwd": "file 0644 root:x:0:0:root:/root:/bin/sh\n# comment\napp:x:1001:1002::/home/app:/bin/sh\n 0:0",
				"o":          "dir 0755 0:0", "o/a.txt": "file 0644 A 0:0",
			},
		},
		{
			name:   "chown unknown group keeps the user's group (Docker 20.10)",
			dst:    etc,
			copy:   Copy{Sources: []string{"a.txt"}, Dest: "/o/", Chown: "app:nogroup"},
			owners: true,
			want: map[string]string{
				"etc": "dir 0755 0:0", "etc/group": "file 0644 root:x:0:\nstaff:x:50:app\napp:x:1002:\n 0:0",
				"etc/passwd": "file 0644 root:x:0:0:root:/root:/bin/sh\n# comment\napp:x:1001:1002::/home/app:/bin/sh\n 0:0",
				"o":          "dir 0755 1001:1002", "o/a.txt": "file 0644 A 1001:1002",
			},
		},
		{
			name:   "chown name without passwd is root (Docker 20.10)",
			copy:   Copy{Sources: []string{"a.txt"}, Dest: "/o/", Chown: "app"},
			owners: true,
			want:   map[string]string{"o": "dir 0755 0:0", "o/a.txt": "file 0644 A 0:0"},
		},
		{
			name:   "chown with an empty group or user means 0, as in Docker 20.10",
			copy:   Copy{Sources: []string{"a.txt"}, Dest: "/o/", Chown: "1:"},
			owners: true,
			want:   map[string]string{"o": "dir 0755 1:0", "o/a.txt": "file 0644 A 1:0"},
		},
		{
			name:   "chown with only a group",
			copy:   Copy{Sources: []string{"a.txt"}, Dest: "/o/", Chown: ":7"},
			owners: true,
			want:   map[string]string{"o": "dir 0755 0:7", "o/a.txt": "file 0644 A 0:7"},
		},
		{
			name:   "chown with a group that is no name in /etc/group keeps the user's (Docker 20.10)",
			copy:   Copy{Sources: []string{"a.txt"}, Dest: "/o/", Chown: "1:2:3"},
			owners: true,
			want:   map[string]string{"o": "dir 0755 1:1", "o/a.txt": "file 0644 A 1:1"},
		},
	})
}

func TestCopyDevice(t *testing.T) {
	requireRoot(t)
	src, dst := t.TempDir(), t.TempDir()
	if err := os.Chmod(src, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := mknod(filepath.Join(src, "null"), fs.ModeDevice|fs.ModeCharDevice, mkdev(1, 3)); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(src, "null"), 0o666); err != nil {
		t.Fatal(err)
	}
	if err := apply(t, src, dst, Action{Copy: &Copy{Sources: []string{"."}, Dest: "/dev/"}}); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"dev": "dir 0755", "dev/null": "char 0666 1:3"}
	if d := diffMaps(snapshot(t, dst, false), want); d != "" {
		t.Errorf("destination tree:\n%s", d)
	}
}

func TestMkdir(t *testing.T) {
	etc := []node{
		dir("etc", 0o755),
		file("etc/passwd", "app:x:1001:1002::/home/app:/bin/sh\n", 0o644),
		file("etc/group", "app:x:1002:\n", 0o644),
	}
	cases := []struct {
		name    string
		dst     []node
		mkdir   Mkdir
		owners  bool
		want    map[string]string
		wantErr string
	}{
		{
			name:  "parents with mode, existing left alone",
			dst:   []node{dir("a", 0o700)},
			mkdir: Mkdir{Path: "/a/b/c", Mode: 0o711},
			want:  map[string]string{"a": "dir 0700", "a/b": "dir 0711", "a/b/c": "dir 0711"},
		},
		{
			name:  "zero mode means 0755",
			mkdir: Mkdir{Path: "/w"},
			want:  map[string]string{"w": "dir 0755"},
		},
		{
			name:  "through an absolute symlink",
			dst:   []node{dir("real", 0o755), symlink("w", "/real")},
			mkdir: Mkdir{Path: "/w/x", Mode: 0o755},
			want:  map[string]string{"real": "dir 0755", "real/x": "dir 0755", "w": "link /real"},
		},
		{
			name:   "chown by name owns the created dirs only",
			dst:    append([]node{dir("a", 0o755)}, etc...),
			mkdir:  Mkdir{Path: "/a/b/c", Mode: 0o755, Chown: "app"},
			owners: true,
			want: map[string]string{
				"a": "dir 0755 0:0", "a/b": "dir 0755 1001:1002", "a/b/c": "dir 0755 1001:1002",
				"etc": "dir 0755 0:0", "etc/passwd": "file 0644 app:x:1001:1002::/home/app:/bin/sh\n 0:0",
				"etc/group": "file 0644 app:x:1002:\n 0:0",
			},
		},
		{
			name:    "existing file in the way",
			dst:     []node{file("f", "F", 0o644)},
			mkdir:   Mkdir{Path: "/f/x", Mode: 0o755},
			wantErr: "not a directory",
		},
		{
			name:   "unknown user is root, as in Docker 20.10",
			dst:    etc,
			mkdir:  Mkdir{Path: "/x", Mode: 0o755, Chown: "bob"},
			owners: true,
			want: map[string]string{
				"x": "dir 0755 0:0", "etc": "dir 0755 0:0",
				"etc/group": "file 0644 app:x:1002:\n 0:0", "etc/passwd": "file 0644 app:x:1001:1002::/home/app:/bin/sh\n 0:0",
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if tc.owners {
				requireRoot(t)
			}
			dst := t.TempDir()
			mkTree(t, dst, tc.dst...)
			m := tc.mkdir
			err := apply(t, "", dst, Action{Mkdir: &m})
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error = %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if d := diffMaps(snapshot(t, dst, tc.owners), tc.want); d != "" {
				t.Errorf("destination tree:\n%s", d)
			}
		})
	}
}

func TestApplyRejectsBadPayloads(t *testing.T) {
	cases := []struct {
		name, payload, wantErr string
	}{
		{"not json", "{", "decode file operation"},
		{"unknown field", `{"move":{}}`, "decode file operation"},
		{"empty", `{}`, "neither copy nor mkdir"},
		{"both", `{"copy":{"sources":["a"],"dest":"/"},"mkdir":{"path":"/x"}}`, "both copy and mkdir"},
		{"copy without source tree", `{"copy":{"sources":["a"],"dest":"/"}}`, "no source tree"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := Apply(t.Context(), nil, []byte(tc.payload))
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error = %v, want one containing %q", err, tc.wantErr)
			}
		})
	}
}

func TestMissingSourceErrorIsNotExist(t *testing.T) {
	src, dst := t.TempDir(), t.TempDir()
	err := apply(t, src, dst, Action{Copy: &Copy{Sources: []string{"foo"}, Dest: "/"}})
	if !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("error %v does not match fs.ErrNotExist", err)
	}
	const want = "file not found in build context or excluded by .dockerignore: stat foo: file does not exist"
	if err.Error() != want {
		t.Errorf("error = %q, want %q", err, want)
	}
}

func TestCopyCancelled(t *testing.T) {
	src, dst := t.TempDir(), t.TempDir()
	mkTree(t, src, baseSrc...)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	root := openRoot(t, src)
	err := applyAt(ctx, root, &Action{Copy: &Copy{Sources: []string{"dir"}, Dest: "/o"}}, applyOptions{destRoot: dst})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("error = %v, want context.Canceled", err)
	}
}
