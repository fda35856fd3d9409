// Package release is a Kestrel release as the builder writes it and the
// node reads it: a manifest (version, arch, board, the parts vmlinuz,
// initrd and rootfs with their sizes and sha256, the rootfs's dm-verity
// parameters), signed with ed25519, and the parts themselves, either as a
// directory (the upgrade image's /kestrel/release) or as one bundle file.
//
// # Signed manifest
//
// The manifest is JSON. What is signed is its exact bytes, prefixed with
// the context string SignContext so that a signature over a manifest can
// never be replayed as a signature over anything else. The envelope
// (release.json in a directory, the head of a bundle) is JSON too:
//
//	{"key_id": "<16 hex digits>", "manifest": "<base64 manifest bytes>", "signature": "<base64>"}
//
// key_id is KeyID of the signing public key: the first 8 bytes of the
// sha256 of its 32 raw bytes, in hex. It only picks the key to try; the
// signature decides.
//
// # Directory
//
// A release directory holds release.json (the envelope) and one file per
// part, named as the part (vmlinuz, initrd, rootfs).
//
// # Bundle
//
// A bundle is one file, readable as a stream (stdin, HTTP):
//
//	"KESTREL-BUNDLE\n" (15 bytes)    magic
//	uint32 big-endian                bundle format version (1)
//	uint32 big-endian                envelope length (at most MaxEnvelope)
//	envelope                         the signed manifest, as above
//	part bytes, in manifest order    each exactly its manifest size
//
// and nothing after the last part.
//
// # Keys
//
// A private key file is PEM "PRIVATE KEY" (PKCS #8), a public key file PEM
// "PUBLIC KEY" (PKIX), as openssl writes them for ed25519
// (openssl genpkey -algorithm ed25519; openssl pkey -pubout). A node trusts
// the public keys in layout.ReleaseKeysDir (files *.pub).
//
// Limits: one signature per manifest (no threshold signing), no key
// expiry or revocation list: removing a .pub file is revocation. Parts
// are hashed with sha256 only.
package release

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"

	"github.com/kestrel-os/kestrel/internal/verity"
)

// Format is the manifest format this package writes and reads.
const Format = 1

// Part names, in the order a release carries them.
const (
	PartKernel = "vmlinuz"
	PartInitrd = "initrd"
	PartRootfs = "rootfs" // the root partition image: squashfs + verity tree
)

// PartNames are the parts of every release, in order.
var PartNames = []string{PartKernel, PartInitrd, PartRootfs}

// Manifest describes one release for one arch and board.
type Manifest struct {
	Format  int           `json:"format"`
	Version string        `json:"version"`
	Arch    string        `json:"arch"`
	Board   string        `json:"board,omitempty"`
	Parts   []Part        `json:"parts"`
	Verity  verity.Params `json:"verity"`
}

// Part is one file of a release.
type Part struct {
	Name   string `json:"name"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// Part returns the part called name.
func (m *Manifest) Part(name string) (Part, bool) {
	for _, p := range m.Parts {
		if p.Name == name {
			return p, true
		}
	}
	return Part{}, false
}

// version is what a release version may look like: it ends up in file
// names, boot entry titles and sort keys.
var version = regexp.MustCompile(`^[0-9A-Za-z][0-9A-Za-z._+~-]{0,63}$`)

// Validate checks the manifest's shape: the format, a usable version, the
// three parts in order with sizes and sha256 digests, and verity
// parameters that fit the rootfs part exactly (squashfs blocks + tree).
func (m *Manifest) Validate() error {
	if m.Format != Format {
		return fmt.Errorf("manifest format %d: this kestrel reads format %d", m.Format, Format)
	}
	if !version.MatchString(m.Version) {
		return fmt.Errorf("manifest version %q: want letters, digits and ._+~- (at most 64)", m.Version)
	}
	if m.Arch == "" {
		return errors.New("manifest: no arch")
	}
	if len(m.Parts) != len(PartNames) {
		return fmt.Errorf("manifest: %d parts, want %v", len(m.Parts), PartNames)
	}
	for i, p := range m.Parts {
		if p.Name != PartNames[i] {
			return fmt.Errorf("manifest: part %d is %q, want %q", i, p.Name, PartNames[i])
		}
		if p.Size <= 0 {
			return fmt.Errorf("manifest: part %s: size %d", p.Name, p.Size)
		}
		if b, err := hex.DecodeString(p.SHA256); err != nil || len(b) != 32 || p.SHA256 != hex.EncodeToString(b) {
			return fmt.Errorf("manifest: part %s: sha256 %q: want 64 lower-case hex digits", p.Name, p.SHA256)
		}
	}
	if err := m.Verity.Validate(); err != nil {
		return fmt.Errorf("manifest: %w", err)
	}
	if m.Verity.DataBlocks > 1<<40 || m.Verity.HashOffset > 1<<52 { // 4 PiB: no overflow below
		return fmt.Errorf("manifest: verity parameters too large (%d blocks, hash offset %d)", m.Verity.DataBlocks, m.Verity.HashOffset)
	}
	rootfs, _ := m.Part(PartRootfs)
	if want := m.Verity.HashOffset + verity.TreeSize(m.Verity.DataBlocks); uint64(rootfs.Size) != want {
		return fmt.Errorf("manifest: part rootfs is %d bytes, its verity parameters say %d (hash offset %d + tree)", rootfs.Size, want, m.Verity.HashOffset)
	}
	return nil
}

// Marshal validates m and returns its JSON bytes (what gets signed).
func (m *Manifest) Marshal() ([]byte, error) {
	if err := m.Validate(); err != nil {
		return nil, err
	}
	return json.MarshalIndent(m, "", "  ")
}

// parseManifest decodes and validates manifest bytes; unknown fields are
// an error (a newer format is refused, never half read).
func parseManifest(b []byte) (*Manifest, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var m Manifest
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("manifest: %w", err)
	}
	if dec.More() {
		return nil, errors.New("manifest: data after the JSON object")
	}
	if err := m.Validate(); err != nil {
		return nil, err
	}
	return &m, nil
}

// NewPart describes the file at path as part name (size and sha256).
func NewPart(name, path string) (Part, error) {
	f, err := os.Open(path)
	if err != nil {
		return Part{}, fmt.Errorf("part %s: %w", name, err)
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return Part{}, fmt.Errorf("part %s: %s: %w", name, path, err)
	}
	return Part{Name: name, Size: n, SHA256: hex.EncodeToString(h.Sum(nil))}, nil
}
