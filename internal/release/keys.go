package release

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
)

// File names GenerateKeys writes in its directory.
const (
	PrivateKeyFile = "release.key"
	PublicKeyFile  = "release.pub"
)

// GenerateKeys writes a new key pair into dir (created if needed): the
// private key (mode 0600) and the public key. It refuses to overwrite an
// existing private key, so a second run never orphans signed releases.
func GenerateKeys(dir string) (privPath, pubPath string, err error) {
	privPath, pubPath = filepath.Join(dir, PrivateKeyFile), filepath.Join(dir, PublicKeyFile)
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return "", "", fmt.Errorf("generate release key: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return "", "", fmt.Errorf("generate release key: %w", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", "", fmt.Errorf("release keys: %w", err)
	}
	f, err := os.OpenFile(privPath, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return "", "", fmt.Errorf("release key: %w", err)
	}
	err = pem.Encode(f, &pem.Block{Type: "PRIVATE KEY", Bytes: der})
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.WriteFile(pubPath, MarshalPublicKey(pub), 0o644)
	}
	if err != nil {
		os.Remove(privPath)
		return "", "", fmt.Errorf("release key: %w", err)
	}
	return privPath, pubPath, nil
}

// MarshalPublicKey is the public key file's contents (PEM PKIX).
func MarshalPublicKey(pub ed25519.PublicKey) []byte {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		panic(err) // cannot fail for an ed25519 key
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

// LoadPrivateKey reads a private key file (PEM PKCS #8, ed25519).
func LoadPrivateKey(path string) (ed25519.PrivateKey, error) {
	key, err := loadPEM(path, "PRIVATE KEY", x509.ParsePKCS8PrivateKey)
	if err != nil {
		return nil, err
	}
	priv, ok := key.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("%s: a %T, want an ed25519 private key", path, key)
	}
	return priv, nil
}

// LoadPublicKey reads a public key file (PEM PKIX, ed25519).
func LoadPublicKey(path string) (ed25519.PublicKey, error) {
	key, err := loadPEM(path, "PUBLIC KEY", x509.ParsePKIXPublicKey)
	if err != nil {
		return nil, err
	}
	pub, ok := key.(ed25519.PublicKey)
	if !ok {
		return nil, fmt.Errorf("%s: a %T, want an ed25519 public key", path, key)
	}
	return pub, nil
}

// LoadKeys reads every *.pub file in dir (in name order). A directory
// without keys is an error: a node that trusts nothing can upgrade to
// nothing, and should say so rather than report a bad signature.
func LoadKeys(dir string) ([]ed25519.PublicKey, error) {
	paths, err := filepath.Glob(filepath.Join(dir, "*.pub"))
	if err != nil {
		return nil, fmt.Errorf("release keys in %s: %w", dir, err)
	}
	sort.Strings(paths)
	var keys []ed25519.PublicKey
	for _, p := range paths {
		k, err := LoadPublicKey(p)
		if err != nil {
			return nil, fmt.Errorf("release keys: %w", err)
		}
		keys = append(keys, k)
	}
	if len(keys) == 0 {
		if _, err := os.Stat(dir); err != nil {
			return nil, fmt.Errorf("release keys: %w", err)
		}
		return nil, fmt.Errorf("release keys: no *.pub file in %s", dir)
	}
	return keys, nil
}

func loadPEM(path, typ string, parse func([]byte) (any, error)) (any, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, fmt.Errorf("%s: no PEM block", path)
	}
	if block.Type != typ {
		return nil, fmt.Errorf("%s: PEM %q, want %q", path, block.Type, typ)
	}
	key, err := parse(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if key == nil {
		return nil, errors.New(path + ": empty key")
	}
	return key, nil
}
