package layer

import (
	"archive/tar"
	"bytes"
	"os"
	"testing"
)

// fuzzSeeds are crafted layers that try to escape the root.
func fuzzSeeds(t testing.TB) [][]byte {
	return [][]byte{
		makeTar(t, reg("../sentinel", "evil"), reg("/../../sentinel", "evil")),
		makeTar(t, symlink("l", "/"), reg("l/sentinel", "evil"), symlink("m", "../.."), reg("m/sentinel", "evil")),
		makeTar(t, symlink("a", "b"), symlink("b", "/.."), dir("a/sentineldir/"), reg("a/sentineldir/x", "x")),
		makeTar(t, hardlink("h", "../sentinel"), reg(".wh..wh..opq", ""), reg("../.wh.sentinel", "")),
		makeTar(t, dir("d/"), reg("d/.wh..wh..opq", ""), reg("d/.wh.x", ""), reg("d", "file"), node(tar.TypeFifo, "f", 0, 0)),
		makeTar(t, reg("x", "x"), hardlink("y", "x"), symlink("y", "x"), dir("y/"), reg("y/../../sentinel", "")),
	}
}

// fuzzTempDir returns a temporary directory for one fuzz input, on tmpfs
// when /dev/shm is writable: fuzzing is bound by file system metadata
// operations, which are many times faster there than on a disk.
func fuzzTempDir(t *testing.T) string {
	d, err := os.MkdirTemp("/dev/shm", "kiln-fuzz-")
	if err != nil {
		return t.TempDir()
	}
	t.Cleanup(func() {
		makeRemovable(d)
		os.RemoveAll(d)
	})
	return d
}

// FuzzUnpack unpacks arbitrary bytes as a tar: it must never panic and
// never touch anything next to the root.
func FuzzUnpack(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		f.Add(s, false)
		f.Add(s, true)
	}
	f.Add([]byte("not a tar"), false)
	f.Fuzz(func(t *testing.T, data []byte, overlay bool) {
		root, check := jailIn(t, fuzzTempDir(t))
		Unpack(t.Context(), bytes.NewReader(data), root, UnpackOptions{Overlay: overlay, MaxBytes: 1 << 20})
		check()
	})
}

// FuzzTarEntries unpacks well-formed tars of three fuzzed entries, which
// explores names, link targets and types far faster than raw bytes.
func FuzzTarEntries(f *testing.F) {
	f.Add("l", "/", byte(tar.TypeSymlink), "l/sentinel", "", byte(tar.TypeReg), "../x", "", byte(tar.TypeDir), false)
	f.Add("a", "../..", byte(tar.TypeSymlink), "h", "a/sentinel", byte(tar.TypeLink), "a/.wh..wh..opq", "", byte(tar.TypeReg), true)
	f.Add("d/", "", byte(tar.TypeDir), "d/.wh.x", "", byte(tar.TypeReg), "d", "", byte(tar.TypeFifo), false)
	f.Fuzz(func(t *testing.T, n1, l1 string, t1 byte, n2, l2 string, t2 byte, n3, l3 string, t3 byte, overlay bool) {
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		for _, e := range []struct {
			name, link string
			typ        byte
		}{{n1, l1, t1}, {n2, l2, t2}, {n3, l3, t3}} {
			h := hdr(e.typ, e.name, 0o755)
			h.Linkname = e.link
			if e.typ == tar.TypeReg {
				h.Size = 1
			}
			if tw.WriteHeader(&h) != nil {
				return
			}
			tw.Write([]byte("x"[:h.Size]))
		}
		if tw.Close() != nil {
			return
		}
		root, check := jailIn(t, fuzzTempDir(t))
		Unpack(t.Context(), &buf, root, UnpackOptions{Overlay: overlay})
		check()
	})
}
