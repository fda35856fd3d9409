// Package drain cordons and drains a node for a Plan with kubectl's own
// drain library (k8s.io/kubectl/pkg/drain), so a Plan's spec.drain means
// exactly what it means to rancher's system-upgrade-controller, which runs
// `kubectl drain` in an init container of the upgrade Job. Kestrel drains
// from the controller process instead (while the Job is held paused), but
// with the same code and the same arguments SUC passes:
//
//	spec.drain field          kubectl drain flag               drain.Helper field
//	timeout                   --timeout                        Timeout
//	gracePeriod               --grace-period                   GracePeriodSeconds (unset: -1, the pod's own)
//	deleteEmptydirData,
//	deleteLocalData           --delete-emptydir-data           DeleteEmptyDirData (unless either is false)
//	ignoreDaemonSets          --ignore-daemonsets              IgnoreAllDaemonSets (unset: true)
//	force                     --force                          Force
//	podSelector               --pod-selector                   PodSelector (always with !upgrade.cattle.io/controller)
//	disableEviction           --disable-eviction               DisableEviction
//	skipWaitForDeleteTimeout  --skip-wait-for-delete-timeout   SkipWaitForDeleteTimeoutSeconds
//
// From the library come: every pod evicted at once, each retrying on its
// own while a PodDisruptionBudget refuses it; pods already terminating
// waited for (unless past skipWaitForDeleteTimeout); pods in a terminating
// namespace waited for rather than failed.
//
// Limits: no dry run, and the upgrade Jobs' own pods (label
// upgrade.cattle.io/controller) are never evicted, as in SUC. The library's
// messages name kubectl's flags; errors returned here name the Plan's keys.
// Inherited from kubectl v0.36: a pod in a terminating namespace that
// disappears before the drain has read it as terminating (it re-reads the
// pod only between attempts, keeps its stale copy on NotFound, and the
// namespace refuses the eviction before looking the pod up) is retried
// until spec.drain.timeout, or with none set until the controller stops
// (kubernetes/kubectl#1767); a pod of a DaemonSet that no longer exists is
// refused, or deleted under force.
package drain

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/kestrel-os/kestrel/internal/upgrade/plan"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"
	"k8s.io/client-go/kubernetes"
	kubedrain "k8s.io/kubectl/pkg/drain"
)

// Options are what a drain takes besides the Plan's spec.
type Options struct {
	// Log receives the library's progress and warnings; nil: slog.Default().
	Log *slog.Logger
	// RetryDelay is how long an eviction refused by a disruption budget
	// (or by a terminating namespace) waits before it is tried again;
	// 0: kubectl's 5 s.
	RetryDelay time.Duration
}

// DefaultRetryDelay is kubectl drain's delay between eviction attempts.
const DefaultRetryDelay = 5 * time.Second

// listChunk is kubectl's default --chunk-size.
const listChunk = 500

// Cordon marks the node unschedulable (idempotent).
func Cordon(ctx context.Context, cs kubernetes.Interface, node string) error {
	return cordon(&kubedrain.Helper{Ctx: ctx, Client: cs}, node)
}

// Drain cordons the node and evicts (or deletes) its pods per spec, like
// `kubectl drain`, returning once they are gone or when spec.drain.timeout
// (unset: until ctx ends) has passed.
func Drain(ctx context.Context, cs kubernetes.Interface, node string, spec *plan.DrainSpec, opts Options) error {
	h, err := newHelper(ctx, cs, node, spec, opts)
	if err != nil {
		return fmt.Errorf("drain node %s: %w", node, err)
	}
	if err := cordon(h, node); err != nil {
		return err
	}
	if err := kubedrain.RunNodeDrain(h, node); err != nil {
		return fmt.Errorf("drain node %s: %w", node, planError{err})
	}
	return nil
}

func cordon(h *kubedrain.Helper, node string) error {
	n, err := h.Client.CoreV1().Nodes().Get(h.Ctx, node, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("cordon node %s: %w", node, err)
	}
	if err := kubedrain.RunCordonOrUncordon(h, n, true); err != nil {
		return fmt.Errorf("cordon node %s: %w", node, err)
	}
	return nil
}

