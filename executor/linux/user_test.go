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
	}
	for _, tt := range tests {
		t.Run(tt.spec, func(t *testing.T) {
			got, err := lookupUser(tt.spec, passwd, group)
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
	u, err := lookupUser("12:34", filepath.Join(dir, "passwd"), filepath.Join(dir, "group"))
	if err != nil || u.uid != 12 || u.gid != 34 || u.home != "/" {
		t.Fatalf("lookupUser(12:34) = %+v, %v", u, err)
	}
	if _, err := lookupUser("app", filepath.Join(dir, "passwd"), filepath.Join(dir, "group")); err == nil {
		t.Fatal("lookupUser(app) without /etc/passwd succeeded")
	}
}
