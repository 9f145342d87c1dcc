package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"regexp"
	"strings"
	"text/tabwriter"
	"text/template"
)

// formatter renders docker's --format templates: Go templates with the
// functions docker gives them (json, join, split, lower, upper, title,
// pad, truncate, println). A "table " prefix prints a header row, each
// {{.Field}} named by headers (else in capitals), and aligns the columns;
// "json" prints each item as one line of JSON.
type formatter struct {
	tmpl   *template.Template
	table  bool
	header string
}

// templateFuncs are docker's template functions.
func templateFuncs() template.FuncMap {
	return template.FuncMap{
		"json": func(v any) (string, error) {
			b, err := json.Marshal(v)
			return string(b), err
		},
		"join":  strings.Join,
		"split": strings.Split,
		"lower": strings.ToLower,
		"upper": strings.ToUpper,
		"title": func(s string) string {
			if s == "" {
				return s
			}
			return strings.ToUpper(s[:1]) + s[1:]
		},
		"pad": func(s string, prefix, suffix int) string {
			return strings.Repeat(" ", prefix) + s + strings.Repeat(" ", suffix)
		},
		"truncate": func(s string, n int) string {
			if len(s) > n {
				return s[:n]
			}
			return s
		},
		"println": fmt.Sprintln,
	}
}

// fieldAction matches a template action that prints one field, anyAction
// any action.
var (
	fieldAction = regexp.MustCompile(`\{\{\s*\.(\w+)\s*\}\}`)
	anyAction   = regexp.MustCompile(`\{\{[^}]*\}\}`)
)

// newFormatter parses format; headers name the fields of a table.
func newFormatter(format string, headers map[string]string) (*formatter, error) {
	f := &formatter{}
	switch {
	case format == "json":
		format = "{{json .}}"
	case strings.HasPrefix(format, "table"):
		f.table = true
		format = strings.TrimSpace(strings.TrimPrefix(format, "table"))
		f.header = fieldAction.ReplaceAllStringFunc(format, func(a string) string {
			name := fieldAction.FindStringSubmatch(a)[1]
			if h, ok := headers[name]; ok {
				return h
			}
			return strings.ToUpper(name)
		})
		f.header = anyAction.ReplaceAllString(f.header, "")
	}
	// Docker's templates take \t and \n written out in the flag.
	format = strings.NewReplacer(`\t`, "\t", `\n`, "\n").Replace(format)
	f.header = strings.NewReplacer(`\t`, "\t", `\n`, "\n").Replace(f.header)
	t, err := template.New("format").Funcs(templateFuncs()).Parse(format)
	if err != nil {
		return nil, fmt.Errorf("--format: %w", err)
	}
	f.tmpl = t
	return f, nil
}

// write renders every item, one per line.
func (f *formatter) write(w io.Writer, items []any) error {
	out := w
	var tw *tabwriter.Writer
	if f.table {
		tw = tabwriter.NewWriter(w, 0, 8, 3, ' ', 0)
		out = tw
		fmt.Fprintln(tw, f.header)
	}
	var buf bytes.Buffer
	for _, it := range items {
		buf.Reset()
		if err := f.tmpl.Execute(&buf, it); err != nil {
			return fmt.Errorf("--format: %w", err)
		}
		buf.WriteByte('\n')
		if _, err := out.Write(buf.Bytes()); err != nil {
			return err
		}
	}
	if tw != nil {
		return tw.Flush()
	}
	return nil
}

// asTemplateData turns v into what a docker template sees of it: its JSON
// form as maps and lists, so {{.State.Status}} reads the "State" object.
func asTemplateData(v any) (any, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	// Numbers stay as written (a size is not 2.13e+06).
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var out any
	err = dec.Decode(&out)
	return out, err
}

// writeFormatted renders items (as their JSON forms) through the --format
// template format to stdout.
func (c *cli) writeFormatted(format string, headers map[string]string, items []any) error {
	f, err := newFormatter(format, headers)
	if err != nil {
		return err
	}
	data := make([]any, len(items))
	for i, it := range items {
		if data[i], err = asTemplateData(it); err != nil {
			return err
		}
	}
	return f.write(c.stdout, data)
}
