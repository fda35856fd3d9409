// Package rotlog is an io.Writer that appends to a log file and rotates
// it by size: name -> name.1 -> ... -> name.<Keep>, the oldest dropped.
//
// Limits: size-based only (no time-based rotation, no compression); a
// single write larger than the limit still goes in whole; one writer per
// file (the supervisor owns its services' logs).
package rotlog

import (
	"fmt"
	"os"
	"path/filepath"
	"sync"
)

// Writer appends to Path and rotates when a write would pass MaxSize.
type Writer struct {
	Path    string
	MaxSize int64
	Keep    int

	mu   sync.Mutex
	f    *os.File
	size int64
}

// Open returns a Writer appending to path.
func Open(path string, maxSize int64, keep int) (*Writer, error) {
	w := &Writer{Path: path, MaxSize: maxSize, Keep: keep}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("log %s: %w", path, err)
	}
	if err := w.open(); err != nil {
		return nil, err
	}
	return w, nil
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
func (w *Writer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.f == nil {
		return 0, os.ErrClosed
	}
	if w.MaxSize > 0 && w.size > 0 && w.size+int64(len(p)) > w.MaxSize {
		if err := w.rotate(); err != nil {
			return 0, err
		}
	}
	n, err := w.f.Write(p)
	w.size += int64(n)
	return n, err
}

func (w *Writer) rotate() error {
	w.f.Close()
	w.f = nil
	if w.Keep < 1 {
		os.Remove(w.Path)
	} else {
		os.Remove(fmt.Sprintf("%s.%d", w.Path, w.Keep))
		for i := w.Keep - 1; i >= 1; i-- {
			os.Rename(fmt.Sprintf("%s.%d", w.Path, i), fmt.Sprintf("%s.%d", w.Path, i+1))
		}
		if err := os.Rename(w.Path, w.Path+".1"); err != nil && !os.IsNotExist(err) {
			return fmt.Errorf("rotate %s: %w", w.Path, err)
		}
	}
	return w.open()
}

// Close closes the file.
func (w *Writer) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.f == nil {
		return nil
	}
	err := w.f.Close()
	w.f = nil
	return err
}
