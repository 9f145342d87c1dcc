package cache

import (
	"context"
	"errors"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// Lock modes for flock.
const (
	lockShared    = unix.LOCK_SH
	lockExclusive = unix.LOCK_EX
)

// lockPoll is how often a blocked lock is retried.
const lockPoll = 50 * time.Millisecond

// errLocked means someone else holds a conflicting lock.
var errLocked = errors.New("locked by another process")

// flockTry takes a lock without waiting; errLocked when it is held.
//
// Note that on Linux, a failed attempt to convert a held lock drops the
// lock already held (flock(2): conversion is not atomic).
func flockTry(f *os.File, mode int) error {
	for {
		err := unix.Flock(int(f.Fd()), mode|unix.LOCK_NB)
		switch {
		case err == nil:
			return nil
		case errors.Is(err, unix.EINTR):
			continue
		case errors.Is(err, unix.EWOULDBLOCK):
			return errLocked
		default:
			return &os.PathError{Op: "flock", Path: f.Name(), Err: err}
		}
	}
}

// flockWait takes a lock, waiting until it is free or ctx is done.
func flockWait(ctx context.Context, f *os.File, mode int) error {
	t := time.NewTicker(lockPoll)
	defer t.Stop()
	for {
		err := flockTry(f, mode)
		if !errors.Is(err, errLocked) {
			return err
		}
		select {
		case <-ctx.Done():
			return context.Cause(ctx)
		case <-t.C:
		}
	}
}
