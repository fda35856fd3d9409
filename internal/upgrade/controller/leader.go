package controller

import (
	"context"
	"errors"
	"fmt"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
)

// Leader configures leader election over a coordination.k8s.io Lease.
type Leader struct {
	Namespace, Name, Identity                 string
	LeaseDuration, RenewDeadline, RetryPeriod time.Duration
}

// ErrLostLeadership is returned when another instance took the lease.
var ErrLostLeadership = errors.New("lost leadership")

// RunWithLeaderElection runs run while this process holds the Lease. It
// returns when ctx ends (releasing the lease) or, with ErrLostLeadership,
// when the lease is lost: the process should then exit and be restarted.
func RunWithLeaderElection(ctx context.Context, cfg *rest.Config, l Leader, run func(context.Context) error) error {
	if l.LeaseDuration == 0 {
		l.LeaseDuration, l.RenewDeadline, l.RetryPeriod = 15*time.Second, 10*time.Second, 2*time.Second
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return fmt.Errorf("leader election client: %w", err)
	}
	lock := &resourcelock.LeaseLock{
		LeaseMeta:  metav1.ObjectMeta{Namespace: l.Namespace, Name: l.Name},
		Client:     cs.CoordinationV1(),
		LockConfig: resourcelock.ResourceLockConfig{Identity: l.Identity},
	}
	runErr := make(chan error, 1)
	lctx, cancel := context.WithCancel(ctx)
	defer cancel()
	le, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
		Lock: lock, ReleaseOnCancel: true, Name: l.Name,
		LeaseDuration: l.LeaseDuration, RenewDeadline: l.RenewDeadline, RetryPeriod: l.RetryPeriod,
		Callbacks: leaderelection.LeaderCallbacks{
			OnStartedLeading: func(ctx context.Context) {
				runErr <- run(ctx)
				cancel()
			},
			OnStoppedLeading: func() { cancel() },
		},
	})
	if err != nil {
		return fmt.Errorf("leader election: %w", err)
	}
	le.Run(lctx)
	select {
	case err := <-runErr:
		if err != nil {
			return err
		}
		if ctx.Err() == nil {
			return ErrLostLeadership
		}
		return nil
	default:
		if ctx.Err() != nil {
			return nil
		}
		return ErrLostLeadership
	}
}
