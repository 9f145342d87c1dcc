package app

import (
	"reflect"
	"testing"
	"time"

	"github.com/kiln-build/kiln/executor"
	"github.com/kiln-build/kiln/executor/containers"
)

func TestParseVolume(t *testing.T) {
	tests := []struct {
		in      string
		want    containers.Mount
		wantErr bool
	}{
		{"/host:/ctr", containers.Mount{Type: containers.MountBind, Source: "/host", Target: "/ctr"}, false},
		{"/host/../h:/ctr:ro", containers.Mount{Type: containers.MountBind, Source: "/h", Target: "/ctr", ReadOnly: true}, false},
		{"data:/data", containers.Mount{Type: containers.MountVolume, Name: "data", Target: "/data"}, false},
		{"data:/data:ro,z", containers.Mount{Type: containers.MountVolume, Name: "data", Target: "/data", ReadOnly: true}, false},
		{"/anon", containers.Mount{Type: containers.MountVolume, Target: "/anon"}, false},
		{"data:/data:nocopy", containers.Mount{Type: containers.MountVolume, Name: "data", Target: "/data", NoCopy: true}, false},
		{"data:rel", containers.Mount{}, true},
		{"rel", containers.Mount{}, true},
		{":/x", containers.Mount{}, true},
		{"a/b:/x", containers.Mount{}, true},
		{"/h:/x:bogus", containers.Mount{}, true},
		{"/a:/b:ro:x", containers.Mount{}, true},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			got, err := parseVolume(tc.in)
			if (err != nil) != tc.wantErr {
				t.Fatalf("parseVolume(%q) error %v, want error %v", tc.in, err, tc.wantErr)
			}
			if !tc.wantErr && (got.Type != tc.want.Type || got.Source != tc.want.Source || got.Target != tc.want.Target ||
				got.Name != tc.want.Name || got.ReadOnly != tc.want.ReadOnly) {
				t.Errorf("parseVolume(%q) = %+v, want %+v", tc.in, got, tc.want)
			}
		})
	}
}

func TestMergeHealthcheck(t *testing.T) {
	img := &containers.Healthcheck{Test: []string{"CMD", "check"}, Interval: time.Minute, Retries: 3}
	tests := []struct {
		name  string
		flags *containers.Healthcheck
		want  *containers.Healthcheck
	}{
		{"no flags", nil, img},
		{"none", &containers.Healthcheck{Test: []string{"NONE"}}, nil},
		{"interval only", &containers.Healthcheck{Interval: time.Second}, &containers.Healthcheck{Test: img.Test, Interval: time.Second, Retries: 3}},
		{"new command", &containers.Healthcheck{Test: []string{"CMD-SHELL", "x"}}, &containers.Healthcheck{Test: []string{"CMD-SHELL", "x"}, Interval: time.Minute, Retries: 3}},
	}
	for _, tc := range tests {
		if got := mergeHealthcheck(img, tc.flags); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: %+v, want %+v", tc.name, got, tc.want)
		}
	}
	if got := mergeHealthcheck(nil, &containers.Healthcheck{Interval: time.Second}); got != nil {
		t.Errorf("timing flags on an image without a check: %+v, want none", got)
	}
}

func TestParseMemory(t *testing.T) {
	tests := []struct {
		in   string
		want int64
		err  bool
	}{
		{"256m", 256 << 20, false}, {"1g", 1 << 30, false}, {"512k", 512 << 10, false}, {"1000", 1000, false},
		{"100b", 100, false}, {"1.5g", 3 << 29, false}, {"x", 0, true}, {"-1m", 0, true}, {"", 0, true},
		// docker's RAMInBytes forms.
		{"1mb", 1 << 20, false}, {"1GiB", 1 << 30, false}, {"512 m", 512 << 20, false}, {"2t", 2 << 40, false},
		{"1ib", 0, true}, {"1bb", 0, true}, {"m", 0, true},
	}
	for _, tc := range tests {
		got, err := ParseMemory(tc.in)
		if (err != nil) != tc.err || got != tc.want {
			t.Errorf("ParseMemory(%q) = %d, %v; want %d, error %v", tc.in, got, err, tc.want, tc.err)
		}
	}
}

func TestParseMount(t *testing.T) {
	tests := []struct {
		in      string
		want    containers.Mount
		wantErr bool
	}{
		{"type=bind,source=/h/../x,target=/c,readonly", containers.Mount{Type: containers.MountBind, Source: "/x", Target: "/c", ReadOnly: true}, false},
		{"type=bind,src=/h,dst=/c,ro=false", containers.Mount{Type: containers.MountBind, Source: "/h", Target: "/c"}, false},
		{"source=data,target=/d,volume-nocopy", containers.Mount{Type: containers.MountVolume, Name: "data", Target: "/d", NoCopy: true}, false},
		{"target=/anon", containers.Mount{Type: containers.MountVolume, Target: "/anon"}, false},
		{"type=tmpfs,destination=/t,tmpfs-size=1m,tmpfs-mode=1770", containers.Mount{Type: containers.MountTmpfs, Source: "tmpfs", Target: "/t", Options: []string{"noexec", "size=1048576", "mode=1770"}}, false},
		{"type=bind,src=/h", containers.Mount{}, true},
		{"type=bind,src=rel,dst=/c", containers.Mount{}, true},
		{"type=foo,dst=/c", containers.Mount{}, true},
		{"type=volume,src=/abs,dst=/c", containers.Mount{}, true},
		{"type=tmpfs,src=x,dst=/c", containers.Mount{}, true},
		{"type=volume,dst=/c,tmpfs-size=1m", containers.Mount{}, true},
		{"dst=rel", containers.Mount{}, true},
		{"dst=/c,bogus=1", containers.Mount{}, true},
		{"dst=/c,readonly=maybe", containers.Mount{}, true},
	}
	for _, tc := range tests {
		got, err := parseMount(tc.in)
		if (err != nil) != tc.wantErr || (err == nil && !reflect.DeepEqual(got, tc.want)) {
			t.Errorf("parseMount(%q) = %+v, %v; want %+v, error %v", tc.in, got, err, tc.want, tc.wantErr)
		}
	}
}

func TestParseDevice(t *testing.T) {
	tests := []struct {
		in      string
		want    executor.Device
		wantErr bool
	}{
		{"/dev/null", executor.Device{HostPath: "/dev/null", ContainerPath: "/dev/null"}, false},
		{"/dev/null:/dev/mynull", executor.Device{HostPath: "/dev/null", ContainerPath: "/dev/mynull"}, false},
		{"/dev/null:rw", executor.Device{HostPath: "/dev/null", ContainerPath: "/dev/null", Permissions: "rw"}, false},
		{"/dev/null:/dev/n:rwm", executor.Device{HostPath: "/dev/null", ContainerPath: "/dev/n", Permissions: "rwm"}, false},
		{"/dev/null:/dev/n:r", executor.Device{HostPath: "/dev/null", ContainerPath: "/dev/n", Permissions: "r"}, false},
		{"/dev/null:/dev/n:x", executor.Device{}, true},
		{"/etc/hostname", executor.Device{}, true},
		{"/dev/no-such-device", executor.Device{}, true},
		{"dev/null", executor.Device{}, true},
		{"/dev/null:rel", executor.Device{}, true},
		{"", executor.Device{}, true},
	}
	for _, tc := range tests {
		got, err := parseDevice(tc.in)
		if (err != nil) != tc.wantErr || got != tc.want {
			t.Errorf("parseDevice(%q) = %+v, %v; want %+v, error %v", tc.in, got, err, tc.want, tc.wantErr)
		}
	}
}
