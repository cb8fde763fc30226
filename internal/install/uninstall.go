package install

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/storage/driver"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// UninstallOptions configure Uninstall.
type UninstallOptions struct {
	Target
	// KeepData keeps the server's PersistentVolumeClaim (vigil-server-data)
	// and so its SQLite database.
	KeepData bool
	// Timeout bounds the wait for the objects to be gone (0: 2 minutes).
	Timeout time.Duration
}

// UninstallReport says what Uninstall did.
type UninstallReport struct {
	// WebhookDeleted: the ValidatingWebhookConfiguration existed and was
	// deleted (before anything else).
	WebhookDeleted bool
	// Release: the Helm release existed and was uninstalled.
	Release bool
	// Kept lists objects kept on purpose (KeepData), "Kind/name".
	Kept []string
}

// Uninstall removes Vigil: first the ValidatingWebhookConfiguration, so the
// API server never calls a webhook whose agent is going away, then the Helm
// release, then what the agent made at run time (its serving-certificate
// Secret) and, unless KeepData, the server's data; then it waits until
// nothing labelled app.kubernetes.io/part-of=vigil is left and fails with
// the list of what is. Without a release it still removes and checks
// everything, so it can finish an interrupted uninstall.
func Uninstall(ctx context.Context, opts UninstallOptions) (*UninstallReport, error) {
	c, err := opts.Target.open()
	if err != nil {
		return nil, err
	}
	rep := &UninstallReport{}
	if rep.WebhookDeleted, err = c.deleteWebhooks(ctx); err != nil {
		return rep, err
	}
	un := action.NewUninstall(c.helm)
	un.Timeout = 2 * time.Minute
	switch _, err := un.Run(Release); {
	case errors.Is(err, driver.ErrReleaseNotFound):
		c.log.Info("no Helm release; removing what is left", "release", Release, "namespace", c.ns)
	case err != nil:
		return rep, fmt.Errorf("uninstall release %s: %w", Release, err)
	default:
		rep.Release = true
	}
	secrets := c.kube.CoreV1().Secrets(c.ns)
	if err := secrets.Delete(ctx, AgentTLSSecret, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
		return rep, fmt.Errorf("delete Secret %s/%s: %w", c.ns, AgentTLSSecret, err)
	}
	if err := c.kube.CoordinationV1().Leases(c.ns).Delete(ctx, ScannerLease, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
		return rep, fmt.Errorf("delete Lease %s/%s: %w", c.ns, ScannerLease, err)
	}
	pvcs := c.kube.CoreV1().PersistentVolumeClaims(c.ns)
	if opts.KeepData {
		if _, err := pvcs.Get(ctx, ServerData, metav1.GetOptions{}); err == nil {
			rep.Kept = append(rep.Kept, "PersistentVolumeClaim/"+ServerData)
		}
	} else if err := pvcs.Delete(ctx, ServerData, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
		return rep, fmt.Errorf("delete PersistentVolumeClaim %s/%s: %w", c.ns, ServerData, err)
	}
	timeout := opts.Timeout
	if timeout <= 0 {
		timeout = 2 * time.Minute
	}
	deadline := time.Now().Add(timeout)
	for {
		// An agent still shutting down may have put its webhook back.
		if _, err := c.deleteWebhooks(ctx); err != nil {
			return rep, err
		}
		left, err := c.leftovers(ctx, opts.KeepData)
		if err != nil {
			return rep, err
		}
		if len(left) == 0 {
			return rep, nil
		}
		if time.Now().After(deadline) {
			return rep, fmt.Errorf("uninstall: still present after %v: %s", timeout, strings.Join(left, ", "))
		}
		select {
		case <-ctx.Done():
			return rep, fmt.Errorf("uninstall: %w; still present: %s", ctx.Err(), strings.Join(left, ", "))
		case <-time.After(time.Second):
		}
	}
}

// deleteWebhooks deletes the ValidatingWebhookConfiguration vigil, when it
// is Vigil's (labelled part-of=vigil by the chart or managed-by=vigil by
// the agent), and any other labelled part-of=vigil.
func (c *clients) deleteWebhooks(ctx context.Context) (bool, error) {
	vwcs := c.kube.AdmissionregistrationV1().ValidatingWebhookConfigurations()
	list, err := vwcs.List(ctx, metav1.ListOptions{LabelSelector: PartOfLabel})
	if err != nil {
		return false, fmt.Errorf("list validating webhook configurations: %w", err)
	}
	var names []string
	for _, w := range list.Items {
		names = append(names, w.Name)
	}
	if !slices.Contains(names, WebhookName) {
		cur, err := vwcs.Get(ctx, WebhookName, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
		case err != nil:
			return false, fmt.Errorf("read validating webhook configuration %s: %w", WebhookName, err)
		case cur.Labels["app.kubernetes.io/managed-by"] == "vigil":
			names = append(names, WebhookName)
		default:
			c.log.Warn("validating webhook configuration is not Vigil's; left alone", "name", WebhookName)
		}
	}
	deleted := false
	for _, n := range names {
		err := vwcs.Delete(ctx, n, metav1.DeleteOptions{})
		switch {
		case apierrors.IsNotFound(err):
		case err != nil:
			return deleted, fmt.Errorf("delete validating webhook configuration %s: %w", n, err)
		default:
			deleted = true
			c.log.Info("deleted validating webhook configuration", "name", n)
		}
	}
	return deleted, nil
}

