// Package metrics holds the upgrade controller's Prometheus metrics: nodes
// per plan in each state, plus counters of Jobs started and nodes failed.
// It registers on a registry it is given, never on the global one.
package metrics

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
)

// Node states reported per plan.
const (
	StatePending  = "pending"
	StateApplying = "applying"
	StateDone     = "done"
	StateFailed   = "failed"
)

// Metrics is the controller's metric set.
type Metrics struct {
	Nodes       *prometheus.GaugeVec
	JobsCreated *prometheus.CounterVec
	NodesFailed *prometheus.CounterVec
	Reconciles  *prometheus.CounterVec
	APIRequests *prometheus.CounterVec
}

// New creates the metrics and registers them on reg (nil: not registered).
func New(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Nodes: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "kestrel", Subsystem: "upgrade", Name: "plan_nodes",
			Help: "Nodes selected by a Plan, by state (pending, applying, done, failed).",
		}, []string{"namespace", "plan", "state"}),
		JobsCreated: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "kestrel", Subsystem: "upgrade", Name: "jobs_created_total",
			Help: "Upgrade Jobs created.",
		}, []string{"namespace", "plan"}),
		NodesFailed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "kestrel", Subsystem: "upgrade", Name: "node_failures_total",
			Help: "Nodes that failed their upgrade or health gate, by reason.",
		}, []string{"namespace", "plan", "reason"}),
		Reconciles: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "kestrel", Subsystem: "upgrade", Name: "reconciles_total",
			Help: "Plan reconciles, by result (ok, error, conflict).",
		}, []string{"result"}),
		APIRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "kestrel", Subsystem: "upgrade", Name: "api_requests_total",
			Help: "Requests the controller sent to the Kubernetes API, by HTTP method (a watch counts once).",
		}, []string{"method"}),
	}
	if reg != nil {
		reg.MustRegister(m.Nodes, m.JobsCreated, m.NodesFailed, m.Reconciles, m.APIRequests)
	}
	return m
}

// SetNodes records the per-state counts of one plan.
func (m *Metrics) SetNodes(ns, plan string, pending, applying, done, failed int) {
	m.Nodes.WithLabelValues(ns, plan, StatePending).Set(float64(pending))
	m.Nodes.WithLabelValues(ns, plan, StateApplying).Set(float64(applying))
	m.Nodes.WithLabelValues(ns, plan, StateDone).Set(float64(done))
	m.Nodes.WithLabelValues(ns, plan, StateFailed).Set(float64(failed))
}

// ForgetPlan drops a deleted plan's series.
func (m *Metrics) ForgetPlan(ns, plan string) {
	m.Nodes.DeletePartialMatch(prometheus.Labels{"namespace": ns, "plan": plan})
	m.JobsCreated.DeletePartialMatch(prometheus.Labels{"namespace": ns, "plan": plan})
	m.NodesFailed.DeletePartialMatch(prometheus.Labels{"namespace": ns, "plan": plan})
}

// WrapTransport counts every request sent through rt (for rest.Config's
// WrapTransport).
func (m *Metrics) WrapTransport(rt http.RoundTripper) http.RoundTripper {
	return countingTransport{rt: rt, c: m.APIRequests}
}

type countingTransport struct {
	rt http.RoundTripper
	c  *prometheus.CounterVec
}

func (t countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	t.c.WithLabelValues(r.Method).Inc()
	return t.rt.RoundTrip(r)
}
