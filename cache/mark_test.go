package cache

import (
	"maps"
	"slices"
	"testing"

	"github.com/opencontainers/go-digest"
)

func TestMark(t *testing.T) {
	b := func(s string) Node { return Node{NodeBlob, digest.FromString(s)} }
	sn := func(s string) Node { return Node{NodeSnapshot, digest.FromString(s)} }
	tests := []struct {
		name  string
		roots []Node
		refs  map[Node][]Node
		want  []Node
	}{
		{"nothing", nil, nil, nil},
		{"roots only", []Node{b("m")}, nil, []Node{b("m")}},
		{
			"image",
			[]Node{b("manifest")},
			map[Node][]Node{
				b("manifest"): {b("config"), b("l1"), b("l2"), sn("c2")},
				sn("c2"):      {b("l2"), sn("c1")},
				sn("c1"):      {b("l1")},
				b("other"):    {b("l3")},
			},
			[]Node{b("manifest"), b("config"), b("l1"), b("l2"), sn("c1"), sn("c2")},
		},
		{
			"shared prefix",
			[]Node{sn("a2"), sn("b2")},
			map[Node][]Node{
				sn("a2"):   {b("la"), sn("base")},
				sn("b2"):   {b("lb"), sn("base")},
				sn("base"): {b("l0")},
			},
			[]Node{sn("a2"), sn("b2"), sn("base"), b("la"), b("lb"), b("l0")},
		},
		{
			"cycle",
			[]Node{b("x")},
			map[Node][]Node{b("x"): {b("y")}, b("y"): {b("x"), b("z")}},
			[]Node{b("x"), b("y"), b("z")},
		},
		{
			"dangling reference",
			[]Node{b("x")},
			map[Node][]Node{b("x"): {sn("gone")}},
			[]Node{b("x"), sn("gone")},
		},
		{
			"same digest, two kinds",
			[]Node{sn("d")},
			map[Node][]Node{sn("d"): {b("l")}, b("d"): {b("never")}},
			[]Node{sn("d"), b("l")},
		},
		{"duplicate roots", []Node{b("x"), b("x")}, nil, []Node{b("x")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := slices.SortedFunc(maps.Keys(Mark(tt.roots, tt.refs)), cmpNode)
			want := slices.SortedFunc(slices.Values(tt.want), cmpNode)
			if !slices.Equal(got, want) {
				t.Errorf("Mark =\n%v\nwant\n%v", got, want)
			}
		})
	}
}

// TestGraphLazy checks the edges Prune adds for lazy blobs: one not yet
// written as a file keeps its snapshot; a written one, one whose snapshot
// is gone and a damaged record add nothing.
func TestGraphLazy(t *testing.T) {
	d := func(s string) digest.Digest { return digest.FromString(s) }
	b := func(s string) Node { return Node{NodeBlob, d(s)} }
	sn := func(s string) Node { return Node{NodeSnapshot, d(s)} }
	inv := &inventory{
		blobs:     map[digest.Digest]int64{d("written"): 10},
		snapshots: map[digest.Digest]bool{d("c-lazy"): true, d("c-written"): true},
		lazy: map[digest.Digest]digest.Digest{
			d("lazy"):    d("c-lazy"),
			d("written"): d("c-written"),
			d("gone"):    d("c-gone"),
			d("damaged"): "",
		},
	}
	g := &graph{refs: make(map[Node][]Node)}
	g.addLazy(inv)
	tests := []struct {
		name  string
		roots []Node
		want  []Node
	}{
		{"lazy blob keeps its snapshot", []Node{b("lazy")}, []Node{b("lazy"), sn("c-lazy")}},
		{"written blob stands alone", []Node{b("written")}, []Node{b("written")}},
		{"snapshot gone", []Node{b("gone")}, []Node{b("gone")}},
		{"damaged record", []Node{b("damaged")}, []Node{b("damaged")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := slices.SortedFunc(maps.Keys(Mark(tt.roots, g.refs)), cmpNode)
			want := slices.SortedFunc(slices.Values(tt.want), cmpNode)
			if !slices.Equal(got, want) {
				t.Errorf("Mark =\n%v\nwant\n%v", got, want)
			}
		})
	}
	if !inv.hasBlob(d("lazy")) || !inv.hasBlob(d("written")) || inv.hasBlob(d("gone")) || inv.hasBlob(d("damaged")) {
		t.Error("hasBlob disagrees with the records")
	}
}

func cmpNode(a, b Node) int {
	if a.Kind != b.Kind {
		return int(a.Kind) - int(b.Kind)
	}
	switch {
	case a.Digest < b.Digest:
		return -1
	case a.Digest > b.Digest:
		return 1
	}
	return 0
}
