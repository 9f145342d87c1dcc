package main

import (
	"slices"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// TestQuickCommand checks that the tree made for a build or run command
// line finds the same command, with the same flags, as the whole tree, and
// that every other command line gets the whole tree.
func TestQuickCommand(t *testing.T) {
	full := (&cli{}).rootCommand(nil)
	for _, tc := range []struct {
		args  []string
		quick string // "" when the whole tree is wanted
	}{
		{[]string{"build", "-t", "app:1", "."}, "build"},
		{[]string{"run", "--rm", "busybox", "true"}, "run"},
		{[]string{"--root", "/tmp/k", "build", "."}, "build"},
		{[]string{"--root=/tmp/k", "--debug", "run", "busybox"}, "run"},
		{[]string{"--debug=true", "build", "--help"}, "build"},
		{nil, ""},
		{[]string{"--help"}, ""},
		{[]string{"-v"}, ""},
		{[]string{"help", "build"}, ""},
		{[]string{"image", "build", "."}, ""},
		{[]string{"container", "run", "busybox"}, ""},
		{[]string{"builds"}, ""},
		{[]string{"--root"}, ""},
		{[]string{"__complete", "build", ""}, ""},
	} {
		c := &cli{}
		mk := c.quickCommand(tc.args)
		if (mk != nil) != (tc.quick != "") {
			t.Errorf("quickCommand(%q) gave a command: %v, want %v", tc.args, mk != nil, tc.quick != "")
			continue
		}
		if mk == nil {
			continue
		}
		root := c.rootCommand(tc.args)
		got, _, err := root.Find(tc.args)
		if err != nil {
			t.Fatalf("%q: %v", tc.args, err)
		}
		want, _, err := full.Find([]string{tc.quick})
		if err != nil {
			t.Fatal(err)
		}
		if got.Name() != tc.quick || got.Use != want.Use {
			t.Errorf("%q found %q (%q), want %q", tc.args, got.Name(), got.Use, want.Use)
		}
		if g, w := flagList(got), flagList(want); !slices.Equal(g, w) {
			t.Errorf("%q: flags differ from the whole tree's:\n got %q\nwant %q", tc.args, g, w)
		}
		if len(root.Commands()) != 1 {
			t.Errorf("%q: the quick tree has %d commands, want 1", tc.args, len(root.Commands()))
		}
	}
}

func flagList(cmd *cobra.Command) []string {
	var out []string
	cmd.InheritedFlags().VisitAll(func(f *pflag.Flag) { out = append(out, "inherited "+f.Name+" "+f.Usage) })
	cmd.LocalFlags().VisitAll(func(f *pflag.Flag) {
		out = append(out, f.Name+"/"+f.Shorthand+" "+f.Value.Type()+" "+f.DefValue+" "+f.Usage)
	})
	return out
}
