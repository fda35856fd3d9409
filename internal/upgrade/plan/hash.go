package plan

import (
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/rancher/wrangler/v3/pkg/data"
	corev1 "k8s.io/api/core/v1"
)

// LatestHash computes status.latestHash exactly as SUC does: hex SHA-224
// over the latest version, the service account name, the string value of
// each dotted path listed in annotation upgrade.cattle.io/digest, and the
// kubectl-style hash of every secret not marked ignoreUpdates, in order.
// secrets maps secret names to the objects (all the non-ignored ones must
// be present).
func LatestHash(p *Plan, latestVersion string, secrets map[string]*corev1.Secret) (string, error) {
	h := sha256.New224()
	h.Write([]byte(latestVersion))
	h.Write([]byte(p.Spec.ServiceAccountName))
	if paths := p.Annotations[AnnotationIncludeInDigest]; paths != "" {
		m, err := data.Convert(p)
		if err != nil {
			return "", fmt.Errorf("plan %s/%s: convert for digest: %w", p.Namespace, p.Name, err)
		}
		for _, entry := range strings.Split(paths, ",") {
			h.Write([]byte(m.String(strings.Split(entry, ".")...)))
		}
	}
	for _, s := range p.Spec.Secrets {
		if s.IgnoreUpdates {
			continue
		}
		sec, ok := secrets[s.Name]
		if !ok || sec == nil {
			return "", fmt.Errorf("plan %s/%s: secret %q not found", p.Namespace, p.Name, s.Name)
		}
		sh, err := SecretHash(sec)
		if err != nil {
			return "", fmt.Errorf("plan %s/%s: hash secret %q: %w", p.Namespace, p.Name, s.Name, err)
		}
		h.Write([]byte(sh))
	}
	return fmt.Sprintf("%x", h.Sum(nil)), nil
}

// SecretHash is kubectl's util/hash.SecretHash (which SUC uses): the first
// ten hex digits of sha256 over a JSON encoding of kind, name, type, data
// (and immutable when set), with vowel-like digits mapped to consonants.
func SecretHash(sec *corev1.Secret) (string, error) {
	m := map[string]any{"kind": "Secret", "type": sec.Type, "name": sec.Name, "data": sec.Data}
	if sec.Immutable != nil {
		m["immutable"] = *sec.Immutable
	}
	b, err := json.Marshal(m)
	if err != nil {
		return "", err
	}
	hex := []rune(fmt.Sprintf("%x", sha256.Sum256(b))[:10])
	for i, c := range hex {
		switch c {
		case '0':
			hex[i] = 'g'
		case '1':
			hex[i] = 'h'
		case '3':
			hex[i] = 'k'
		case 'a':
			hex[i] = 'm'
		case 'e':
			hex[i] = 't'
		}
	}
	return string(hex), nil
}

// MungeVersion turns a version into an image tag as SUC does: `+` -> `-`.
func MungeVersion(v string) string { return strings.ReplaceAll(v, "+", "-") }

// ExpandLabel replaces $(LATEST_VERSION) and $(LATEST_HASH) in a
// post-complete label value.
func ExpandLabel(v string, st *PlanStatus) string {
	v = strings.ReplaceAll(v, "$(LATEST_VERSION)", st.LatestVersion)
	return strings.ReplaceAll(v, "$(LATEST_HASH)", st.LatestHash)
}
