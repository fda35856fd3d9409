package controller

import (
	"context"
	"fmt"
	"time"

	"github.com/kestrel-os/kestrel/internal/upgrade/plan"
	apiextv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apiextclient "k8s.io/apiextensions-apiserver/pkg/client/clientset/clientset"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/rest"
)

// InstallCRD creates or updates the Plan CRD and waits until it is
// Established. The shipped manifests carry the same CRD; this is for tests,
// benchmarks and clusters where the controller may manage its own CRD.
func InstallCRD(ctx context.Context, cfg *rest.Config) error {
	cs, err := apiextclient.NewForConfig(cfg)
	if err != nil {
		return fmt.Errorf("install CRD: client: %w", err)
	}
	want := plan.CRDObject()
	crds := cs.ApiextensionsV1().CustomResourceDefinitions()
	cur, err := crds.Get(ctx, want.Name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		if _, err := crds.Create(ctx, want, metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("install CRD %s: %w", want.Name, err)
		}
	case err != nil:
		return fmt.Errorf("install CRD %s: %w", want.Name, err)
	default:
		want.ResourceVersion = cur.ResourceVersion
		if _, err := crds.Update(ctx, want, metav1.UpdateOptions{}); err != nil {
			return fmt.Errorf("update CRD %s: %w", want.Name, err)
		}
	}
	err = wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		c, err := crds.Get(ctx, want.Name, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		for _, cond := range c.Status.Conditions {
			if cond.Type == apiextv1.Established && cond.Status == apiextv1.ConditionTrue {
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		return fmt.Errorf("CRD %s not established: %w", want.Name, err)
	}
	return nil
}
