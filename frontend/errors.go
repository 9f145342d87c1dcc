package frontend

import (
	"errors"
	"fmt"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
)

// Error is a Dockerfile error at a line.
type Error struct {
	File string
	// Line is 1-based; 0 when the error has no position.
	Line int
	Err  error
}

func (e *Error) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("%s:%d: %v", e.File, e.Line, e.Err)
	}
	return fmt.Sprintf("%s: %v", e.File, e.Err)
}

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

// errAt wraps err with the first line of loc.
func (c *converter) errAt(loc []parser.Range, err error) error {
	var fe *Error
	if errors.As(err, &fe) {
		return err
	}
	line := 0
	if len(loc) > 0 {
		line = loc[0].Start.Line
	}
	return &Error{File: c.opts.Filename, Line: line, Err: cleanErr(err)}
}

// warnAt reports a warning about the instruction at loc, if the caller
// asked for warnings.
func (c *converter) warnAt(loc []parser.Range, msg string) {
	if c.opts.Warn == nil {
		return
	}
	if len(loc) > 0 {
		msg = fmt.Sprintf("%s:%d: %s", c.opts.Filename, loc[0].Start.Line, msg)
	}
	c.opts.Warn(msg)
}

// parseErr turns a parser/instructions error into an Error with its line.
func (c *converter) parseErr(err error) error {
	line := 0
	var le *parser.LocationError
	if errors.As(err, &le) && len(le.Locations) > 0 && len(le.Locations[0]) > 0 {
		line = le.Locations[0][0].Start.Line
	}
	var ue *instructions.UnknownInstructionError
	if errors.As(err, &ue) {
		if line == 0 {
			line = ue.Line
		}
		return &Error{File: c.opts.Filename, Line: line, Err: fmt.Errorf("unknown instruction: %s%s", ue.Instruction, suggest(ue.Instruction))}
	}
	return &Error{File: c.opts.Filename, Line: line, Err: cleanErr(err)}
}

// cleanErr drops BuildKit's wrapper types, keeping the message.
func cleanErr(err error) error {
	var le *parser.LocationError
	if errors.As(err, &le) {
		return errors.New(le.Unwrap().Error())
	}
	return err
}

var instructionNames = []string{"ADD", "ARG", "CMD", "COPY", "ENTRYPOINT", "ENV", "EXPOSE", "FROM", "HEALTHCHECK",
	"LABEL", "MAINTAINER", "ONBUILD", "RUN", "SHELL", "STOPSIGNAL", "USER", "VOLUME", "WORKDIR"}

// suggest returns " (did you mean X?)" for a near-miss instruction name.
func suggest(word string) string {
	best, bestD := "", 3
	for _, n := range instructionNames {
		if d := editDistance(upper(word), n); d < bestD {
			best, bestD = n, d
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf(" (did you mean %s?)", best)
}

func upper(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c >= 'a' && c <= 'z' {
			b[i] = c - 32
		}
	}
	return string(b)
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
