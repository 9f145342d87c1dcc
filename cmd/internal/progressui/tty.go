package progressui

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/kiln-build/kiln/solver"
)

// runningTail is how many output lines a running step shows in tty mode.
const runningTail = 6

type ttyStep struct {
	v       *solver.Vertex
	index   int
	state   solver.EventKind
	start   time.Time
	elapsed time.Duration
}

// tty redraws a live view of the steps.
type tty struct {
	mu     sync.Mutex
	w      io.Writer
	start  time.Time
	steps  []*ttyStep
	byV    map[*solver.Vertex]*ttyStep
	drawn  int
	stop   chan struct{}
	done   chan struct{}
	closed bool
	*tails
}

func newTTY(w io.Writer, t *tails) *tty {
	d := &tty{w: w, start: time.Now(), byV: map[*solver.Vertex]*ttyStep{}, stop: make(chan struct{}), done: make(chan struct{}), tails: t}
	go d.loop()
	return d
}

func (d *tty) loop() {
	defer close(d.done)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-d.stop:
			return
		case <-tick.C:
			d.mu.Lock()
			d.draw()
			d.mu.Unlock()
		}
	}
}

func (d *tty) Event(e solver.Event) {
	d.mu.Lock()
	defer d.mu.Unlock()
	st := d.byV[e.Vertex]
	if st == nil {
		st = &ttyStep{v: e.Vertex, index: e.Index, state: solver.EventStarted, start: e.Time}
		d.byV[e.Vertex] = st
		d.steps = append(d.steps, st)
	}
	switch e.Kind {
	case solver.EventOutput:
		d.add(e.Vertex, e.Data)
	case solver.EventCached, solver.EventDone, solver.EventError:
		d.flush(e.Vertex)
		st.state = e.Kind
		st.elapsed = e.Elapsed
	}
}

func (d *tty) Close() {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return
	}
	d.closed = true
	d.mu.Unlock()
	close(d.stop)
	<-d.done
	d.mu.Lock()
	d.draw()
	d.mu.Unlock()
}

func (d *tty) draw() {
	var b strings.Builder
	if d.drawn > 0 {
		fmt.Fprintf(&b, "\x1b[%dA", d.drawn)
	}
	lines := 0
	line := func(s string) {
		b.WriteString("\x1b[2K")
		b.WriteString(s)
		b.WriteString("\n")
		lines++
	}
	finished := 0
	for _, st := range d.steps {
		if st.state != solver.EventStarted {
			finished++
		}
	}
	line(fmt.Sprintf("[+] Building %.1fs (%d/%d)", time.Since(d.start).Seconds(), finished, len(d.steps)))
	for _, st := range d.steps {
		name := st.v.Name
		switch st.state {
		case solver.EventCached:
			line(fmt.Sprintf(" => CACHED %s", name))
		case solver.EventDone:
			line(fmt.Sprintf(" => %s %.1fs", name, st.elapsed.Seconds()))
		case solver.EventError:
			line(fmt.Sprintf(" => ERROR %s %.1fs", name, st.elapsed.Seconds()))
		default:
			line(fmt.Sprintf(" => %s %.1fs", name, time.Since(st.start).Seconds()))
			tl := d.tails.Tail(st.v)
			if len(tl) > runningTail {
				tl = tl[len(tl)-runningTail:]
			}
			for _, l := range tl {
				line(" => => " + truncate(l, 160))
			}
		}
	}
	// Clear lines left over from a taller previous frame.
	for i := lines; i < d.drawn; i++ {
		b.WriteString("\x1b[2K\n")
	}
	if d.drawn > lines {
		fmt.Fprintf(&b, "\x1b[%dA", d.drawn-lines)
	}
	d.drawn = lines
	io.WriteString(d.w, b.String())
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}