// leftovers lists, as "Kind/namespace/name", what is still labelled
// part-of=vigil across the kinds the chart makes (and their pods), plus
// the agent's Secret.
func (c *clients) leftovers(ctx context.Context, keepData bool) ([]string, error) {
	sel := metav1.ListOptions{LabelSelector: PartOfLabel}
	var out []string
	add := func(kind, ns, name string) {
		if ns != "" {
			name = ns + "/" + name
		}
		out = append(out, kind+"/"+name)
	}
	type lister struct {
		kind string
		list func() ([]metav1.Object, error)
	}
	ns := c.ns
	k := c.kube
	listers := []lister{
		{"ValidatingWebhookConfiguration", func() ([]metav1.Object, error) {
			l, err := k.AdmissionregistrationV1().ValidatingWebhookConfigurations().List(ctx, sel)
			return objs(err, func() []metav1.Object { return ptrs(l.Items) })
		}},
		{"DaemonSet", func() ([]metav1.Object, error) {
			l, err := k.AppsV1().DaemonSets(ns).List(ctx, sel)
			return objs(err, func() []metav1.Object { return ptrs(l.Items) })
		}},
		{"Deployment", func() ([]metav1.Object, error) {
			l, err := k.AppsV1().Deployments(ns).List(ctx, sel)
			return objs(err, func() []metav1.Object { return ptrs(l.Items) })
		}},
		{"ReplicaSet", func() ([]metav1.Object, error) {
			l, err := k.AppsV1().ReplicaSets(ns).List(ctx, sel)
			return objs(err, func() []metav1.Object { return ptrs(l.Items) })
		}},
		{"Pod", func() ([]metav1.Object, error) {
			l, err := k.CoreV1().Pods(ns).List(ctx, sel)
			return objs(err, func() []metav1.Object { return ptrs(l.Items) })
		}},
		{"Service", func() ([]metav1.Object, error) {
			l, err := k.CoreV1().Services(ns).List(ctx, sel)
			return objs(err, func() []metav1.Object { return ptrs(l.Items) })
		}},
		{"ServiceAccount", func() ([]metav1.Object, error) {
			l, err := k.CoreV1().ServiceAccounts(ns).List(ctx, sel)
			return objs(err, func() []metav1.Object { return ptrs(l.Items) })
		}},
		{"Secret", func() ([]metav1.Object, error) {
			l, err := k.CoreV1().Secrets(ns).List(ctx, sel)
			return objs(err, func() []metav1.Object { return ptrs(l.Items) })
		}},
		{"ConfigMap", func() ([]metav1.Object, error) {
			l, err := k.CoreV1().ConfigMaps(ns).List(ctx, sel)
			return objs(err, func() []metav1.Object { return ptrs(l.Items) })
		}},
		{"PersistentVolumeClaim", func() ([]metav1.Object, error) {
			l, err := k.CoreV1().PersistentVolumeClaims(ns).List(ctx, sel)
			return objs(err, func() []metav1.Object { return ptrs(l.Items) })
		}},
		{"Role", func() ([]metav1.Object, error) {
			l, err := k.RbacV1().Roles(ns).List(ctx, sel)
			return objs(err, func() []metav1.Object { return ptrs(l.Items) })
		}},
		{"RoleBinding", func() ([]metav1.Object, error) {
			l, err := k.RbacV1().RoleBindings(ns).List(ctx, sel)
			return objs(err, func() []metav1.Object { return ptrs(l.Items) })
		}},
		{"ClusterRole", func() ([]metav1.Object, error) {
			l, err := k.RbacV1().ClusterRoles().List(ctx, sel)
			return objs(err, func() []metav1.Object { return ptrs(l.Items) })
		}},
		{"ClusterRoleBinding", func() ([]metav1.Object, error) {
			l, err := k.RbacV1().ClusterRoleBindings().List(ctx, sel)
			return objs(err, func() []metav1.Object { return ptrs(l.Items) })
		}},
	}
	for _, l := range listers {
		items, err := l.list()
		if err != nil {
			return nil, fmt.Errorf("list %ss labelled %s: %w", l.kind, PartOfLabel, err)
		}
		for _, o := range items {
			if keepData && l.kind == "PersistentVolumeClaim" && o.GetName() == ServerData {
				continue
			}
			add(l.kind, o.GetNamespace(), o.GetName())
		}
	}
	switch _, err := k.CoreV1().Secrets(ns).Get(ctx, AgentTLSSecret, metav1.GetOptions{}); {
	case err == nil:
		add("Secret", ns, AgentTLSSecret)
	case !apierrors.IsNotFound(err):
		return nil, fmt.Errorf("read Secret %s/%s: %w", ns, AgentTLSSecret, err)
	}
	switch _, err := k.CoordinationV1().Leases(ns).Get(ctx, ScannerLease, metav1.GetOptions{}); {
	case err == nil:
		add("Lease", ns, ScannerLease)
	case !apierrors.IsNotFound(err):
		return nil, fmt.Errorf("read Lease %s/%s: %w", ns, ScannerLease, err)
	}
	return out, nil
}

func objs(err error, items func() []metav1.Object) ([]metav1.Object, error) {
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return items(), nil
}

func ptrs[T any, P interface {
	*T
	metav1.Object
}](items []T) []metav1.Object {
	out := make([]metav1.Object, len(items))
	for i := range items {
		out[i] = P(&items[i])
	}
	return out
}
