//go:build unix

package fileop

import (
	"archive/tar"
	"bytes"
	"flag"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
)

var update = flag.Bool("update", false, "regenerate testdata (needs the bzip2 command)")

// testTar is an archive exercising modes, owners, links and hostile names.
func testTar(t testing.TB) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	mt := time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)
	entries := []tar.Header{
		{Name: "./", Typeflag: tar.TypeDir, Mode: 0o700},
		{Name: "top/", Typeflag: tar.TypeDir, Mode: 0o750, Uid: 1000, Gid: 1000},
		{Name: "top/f.txt", Typeflag: tar.TypeReg, Mode: 0o640, Uid: 1001, Gid: 1002, Size: 1},
		{Name: "top/exe", Typeflag: tar.TypeReg, Mode: 0o4755, Size: 1},
		{Name: "top/link", Typeflag: tar.TypeSymlink, Linkname: "f.txt", Uid: 1001, Gid: 1002},
		{Name: "top/abs", Typeflag: tar.TypeSymlink, Linkname: "/etc/passwd"},
		{Name: "top/hard", Typeflag: tar.TypeLink, Linkname: "top/f.txt"},
		{Name: "../escape.txt", Typeflag: tar.TypeReg, Mode: 0o644, Size: 3},
		{Name: "/abs.txt", Typeflag: tar.TypeReg, Mode: 0o644, Size: 3},
		{Name: "top/sub/deep.txt", Typeflag: tar.TypeReg, Mode: 0o600, Size: 1},
		{Name: "evil", Typeflag: tar.TypeSymlink, Linkname: "../../.."},
		{Name: "evil/pwned", Typeflag: tar.TypeReg, Mode: 0o644, Size: 1},
	}
	content := map[string]string{
		"top/f.txt": "F", "top/exe": "E", "../escape.txt": "ESC", "/abs.txt": "ABS",
		"top/sub/deep.txt": "D", "evil/pwned": "P",
	}
	for _, h := range entries {
		h.ModTime = mt
		h.Format = tar.FormatPAX
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatal(err)
		}
		if _, err := io.WriteString(tw, content[h.Name]); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// testTarWant is testTar extracted into /out.
func testTarWant(owners bool) map[string]string {
	m := map[string]string{
		"out":     "dir 0755 0:0",
		"out/top": "dir 0750 1000:1000",
		// The hard link's own header (mode 0, root) sets the mode and
		// owner of the inode it shares with f.txt, as in Docker.
		"out/top/f.txt":        "file 0000 F 0:0",
		"out/top/exe":          "file 4755 E 0:0",
		"out/top/link":         "link f.txt 1001:1002",
		"out/top/abs":          "link /etc/passwd 0:0",
		"out/top/hard":         "file 0000 F 0:0",
		"out/escape.txt":       "file 0644 ESC 0:0",
		"out/abs.txt":          "file 0644 ABS 0:0",
		"out/top/sub":          "dir 0755 0:0",
		"out/top/sub/deep.txt": "file 0600 D 0:0",
		"out/evil":             "link ../../.. 0:0",
		"out/pwned":            "file 0644 P 0:0",
	}
	if !owners {
		for k, v := range m {
			m[k] = v[:strings.LastIndexByte(v, ' ')]
		}
	}
	return m
}

