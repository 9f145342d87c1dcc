package ops

import (
	"slices"
	"testing"
)

func TestRunEnv(t *testing.T) {
	ssh := []RunMount{{Type: "cache", Target: "/c"}, {Type: "ssh", Target: "/tmp/agent"}, {Type: "ssh", Target: "/run/buildkit/ssh_agent.1"}}
	tests := []struct {
		env, proxy, want []string
		mounts           []RunMount
	}{
		{[]string{"A=1"}, nil, []string{"A=1"}, nil},
		{[]string{"A=1"}, nil, []string{"A=1", "SSH_AUTH_SOCK=/tmp/agent"}, ssh},
		{[]string{"SSH_AUTH_SOCK=/mine"}, nil, []string{"SSH_AUTH_SOCK=/mine"}, ssh},
		{[]string{"HTTP_PROXY=x", "A=1"}, []string{"HTTP_PROXY=y", "http_proxy=y"}, []string{"A=1", "HTTP_PROXY=y", "http_proxy=y"}, nil},
		{nil, []string{"NO_PROXY=n", "no_proxy=n"}, []string{"NO_PROXY=n", "no_proxy=n"}, nil},
	}
	for _, tc := range tests {
		o := &Run{Env: tc.env, Proxy: tc.proxy, Mounts: tc.mounts}
		if got := o.env(); !slices.Equal(got, tc.want) {
			t.Errorf("env %q over %q: %q, want %q", tc.proxy, tc.env, got, tc.want)
		}
	}
	a, err := (&Run{Args: []string{"true"}}).CacheKey(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	b, _ := (&Run{Args: []string{"true"}, Proxy: []string{"HTTP_PROXY=y"}}).CacheKey(t.Context())
	if a != b {
		t.Error("Proxy entered the cache key")
	}
}
