package fileop

import (
	"archive/tar"
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// getXattr returns the value of key on path, or "" when it is not set.
func getXattr(t *testing.T, path, key string) string {
	t.Helper()
	buf := make([]byte, 256)
	n, err := unix.Lgetxattr(path, key, buf)
	if errors.Is(err, unix.ENODATA) {
		return ""
	}
	if err != nil {
		t.Fatal(err)
	}
	return string(buf[:n])
}

func setXattrOrSkip(t *testing.T, path, key string, value []byte) {
	t.Helper()
	if err := unix.Lsetxattr(path, key, value, 0); err != nil {
		t.Skipf("filesystem of %s does not take xattr %s: %v", path, key, err)
	}
}

func TestCopyXattrs(t *testing.T) {
	requireRoot(t)
	// vfs_cap_data revision 2 with CAP_NET_RAW permitted and effective.
	caps := make([]byte, 20)
	binary.LittleEndian.PutUint32(caps[0:], 0x02000001)
	binary.LittleEndian.PutUint32(caps[4:], 1<<13)
	cases := []struct {
		name      string
		copy      Copy
		wantUser  string
		wantCaps  bool
		wantOwner owner
	}{
		{"from the context: dropped", Copy{Sources: []string{"f"}, Dest: "/o/"}, "", false, owner{}},
		{"from a stage: kept", Copy{Sources: []string{"f"}, Dest: "/o/", PreserveOwner: true}, "v", true, owner{}},
		{"from a stage with chown: capabilities survive chown", Copy{Sources: []string{"f"}, Dest: "/o/", PreserveOwner: true, Chown: "1000"}, "v", true, owner{1000, 1000}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			src, dst := t.TempDir(), t.TempDir()
			mkTree(t, src, file("f", "F", 0o755))
			setXattrOrSkip(t, filepath.Join(src, "f"), "user.test", []byte("v"))
			setXattrOrSkip(t, filepath.Join(src, "f"), "security.capability", caps)
			c := tc.copy
			if err := apply(t, src, dst, Action{Copy: &c}); err != nil {
				t.Fatal(err)
			}
			out := filepath.Join(dst, "o/f")
			if got := getXattr(t, out, "user.test"); got != tc.wantUser {
				t.Errorf("user.test = %q, want %q", got, tc.wantUser)
			}
			if got := getXattr(t, out, "security.capability") != ""; got != tc.wantCaps {
				t.Errorf("has security.capability = %v, want %v", got, tc.wantCaps)
			}
			fi, err := os.Lstat(out)
			if err != nil {
				t.Fatal(err)
			}
			if got := statOwner(fi); got != tc.wantOwner {
				t.Errorf("owner = %v, want %v", got, tc.wantOwner)
			}
		})
	}
}

func TestAddArchiveXattrs(t *testing.T) {
	src, dst := t.TempDir(), t.TempDir()
	setXattrOrSkip(t, dst, "user.probe", []byte("1"))
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	hdr := tar.Header{
		Name: "f", Typeflag: tar.TypeReg, Mode: 0o644, Size: 1,
		PAXRecords: map[string]string{"SCHILY.xattr.user.test": "v"},
	}
	if err := tw.WriteHeader(&hdr); err != nil {
		t.Fatal(err)
	}
	tw.Write([]byte("x"))
	tw.Close()
	mkTree(t, src, file("a.tar", b.String(), 0o644))
	if err := apply(t, src, dst, Action{Copy: &Copy{Sources: []string{"a.tar"}, Dest: "/o", Unpack: true}}); err != nil {
		t.Fatal(err)
	}
	if got := getXattr(t, filepath.Join(dst, "o/f"), "user.test"); got != "v" {
		t.Errorf("user.test = %q, want v", got)
	}
}
