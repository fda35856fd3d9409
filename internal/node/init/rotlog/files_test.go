package rotlog

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func TestFiles(t *testing.T) {
	for _, tc := range []struct {
		name  string
		exist []string
		want  []string
	}{
		{"none", nil, nil},
		{"current only", []string{"k3s.log"}, []string{"k3s.log"}},
		{"rotated", []string{"k3s.log", "k3s.log.1", "k3s.log.2", "k3s.log.10", "k3s.log.x", "k3s.logx"}, []string{"k3s.log.10", "k3s.log.2", "k3s.log.1", "k3s.log"}},
		{"just rotated away", []string{"k3s.log.1"}, []string{"k3s.log.1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			for _, f := range tc.exist {
				os.WriteFile(filepath.Join(dir, f), nil, 0o644)
			}
			got, err := Files(filepath.Join(dir, "k3s.log"))
			if err != nil {
				t.Fatal(err)
			}
			for i := range got {
				got[i] = filepath.Base(got[i])
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("Files = %v, want %v", got, tc.want)
			}
		})
	}
}
