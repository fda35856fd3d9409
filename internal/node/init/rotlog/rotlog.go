// Package rotlog is an io.Writer that appends to a log file and rotates
// it by size: name -> name.1 -> ... -> name.<Keep>, the oldest dropped.
//
// A Writer survives its file's failures: a failed rotation or open (a
// full or read-only state partition, EIO) leaves it without a file, and
// every later Write tries to open it again, at most once per RetryEvery,
// so the log resumes by itself once space is freed. Writes in between
// fail, and Err reports the last failure until a write succeeds again.
//
// Limits: size-based only (no time-based rotation, no compression); a
// single write larger than the limit still goes in whole; one writer per
// file (the supervisor owns its services' logs); what failed to be
// written is lost, not buffered.
package rotlog

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// RetryEvery is the least time between two attempts to reopen a log that
// could not be opened: a service writing a line per millisecond to a full
// disk must not turn into an open(2) per line.
const RetryEvery = time.Second

// ErrClosed is what Write returns after Close.
var ErrClosed = os.ErrClosed

// Writer appends to Path and rotates when a write would pass MaxSize.
type Writer struct {
	Path    string
	MaxSize int64
	Keep    int
	// Now is the clock for RetryEvery; nil is time.Now.
	Now func() time.Time

	mu        sync.Mutex
	f         *os.File
	size      int64
	closed    bool
	lastTry   time.Time
	lastErr   error
	failedLen int64 // bytes refused since the last successful write
}

// Open returns a Writer appending to path. It fails only when path's
// directory cannot be created or the file opened now; use New for a
// writer that starts without its file and opens it when it can.
func Open(path string, maxSize int64, keep int) (*Writer, error) {
	w := New(path, maxSize, keep)
	if w.lastErr != nil {
		return nil, w.lastErr
	}
	return w, nil
}

// New returns a Writer appending to path, trying to open it now; when that
// fails, Err says why and later writes retry.
func New(path string, maxSize int64, keep int) *Writer {
	w := &Writer{Path: path, MaxSize: maxSize, Keep: keep}
	w.lastTry = w.now()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		w.lastErr = fmt.Errorf("log %s: %w", path, err)
		return w
	}
	w.lastErr = w.open()
	return w
}

func (w *Writer) now() time.Time {
	if w.Now != nil {
		return w.Now()
	}
	return time.Now()
}

func (w *Writer) open() error {
	f, err := os.OpenFile(w.Path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return fmt.Errorf("log %s: %w", w.Path, err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return fmt.Errorf("log %s: %w", w.Path, err)
	}
	w.f, w.size = f, st.Size()
	return nil
}

// Write appends p, rotating first if p would make the file pass MaxSize.
// Without a file (a failed open or rotation) it first tries to open one
// again, at most once per RetryEvery.
func (w *Writer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return 0, ErrClosed
	}
	n, err := w.write(p)
	if err != nil {
		w.lastErr = err
		w.failedLen += int64(len(p) - n)
		return n, err
	}
	w.lastErr, w.failedLen = nil, 0
	return n, nil
}

func (w *Writer) write(p []byte) (int, error) {
	if w.f == nil {
		now := w.now()
		if w.lastErr != nil && now.Sub(w.lastTry) < RetryEvery {
			return 0, w.lastErr
		}
		w.lastTry = now
		if err := os.MkdirAll(filepath.Dir(w.Path), 0o755); err != nil {
			return 0, fmt.Errorf("log %s: %w", w.Path, err)
		}
		if err := w.open(); err != nil {
			return 0, err
		}
	}
	if w.MaxSize > 0 && w.size > 0 && w.size+int64(len(p)) > w.MaxSize {
		if err := w.rotate(); err != nil {
			return 0, err
		}
	}
	n, err := w.f.Write(p)
	w.size += int64(n)
	if err != nil {
		return n, fmt.Errorf("log %s: %w", w.Path, err)
	}
	return n, nil
}

func (w *Writer) rotate() error {
	w.f.Close()
	w.f = nil
	w.lastTry = w.now()
	if w.Keep < 1 {
		os.Remove(w.Path)
	} else {
		os.Remove(fmt.Sprintf("%s.%d", w.Path, w.Keep))
		for i := w.Keep - 1; i >= 1; i-- {
			os.Rename(fmt.Sprintf("%s.%d", w.Path, i), fmt.Sprintf("%s.%d", w.Path, i+1))
		}
		if err := os.Rename(w.Path, w.Path+".1"); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("rotate %s: %w", w.Path, err)
		}
	}
	return w.open()
}

// Err is the last write's failure, nil once a write succeeded again.
func (w *Writer) Err() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.lastErr
}

// Dropped is how many bytes failed to be written since the last write
// that succeeded.
func (w *Writer) Dropped() int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.failedLen
}

// Close closes the file; later writes fail with ErrClosed.
func (w *Writer) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.closed = true
	if w.f == nil {
		return nil
	}
	err := w.f.Close()
	w.f = nil
	return err
}
