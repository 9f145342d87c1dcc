package linux

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"strconv"
	"strings"
)

// execUser is a resolved container user.
type execUser struct {
	uid, gid int
	groups   []int // supplementary groups
	home     string
}

type passwdEntry struct {
	name     string
	uid, gid int
	home     string
}

type groupEntry struct {
	name    string
	gid     int
	members []string
}

// lookupUser resolves spec ("", "name", "uid", "name:group", "uid:gid")
// against the passwd and group files, with runc's semantics: a uid or gid
// missing from the files is used as is, a name must be found; a user found
// in passwd with no explicit group gets the supplementary groups it is a
// member of. With runGroups the supplementary groups are docker run's:
// with no explicit group, those that have the user as a member or are its
// primary group (in the group file's order; the primary one alone when
// none is listed), else the explicit group alone.
func lookupUser(spec, passwdPath, groupPath string, runGroups bool) (execUser, error) {
	userArg, groupArg, _ := strings.Cut(spec, ":")
	if userArg == "" {
		userArg = "0"
	}
	u := execUser{home: "/"}
	passwd, err := readPasswd(passwdPath)
	if err != nil {
		return u, err
	}
	uid, numeric := parseID(userArg)
	var found *passwdEntry
	for i := range passwd {
		if (numeric && passwd[i].uid == uid) || (!numeric && passwd[i].name == userArg) {
			found = &passwd[i]
			break
		}
	}
	switch {
	case found != nil:
		u.uid, u.gid, u.home = found.uid, found.gid, found.home
		if u.home == "" {
			u.home = "/"
		}
	case numeric:
		if uid < 0 {
			return u, fmt.Errorf("invalid user %q: ids must be between 0 and 2147483647", userArg)
		}
		u.uid = uid
	default:
		return u, fmt.Errorf("unable to find user %q: no matching entries in passwd file", userArg)
	}
	if groupArg == "" && found == nil && !runGroups {
		return u, nil
	}
	groups, err := readGroup(groupPath)
	if err != nil {
		return u, err
	}
	if groupArg == "" {
		for _, g := range groups {
			if runGroups && g.gid == u.gid {
				u.groups = append(u.groups, g.gid)
				continue
			}
			if found != nil && slices.Contains(g.members, found.name) {
				u.groups = append(u.groups, g.gid)
			}
		}
		if runGroups && len(u.groups) == 0 {
			u.groups = []int{u.gid}
		}
		return u, nil
	}
	gid, numeric := parseID(groupArg)
	for _, g := range groups {
		if (numeric && g.gid == gid) || (!numeric && g.name == groupArg) {
			u.gid = g.gid
			return explicitGroup(u, runGroups), nil
		}
	}
	if !numeric {
		return u, fmt.Errorf("unable to find group %q: no matching entries in group file", groupArg)
	}
	if gid < 0 {
		return u, fmt.Errorf("invalid group %q: ids must be between 0 and 2147483647", groupArg)
	}
	u.gid = gid
	return explicitGroup(u, runGroups), nil
}

// addGroups adds the supplementary groups extra (names or gids, docker run
// --group-add) to u, names looked up in the group file at groupPath.
func addGroups(u execUser, extra []string, groupPath string) (execUser, error) {
	if len(extra) == 0 {
		return u, nil
	}
	groups, err := readGroup(groupPath)
	if err != nil {
		return u, err
	}
	u.groups = slices.Clone(u.groups)
	for _, name := range extra {
		gid, numeric := parseID(name)
		if numeric && gid < 0 {
			return u, fmt.Errorf("invalid group %q: ids must be between 0 and 2147483647", name)
		}
		if !numeric {
			i := slices.IndexFunc(groups, func(g groupEntry) bool { return g.name == name })
			if i < 0 {
				return u, fmt.Errorf("unable to find group %s: no matching entries in group file", name)
			}
			gid = groups[i].gid
		}
		if !slices.Contains(u.groups, gid) {
			u.groups = append(u.groups, gid)
		}
	}
	return u, nil
}

// explicitGroup gives u, whose group was named, docker run's supplementary
// groups when runGroups: that group alone.
func explicitGroup(u execUser, runGroups bool) execUser {
	if runGroups {
		u.groups = []int{u.gid}
	}
	return u
}

// parseID parses a decimal uid or gid; numeric is false for a name.
func parseID(s string) (id int, numeric bool) {
	n, err := strconv.ParseInt(s, 10, 32)
	if err != nil {
		var ne *strconv.NumError
		if errors.As(err, &ne) && errors.Is(ne.Err, strconv.ErrRange) {
			return -1, true
		}
		return 0, false
	}
	return int(n), true
}

// readLines returns the entries of a colon-separated file, nil when it
// does not exist.
func readLines(path string) ([][]string, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	var out [][]string
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(nil, len(data)+1)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		out = append(out, strings.Split(line, ":"))
	}
	return out, nil
}

func readPasswd(path string) ([]passwdEntry, error) {
	lines, err := readLines(path)
	var out []passwdEntry
	for _, f := range lines {
		if len(f) < 4 {
			continue
		}
		uid, ok1 := parseID(f[2])
		gid, ok2 := parseID(f[3])
		if !ok1 || !ok2 || uid < 0 || gid < 0 {
			continue
		}
		e := passwdEntry{name: f[0], uid: uid, gid: gid}
		if len(f) > 5 {
			e.home = f[5]
		}
		out = append(out, e)
	}
	return out, err
}

func readGroup(path string) ([]groupEntry, error) {
	lines, err := readLines(path)
	var out []groupEntry
	for _, f := range lines {
		if len(f) < 3 {
			continue
		}
		gid, ok := parseID(f[2])
		if !ok || gid < 0 {
			continue
		}
		e := groupEntry{name: f[0], gid: gid}
		if len(f) > 3 && f[3] != "" {
			e.members = strings.Split(f[3], ",")
		}
		out = append(out, e)
	}
	return out, err
}
