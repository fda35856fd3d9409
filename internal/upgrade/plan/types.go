// Package plan defines the upgrade.cattle.io/v1 Plan API as rancher's
// system-upgrade-controller (SUC) defines it, so that a Plan written for SUC
// decodes, validates and hashes the same way here: the types, the CRD built
// from them, validation, the latestHash digest, the time window and the
// Plan's status conditions.
//
// Deliberate limits and differences from SUC:
//   - Cordon is a *bool on the Go side (same JSON, same schema) so that an
//     explicit `cordon: false` next to `drain` can be rejected as a conflict:
//     a drain always cordons.
//   - Both `postCompleteLabels` and SUC's older JSON name `customNodeLabels`
//     are accepted; when both are given they are merged, postCompleteLabels
//     winning.
//   - There is no generated clientset; Client in this package is a small
//     typed REST client over exactly the verbs the controller needs.
package plan

import (
	"encoding/json"
	"fmt"

	"github.com/rancher/wrangler/v3/pkg/genericcondition"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// Group, Version and the resource name of the Plan API.
const (
	Group    = "upgrade.cattle.io"
	Version  = "v1"
	Resource = "plans"
	Kind     = "Plan"
)

// SchemeGroupVersion is upgrade.cattle.io/v1.
var SchemeGroupVersion = schema.GroupVersion{Group: Group, Version: Version}

// Labels and annotations shared with SUC.
const (
	LabelController = Group + "/controller"
	LabelNode       = Group + "/node"
	LabelPlan       = Group + "/plan"
	LabelVersion    = Group + "/version"
	// AnnotationIncludeInDigest lists comma-separated dotted paths of the
	// Plan whose string values feed latestHash.
	AnnotationIncludeInDigest = Group + "/digest"
	// AnnotationTTLSecondsAfterFinished is put on Jobs as SUC does.
	AnnotationTTLSecondsAfterFinished = Group + "/ttl-seconds-after-finished"
)

// LabelPlanName is the node (and Job) label carrying the hash of the plan
// last applied there: `plan.upgrade.cattle.io/<plan>`.
func LabelPlanName(name string) string { return "plan." + Group + "/" + name }

// Condition types on a Plan's status.
const (
	CondValidated      = "Validated"
	CondLatestResolved = "LatestResolved"
	CondComplete       = "Complete"
	// CondHalted is Kestrel's own: True when a node failed its health gate
	// and the rollout of the current hash stopped.
	CondHalted = "Halted"
)

// Plan represents a set of Jobs to apply an upgrade to a set of Nodes.
type Plan struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   PlanSpec   `json:"spec,omitempty"`
	Status PlanStatus `json:"status,omitempty"`
}

// PlanList is a list of Plans.
type PlanList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []Plan `json:"items"`
}

// PlanSpec is the user-configurable part of a Plan.
type PlanSpec struct {
	Concurrency           int64                         `json:"concurrency,omitempty"`
	JobActiveDeadlineSecs *int64                        `json:"jobActiveDeadlineSecs,omitempty"`
	NodeSelector          *metav1.LabelSelector         `json:"nodeSelector,omitempty"`
	ServiceAccountName    string                        `json:"serviceAccountName,omitempty"`
	Channel               string                        `json:"channel,omitempty"`
	Version               string                        `json:"version,omitempty"`
	Secrets               []SecretSpec                  `json:"secrets,omitempty"`
	Tolerations           []corev1.Toleration           `json:"tolerations,omitempty"`
	Exclusive             bool                          `json:"exclusive,omitempty"`
	Window                *TimeWindowSpec               `json:"window,omitempty"`
	Prepare               *ContainerSpec                `json:"prepare,omitempty"`
	Upgrade               *ContainerSpec                `json:"upgrade"`
	Cordon                *bool                         `json:"cordon,omitempty"`
	Drain                 *DrainSpec                    `json:"drain,omitempty"`
	ImagePullSecrets      []corev1.LocalObjectReference `json:"imagePullSecrets,omitempty"`
	PostCompleteDelay     *metav1.Duration              `json:"postCompleteDelay,omitempty"`
	PriorityClassName     string                        `json:"priorityClassName,omitempty"`
	PostCompleteLabels    map[string]string             `json:"postCompleteLabels,omitempty"`
	// CustomNodeLabels is the older SUC name of PostCompleteLabels.
	CustomNodeLabels map[string]string `json:"customNodeLabels,omitempty"`
}

// PlanStatus is what the controller reports.
type PlanStatus struct {
	Conditions    []genericcondition.GenericCondition `json:"conditions,omitempty"`
	LatestVersion string                              `json:"latestVersion,omitempty"`
	LatestHash    string                              `json:"latestHash,omitempty"`
	Applying      []string                            `json:"applying,omitempty"`
}

