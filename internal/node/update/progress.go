package update

import (
	"fmt"
	"io"
	"time"

	"github.com/kestrel-os/kestrel/internal/node/boot/blockdev"
)

// progress reports the root image's write: on a terminal one line
// rewritten in place (bytes, rate, ETA), otherwise a plain line per tenth,
// which is what a Job's log and a serial console want.
type progress struct {
	out      io.Writer
	terminal bool
	now      func() time.Time

	total    int64
	start    time.Time
	last     time.Time
	lastTens int64
}

func (p *progress) line(format string, args ...any) {
	if p.out != nil {
		fmt.Fprintf(p.out, format+"\n", args...)
	}
}

func (p *progress) begin(total int64) {
	p.total, p.start, p.last, p.lastTens = total, p.now(), time.Time{}, -1
}

func (p *progress) update(done int64) {
	if p.out == nil || p.total == 0 {
		return
	}
	now := p.now()
	tens := done * 10 / p.total
	if p.terminal {
		if now.Sub(p.last) < 200*time.Millisecond && done < p.total {
			return
		}
		p.last = now
		fmt.Fprintf(p.out, "\r%s", p.status(done, now))
		return
	}
	if tens == p.lastTens {
		return
	}
	p.lastTens = tens
	fmt.Fprintf(p.out, "%s\n", p.status(done, now))
}

func (p *progress) end(done int64) {
	if p.out != nil && p.terminal {
		fmt.Fprintf(p.out, "\r%s\n", p.status(done, p.now()))
	}
}

func (p *progress) status(done int64, now time.Time) string {
	el := now.Sub(p.start).Seconds()
	rate := 0.0
	if el > 0 {
		rate = float64(done) / el
	}
	eta := "?"
	if rate > 0 {
		eta = time.Duration(float64(p.total-done) / rate * float64(time.Second)).Round(time.Second).String()
	}
	return fmt.Sprintf("root image %3d%%  %s / %s  %s/s  ETA %s", done*100/p.total,
		blockdev.HumanSize(done), blockdev.HumanSize(p.total), blockdev.HumanSize(int64(rate)), eta)
}
