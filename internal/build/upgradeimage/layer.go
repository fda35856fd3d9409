package upgradeimage

import (
	"fmt"
	"io"
	"sync"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// streamLayer is an uncompressed tar layer regenerated from its sources on
// every read, so a multi-gigabyte release is never copied to a temporary
// file. Its digest and diff ID are the same hash, computed on first use.
type streamLayer struct {
	open tarball.Opener

	once   sync.Once
	digest v1.Hash
	size   int64
	err    error
}

var _ v1.Layer = (*streamLayer)(nil)

func (l *streamLayer) compute() error {
	l.once.Do(func() {
		rc, err := l.open()
		if err != nil {
			l.err = err
			return
		}
		defer rc.Close()
		l.digest, l.size, l.err = v1.SHA256(rc)
		if l.err != nil {
			l.err = fmt.Errorf("release layer: %w", l.err)
		}
	})
	return l.err
}

func (l *streamLayer) Digest() (v1.Hash, error) { return l.digest, l.compute() }
func (l *streamLayer) DiffID() (v1.Hash, error) { return l.digest, l.compute() }
func (l *streamLayer) Size() (int64, error)     { return l.size, l.compute() }

func (l *streamLayer) Compressed() (io.ReadCloser, error)   { return l.open() }
func (l *streamLayer) Uncompressed() (io.ReadCloser, error) { return l.open() }

func (l *streamLayer) MediaType() (types.MediaType, error) { return types.OCIUncompressedLayer, nil }
