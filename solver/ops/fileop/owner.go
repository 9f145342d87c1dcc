package fileop

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"strings"
)

// owner is a numeric uid and gid.
type owner struct{ uid, gid int }

// parseOwner resolves a --chown value ("uid", "uid:gid", "name", "name:group",
// "name:gid", "uid:group") against the destination's /etc/passwd and
// /etc/group. A user given alone brings its primary group (a name) or the
// group with the same number (a uid).
func (d *destFS) parseOwner(spec string) (owner, error) {
	user, group, hasGroup := strings.Cut(spec, ":")
	if user == "" && !hasGroup {
		return owner{}, fmt.Errorf("invalid chown %q: want user, user:group, uid or uid:gid", spec)
	}
	// As in Docker 20.10's builder, an empty user or group is 0
	// (":staff" is root and staff, "app:" is app and root).
	var o owner
	if id, ok := chownID(user); ok {
		o = owner{uid: id, gid: id}
	} else if user != "" {
		ent, err := d.lookupEntry("/etc/passwd", user)
		switch {
		case errors.Is(err, errNoEntry):
			// Docker 20.10's builder uses root for a name it cannot find.
			d.warnf("--chown=%s: unable to find user %s (%v); using uid 0, as Docker 20.10 does", spec, user, err)
		case err != nil:
			return owner{}, fmt.Errorf("unable to find user %s: %w", user, err)
		default:
			if o.uid, err = entryID(ent, 2); err == nil {
				o.gid, err = entryID(ent, 3)
			}
			if err != nil {
				return owner{}, fmt.Errorf("unable to find user %s: invalid /etc/passwd entry: %w", user, err)
			}
		}
	}
	switch {
	case !hasGroup:
		return o, nil
	case group == "":
		o.gid = 0
		return o, nil
	}
	if id, ok := chownID(group); ok {
		o.gid = id
		return o, nil
	}
	ent, err := d.lookupEntry("/etc/group", group)
	if errors.Is(err, errNoEntry) {
		// And keeps the user's group for a group name it cannot find.
		d.warnf("--chown=%s: unable to find group %s (%v); using gid %d, as Docker 20.10 does", spec, group, err, o.gid)
		return o, nil
	}
	if err != nil {
		return owner{}, fmt.Errorf("unable to find group %s: %w", group, err)
	}
	if o.gid, err = entryID(ent, 2); err != nil {
		return owner{}, fmt.Errorf("unable to find group %s: invalid /etc/group entry: %w", group, err)
	}
	return o, nil
}

// chownID reads a --chown user or group as Docker 20.10's builder does: a
// number in int32 range, sign and leading zeros allowed ("+5", "007"), is
// an id, and a negative one is passed on as chown(2) takes it (-1 leaves
// the owner as the copy made it, root); anything else, out-of-range
// numbers included, is a name.
func chownID(s string) (id int, ok bool) {
	n, err := strconv.ParseInt(s, 10, 32)
	if err != nil {
		return 0, false
	}
	return int(n), true
}

// parseID parses a numeric user or group id of a passwd or group entry;
// ok is false for a name.
func parseID(s string) (id int, ok bool, err error) {
	if s == "" || strings.TrimLeft(s, "0123456789") != "" {
		return 0, false, nil
	}
	n, err := strconv.ParseUint(s, 10, 32)
	if err != nil || n == 1<<32-1 {
		return 0, false, fmt.Errorf("id %s out of range", s)
	}
	return int(n), true, nil
}

// entryID parses field i of a passwd or group entry as an id.
func entryID(fields []string, i int) (int, error) {
	if i >= len(fields) {
		return 0, fmt.Errorf("%s has no field %d", fields[0], i+1)
	}
	id, ok, err := parseID(fields[i])
	if err == nil && !ok {
		err = fmt.Errorf("%q is not a number", fields[i])
	}
	return id, err
}

// lookupEntry returns the fields of the first line of the colon-separated
// database file (a destination path) whose first field is name.
func (d *destFS) lookupEntry(file, name string) ([]string, error) {
	host, err := d.resolve(file)
	if err != nil {
		return nil, err
	}
	b, err := os.ReadFile(host)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: no %s in the destination", errNoEntry, file)
	}
	if err != nil {
		return nil, err
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		fields := strings.Split(line, ":")
		if fields[0] == name {
			return fields, nil
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read %s: %w", file, err)
	}
	base := file[strings.LastIndexByte(file, '/')+1:]
	return nil, fmt.Errorf("%w: no matching entries in %s file", errNoEntry, base)
}

// errNoEntry is a user or group name the destination does not define.
var errNoEntry = errors.New("unknown name")

// parseChmod parses a --chmod value: octal permission bits, including
// setuid (04000), setgid (02000) and sticky (01000).
func parseChmod(s string) (fs.FileMode, error) {
	n, err := strconv.ParseUint(s, 8, 32)
	if err != nil || n > 0o7777 {
		return 0, fmt.Errorf("invalid chmod %q: want an octal mode such as 755", s)
	}
	return fileMode(uint32(n)), nil
}

// fileMode converts Unix permission bits to an fs.FileMode.
func fileMode(u uint32) fs.FileMode {
	m := fs.FileMode(u & 0o777)
	if u&0o4000 != 0 {
		m |= fs.ModeSetuid
	}
	if u&0o2000 != 0 {
		m |= fs.ModeSetgid
	}
	if u&0o1000 != 0 {
		m |= fs.ModeSticky
	}
	return m
}

// unixPerm converts the permission bits of m back to Unix bits.
func unixPerm(m fs.FileMode) uint32 {
	u := uint32(m.Perm())
	if m&fs.ModeSetuid != 0 {
		u |= 0o4000
	}
	if m&fs.ModeSetgid != 0 {
		u |= 0o2000
	}
	if m&fs.ModeSticky != 0 {
		u |= 0o1000
	}
	return u
}

// permBits is the part of an fs.FileMode chmod(2) sets.
const permBits = fs.ModePerm | fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky
