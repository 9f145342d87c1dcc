package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/kiln-build/kiln/executor"
	"github.com/kiln-build/kiln/frontend"
	"github.com/kiln-build/kiln/solver"
)

// exitError makes the process exit with Code without printing anything more.
type exitError struct{ Code int }

func (e *exitError) Error() string { return fmt.Sprintf("exit status %d", e.Code) }

// report prints err for the user and returns the process exit code: a failed
// RUN step's own exit code, 130 on Ctrl-C, 1 otherwise.
func (c *cli) report(err error) int {
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.Code
	}
	if errors.Is(err, context.Canceled) {
		fmt.Fprintln(c.stderr, "ERROR: interrupted")
		return 130
	}
	code := 1
	var ce *exitCodeErr
	if errors.As(err, &ce) {
		code = ce.code
	}
	var se *solver.StepError
	var fe *frontend.Error
	switch {
	case errors.As(err, &se):
		var xe *executor.ExitError
		if errors.As(se.Err, &xe) {
			fmt.Fprintf(c.stderr, "ERROR: %s: did not complete successfully: exit code: %d\n", se.Vertex.Name, xe.Code)
			if xe.Code > 0 && xe.Code < 256 {
				code = xe.Code
			}
		} else {
			fmt.Fprintf(c.stderr, "ERROR: %s: %v\n", se.Vertex.Name, se.Err)
		}
		if c.tail != nil {
			if lines := c.tail(err); len(lines) > 0 {
				fmt.Fprintln(c.stderr, "------ last output ------")
				for _, l := range lines {
					fmt.Fprintln(c.stderr, " > "+l)
				}
			}
		}
		loc := se.Vertex.Location
		if loc.File != "" && loc.StartLine > 0 {
			excerpt(c, loc.File, loc.StartLine, loc.EndLine)
		}
	case errors.As(err, &fe):
		fmt.Fprintf(c.stderr, "ERROR: %v\n", fe)
		if fe.Line > 0 {
			excerpt(c, fe.File, fe.Line, fe.Line)
		}
	default:
		fmt.Fprintf(c.stderr, "ERROR: %v\n", err)
	}
	return code
}

// excerpt prints the Dockerfile lines around a location, marking them.
func excerpt(c *cli, file string, start, end int) {
	f, err := os.Open(file)
	if err != nil {
		return
	}
	defer f.Close()
	if end < start {
		end = start
	}
	fmt.Fprintln(c.stderr, "--------------------")
	fmt.Fprintf(c.stderr, " %s:%d\n", file, start)
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	for n := 1; sc.Scan(); n++ {
		if n < start-2 || n > end+1 {
			continue
		}
		mark := "    "
		if n >= start && n <= end {
			mark = ">>> "
		}
		fmt.Fprintf(c.stderr, " %4d | %s%s\n", n, mark, strings.TrimRight(sc.Text(), "\r"))
	}
	fmt.Fprintln(c.stderr, "--------------------")
}
