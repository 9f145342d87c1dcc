package containers

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strconv"
	"sync"
	"time"
)

// Log rotation defaults (docker's json-file max-size and max-file as kiln
// sets them).
const (
	DefaultLogMaxSize  = 10 << 20
	DefaultLogMaxFiles = 3
)

// LogEntry is one line of a container log, in docker's json-file format.
type LogEntry struct {
	Log    string    `json:"log"`
	Stream string    `json:"stream"`
	Time   time.Time `json:"time"`
}

// LogWriter appends entries to a json-file log and rotates it: when the
// file would grow past MaxSize it becomes path.1 (path.1 becomes path.2,
// and so on), keeping MaxFiles files in all. It is safe for concurrent use.
type LogWriter struct {
	path     string
	maxSize  int64
	maxFiles int
	now      func() time.Time

	mu   sync.Mutex
	f    *os.File
	size int64
}

// OpenLog opens (appending) the log at path. maxSize <= 0 and maxFiles <= 0
// mean the defaults. now is the clock; nil means time.Now.
func OpenLog(path string, maxSize int64, maxFiles int, now func() time.Time) (*LogWriter, error) {
	if maxSize <= 0 {
		maxSize = DefaultLogMaxSize
	}
	if maxFiles <= 0 {
		maxFiles = DefaultLogMaxFiles
	}
	if now == nil {
		now = time.Now
	}
	w := &LogWriter{path: path, maxSize: maxSize, maxFiles: maxFiles, now: now}
	if err := w.open(); err != nil {
		return nil, err
	}
	return w, nil
}

func (w *LogWriter) open() error {
	f, err := os.OpenFile(w.path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("open container log: %w", err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return fmt.Errorf("open container log: %w", err)
	}
	w.f, w.size = f, fi.Size()
	return nil
}

// Write records p as output of stream ("stdout" or "stderr"): one entry per
// line, the newline kept; a trailing partial line is an entry of its own.
func (w *LogWriter) Write(stream string, p []byte) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.f == nil {
		return errors.New("write container log: closed")
	}
	t := w.now().UTC()
	var buf bytes.Buffer
	for len(p) > 0 {
		n := bytes.IndexByte(p, '\n') + 1
		if n == 0 {
			n = len(p)
		}
		b, err := json.Marshal(LogEntry{Log: string(p[:n]), Stream: stream, Time: t})
		if err != nil {
			return err
		}
		buf.Write(b)
		buf.WriteByte('\n')
		p = p[n:]
	}
	if w.size > 0 && w.size+int64(buf.Len()) > w.maxSize {
		if err := w.rotate(); err != nil {
			return err
		}
	}
	n, err := w.f.Write(buf.Bytes())
	w.size += int64(n)
	if err != nil {
		return fmt.Errorf("write container log: %w", err)
	}
	return nil
}

// rotate shifts path.N-1 -> path.N ... path -> path.1 and opens a new path.
func (w *LogWriter) rotate() error {
	w.f.Close()
	w.f = nil
	if w.maxFiles > 1 {
		for i := w.maxFiles - 1; i >= 1; i-- {
			src := w.path
			if i > 1 {
				src = w.path + "." + strconv.Itoa(i-1)
			}
			if err := os.Rename(src, w.path+"."+strconv.Itoa(i)); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("rotate container log: %w", err)
			}
		}
	} else if err := os.Truncate(w.path, 0); err != nil {
		return fmt.Errorf("rotate container log: %w", err)
	}
	return w.open()
}

// Close closes the file.
func (w *LogWriter) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.f == nil {
		return nil
	}
	err := w.f.Close()
	w.f = nil
	return err
}

// StreamWriter is an io.Writer for one stream of w.
func (w *LogWriter) StreamWriter(stream string) io.Writer {
	return writerFunc(func(p []byte) (int, error) {
		if err := w.Write(stream, p); err != nil {
			return 0, err
		}
		return len(p), nil
	})
}

type writerFunc func(p []byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// LogOptions selects what ReadLog returns.
type LogOptions struct {
	// Tail keeps only the last Tail entries; < 0 keeps all.
	Tail int
	// Follow keeps reading new entries until Done returns true (checked
	// when no new entry arrived for a poll interval) or ctx is done.
	Follow bool
	Done   func() bool
	// MaxFiles is how many rotated files there may be; 0 means the default.
	MaxFiles int
}

// ReadLog calls fn with the entries of the log at path, oldest first,
// rotated files included.
func ReadLog(ctx context.Context, path string, opts LogOptions, fn func(LogEntry) error) error {
	maxFiles := opts.MaxFiles
	if maxFiles <= 0 {
		maxFiles = DefaultLogMaxFiles
	}
	var entries []LogEntry
	for i := maxFiles - 1; i >= 1; i-- {
		if err := readEntries(path+"."+strconv.Itoa(i), func(e LogEntry) { entries = append(entries, e) }); err != nil {
			return err
		}
	}
	f, err := os.Open(path)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("read container log: %w", err)
	}
	var offset int64
	if f != nil {
		defer f.Close()
		r := bufio.NewReader(f)
		n, err := decodeEntries(r, func(e LogEntry) { entries = append(entries, e) })
		offset = n
		if err != nil {
			return err
		}
	}
	if opts.Tail >= 0 && len(entries) > opts.Tail {
		entries = entries[len(entries)-opts.Tail:]
	}
	for _, e := range entries {
		if err := fn(e); err != nil {
			return err
		}
	}
	if !opts.Follow {
		return nil
	}
	return followLog(ctx, path, f, offset, opts.Done, fn)
}

// followLog reads entries appended to path after offset, reopening the file
// when it is rotated.
func followLog(ctx context.Context, path string, f *os.File, offset int64, done func() bool, fn func(LogEntry) error) error {
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	var pending []byte
	for {
		if f == nil {
			f, _ = os.Open(path)
			offset = 0
			pending = nil
		}
		got := false
		if f != nil {
			buf := make([]byte, 64<<10)
			for {
				n, err := f.ReadAt(buf, offset)
				if n > 0 {
					got = true
					offset += int64(n)
					pending = append(pending, buf[:n]...)
				}
				if err != nil {
					break
				}
			}
			for {
				i := bytes.IndexByte(pending, '\n')
				if i < 0 {
					break
				}
				var e LogEntry
				if json.Unmarshal(pending[:i], &e) == nil {
					if err := fn(e); err != nil {
						return err
					}
				}
				pending = pending[i+1:]
			}
			// Rotated: path is a new file.
			if fi, err := os.Stat(path); err == nil {
				if cur, err := f.Stat(); err == nil && !os.SameFile(fi, cur) && !got {
					f.Close()
					f = nil
					continue
				}
			}
		}
		if !got && done != nil && done() {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

func readEntries(path string, fn func(LogEntry)) error {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read container log: %w", err)
	}
	defer f.Close()
	_, err = decodeEntries(bufio.NewReader(f), fn)
	return err
}

// decodeEntries reads complete lines and returns the offset after the last
// one.
func decodeEntries(r *bufio.Reader, fn func(LogEntry)) (int64, error) {
	var off int64
	for {
		line, err := r.ReadBytes('\n')
		if err != nil {
			if errors.Is(err, io.EOF) {
				return off, nil
			}
			return off, fmt.Errorf("read container log: %w", err)
		}
		off += int64(len(line))
		var e LogEntry
		if json.Unmarshal(line, &e) == nil {
			fn(e)
		}
	}
}
