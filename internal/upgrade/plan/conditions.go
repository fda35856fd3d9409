package plan

import (
	"time"

	"github.com/rancher/wrangler/v3/pkg/genericcondition"
	corev1 "k8s.io/api/core/v1"
)

// SetCondition sets (or adds) a condition on the status, touching
// lastTransitionTime only when the status changes and lastUpdateTime only
// when anything changes. It reports whether the status changed.
func (st *PlanStatus) SetCondition(typ string, status corev1.ConditionStatus, reason, message string, now time.Time) bool {
	ts := now.UTC().Format(time.RFC3339)
	for i := range st.Conditions {
		c := &st.Conditions[i]
		if c.Type != typ {
			continue
		}
		if c.Status == status && c.Reason == reason && c.Message == message {
			return false
		}
		if c.Status != status {
			c.LastTransitionTime = ts
		}
		c.Status, c.Reason, c.Message, c.LastUpdateTime = status, reason, message, ts
		return true
	}
	st.Conditions = append(st.Conditions, genericcondition.GenericCondition{
		Type: typ, Status: status, Reason: reason, Message: message, LastUpdateTime: ts, LastTransitionTime: ts,
	})
	return true
}

// Condition returns the condition of the given type, or nil.
func (st *PlanStatus) Condition(typ string) *genericcondition.GenericCondition {
	for i := range st.Conditions {
		if st.Conditions[i].Type == typ {
			return &st.Conditions[i]
		}
	}
	return nil
}

// IsTrue reports whether the condition is present with status True.
func (st *PlanStatus) IsTrue(typ string) bool {
	c := st.Condition(typ)
	return c != nil && c.Status == corev1.ConditionTrue
}
