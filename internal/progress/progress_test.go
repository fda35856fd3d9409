package progress

import (
	"regexp"
	"strings"
	"testing"
)

func TestTransfer(t *testing.T) {
	const mib = 1 << 20
	tests := []struct {
		name   string
		total  int64   // given at the start
		later  int64   // SetTotal after the first write (a push learns its size late)
		writes []int64 // byte counts written
		want   []string
	}{
		{
			name: "known size, a line per tenth", total: 10 * mib,
			writes: []int64{mib, mib, 3 * mib, 5 * mib},
			want: []string{
				`^get x: 10 MiB$`,
				`^get x: 1\.0 MiB of 10 MiB \(10%\)$`,
				`^get x: 2\.0 MiB of 10 MiB \(20%\)$`,
				`^get x: 5\.0 MiB of 10 MiB \(50%\)$`, // one line for three tenths passed at once
				`^get x: 10 MiB in \S+ \(\S+ [KMGT]?i?B/s\)$`,
			},
		},
		{
			name: "unknown size, a line per 64 MiB", total: 0,
			writes: []int64{10 * mib, 60 * mib, 10 * mib, 100 * mib},
			want: []string{
				`^get x: started$`,
				`^get x: 70 MiB$`,
				`^get x: 180 MiB$`,
				`^get x: 180 MiB in \S+ \(\S+ [KMGT]?i?B/s\)$`,
			},
		},
		{
			name: "size learnt late", total: 0, later: 4 * mib,
			writes: []int64{mib, mib, 2 * mib},
			want: []string{
				`^get x: started$`,
				`^get x: 2\.0 MiB of 4\.0 MiB \(50%\)$`,
				`^get x: 4\.0 MiB in \S+ \(\S+ [KMGT]?i?B/s\)$`,
			},
		},
		{
			name: "nothing moved", total: 5,
			want: []string{`^get x: 5 B$`, `^get x: 0 B in \S+ \(0 B/s\)$`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out strings.Builder
			tr := New(&out).Transfer("get x", tt.total)
			for i, n := range tt.writes {
				if _, err := tr.Write(make([]byte, n)); err != nil {
					t.Fatal(err)
				}
				if i == 0 && tt.later > 0 {
					tr.SetTotal(tt.later)
				}
			}
			tr.Done()
			checkLines(t, out.String(), tt.want)
		})
	}
}

func TestStep(t *testing.T) {
	var out strings.Builder
	l := New(&out)
	l.Step("mksquashfs").Done("12 MiB")
	l.Step("go build").Done("")
	l.Printf("done: %s", "x.img")
	checkLines(t, out.String(), []string{`^mksquashfs: 12 MiB \(\S+s\)$`, `^go build \(\S+s\)$`, `^done: x\.img$`})
}

// TestQuiet: a nil Log, or one without a writer, takes every call.
func TestQuiet(t *testing.T) {
	for _, l := range []*Log{nil, New(nil)} {
		l.Printf("x")
		l.Step("x").Done("y")
		tr := l.Transfer("x", 10)
		tr.Write(make([]byte, 10))
		tr.Done()
	}
}

func checkLines(t *testing.T, out string, want []string) {
	t.Helper()
	got := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(got) != len(want) {
		t.Fatalf("lines:\n%s\nwant %d", out, len(want))
	}
	for i, w := range want {
		if !regexp.MustCompile(w).MatchString(got[i]) {
			t.Errorf("line %d = %q, want it to match %s", i+1, got[i], w)
		}
	}
}
