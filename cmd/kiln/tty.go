package main

import (
	"os"
	"os/signal"
	"syscall"

	"golang.org/x/term"
)

func termIsTerminal(fd int) bool { return term.IsTerminal(fd) }

// terminal puts the local terminal in raw mode and reports its size now
// and on every SIGWINCH. restore undoes both.
func (c *cli) terminal() (restore func(), resize <-chan [2]uint16) {
	ch := make(chan [2]uint16, 4)
	in, _ := c.stdin.(*os.File)
	out, _ := c.stdout.(*os.File)
	var state *term.State
	if in != nil && term.IsTerminal(int(in.Fd())) {
		state, _ = term.MakeRaw(int(in.Fd()))
	}
	sizeFd := -1
	switch {
	case out != nil && term.IsTerminal(int(out.Fd())):
		sizeFd = int(out.Fd())
	case in != nil && term.IsTerminal(int(in.Fd())):
		sizeFd = int(in.Fd())
	}
	send := func() {
		if sizeFd < 0 {
			return
		}
		if w, h, err := term.GetSize(sizeFd); err == nil {
			select {
			case ch <- [2]uint16{uint16(h), uint16(w)}:
			default:
			}
		}
	}
	send()
	winch := make(chan os.Signal, 1)
	signal.Notify(winch, syscall.SIGWINCH)
	done := make(chan struct{})
	go func() {
		for {
			select {
			case <-done:
				return
			case <-winch:
				send()
			}
		}
	}()
	return func() {
		signal.Stop(winch)
		close(done)
		if state != nil {
			_ = term.Restore(int(in.Fd()), state)
		}
	}, ch
}

// forwardSignals relays the signals a user sends kiln (Ctrl-C, kill) to
// the container, like docker's sig-proxy.
func forwardSignals() (<-chan syscall.Signal, func()) {
	in := make(chan os.Signal, 8)
	out := make(chan syscall.Signal, 8)
	signal.Notify(in, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT, syscall.SIGUSR1, syscall.SIGUSR2)
	done := make(chan struct{})
	go func() {
		for {
			select {
			case <-done:
				return
			case s := <-in:
				if sig, ok := s.(syscall.Signal); ok {
					select {
					case out <- sig:
					default:
					}
				}
			}
		}
	}()
	return out, func() {
		signal.Stop(in)
		close(done)
	}
}
