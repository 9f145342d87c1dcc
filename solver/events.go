package solver

import "time"

// EventKind says what happened to a vertex.
type EventKind int

// Event kinds.
const (
	// EventStarted: the vertex started running.
	EventStarted EventKind = iota
	// EventCached: the result came from the cache; nothing ran.
	EventCached
	// EventOutput: a chunk of the step's output (Data).
	EventOutput
	// EventDone: the vertex finished.
	EventDone
	// EventError: the vertex failed (Err).
	EventError
)

// Event is one progress report.
type Event struct {
	Kind   EventKind
	Vertex *Vertex
	// Index numbers vertices in the order they were first reported (1-based).
	Index int
	Time  time.Time
	// Elapsed is set on Done and Error.
	Elapsed time.Duration
	// Data is output for EventOutput; Stream is 1 (stdout) or 2 (stderr).
	Data   []byte
	Stream int
	Err    error
}
