// Package drain cordons, drains and uncordons a node through the API, the
// way `kubectl drain` does but in-process: pods are evicted through the
// eviction subresource, so PodDisruptionBudgets are honoured (a 429 is
// retried until the timeout), then waited for until they are gone.
//
// Limits: mirror pods and (by default) DaemonSet pods are left alone, like
// kubectl; pods carrying the upgrade.cattle.io/controller label (the
// upgrade Jobs themselves) are never touched. Pods that would lose local
// data (emptyDir) or that no controller would recreate are refused unless
// the spec allows it (deleteEmptydirData/deleteLocalData, force).
package drain

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/kestrel-os/kestrel/internal/upgrade/plan"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
)

// RetryInterval is how often a blocked eviction (PDB) is retried and how
// often deletion is polled.
var RetryInterval = 2 * time.Second

// Cordon marks the node unschedulable (idempotent).
func Cordon(ctx context.Context, cs kubernetes.Interface, node string) error {
	return setUnschedulable(ctx, cs, node, true)
}

// Uncordon marks the node schedulable again (idempotent).
func Uncordon(ctx context.Context, cs kubernetes.Interface, node string) error {
	return setUnschedulable(ctx, cs, node, false)
}

func setUnschedulable(ctx context.Context, cs kubernetes.Interface, node string, v bool) error {
	patch := fmt.Sprintf(`{"spec":{"unschedulable":%t}}`, v)
	if _, err := cs.CoreV1().Nodes().Patch(ctx, node, types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		return fmt.Errorf("set node %s unschedulable=%t: %w", node, v, err)
	}
	return nil
}

// Drain cordons the node and evicts its pods per spec, waiting until they
// are gone or the spec's timeout (0: until ctx ends) passes.
func Drain(ctx context.Context, cs kubernetes.Interface, node string, spec *plan.DrainSpec) error {
	if spec == nil {
		spec = &plan.DrainSpec{}
	}
	if err := Cordon(ctx, cs, node); err != nil {
		return err
	}
	timeout, err := plan.DrainTimeout(spec)
	if err != nil {
		return err
	}
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	pods, err := podsToEvict(ctx, cs, node, spec)
	if err != nil {
		return err
	}
	for _, p := range pods {
		if err := evict(ctx, cs, p, spec); err != nil {
			return fmt.Errorf("drain node %s: %w", node, err)
		}
	}
	for _, p := range pods {
		if err := waitGone(ctx, cs, p); err != nil {
			return fmt.Errorf("drain node %s: %w", node, err)
		}
	}
	return nil
}

func podsToEvict(ctx context.Context, cs kubernetes.Interface, node string, spec *plan.DrainSpec) ([]corev1.Pod, error) {
	sel := labels.Everything()
	if spec.PodSelector != nil {
		s, err := metav1.LabelSelectorAsSelector(spec.PodSelector)
		if err != nil {
			return nil, fmt.Errorf("drain pod selector: %w", err)
		}
		sel = s
	}
	list, err := cs.CoreV1().Pods("").List(ctx, metav1.ListOptions{
		FieldSelector: fields.OneTermEqualSelector("spec.nodeName", node).String(),
		LabelSelector: sel.String(),
	})
	if err != nil {
		return nil, fmt.Errorf("list pods on node %s: %w", node, err)
	}
	ignoreDS := spec.IgnoreDaemonSets == nil || *spec.IgnoreDaemonSets
	deleteLocal := (spec.DeleteEmptydirData != nil && *spec.DeleteEmptydirData) ||
		(spec.DeleteLocalData == nil && spec.DeleteEmptydirData == nil) || // SUC's default passes --delete-local-data
		(spec.DeleteLocalData != nil && *spec.DeleteLocalData)
	var out []corev1.Pod
	var refused []string
	for _, p := range list.Items {
		if _, ok := p.Labels[plan.LabelController]; ok {
			continue
		}
		if _, mirror := p.Annotations[corev1.MirrorPodAnnotationKey]; mirror {
			continue
		}
		if p.DeletionTimestamp != nil || p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
			continue
		}
		ctrl := metav1.GetControllerOf(&p)
		if ctrl != nil && ctrl.Kind == "DaemonSet" {
			if ignoreDS {
				continue
			}
			refused = append(refused, p.Namespace+"/"+p.Name+" (DaemonSet)")
			continue
		}
		if ctrl == nil && !spec.Force {
			refused = append(refused, p.Namespace+"/"+p.Name+" (no controller; needs force)")
			continue
		}
		if hasEmptyDir(&p) && !deleteLocal {
			refused = append(refused, p.Namespace+"/"+p.Name+" (emptyDir; needs deleteEmptydirData)")
			continue
		}
		out = append(out, p)
	}
	if len(refused) > 0 {
		return nil, fmt.Errorf("drain node %s: cannot evict %s", node, strings.Join(refused, ", "))
	}
	return out, nil
}

func hasEmptyDir(p *corev1.Pod) bool {
	for _, v := range p.Spec.Volumes {
		if v.EmptyDir != nil {
			return true
		}
	}
	return false
}

func evict(ctx context.Context, cs kubernetes.Interface, p corev1.Pod, spec *plan.DrainSpec) error {
	opts := metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &p.UID}}
	if spec.GracePeriod != nil && *spec.GracePeriod >= 0 {
		g := int64(*spec.GracePeriod)
		opts.GracePeriodSeconds = &g
	}
	for {
		var err error
		if spec.DisableEviction {
			err = cs.CoreV1().Pods(p.Namespace).Delete(ctx, p.Name, opts)
		} else {
			err = cs.PolicyV1().Evictions(p.Namespace).Evict(ctx, &policyv1.Eviction{
				ObjectMeta:    metav1.ObjectMeta{Name: p.Name, Namespace: p.Namespace},
				DeleteOptions: &opts,
			})
		}
		switch {
		case err == nil, apierrors.IsNotFound(err), apierrors.IsConflict(err):
			return nil
		case apierrors.IsTooManyRequests(err):
			// A PodDisruptionBudget says not now: wait and retry.
		default:
			return fmt.Errorf("evict pod %s/%s: %w", p.Namespace, p.Name, err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("evict pod %s/%s: blocked by a disruption budget: %w", p.Namespace, p.Name, errors.Join(ctx.Err(), err))
		case <-time.After(RetryInterval):
		}
	}
}

func waitGone(ctx context.Context, cs kubernetes.Interface, p corev1.Pod) error {
	for {
		cur, err := cs.CoreV1().Pods(p.Namespace).Get(ctx, p.Name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) || (err == nil && cur.UID != p.UID) {
			return nil
		}
		if err != nil && ctx.Err() == nil {
			return fmt.Errorf("wait for pod %s/%s: %w", p.Namespace, p.Name, err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for pod %s/%s to go: %w", p.Namespace, p.Name, ctx.Err())
		case <-time.After(RetryInterval / 4):
		}
	}
}
