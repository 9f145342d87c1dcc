// Package progressui draws the solver's event stream for a terminal or a
// log: tty (live step lines with timers), plain (one line per event, RUN
// output prefixed by its step) or quiet. It knows nothing of the solver
// beyond its events.
package progressui

import (
	"bytes"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/kiln-build/kiln/solver"
)

// Mode selects the display.
type Mode string

// Display modes.
const (
	ModeAuto  Mode = "auto"
	ModeTTY   Mode = "tty"
	ModePlain Mode = "plain"
	ModeQuiet Mode = "quiet"
)

// tailLines is how many output lines are kept per step for error reports.
const tailLines = 20

// Display consumes events.
type Display interface {
	// Event handles one event; safe for concurrent use.
	Event(solver.Event)
	// Close finishes drawing.
	Close()
	// Tail returns the last output lines of a vertex (for error reports).
	Tail(v *solver.Vertex) []string
}

// New returns a display writing to w.
func New(mode Mode, w io.Writer) Display {
	t := &tails{m: map[*solver.Vertex]*tail{}}
	switch mode {
	case ModeQuiet:
		return &quiet{tails: t}
	case ModeTTY:
		return newTTY(w, t)
	default:
		return &plain{w: w, tails: t, start: time.Now()}
	}
}

type tail struct {
	lines   []string
	partial bytes.Buffer
}

type tails struct {
	mu sync.Mutex
	m  map[*solver.Vertex]*tail
}

// add records output and returns the complete lines it finished.
func (t *tails) add(v *solver.Vertex, data []byte) []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	tl := t.m[v]
	if tl == nil {
		tl = &tail{}
		t.m[v] = tl
	}
	tl.partial.Write(data)
	var done []string
	for {
		b := tl.partial.Bytes()
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			break
		}
		line := strings.TrimRight(string(b[:i]), "\r")
		tl.partial.Next(i + 1)
		done = append(done, line)
		tl.lines = append(tl.lines, line)
		if len(tl.lines) > tailLines {
			tl.lines = tl.lines[len(tl.lines)-tailLines:]
		}
	}
	return done
}

// flush returns an unterminated last line, if any.
func (t *tails) flush(v *solver.Vertex) []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	tl := t.m[v]
	if tl == nil || tl.partial.Len() == 0 {
		return nil
	}
	line := tl.partial.String()
	tl.partial.Reset()
	tl.lines = append(tl.lines, line)
	if len(tl.lines) > tailLines {
		tl.lines = tl.lines[len(tl.lines)-tailLines:]
	}
	return []string{line}
}

// Tail implements Display.
func (t *tails) Tail(v *solver.Vertex) []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	if tl := t.m[v]; tl != nil {
		return append([]string(nil), tl.lines...)
	}
	return nil
}

type quiet struct{ *tails }

func (q *quiet) Event(e solver.Event) {
	if e.Kind == solver.EventOutput {
		q.add(e.Vertex, e.Data)
	}
	if e.Kind == solver.EventError {
		q.flush(e.Vertex)
	}
}

func (q *quiet) Close() {}

// plain prints one line per event.
type plain struct {
	mu    sync.Mutex
	w     io.Writer
	start time.Time
	*tails
}

func (p *plain) Event(e solver.Event) {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch e.Kind {
	case solver.EventStarted:
		fmt.Fprintf(p.w, "#%d %s\n", e.Index, e.Vertex.Name)
	case solver.EventCached:
		fmt.Fprintf(p.w, "#%d %s\n#%d CACHED\n", e.Index, e.Vertex.Name, e.Index)
	case solver.EventOutput:
		for _, l := range p.add(e.Vertex, e.Data) {
			fmt.Fprintf(p.w, "#%d %.3f %s\n", e.Index, e.Time.Sub(p.start).Seconds(), l)
		}
	case solver.EventDone:
		for _, l := range p.flush(e.Vertex) {
			fmt.Fprintf(p.w, "#%d %.3f %s\n", e.Index, e.Time.Sub(p.start).Seconds(), l)
		}
		fmt.Fprintf(p.w, "#%d DONE %.1fs\n", e.Index, e.Elapsed.Seconds())
	case solver.EventError:
		for _, l := range p.flush(e.Vertex) {
			fmt.Fprintf(p.w, "#%d %.3f %s\n", e.Index, e.Time.Sub(p.start).Seconds(), l)
		}
		fmt.Fprintf(p.w, "#%d ERROR: %v\n", e.Index, e.Err)
	}
}

func (p *plain) Close() {}
