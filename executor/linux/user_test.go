package linux

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestLookupUser(t *testing.T) {
	dir := t.TempDir()
	passwd := filepath.Join(dir, "passwd")
	group := filepath.Join(dir, "group")
	os.WriteFile(passwd, []byte("root:x:0:0:root:/root:/bin/sh\n# comment\napp:x:1000:1000::/home/app:/bin/sh\nbroken\n"), 0o644)
	os.WriteFile(group, []byte("root:x:0:\nwheel:x:10:root,app\napp:x:1000:\nstaff:x:50:app\n"), 0o644)
	tests := []struct {
		spec    string
		run     bool // docker run's supplementary groups
		want    execUser
		wantErr string
	}{
		{spec: "", want: execUser{uid: 0, gid: 0, groups: []int{10}, home: "/root"}},
		{spec: "root", want: execUser{uid: 0, gid: 0, groups: []int{10}, home: "/root"}},
		{spec: "app", want: execUser{uid: 1000, gid: 1000, groups: []int{10, 50}, home: "/home/app"}},
		{spec: "1000", want: execUser{uid: 1000, gid: 1000, groups: []int{10, 50}, home: "/home/app"}},
		{spec: "app:staff", want: execUser{uid: 1000, gid: 50, home: "/home/app"}},
		{spec: "1000:7", want: execUser{uid: 1000, gid: 7, home: "/home/app"}},
		{spec: "4242", want: execUser{uid: 4242, gid: 0, home: "/"}},
		{spec: "4242:4243", want: execUser{uid: 4242, gid: 4243, home: "/"}},
		{spec: "nobody", wantErr: `unable to find user "nobody": no matching entries in passwd file`},
		{spec: "app:nogroup", wantErr: `unable to find group "nogroup": no matching entries in group file`},
		{spec: "99999999999", wantErr: "invalid user"},
		{spec: "", run: true, want: execUser{uid: 0, gid: 0, groups: []int{0, 10}, home: "/root"}},
		{spec: "app", run: true, want: execUser{uid: 1000, gid: 1000, groups: []int{10, 1000, 50}, home: "/home/app"}},
		{spec: "app:staff", run: true, want: execUser{uid: 1000, gid: 50, groups: []int{50}, home: "/home/app"}},
		{spec: "1000:7", run: true, want: execUser{uid: 1000, gid: 7, groups: []int{7}, home: "/home/app"}},
		{spec: "4242", run: true, want: execUser{uid: 4242, gid: 0, groups: []int{0}, home: "/"}},
		{spec: "4242:4243", run: true, want: execUser{uid: 4242, gid: 4243, groups: []int{4243}, home: "/"}},
	}
	for _, tt := range tests {
		name := tt.spec
		if tt.run {
			name += " (run)"
		}
		t.Run(name, func(t *testing.T) {
			got, err := lookupUser(tt.spec, passwd, group, tt.run)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("lookupUser(%q) error = %v, want %q", tt.spec, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("lookupUser(%q): %v", tt.spec, err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("lookupUser(%q) = %+v, want %+v", tt.spec, got, tt.want)
			}
		})
	}
}

func TestLookupUserNoFiles(t *testing.T) {
	dir := t.TempDir()
	u, err := lookupUser("12:34", filepath.Join(dir, "passwd"), filepath.Join(dir, "group"), false)
	if err != nil || u.uid != 12 || u.gid != 34 || u.home != "/" {
		t.Fatalf("lookupUser(12:34) = %+v, %v", u, err)
	}
	if u, err := lookupUser("7", filepath.Join(dir, "passwd"), filepath.Join(dir, "group"), true); err != nil || !reflect.DeepEqual(u.groups, []int{0}) {
		t.Errorf("lookupUser(7) for docker run without files = %+v, %v; want the primary group 0 alone", u, err)
	}
	if _, err := lookupUser("app", filepath.Join(dir, "passwd"), filepath.Join(dir, "group"), false); err == nil {
		t.Fatal("lookupUser(app) without /etc/passwd succeeded")
	}
}

// FuzzLookupUser feeds image-controlled passwd and group files: lookupUser
// must not panic, and what it resolves must hold together.
func FuzzLookupUser(f *testing.F) {
	f.Add("root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n", "root:x:0:\nwheel:x:10:root,app\n", "app", true)
	f.Add("a:x:-1:99999999999:::\n::::\n", "g::x:\n:x:1:a,,\n", "a:g", false)
	f.Add("", "", "5:6", true)
	f.Fuzz(func(t *testing.T, passwd, group, spec string, run bool) {
		dir := t.TempDir()
		pp, gp := filepath.Join(dir, "passwd"), filepath.Join(dir, "group")
		os.WriteFile(pp, []byte(passwd), 0o644)
		os.WriteFile(gp, []byte(group), 0o644)
		u, err := lookupUser(spec, pp, gp, run)
		if err != nil {
			return
		}
		if u.uid < 0 || u.gid < 0 {
			t.Fatalf("lookupUser(%q) = %+v: negative id", spec, u)
		}
		if _, g, explicit := strings.Cut(spec, ":"); run && explicit && g != "" && (len(u.groups) != 1 || u.groups[0] != u.gid) {
			t.Fatalf("lookupUser(%q) for docker run = %+v: want the explicit group alone", spec, u)
		}
		if run && len(u.groups) == 0 {
			t.Fatalf("lookupUser(%q) for docker run has no groups", spec)
		}
	})
}

func TestAddGroups(t *testing.T) {
	group := filepath.Join(t.TempDir(), "group")
	os.WriteFile(group, []byte("root:x:0:\nwheel:x:10:\nstaff:x:50:\n"), 0o644)
	base := execUser{uid: 1000, gid: 1000, groups: []int{1000}}
	tests := []struct {
		extra   []string
		want    []int
		wantErr bool
	}{
		{nil, []int{1000}, false},
		{[]string{"wheel", "7", "1000", "staff"}, []int{1000, 10, 7, 50}, false},
		{[]string{"nosuch"}, nil, true},
		{[]string{"99999999999"}, nil, true},
	}
	for _, tc := range tests {
		got, err := addGroups(base, tc.extra, group)
		if (err != nil) != tc.wantErr || (err == nil && !reflect.DeepEqual(got.groups, tc.want)) {
			t.Errorf("addGroups(%q) = %v, %v; want %v, error %v", tc.extra, got.groups, err, tc.want, tc.wantErr)
		}
	}
}
