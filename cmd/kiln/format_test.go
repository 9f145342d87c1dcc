package main

import (
	"bytes"
	"testing"
)

func TestFormatter(t *testing.T) {
	type row struct {
		ID, Names string
		Labels    map[string]string
		Size      int64
	}
	items := []any{
		row{ID: "abc", Names: "web", Labels: map[string]string{"a": "b"}, Size: 2130000},
		row{ID: "def", Names: "db", Labels: map[string]string{}, Size: 5},
	}
	for _, tc := range []struct {
		format, want string
	}{
		{"{{.ID}} {{.Names}}", "abc web\ndef db\n"},
		{`{{.ID}}\t{{.Size}}`, "abc\t2130000\ndef\t5\n"},
		{"table {{.ID}}\t{{.Names}}", "CONTAINER ID   NAMES\nabc            web\ndef            db\n"},
		{"{{json .Labels}}", "{\"a\":\"b\"}\n{}\n"},
		{"{{upper .Names}} {{truncate .ID 2}} {{join (split .Names \"e\") \"-\"}}", "WEB ab w-b\nDB de db\n"},
		{"json", "{\"ID\":\"abc\",\"Labels\":{\"a\":\"b\"},\"Names\":\"web\",\"Size\":2130000}\n{\"ID\":\"def\",\"Labels\":{},\"Names\":\"db\",\"Size\":5}\n"},
		{"{{.Labels.a}}", "b\n<no value>\n"},
	} {
		f, err := newFormatter(tc.format, map[string]string{"ID": "CONTAINER ID"})
		if err != nil {
			t.Fatalf("%q: %v", tc.format, err)
		}
		data := make([]any, len(items))
		for i, it := range items {
			if data[i], err = asTemplateData(it); err != nil {
				t.Fatal(err)
			}
		}
		var buf bytes.Buffer
		if err := f.write(&buf, data); err != nil {
			t.Fatalf("%q: %v", tc.format, err)
		}
		if buf.String() != tc.want {
			t.Errorf("%q:\n%q\nwant\n%q", tc.format, buf.String(), tc.want)
		}
	}
	if _, err := newFormatter("{{.ID", nil); err == nil {
		t.Error("a broken template parsed")
	}
}

func TestBinarySize(t *testing.T) {
	for n, want := range map[uint64]string{0: "0B", 1023: "1023B", 1024: "1KiB", 1929380: "1.84MiB", 64 << 20: "64MiB", 25 << 30: "25GiB"} {
		if got := binarySize(n); got != want {
			t.Errorf("binarySize(%d) = %q, want %q", n, got, want)
		}
	}
}
