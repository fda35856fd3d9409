package plan

import (
	"errors"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"
)

// Validation errors. Each names the field at fault; the controller puts the
// message into the Validated condition.
var (
	ErrNoUpgrade           = errors.New("spec.upgrade.image is required")
	ErrNoVersion           = errors.New("one of spec.version or spec.channel is required")
	ErrDrainDeleteConflict = errors.New("spec.drain cannot specify both deleteEmptydirData and deleteLocalData")
	ErrDrainCordonConflict = errors.New("spec.cordon is false but spec.drain is set: a drain always cordons the node")
	ErrPodSelectorEmpty    = errors.New("spec.drain.podSelector is not selectable")
	ErrInvalidDelay        = errors.New("spec.postCompleteDelay is negative")
	ErrInvalidConcurrency  = errors.New("spec.concurrency is negative")
)

// Validate checks a Plan's spec without talking to the API: SUC's checks
// (drain delete-data conflict, drain pod selector, window, delay) plus the
// ones SUC leaves to a crash later (missing upgrade image, a node selector
// that does not parse, drain with an explicit `cordon: false`). Secrets'
// existence is checked by the caller, which has the API at hand.
func Validate(p *Plan) error {
	s := &p.Spec
	var errs []error
	if s.Upgrade == nil || strings.TrimSpace(s.Upgrade.Image) == "" {
		errs = append(errs, ErrNoUpgrade)
	}
	if s.Prepare != nil && strings.TrimSpace(s.Prepare.Image) == "" {
		errs = append(errs, errors.New("spec.prepare.image is required when spec.prepare is set"))
	}
	if s.Version == "" && s.Channel == "" {
		errs = append(errs, ErrNoVersion)
	}
	if s.Concurrency < 0 {
		errs = append(errs, ErrInvalidConcurrency)
	}
	if _, err := NodeSelector(p); err != nil {
		errs = append(errs, fmt.Errorf("spec.nodeSelector: %w", err))
	}
	if d := s.Drain; d != nil {
		if d.DeleteEmptydirData != nil && d.DeleteLocalData != nil {
			errs = append(errs, ErrDrainDeleteConflict)
		}
		if s.Cordon != nil && !*s.Cordon {
			errs = append(errs, ErrDrainCordonConflict)
		}
		if d.PodSelector != nil {
			sel, err := metav1.LabelSelectorAsSelector(d.PodSelector)
			if err != nil {
				errs = append(errs, fmt.Errorf("spec.drain.podSelector: %w", err))
			} else if _, ok := sel.Requirements(); !ok {
				errs = append(errs, ErrPodSelectorEmpty)
			}
		}
		if _, err := DrainTimeout(d); err != nil {
			errs = append(errs, err)
		}
	}
	if w := s.Window; w != nil {
		if _, err := ParseWindow(w); err != nil {
			errs = append(errs, fmt.Errorf("spec.window is invalid: %w", err))
		}
	}
	if s.PostCompleteDelay != nil && s.PostCompleteDelay.Duration < 0 {
		errs = append(errs, ErrInvalidDelay)
	}
	for k := range s.NodeLabels() {
		if _, err := labels.NewRequirement(k, selection.Exists, nil); err != nil {
			errs = append(errs, fmt.Errorf("spec.postCompleteLabels: %w", err))
		}
	}
	return errors.Join(errs...)
}

// NodeSelector is the Plan's node selector plus SUC's requirement that the
// node has a hostname label.
func NodeSelector(p *Plan) (labels.Selector, error) {
	sel, err := metav1.LabelSelectorAsSelector(p.Spec.NodeSelector)
	if err != nil {
		return nil, err
	}
	host, err := labels.NewRequirement(corev1.LabelHostname, selection.Exists, nil)
	if err != nil {
		return nil, err
	}
	return sel.Add(*host), nil
}
