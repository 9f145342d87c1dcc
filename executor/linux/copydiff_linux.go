package linux

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// writeChanges finishes a run in copy mode: it compares the copied root
// filesystem in copyDir with the record the init made before the run and
// replaces the content of upperDir with the changes in overlayfs' format
// (changed and new entries, 0:0 character devices for deleted paths, opaque
// directories for replaced ones), as overlayfs would have left it. The
// container must be gone: the copy is read without guarding against
// concurrent changes. Nothing is written when the init did not get as far
// as recording the copy.
func writeChanges(copyDir, upperDir string) error {
	data, err := os.ReadFile(filepath.Join(copyDir, copyRecordName))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var rec copyRecord
	if err := json.Unmarshal(data, &rec); err != nil {
		return fmt.Errorf("decode the copy record: %w", err)
	}
	d := &differ{
		rec:  &rec,
		root: filepath.Join(copyDir, copyRootName),
		out:  filepath.Join(copyDir, "upper"),
		made: map[string]bool{"": true},
	}
	if err := os.Mkdir(d.out, 0o700); err != nil {
		return err
	}
	var st unix.Statx_t
	if err := lstatx(d.root, &st); err != nil {
		return err
	}
	if err := d.dir("", &st, false); err != nil {
		return err
	}
	return d.replaceUpper(upperDir, &st)
}

// differ writes the changes of the copy at root to out.
type differ struct {
	rec       *copyRecord
	root, out string
	// made holds the directories created in out.
	made  map[string]bool
	attrs attrCopier
}

// dir writes the changes in the copied directory rel (st is its stat from
// before its content was moved) and, when changed, the directory itself.
func (d *differ) dir(rel string, st *unix.Statx_t, changed bool) error {
	if changed {
		if err := d.ensure(rel); err != nil {
			return err
		}
	}
	p := under(d.root, rel)
	names, err := readDirNames(p)
	if err != nil {
		return err
	}
	lower, inLower := d.rec.Lower[rel]
	var present map[string]bool
	if inLower && lower.Dir {
		present = make(map[string]bool, len(names))
	}
	for _, name := range names {
		if present != nil {
			present[name] = true
		}
		r := join(rel, name)
		var cst unix.Statx_t
		if err := lstatx(p+"/"+name, &cst); err != nil {
			return err
		}
		rec, known := d.rec.Copied[r]
		same := known && rec.unchanged(&cst)
		if cst.Mode&unix.S_IFMT != unix.S_IFDIR {
			if !same || rec.Upper {
				if err := d.move(r, false); err != nil {
					return err
				}
			}
			continue
		}
		switch l, ok := d.rec.Lower[r]; {
		case !ok || !l.Dir:
			// A new directory: nothing below it to hide.
			err = d.move(r, false)
		case !known || !rec.sameInode(&cst) || rec.Opaque:
			// Deleted and made again: it hides the lower one's content.
			err = d.move(r, true)
		default:
			err = d.dir(r, &cst, !same || rec.Upper)
		}
		if err != nil {
			return err
		}
	}
	if present != nil {
		for _, kid := range lower.Kids {
			if present[kid] {
				continue
			}
			if err := d.ensure(rel); err != nil {
				return err
			}
			o := under(d.out, join(rel, kid))
			if err := unix.Mknod(o, unix.S_IFCHR, 0); err != nil {
				return &os.PathError{Op: "mknod", Path: o, Err: err}
			}
		}
	}
	if rel != "" && d.made[rel] {
		return d.attrs.apply(p, under(d.out, rel), statFromStatx(st), false)
	}
	return nil
}

// ensure creates the directory rel, and its parents, in out. Their
// attributes are set by dir once their content is written.
func (d *differ) ensure(rel string) error {
	if d.made[rel] {
		return nil
	}
	if err := d.ensure(parent(rel)); err != nil {
		return err
	}
	o := under(d.out, rel)
	if err := unix.Mkdir(o, 0o700); err != nil {
		return &os.PathError{Op: "mkdir", Path: o, Err: err}
	}
	d.made[rel] = true
	return nil
}

// move moves rel, with everything below it, from the copy to out; an opaque
// directory is marked as such.
func (d *differ) move(rel string, opaque bool) error {
	if err := d.ensure(parent(rel)); err != nil {
		return err
	}
	o := under(d.out, rel)
	if err := os.Rename(under(d.root, rel), o); err != nil {
		return err
	}
	if opaque {
		if err := unix.Lsetxattr(o, opaqueXattr, []byte("y"), 0); err != nil {
			return &os.PathError{Op: "setxattr " + opaqueXattr, Path: o, Err: err}
		}
	}
	return nil
}

// replaceUpper replaces upperDir's content with out's, and gives upperDir
// the owner and mode the run gave the root (st).
func (d *differ) replaceUpper(upperDir string, st *unix.Statx_t) error {
	old, err := readDirNames(upperDir)
	if err != nil {
		return err
	}
	for _, n := range old {
		if err := os.RemoveAll(filepath.Join(upperDir, n)); err != nil {
			return err
		}
	}
	names, err := readDirNames(d.out)
	if err != nil {
		return err
	}
	for _, n := range names {
		if err := os.Rename(filepath.Join(d.out, n), filepath.Join(upperDir, n)); err != nil {
			return fmt.Errorf("move changes to the upper dir (it must be on the work dir's filesystem): %w", err)
		}
	}
	if rec := d.rec.Copied[""]; rec.Mode != uint32(st.Mode) || rec.UID != st.Uid || rec.GID != st.Gid {
		if err := unix.Chown(upperDir, int(st.Uid), int(st.Gid)); err != nil {
			return &os.PathError{Op: "chown", Path: upperDir, Err: err}
		}
		if err := unix.Chmod(upperDir, uint32(st.Mode)&0o7777); err != nil {
			return &os.PathError{Op: "chmod", Path: upperDir, Err: err}
		}
	}
	return nil
}

// parent returns the parent of a relative slash path ("" for a top-level
// name).
func parent(rel string) string {
	if dir := path.Dir(rel); dir != "." {
		return dir
	}
	return ""
}