// ContainerSpec is a simplified container template for prepare and upgrade.
type ContainerSpec struct {
	Image           string                  `json:"image"`
	Command         []string                `json:"command,omitempty"`
	Args            []string                `json:"args,omitempty"`
	Env             []corev1.EnvVar         `json:"envs,omitempty"`
	EnvFrom         []corev1.EnvFromSource  `json:"envFrom,omitempty"`
	Volumes         []VolumeSpec            `json:"volumes,omitempty"`
	SecurityContext *corev1.SecurityContext `json:"securityContext,omitempty"`
}

// VolumeSpec is a host path mounted into the Job's containers.
type VolumeSpec struct {
	Name        string `json:"name"`
	Source      string `json:"source"`
	Destination string `json:"destination"`
}

// DrainSpec carries `kubectl drain`'s parameters. Kestrel's controller
// drains in-process with kubectl's own drain library; package
// internal/upgrade/drain maps each field onto it as SUC maps it onto
// kubectl's flags.
type DrainSpec struct {
	Timeout                  *intstr.IntOrString   `json:"timeout,omitempty"`
	GracePeriod              *int32                `json:"gracePeriod,omitempty"`
	DeleteLocalData          *bool                 `json:"deleteLocalData,omitempty"`
	DeleteEmptydirData       *bool                 `json:"deleteEmptydirData,omitempty"`
	IgnoreDaemonSets         *bool                 `json:"ignoreDaemonSets,omitempty"`
	Force                    bool                  `json:"force,omitempty"`
	DisableEviction          bool                  `json:"disableEviction,omitempty"`
	SkipWaitForDeleteTimeout int                   `json:"skipWaitForDeleteTimeout,omitempty"`
	PodSelector              *metav1.LabelSelector `json:"podSelector,omitempty"`
}

// SecretSpec is a Secret mounted into the Job's containers.
type SecretSpec struct {
	Name          string `json:"name"`
	Path          string `json:"path"`
	IgnoreUpdates bool   `json:"ignoreUpdates,omitempty"`
	DefaultMode   *int32 `json:"defaultMode,omitempty"`
}

// Day is a day of the week as SUC (and kured) spell it: 0-6, su, sun, sunday...
type Day string

// TimeWindowSpec is when Jobs may be started.
type TimeWindowSpec struct {
	Days      []Day  `json:"days,omitempty"`
	StartTime string `json:"startTime,omitempty"`
	EndTime   string `json:"endTime,omitempty"`
	TimeZone  string `json:"timeZone,omitempty"`
}

// DeepCopy returns a deep copy of the Plan. It goes through JSON: Plans are
// few and small, and this cannot drift from the types.
func (p *Plan) DeepCopy() *Plan {
	if p == nil {
		return nil
	}
	out := new(Plan)
	mustRoundTrip(p, out)
	return out
}

// DeepCopyObject implements runtime.Object.
func (p *Plan) DeepCopyObject() runtime.Object { return p.DeepCopy() }

// DeepCopy returns a deep copy of the list.
func (l *PlanList) DeepCopy() *PlanList {
	if l == nil {
		return nil
	}
	out := new(PlanList)
	mustRoundTrip(l, out)
	return out
}

// DeepCopyObject implements runtime.Object.
func (l *PlanList) DeepCopyObject() runtime.Object { return l.DeepCopy() }

func mustRoundTrip(in, out any) {
	b, err := json.Marshal(in)
	if err != nil {
		panic(fmt.Sprintf("plan: deep copy: %v", err))
	}
	if err := json.Unmarshal(b, out); err != nil {
		panic(fmt.Sprintf("plan: deep copy: %v", err))
	}
}

// AddToScheme registers Plan and PlanList.
func AddToScheme(s *runtime.Scheme) error {
	s.AddKnownTypes(SchemeGroupVersion, &Plan{}, &PlanList{})
	metav1.AddToGroupVersion(s, SchemeGroupVersion)
	return nil
}

// CordonRequested reports whether the node is cordoned before the upgrade:
// a drain always cordons.
func (s *PlanSpec) CordonRequested() bool {
	return s.Drain != nil || (s.Cordon != nil && *s.Cordon)
}

// NodeLabels returns the post-complete labels, merging the older
// customNodeLabels name under postCompleteLabels.
func (s *PlanSpec) NodeLabels() map[string]string {
	if len(s.CustomNodeLabels) == 0 {
		return s.PostCompleteLabels
	}
	out := make(map[string]string, len(s.CustomNodeLabels)+len(s.PostCompleteLabels))
	for k, v := range s.CustomNodeLabels {
		out[k] = v
	}
	for k, v := range s.PostCompleteLabels {
		out[k] = v
	}
	return out
}

// DeepCopyDrain returns a deep copy of the drain spec.
func (d *DrainSpec) DeepCopyDrain() *DrainSpec {
	if d == nil {
		return nil
	}
	out := new(DrainSpec)
	mustRoundTrip(d, out)
	return out
}
