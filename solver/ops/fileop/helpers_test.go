//go:build unix

package fileop

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// testTime is the mtime fixtures get, so tests can check it is kept.
var testTime = time.Date(2021, 3, 4, 5, 6, 7, 0, time.UTC)

// node is one entry of a fixture tree.
type node struct {
	path string
	kind byte // 'f' file, 'd' dir, 'l' symlink, 'p' fifo
	data string
	mode fs.FileMode // Unix bits: 0o4755 is setuid
	uid  int         // set with owners; -1 keeps the creator's
	gid  int
}

func file(p, data string, mode fs.FileMode) node {
	return node{path: p, kind: 'f', data: data, mode: mode, uid: -1}
}

func dir(p string, mode fs.FileMode) node { return node{path: p, kind: 'd', mode: mode, uid: -1} }

func symlink(p, target string) node { return node{path: p, kind: 'l', data: target, uid: -1} }

func owned(n node, uid, gid int) node { n.uid, n.gid = uid, gid; return n }

// isRoot reports whether the tests may chown and mknod.
func isRoot() bool { return os.Geteuid() == 0 }

func requireRoot(t testing.TB) {
	t.Helper()
	if !isRoot() {
		t.Skip("requires root to chown and create device files; run: sudo -E go test ./solver/ops/fileop/")
	}
}

// mkTree creates nodes under root (parents as 0755 dirs), with testTime as
// every mtime.
func mkTree(t testing.TB, root string, nodes ...node) {
	t.Helper()
	var dirs []string
	for _, n := range nodes {
		p := filepath.Join(root, filepath.FromSlash(n.path))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		var err error
		switch n.kind {
		case 'f':
			err = os.WriteFile(p, []byte(n.data), 0o600)
		case 'd':
			err = os.MkdirAll(p, 0o700)
			dirs = append(dirs, p)
		case 'l':
			err = os.Symlink(n.data, p)
		case 'p':
			err = syscall.Mkfifo(p, 0o600)
		default:
			t.Fatalf("bad node kind %q", n.kind)
		}
		if err != nil {
			t.Fatal(err)
		}
		if n.uid >= 0 {
			if err := os.Lchown(p, n.uid, n.gid); err != nil {
				t.Fatal(err)
			}
		}
		if n.kind != 'l' {
			mode := n.mode
			if mode == 0 {
				mode = 0o644
			}
			if err := os.Chmod(p, fileMode(uint32(mode))); err != nil {
				t.Fatal(err)
			}
		}
		if err := lutimes(p, testTime); err != nil {
			t.Fatal(err)
		}
	}
	for _, d := range slices.Backward(dirs) {
		if err := lutimes(d, testTime); err != nil {
			t.Fatal(err)
		}
	}
}

// snapshot describes every entry under root by its slash path: "dir 0755",
// "file 0644 content", "link target", "fifo 0600"; with owners, " uid:gid"
// is appended.
func snapshot(t testing.TB, root string, owners bool) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == root {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		var s string
		switch m := fi.Mode(); {
		case m.IsDir():
			s = fmt.Sprintf("dir %04o", unixPerm(m))
		case m.IsRegular():
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			s = fmt.Sprintf("file %04o %s", unixPerm(m), b)
		case m&fs.ModeSymlink != 0:
			l, err := os.Readlink(p)
			if err != nil {
				return err
			}
			s = "link " + l
		case m&fs.ModeNamedPipe != 0:
			s = fmt.Sprintf("fifo %04o", unixPerm(m))
		case m&fs.ModeCharDevice != 0:
			maj, min := devMajorMinor(statRdev(fi))
			s = fmt.Sprintf("char %04o %d:%d", unixPerm(m), maj, min)
		default:
			s = "other " + m.String()
		}
		if owners {
			o := statOwner(fi)
			s += fmt.Sprintf(" %d:%d", o.uid, o.gid)
		}
		out[filepath.ToSlash(rel)] = s
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// diffMaps lists the differences between two snapshots, one per line.
func diffMaps(got, want map[string]string) string {
	var keys []string
	for k := range got {
		keys = append(keys, k)
	}
	for k := range want {
		if _, ok := got[k]; !ok {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	var b strings.Builder
	for _, k := range keys {
		g, gok := got[k]
		w, wok := want[k]
		switch {
		case !gok:
			fmt.Fprintf(&b, "  missing %s: want %q\n", k, w)
		case !wok:
			fmt.Fprintf(&b, "  extra   %s: got %q\n", k, g)
		case g != w:
			fmt.Fprintf(&b, "  differ  %s: got %q, want %q\n", k, g, w)
		}
	}
	return b.String()
}

// openRoot opens dir as an *os.Root closed at the end of the test.
func openRoot(t testing.TB, dir string) *os.Root {
	t.Helper()
	r, err := os.OpenRoot(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// apply runs a with src as the source tree and dst as the destination root.
func apply(t testing.TB, src, dst string, a Action) error {
	t.Helper()
	var root *os.Root
	if src != "" {
		root = openRoot(t, src)
	}
	return applyAt(t.Context(), root, &a, applyOptions{destRoot: dst, chown: isRoot()})
}