func compress(t testing.TB, format string, data []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	var w io.WriteCloser
	var err error
	switch format {
	case "tar":
		return data
	case "gzip":
		w = gzip.NewWriter(&buf)
	case "xz":
		w, err = xz.NewWriter(&buf)
	case "zstd":
		w, err = zstd.NewWriter(&buf)
	case "bzip2":
		golden := filepath.Join("testdata", "archive.tar.bz2")
		if *update {
			cmd := exec.Command("bzip2", "-c")
			cmd.Stdin = bytes.NewReader(data)
			out, err := cmd.Output()
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(golden, out, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		b, err := os.ReadFile(golden)
		if err != nil {
			t.Fatal(err)
		}
		return b
	default:
		t.Fatalf("unknown format %s", format)
	}
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestAddExtractsArchives(t *testing.T) {
	tarball := testTar(t)
	for _, format := range []string{"tar", "gzip", "bzip2", "xz", "zstd"} {
		t.Run(format, func(t *testing.T) {
			parent := t.TempDir()
			src, dst := filepath.Join(parent, "src"), filepath.Join(parent, "dst")
			mkTree(t, parent, dir("src", 0o755), dir("dst", 0o755), file("sentinel", "S", 0o644))
			if err := os.WriteFile(filepath.Join(src, "layer.tar."+format), compress(t, format, tarball), 0o644); err != nil {
				t.Fatal(err)
			}
			c := Copy{Sources: []string{"layer.tar." + format}, Dest: "/out", Unpack: true}
			if err := apply(t, src, dst, Action{Copy: &c}); err != nil {
				t.Fatal(err)
			}
			if d := diffMaps(snapshot(t, dst, isRoot()), testTarWant(isRoot())); d != "" {
				t.Errorf("destination tree:\n%s", d)
			}
			// Nothing escaped the destination root.
			got := snapshot(t, parent, false)
			if got["sentinel"] != "file 0644 S" || got["pwned"] != "" || got["escape.txt"] != "" {
				t.Errorf("archive wrote outside the destination: %v", got)
			}
			fi, err := os.Stat(filepath.Join(dst, "out/top"))
			if err != nil {
				t.Fatal(err)
			}
			if want := time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC); !fi.ModTime().Equal(want) {
				t.Errorf("out/top mtime = %v, want %v", fi.ModTime(), want)
			}
			a, _ := os.Stat(filepath.Join(dst, "out/top/f.txt"))
			b, _ := os.Stat(filepath.Join(dst, "out/top/hard"))
			if !os.SameFile(a, b) {
				t.Errorf("out/top/hard is not a hard link to out/top/f.txt")
			}
		})
	}
}

func TestAddNonArchives(t *testing.T) {
	gz := compress(t, "gzip", []byte("just text, not a tar"))
	emptyTar := compress(t, "tar", func() []byte {
		var b bytes.Buffer
		tar.NewWriter(&b).Close()
		return b.Bytes()
	}())
	src := []node{
		file("notes.txt", "hello", 0o644),
		file("x.gz", string(gz), 0o644),
		file("empty.tar", string(emptyTar), 0o644),
		dir("d", 0o755),
		file("d/inner.tar", string(testTar(t)), 0o600),
	}
	runCopyCases(t, []copyCase{
		{
			name: "plain file is copied",
			src:  src,
			copy: Copy{Sources: []string{"notes.txt"}, Dest: "/o/n.txt", Unpack: true},
			want: map[string]string{"o": "dir 0755", "o/n.txt": "file 0644 hello"},
		},
		{
			name: "gzip of a non-tar is copied compressed",
			src:  src,
			copy: Copy{Sources: []string{"x.gz"}, Dest: "/o/", Unpack: true},
			want: map[string]string{"o": "dir 0755", "o/x.gz": "file 0644 " + string(gz)},
		},
		{
			name: "empty tar is copied",
			src:  src,
			copy: Copy{Sources: []string{"empty.tar"}, Dest: "/o/", Unpack: true},
			want: map[string]string{"o": "dir 0755", "o/empty.tar": "file 0644 " + string(emptyTar)},
		},
		{
			name: "archives inside a directory are not extracted",
			src:  src,
			copy: Copy{Sources: []string{"d"}, Dest: "/o", Unpack: true},
			want: map[string]string{"o": "dir 0755", "o/inner.tar": "file 0600 " + string(testTar(t))},
		},
	})
}

func TestAddArchiveChownAndMerge(t *testing.T) {
	requireRoot(t)
	parent := t.TempDir()
	src, dst := filepath.Join(parent, "src"), filepath.Join(parent, "dst")
	mkTree(t, parent, dir("src", 0o755), dir("dst", 0o755))
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, h := range []tar.Header{
		{Name: "d/", Typeflag: tar.TypeDir, Mode: 0o755, Uid: 5},
		{Name: "d/f", Typeflag: tar.TypeReg, Mode: 0o644, Uid: 5, Size: 1},
		{Name: "was-dir", Typeflag: tar.TypeReg, Mode: 0o600, Size: 1},
	} {
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatal(err)
		}
		io.WriteString(tw, strings.Repeat("x", int(h.Size)))
	}
	tw.Close()
	mkTree(t, src, file("a.tgz", string(compress(t, "gzip", b.Bytes())), 0o644))
	mkTree(t, dst, dir("out", 0o700), file("out/keep", "K", 0o644), dir("out/was-dir", 0o755))
	c := Copy{Sources: []string{"a.tgz"}, Dest: "/out", Unpack: true, Chown: "7:8"}
	if err := apply(t, src, dst, Action{Copy: &c}); err != nil {
		t.Fatal(err)
	}
	// --chown does not apply to extracted entries (Docker 20.10).
	want := map[string]string{
		"out": "dir 0700 0:0", "out/keep": "file 0644 K 0:0", "out/d": "dir 0755 5:0",
		"out/d/f": "file 0644 x 5:0", "out/was-dir": "file 0600 x 0:0",
	}
	if d := diffMaps(snapshot(t, dst, true), want); d != "" {
		t.Errorf("destination tree:\n%s", d)
	}
}

// TestAddArchiveParentSymlink extracts entries below a symlink the archive
// made: into its target when that exists, and refused (as Docker's
// extractor refuses it) when the target does not, never by making it.
func TestAddArchiveParentSymlink(t *testing.T) {
	for _, tc := range []struct {
		name    string
		headers []tar.Header
		want    map[string]string
		wantErr string
	}{
		{
			name: "to an existing dir",
			headers: []tar.Header{
				{Name: "sub/", Typeflag: tar.TypeDir, Mode: 0o755},
				{Name: "lnk", Typeflag: tar.TypeSymlink, Linkname: "sub"},
				{Name: "lnk/f", Typeflag: tar.TypeReg, Mode: 0o644, Size: 1},
			},
			want: map[string]string{"out": "dir 0755", "out/sub": "dir 0755", "out/sub/f": "file 0644 x", "out/lnk": "link sub"},
		},
		{
			name: "to a missing dir",
			headers: []tar.Header{
				{Name: "lnk", Typeflag: tar.TypeSymlink, Linkname: "/etc"},
				{Name: "lnk/passwd2", Typeflag: tar.TypeReg, Mode: 0o644, Size: 1},
			},
			wantErr: "lnk is a symlink to a directory that does not exist",
		},
		{
			name: "to a missing dir, deeper down",
			headers: []tar.Header{
				{Name: "lnk", Typeflag: tar.TypeSymlink, Linkname: "/etc"},
				{Name: "lnk/b/c", Typeflag: tar.TypeReg, Mode: 0o644, Size: 1},
			},
			wantErr: "lnk is a symlink to a directory that does not exist",
		},
		{
			name: "a global header is skipped",
			headers: []tar.Header{
				{Name: "g", Typeflag: tar.TypeXGlobalHeader, PAXRecords: map[string]string{"comment": "x"}},
				{Name: "f", Typeflag: tar.TypeReg, Mode: 0o644, Size: 1},
			},
			want: map[string]string{"out": "dir 0755", "out/f": "file 0644 x"},
		},
		{
			name: "an entry type Docker cannot write is refused, not skipped",
			headers: []tar.Header{
				{Name: "vol", Typeflag: 'V'},
			},
			wantErr: "unhandled tar header type 86",
		},
		{
			name: "a dir replaced by a symlink keeps the mode of what it points to",
			headers: []tar.Header{
				{Name: "a/", Typeflag: tar.TypeDir, Mode: 0o777},
				{Name: "a", Typeflag: tar.TypeSymlink, Linkname: "real"},
				{Name: "real/", Typeflag: tar.TypeDir, Mode: 0o750},
			},
			want: map[string]string{"out": "dir 0755", "out/real": "dir 0750", "out/a": "link real"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src, dst := t.TempDir(), t.TempDir()
			var b bytes.Buffer
			tw := tar.NewWriter(&b)
			for _, h := range tc.headers {
				if err := tw.WriteHeader(&h); err != nil {
					t.Fatal(err)
				}
				io.WriteString(tw, strings.Repeat("x", int(h.Size)))
			}
			tw.Close()
			mkTree(t, src, file("a.tar", b.String(), 0o644))
			err := apply(t, src, dst, Action{Copy: &Copy{Sources: []string{"a.tar"}, Dest: "/out/", Unpack: true}})
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error = %v, want one containing %q", err, tc.wantErr)
				}
				if _, err := os.Lstat(filepath.Join(dst, "out", "etc")); err == nil {
					t.Error("the missing target dir was made")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if d := diffMaps(snapshot(t, dst, false), tc.want); d != "" {
				t.Errorf("destination tree:\n%s", d)
			}
		})
	}
}
