package main

import (
	"path/filepath"
	"strings"
	"testing"
)

// cacheCtx is a build whose RUN steps leave a trace when they run.
func cacheCtx(t *testing.T) string {
	return writeCtx(t, map[string]string{
		"Dockerfile": "FROM busybox AS dep\nRUN echo dep > /dep\nFROM busybox\nCOPY a.txt /a.txt\nRUN echo ran > /ran && cat /a.txt > /b\nCOPY --from=dep /dep /dep\nCMD [\"cat\", \"/b\"]\n",
		"a.txt":      "shared cache\n",
	})
}

func checkAllCached(t *testing.T, stderr string) {
	t.Helper()
	if strings.Contains(stderr, "DONE") {
		t.Errorf("a step ran in the second store:\n%s", stderr)
	}
}

func TestBuildCacheLocal(t *testing.T) {
	for _, mode := range []string{"min", "max"} {
		t.Run(mode, func(t *testing.T) {
			a := newEnv(t)
			b := newEnv(t)
			ctx := cacheCtx(t)
			dir := filepath.Join(t.TempDir(), "cache")
			idA := strings.TrimSpace(a.must("build", "-q", "-t", "app:1", "--cache-to", "type=local,dest="+dir+",mode="+mode, ctx).stdout)
			r := b.must("build", "--progress=plain", "-t", "app:1", "--cache-from", "type=local,src="+dir, ctx)
			checkAllCached(t, r.stderr)
			if idB := b.inspectID("app:1"); idB != idA {
				t.Errorf("image ID in store B %s, want %s", idB, idA)
			}
			if out := b.must("run", "--rm", "app:1").stdout; out != "shared cache\n" {
				t.Errorf("image from cache runs with %q", out)
			}
		})
	}
}

func TestBuildCacheRegistry(t *testing.T) {
	reg := startRegistry(t)
	a := newEnv(t)
	b := newEnv(t)
	ctx := cacheCtx(t)
	ref := reg + "/cache/app:buildcache"
	idA := strings.TrimSpace(a.must("build", "-q", "-t", "app:1", "--cache-to", "type=registry,ref="+ref+",mode=max", ctx).stdout)
	r := b.must("build", "--progress=plain", "-t", "app:1", "--cache-from", "type=registry,ref="+ref, ctx)
	checkAllCached(t, r.stderr)
	if idB := b.inspectID("app:1"); idB != idA {
		t.Errorf("image ID in store B %s, want %s", idB, idA)
	}
	if out := b.must("run", "--rm", "app:1").stdout; out != "shared cache\n" {
		t.Errorf("image from cache runs with %q", out)
	}
	// Inline: the image itself carries the cache.
	c := newEnv(t)
	img := reg + "/cache/inline:1"
	a.must("build", "-q", "-t", img, "--cache-to", "type=inline", "--push", ctx)
	r = c.must("build", "--progress=plain", "-t", "app:2", "--cache-from", img, ctx)
	if strings.Contains(r.stderr, "RUN echo ran") && !strings.Contains(r.stderr, "CACHED") {
		t.Errorf("inline cache not used:\n%s", r.stderr)
	}
	if strings.Count(r.stderr, "DONE") > 1 {
		// only the dep stage (not in the final image's cache) may run
		t.Errorf("inline cache left steps to run:\n%s", r.stderr)
	}
}
