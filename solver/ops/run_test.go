package ops

import (
	"slices"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/kiln-build/kiln/cache"
	"github.com/kiln-build/kiln/solver"
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

// TestCacheKey keeps one cache per id, and per id and base for caches
// seeded with from=.
func TestCacheKey(t *testing.T) {
	a := solver.Result{Chain: cache.Chain{{DiffID: digest.FromString("a")}}}
	b := solver.Result{Chain: cache.Chain{{DiffID: digest.FromString("b")}}}
	inputs := []solver.Result{{}, a, b}
	key := func(m RunMount) string {
		k, err := cacheKey(m, inputs)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	plain := key(RunMount{CacheID: "x"})
	fromA := key(RunMount{CacheID: "x", Input: 1, Source: "/"})
	fromB := key(RunMount{CacheID: "x", Input: 2, Source: "/"})
	fromASub := key(RunMount{CacheID: "x", Input: 1, Source: "/sub"})
	distinct := map[string]bool{plain: true, fromA: true, fromB: true, fromASub: true}
	if plain != "x" || len(distinct) != 4 {
		t.Errorf("keys %q %q %q %q: want x and three others", plain, fromA, fromB, fromASub)
	}
	if _, err := cacheKey(RunMount{CacheID: "x", Input: 3}, inputs); err == nil {
		t.Error("a missing input was accepted")
	}
}
