package install

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/release"
	"helm.sh/helm/v3/pkg/storage/driver"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/client-go/kubernetes"
)

// Target says which cluster and namespace to work on.
type Target struct {
	// Kubeconfig is the kubeconfig file ("" : $KUBECONFIG, else
	// ~/.kube/config); Context a context in it ("": the current one).
	Kubeconfig, Context string
	// Namespace is Vigil's namespace (DefaultNamespace if empty).
	Namespace string
	// Log receives Helm's and this package's diagnostics; nil discards.
	Log *slog.Logger
}

// clients are what Install and Uninstall talk to the cluster with.
type clients struct {
	helm *action.Configuration
	kube kubernetes.Interface
	ns   string
	log  *slog.Logger
}

func (t Target) open() (*clients, error) {
	ns := t.Namespace
	if ns == "" {
		ns = DefaultNamespace
	}
	log := t.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	flags := genericclioptions.NewConfigFlags(true)
	flags.Namespace = &ns
	if t.Kubeconfig != "" {
		flags.KubeConfig = &t.Kubeconfig
	}
	if t.Context != "" {
		flags.Context = &t.Context
	}
	rc, err := flags.ToRESTConfig()
	if err != nil {
		return nil, fmt.Errorf("load kubeconfig: %w", err)
	}
	rc.UserAgent = "vigil-install"
	kc, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("kubernetes client: %w", err)
	}
	cfg := new(action.Configuration)
	helmLog := func(format string, v ...any) { log.Debug(fmt.Sprintf(format, v...), "component", "helm") }
	if err := cfg.Init(flags, ns, "secret", helmLog); err != nil {
		return nil, fmt.Errorf("helm: %w", err)
	}
	return &clients{helm: cfg, kube: kc, ns: ns, log: log}, nil
}

// ErrExcluded is returned by Install when the cluster is excluded from
// onboarding (see Options.ExcludeLabel).
var ErrExcluded = errors.New("cluster excluded from Vigil")

// ErrInstalled is returned by Install when the release exists already and
// Options.Upgrade is false.
var ErrInstalled = errors.New("vigil is already installed")

// Options configure Install.
type Options struct {
	Target
	// Values are the chart's values (merged -f files, --set and flags).
	Values map[string]any
	// Upgrade allows installing over an existing release: the chart is
	// upgraded, reusing the release's values under Values (so protected
	// settings need not be given again).
	Upgrade bool
	// ExcludeLabel: Install refuses when the kube-system namespace carries
	// this label with any value but "false" (DefaultExcludeLabel if empty).
	ExcludeLabel string
	// Timeout bounds Helm's calls (0: 5 minutes). Install does not wait
	// for pods to be ready: `vigil verify` does.
	Timeout time.Duration
}

// Install installs the embedded chart as the release "vigil", or upgrades
// it when it exists and opts.Upgrade is set. It refuses an excluded cluster
// (ErrExcluded) and an existing release without Upgrade (ErrInstalled).
func Install(ctx context.Context, ch *chart.Chart, opts Options) (*release.Release, error) {
	c, err := opts.Target.open()
	if err != nil {
		return nil, err
	}
	if err := c.checkExcluded(ctx, opts.ExcludeLabel); err != nil {
		return nil, err
	}
	timeout := opts.Timeout
	if timeout <= 0 {
		timeout = 5 * time.Minute
	}
	last, err := c.helm.Releases.Last(Release)
	switch {
	case errors.Is(err, driver.ErrReleaseNotFound):
		last = nil
	case err != nil:
		return nil, fmt.Errorf("look for an existing release %s in namespace %s: %w", Release, c.ns, err)
	}
	if last != nil && !opts.Upgrade {
		return nil, fmt.Errorf("%w: release %s in namespace %s (revision %d, %s); run with --upgrade to upgrade it, or vigil uninstall first",
			ErrInstalled, Release, c.ns, last.Version, last.Info.Status)
	}
	if last == nil {
		if err := c.checkCredential(ctx, opts.Values); err != nil {
			return nil, err
		}
	}
	if last != nil {
		up := action.NewUpgrade(c.helm)
		up.Namespace = c.ns
		up.ReuseValues = true
		up.MaxHistory = 10
		up.Timeout = timeout
		rel, err := up.RunWithContext(ctx, Release, ch, opts.Values)
		if err != nil {
			return nil, fmt.Errorf("upgrade release %s: %w", Release, err)
		}
		return rel, nil
	}
	in := action.NewInstall(c.helm)
	in.ReleaseName, in.Namespace = Release, c.ns
	in.CreateNamespace = true
	in.Timeout = timeout
	rel, err := in.RunWithContext(ctx, ch, opts.Values)
	if err != nil {
		return nil, fmt.Errorf("install release %s: %w", Release, err)
	}
	return rel, nil
}

// checkExcluded refuses a cluster whose kube-system namespace carries the
// exclusion label.
func (c *clients) checkExcluded(ctx context.Context, label string) error {
	if label == "" {
		label = DefaultExcludeLabel
	}
	ns, err := c.kube.CoreV1().Namespaces().Get(ctx, "kube-system", metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read namespace kube-system (for the exclusion label %s): %w", label, err)
	}
	if v, ok := ns.Labels[label]; ok && v != "false" {
		return fmt.Errorf("%w: namespace kube-system is labelled %s=%s; remove the label to install", ErrExcluded, label, v)
	}
	return nil
}

// Excluded reports whether the cluster is excluded from onboarding: its
// kube-system namespace carries label (DefaultExcludeLabel if empty) with a
// value other than "false".
func Excluded(ctx context.Context, t Target, label string) (bool, error) {
	c, err := t.open()
	if err != nil {
		return false, err
	}
	err = c.checkExcluded(ctx, label)
	if errors.Is(err, ErrExcluded) {
		return true, nil
	}
	return false, err
}

// checkCredential makes sure the pods will find a join credential: given
// in the values (joinCredential.value), or a Secret named by
// joinCredential.existingSecret, or a Secret vigil-join made beforehand.
func (c *clients) checkCredential(ctx context.Context, vals map[string]any) error {
	jc, _ := vals["joinCredential"].(map[string]any)
	if v, _ := jc["value"].(string); v != "" {
		return nil
	}
	name, _ := jc["existingSecret"].(string)
	if name == "" {
		name = JoinSecret
	}
	_, err := c.kube.CoreV1().Secrets(c.ns).Get(ctx, name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		return fmt.Errorf("no join credential: give --credential-file FILE (vigil cluster add NAME prints it), or create the Secret %s/%s (key credential) and set joinCredential.existingSecret", c.ns, name)
	case err != nil:
		return fmt.Errorf("read Secret %s/%s (the join credential): %w", c.ns, name, err)
	}
	return nil
}