// newHelper maps the Plan's drain spec onto kubectl's Helper the way SUC
// maps it onto kubectl's flags (pkg/upgrade/job in SUC).
func newHelper(ctx context.Context, cs kubernetes.Interface, node string, spec *plan.DrainSpec, opts Options) (*kubedrain.Helper, error) {
	if spec == nil {
		spec = &plan.DrainSpec{}
	}
	timeout, err := plan.DrainTimeout(spec)
	if err != nil {
		return nil, err
	}
	sel, err := podSelector(spec.PodSelector)
	if err != nil {
		return nil, err
	}
	log := opts.Log
	if log == nil {
		log = slog.Default()
	}
	log = log.With("node", node)
	h := &kubedrain.Helper{
		Ctx:                 ctx,
		Client:              cs,
		Force:               spec.Force,
		GracePeriodSeconds:  -1,
		IgnoreAllDaemonSets: spec.IgnoreDaemonSets == nil || *spec.IgnoreDaemonSets,
		Timeout:             timeout,
		// SUC passes --delete-emptydir-data unless either key is false
		// (validation refuses both together).
		DeleteEmptyDirData:              (spec.DeleteLocalData == nil || *spec.DeleteLocalData) && (spec.DeleteEmptydirData == nil || *spec.DeleteEmptydirData),
		PodSelector:                     sel,
		ChunkSize:                       listChunk,
		DisableEviction:                 spec.DisableEviction,
		SkipWaitForDeleteTimeoutSeconds: spec.SkipWaitForDeleteTimeout,
		EvictErrorRetryDelay:            opts.RetryDelay,
		Out:                             lineLog{log: log, level: slog.LevelInfo},
		ErrOut:                          lineLog{log: log, level: slog.LevelWarn},
		// Each attempt, with the pod as last read: whether it is already
		// terminating decides whether a refusal is waited out.
		OnPodDeletionOrEvictionStarted: func(p *corev1.Pod, evicting bool) {
			log.Debug("drain: attempt", "pod", p.Namespace+"/"+p.Name, "evict", evicting, "terminating", !p.DeletionTimestamp.IsZero())
		},
		OnPodDeletionOrEvictionFinished: func(p *corev1.Pod, evicted bool, err error) {
			verb := "deleted"
			if evicted {
				verb = "evicted"
			}
			if err != nil {
				log.Warn("pod not "+verb, "pod", p.Namespace+"/"+p.Name, "err", err)
				return
			}
			log.Info("pod "+verb, "pod", p.Namespace+"/"+p.Name)
		},
	}
	if spec.GracePeriod != nil {
		h.GracePeriodSeconds = int(*spec.GracePeriod)
	}
	if h.EvictErrorRetryDelay <= 0 {
		h.EvictErrorRetryDelay = DefaultRetryDelay
	}
	return h, nil
}

// podSelector is SUC's --pod-selector: never the upgrade Jobs' own pods,
// and, when given, only the pods spec.drain.podSelector selects.
func podSelector(ls *metav1.LabelSelector) (string, error) {
	notUpgrade, err := labels.NewRequirement(plan.LabelController, selection.DoesNotExist, nil)
	if err != nil {
		return "", fmt.Errorf("pod selector: %w", err)
	}
	sel := labels.NewSelector().Add(*notUpgrade)
	if ls != nil {
		s, err := metav1.LabelSelectorAsSelector(ls)
		if err != nil {
			return "", fmt.Errorf("spec.drain.podSelector: %w", err)
		}
		reqs, selectable := s.Requirements()
		if !selectable {
			return "", plan.ErrPodSelectorEmpty
		}
		sel = sel.Add(reqs...)
	}
	return sel.String(), nil
}

// planError shows a library error with kubectl's flag names replaced by
// the Plan keys that set them, since the error ends up in the Plan's
// status, where nobody typed a flag.
type planError struct{ err error }

var flagToKey = strings.NewReplacer(
	"--ignore-daemonsets", "spec.drain.ignoreDaemonSets",
	"--delete-emptydir-data", "spec.drain.deleteEmptydirData",
	"--force", "spec.drain.force",
)

func (e planError) Error() string { return flagToKey.Replace(e.err.Error()) }
func (e planError) Unwrap() error { return e.err }

// lineLog is the Helper's Out or ErrOut: each line the library prints
// becomes one log record. slog has no io.Writer adapter, hence this; it
// keeps no partial lines because the library prints with fmt.Fprintf, one
// Write per message, and it is safe for the library's one goroutine per pod
// because slog handlers are.
type lineLog struct {
	log   *slog.Logger
	level slog.Level
}

var _ io.Writer = lineLog{}

func (l lineLog) Write(p []byte) (int, error) {
	for _, line := range strings.Split(string(p), "\n") {
		line = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(line), "WARNING:"))
		if line != "" {
			l.log.Log(context.Background(), l.level, "drain: "+line)
		}
	}
	return len(p), nil
}
