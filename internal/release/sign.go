package release

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
)

// SignContext prefixes the manifest bytes in what is signed.
const SignContext = "kestrel release manifest v1\n"

// MaxEnvelope is the largest signed manifest read (a manifest is well
// under 2 KiB; this only bounds what an attacker can make us buffer).
const MaxEnvelope = 64 << 10

// envelope is the signed manifest on disk and in a bundle.
type envelope struct {
	KeyID     string `json:"key_id"`
	Manifest  []byte `json:"manifest"`  // base64 in JSON
	Signature []byte `json:"signature"` // base64 in JSON
}

// KeyID names a public key: the first 8 bytes of its sha256, in hex.
func KeyID(pub ed25519.PublicKey) string {
	sum := sha256.Sum256(pub)
	return hex.EncodeToString(sum[:8])
}

// Sign validates m and returns the signed envelope.
func Sign(m *Manifest, key ed25519.PrivateKey) ([]byte, error) {
	body, err := m.Marshal()
	if err != nil {
		return nil, err
	}
	pub := key.Public().(ed25519.PublicKey)
	env := envelope{KeyID: KeyID(pub), Manifest: body, Signature: ed25519.Sign(key, signed(body))}
	out, err := json.MarshalIndent(env, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(out, '\n'), nil
}

// Verify checks the envelope's signature against the trusted keys, then
// decodes and validates the manifest. Nothing of the manifest is
// interpreted before its signature checks.
func Verify(data []byte, keys []ed25519.PublicKey) (*Manifest, error) {
	if len(keys) == 0 {
		return nil, errors.New("no trusted release keys")
	}
	if len(data) > MaxEnvelope {
		return nil, fmt.Errorf("signed manifest is %d bytes, at most %d", len(data), MaxEnvelope)
	}
	var env envelope
	if err := json.Unmarshal(data, &env); err != nil {
		return nil, fmt.Errorf("signed manifest: %w", err)
	}
	if len(env.Signature) == 0 {
		return nil, errors.New("manifest is not signed")
	}
	var trusted ed25519.PublicKey
	for _, k := range keys {
		if KeyID(k) == env.KeyID {
			trusted = k
			break
		}
	}
	if trusted == nil {
		return nil, fmt.Errorf("manifest signed by unknown key %q (trusted: %s)", env.KeyID, keyIDs(keys))
	}
	if !ed25519.Verify(trusted, signed(env.Manifest), env.Signature) {
		return nil, fmt.Errorf("manifest signature by key %s does not verify", env.KeyID)
	}
	return parseManifest(env.Manifest)
}

func signed(body []byte) []byte {
	return append([]byte(SignContext), body...)
}

func keyIDs(keys []ed25519.PublicKey) string {
	s := ""
	for i, k := range keys {
		if i > 0 {
			s += ", "
		}
		s += KeyID(k)
	}
	return s
}
