// Package progress writes a build's progress lines to the writer it is
// given (kestrel-build passes stderr): one line when a step ends, saying
// what it was and how long it took, and for downloads and pushes the bytes
// moved and the rate.
//
// A transfer also reports while it runs, at each tenth of its size when
// the size is known and every 64 MiB when it is not, so that a download
// of minutes is never silent. Deliberately left out: bars redrawn in place
// (the lines go to CI logs and pipes as often as to a terminal) and a
// ticker (what is printed depends on the bytes moved, not on the clock;
// only the durations do).
//
// A nil *Log, or one made with a nil writer, prints nothing, so library
// code takes a *Log and never checks it.
package progress

import (
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/dustin/go-humanize"
)

// Log writes progress lines; it is safe for concurrent use (a push
// reports from the goroutine that reads its updates).
type Log struct {
	mu sync.Mutex
	w  io.Writer
}

// New returns a Log writing to w, one line per call; nil w is quiet.
func New(w io.Writer) *Log { return &Log{w: w} }

// Printf writes one line.
func (l *Log) Printf(format string, args ...any) {
	if l == nil || l.w == nil {
		return
	}
	line := fmt.Sprintf(format, args...)
	l.mu.Lock()
	defer l.mu.Unlock()
	fmt.Fprintln(l.w, line)
}

// Step starts timing a step named what (e.g. "go build ./cmd/kestrel").
func (l *Log) Step(what string) *Step { return &Step{l: l, what: what, start: time.Now()} }

// Step is a step being timed.
type Step struct {
	l     *Log
	what  string
	start time.Time
}

// Done writes "what: detail (duration)", or "what (duration)" when detail
// is empty.
func (s *Step) Done(detail string) {
	d := Duration(time.Since(s.start))
	if detail == "" {
		s.l.Printf("%s (%s)", s.what, d)
		return
	}
	s.l.Printf("%s: %s (%s)", s.what, detail, d)
}

// Transfer starts counting the bytes of a download or push named what;
// total is its size in bytes, or <= 0 when unknown.
func (l *Log) Transfer(what string, total int64) *Transfer {
	t := &Transfer{l: l, what: what, start: time.Now(), total: max(total, 0)}
	t.next = t.step()
	if total > 0 {
		l.Printf("%s: %s", what, Bytes(total))
	} else {
		l.Printf("%s: started", what)
	}
	return t
}

// unknownStep is how often a transfer of unknown size reports.
const unknownStep = 64 << 20

// Transfer counts the bytes of one transfer. Write it the bytes (it is an
// io.Writer, for io.TeeReader or io.MultiWriter) or Set the count.
type Transfer struct {
	l     *Log
	what  string
	start time.Time
	mu    sync.Mutex
	n     int64
	total int64
	next  int64 // the count at which the next running line is due
}

// SetTotal sets the size once it is known (a push learns it from its
// first update).
func (t *Transfer) SetTotal(total int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if total = max(total, 0); total == t.total {
		return
	}
	t.total = total
	t.next = t.step()
	for t.next <= t.n {
		t.next += t.step()
	}
}

func (t *Transfer) step() int64 {
	if t.total > 0 {
		return max(t.total/10, 1)
	}
	return unknownStep
}

// Write counts len(p) bytes.
func (t *Transfer) Write(p []byte) (int, error) {
	t.mu.Lock()
	t.advance(t.n + int64(len(p)))
	t.mu.Unlock()
	return len(p), nil
}

// Set sets the count of bytes moved so far.
func (t *Transfer) Set(n int64) {
	t.mu.Lock()
	t.advance(n)
	t.mu.Unlock()
}

// advance moves the count to n and writes a running line for each mark
// passed (one line, however many marks one write jumps over).
func (t *Transfer) advance(n int64) {
	t.n = n
	if n < t.next || (t.total > 0 && n >= t.total) {
		return // the last mark is Done's line
	}
	for t.next <= n {
		t.next += t.step()
	}
	if t.total > 0 {
		t.l.Printf("%s: %s of %s (%d%%)", t.what, Bytes(n), Bytes(t.total), n*100/t.total)
	} else {
		t.l.Printf("%s: %s", t.what, Bytes(n))
	}
}

// Done writes "what: <bytes> in <duration> (<rate>)".
func (t *Transfer) Done() {
	t.mu.Lock()
	n := t.n
	t.mu.Unlock()
	d := time.Since(t.start)
	t.l.Printf("%s: %s in %s (%s/s)", t.what, Bytes(n), Duration(d), Bytes(int64(float64(n)/max(d.Seconds(), 0.001))))
}

// Bytes formats a byte count in binary units ("68 MiB").
func Bytes(n int64) string { return humanize.IBytes(uint64(max(n, 0))) }

// Duration rounds d for a progress line: tenths of a second, milliseconds
// below one second.
func Duration(d time.Duration) string {
	if d < time.Second {
		return d.Round(time.Millisecond).String()
	}
	return d.Round(100 * time.Millisecond).String()
}
