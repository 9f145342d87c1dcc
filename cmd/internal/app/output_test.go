package app

import "testing"

func TestParseOutput(t *testing.T) {
	tests := []struct {
		in      string
		want    Output
		wantErr bool
	}{
		{"type=oci,dest=out.tar", Output{Type: "oci", Dest: "out.tar"}, false},
		{"type=docker,dest=/tmp/x.tar", Output{Type: "docker", Dest: "/tmp/x.tar"}, false},
		{"type=local,dest=rootfs", Output{Type: "local", Dest: "rootfs"}, false},
		{"rootfs", Output{Type: "local", Dest: "rootfs"}, false},
		{"type=registry,name=127.0.0.1:5000/a:1", Output{Type: "registry", Name: "127.0.0.1:5000/a:1"}, false},
		{"type=image", Output{Type: "image"}, false},
		{"type=oci", Output{}, true},
		{"type=registry", Output{}, true},
		{"type=bogus,dest=x", Output{}, true},
		{"dest=x", Output{}, true},
		{"type=oci,dest=x,foo=bar", Output{}, true},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseOutput(tc.in)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tc.wantErr)
			}
			if !tc.wantErr && got != tc.want {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}
