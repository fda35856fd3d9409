package plan

import (
	"context"
	"fmt"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
)

// Scheme knows Plans (and the meta types their lists and watches need).
var Scheme = func() *runtime.Scheme {
	s := runtime.NewScheme()
	if err := AddToScheme(s); err != nil {
		panic(err)
	}
	metav1.AddToGroupVersion(s, metav1.SchemeGroupVersion)
	return s
}()

// Client is a typed REST client for Plans.
type Client struct{ rc rest.Interface }

// NewClient returns a Plan client for cfg (which it does not modify).
func NewClient(cfg *rest.Config) (*Client, error) {
	c := rest.CopyConfig(cfg)
	c.GroupVersion = &SchemeGroupVersion
	c.APIPath = "/apis"
	c.NegotiatedSerializer = serializer.NewCodecFactory(Scheme).WithoutConversion()
	if c.UserAgent == "" {
		c.UserAgent = rest.DefaultKubernetesUserAgent()
	}
	rc, err := rest.RESTClientFor(c)
	if err != nil {
		return nil, fmt.Errorf("plan REST client: %w", err)
	}
	return &Client{rc: rc}, nil
}

// Get fetches one Plan.
func (c *Client) Get(ctx context.Context, ns, name string) (*Plan, error) {
	out := &Plan{}
	err := c.rc.Get().Namespace(ns).Resource(Resource).Name(name).Do(ctx).Into(out)
	return out, wrap(err, "get", ns, name)
}

// List lists Plans in ns ("" for all namespaces).
func (c *Client) List(ctx context.Context, ns string, opts metav1.ListOptions) (*PlanList, error) {
	out := &PlanList{}
	err := c.rc.Get().Namespace(ns).Resource(Resource).VersionedParams(&opts, metav1.ParameterCodec).Do(ctx).Into(out)
	return out, wrap(err, "list", ns, "")
}

// Watch watches Plans in ns ("" for all namespaces).
func (c *Client) Watch(ctx context.Context, ns string, opts metav1.ListOptions) (watch.Interface, error) {
	opts.Watch = true
	w, err := c.rc.Get().Namespace(ns).Resource(Resource).VersionedParams(&opts, metav1.ParameterCodec).Watch(ctx)
	return w, wrap(err, "watch", ns, "")
}

// Create creates a Plan.
func (c *Client) Create(ctx context.Context, p *Plan) (*Plan, error) {
	out := &Plan{}
	err := c.rc.Post().Namespace(p.Namespace).Resource(Resource).Body(p).Do(ctx).Into(out)
	return out, wrap(err, "create", p.Namespace, p.Name)
}

// Update replaces a Plan's metadata and spec.
func (c *Client) Update(ctx context.Context, p *Plan) (*Plan, error) {
	out := &Plan{}
	err := c.rc.Put().Namespace(p.Namespace).Resource(Resource).Name(p.Name).Body(p).Do(ctx).Into(out)
	return out, wrap(err, "update", p.Namespace, p.Name)
}

// UpdateStatus replaces a Plan's status (optimistically: the Plan's
// resourceVersion must be current, or the apiserver answers Conflict).
func (c *Client) UpdateStatus(ctx context.Context, p *Plan) (*Plan, error) {
	out := &Plan{}
	err := c.rc.Put().Namespace(p.Namespace).Resource(Resource).Name(p.Name).SubResource("status").Body(p).Do(ctx).Into(out)
	return out, wrap(err, "update status of", p.Namespace, p.Name)
}

// Delete deletes a Plan.
func (c *Client) Delete(ctx context.Context, ns, name string) error {
	return wrap(c.rc.Delete().Namespace(ns).Resource(Resource).Name(name).Do(ctx).Error(), "delete", ns, name)
}

// ListWatch returns a ListerWatcher over Plans in ns for an informer.
func (c *Client) ListWatch(ns string) cache.ListerWatcher {
	return &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			return c.List(ctx, ns, o)
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			return c.Watch(ctx, ns, o)
		},
	}
}

func wrap(err error, verb, ns, name string) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%s plan %s/%s: %w", verb, ns, name, err)
}
