package plan

import (
	"fmt"
	"time"

	"k8s.io/apimachinery/pkg/util/intstr"
)

// DrainTimeout returns spec.drain.timeout as a duration (0: none). As in
// SUC, a string is a Go duration and an integer counts nanoseconds.
func DrainTimeout(d *DrainSpec) (time.Duration, error) {
	if d == nil || d.Timeout == nil {
		return 0, nil
	}
	if d.Timeout.Type == intstr.Int {
		return time.Duration(d.Timeout.IntValue()), nil
	}
	t, err := time.ParseDuration(d.Timeout.StrVal)
	if err != nil {
		return 0, fmt.Errorf("spec.drain.timeout %q: %w", d.Timeout.StrVal, err)
	}
	return t, nil
}
