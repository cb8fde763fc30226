package admission

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"slices"
	"sync"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"
)

// DefaultWebhookName is the name of the webhook inside the configuration,
// which kubectl prints in denials (admission webhook "validate.vigil.dev"
// denied the request).
const DefaultWebhookName = "validate.vigil.dev"

// DefaultTimeoutSeconds is the webhook's timeout when Registration leaves
// it 0. Every pod creation waits on the webhook, so a hung webhook costs
// the cluster this much per request (with failurePolicy Ignore the request
// then proceeds); 5 s is half the API server's default of 10 s and still
// leaves a healthy webhook, which answers in milliseconds, room for a slow
// network or a GC pause.
const DefaultTimeoutSeconds = 5

// Registration describes the ValidatingWebhookConfiguration Vigil owns.
type Registration struct {
	// Name names the ValidatingWebhookConfiguration. Required.
	Name string
	// WebhookName names its single webhook (DefaultWebhookName if empty).
	WebhookName string
	// Service (in the cluster) or URL (out of it, https://host:port/path)
	// says where the API server sends reviews; exactly one is set. A nil
	// Service.Port means 443. Service.Path must be where the Webhook is
	// served.
	Service *admissionregistrationv1.ServiceReference
	URL     string
	// FailurePolicy is Ignore if empty: the cluster keeps admitting when
	// the webhook is down (see the package documentation).
	FailurePolicy admissionregistrationv1.FailurePolicyType
	// TimeoutSeconds is DefaultTimeoutSeconds if 0; at most 30.
	TimeoutSeconds int32
	// ExcludedNamespaces never call the webhook (a namespaceSelector on
	// kubernetes.io/metadata.name). Put the agent's own namespace here, so
	// that the cluster can always restart the agent.
	ExcludedNamespaces []string
	// CABundle is the PEM of the CAs the API server trusts for the
	// webhook's serving certificate (Certs.CABundle). Required.
	CABundle []byte
}

// webhookRules are CREATE and UPDATE of exactly the kinds Webhook evaluates
// (kinds in admission.go), by resource.
var webhookRules = []admissionregistrationv1.RuleWithOperations{
	rule("", "pods", "pods/ephemeralcontainers", "services", "replicationcontrollers"),
	rule("apps", "deployments", "replicasets", "statefulsets", "daemonsets"),
	rule("batch", "jobs", "cronjobs"),
}

func rule(group string, resources ...string) admissionregistrationv1.RuleWithOperations {
	scope := admissionregistrationv1.NamespacedScope
	return admissionregistrationv1.RuleWithOperations{
		Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create, admissionregistrationv1.Update},
		Rule: admissionregistrationv1.Rule{
			APIGroups: []string{group}, APIVersions: []string{"v1"}, Resources: resources, Scope: &scope,
		},
	}
}

// object returns the configuration reg describes, with every field the API
// server would default set, so that a stored copy compares equal.
func (reg Registration) object() (*admissionregistrationv1.ValidatingWebhookConfiguration, error) {
	if reg.Name == "" {
		return nil, errors.New("admission: Registration.Name is required")
	}
	if len(reg.CABundle) == 0 {
		return nil, errors.New("admission: Registration.CABundle is required")
	}
	var cc admissionregistrationv1.WebhookClientConfig
	switch {
	case (reg.Service == nil) == (reg.URL == ""):
		return nil, errors.New("admission: Registration needs exactly one of Service and URL")
	case reg.Service != nil:
		svc := *reg.Service
		if svc.Port == nil {
			port := int32(443)
			svc.Port = &port
		}
		cc.Service = &svc
	default:
		u, err := url.Parse(reg.URL)
		if err != nil || u.Scheme != "https" || u.Host == "" {
			return nil, fmt.Errorf("admission: Registration.URL %q: want https://host[:port]/path", reg.URL)
		}
		cc.URL = &reg.URL
	}
	cc.CABundle = reg.CABundle
	name := reg.WebhookName
	if name == "" {
		name = DefaultWebhookName
	}
	failure := reg.FailurePolicy
	if failure == "" {
		failure = admissionregistrationv1.Ignore
	}
	timeout := reg.TimeoutSeconds
	if timeout == 0 {
		timeout = DefaultTimeoutSeconds
	}
	if timeout < 1 || timeout > 30 {
		return nil, fmt.Errorf("admission: Registration.TimeoutSeconds %d: want 1 to 30", timeout)
	}
	nsSelector := &metav1.LabelSelector{}
	if len(reg.ExcludedNamespaces) > 0 {
		excluded := slices.Compact(slices.Sorted(slices.Values(reg.ExcludedNamespaces)))
		nsSelector.MatchExpressions = []metav1.LabelSelectorRequirement{
			{Key: corev1.LabelMetadataName, Operator: metav1.LabelSelectorOpNotIn, Values: excluded},
		}
	}
	sideEffects := admissionregistrationv1.SideEffectClassNone
	matchPolicy := admissionregistrationv1.Equivalent
	return &admissionregistrationv1.ValidatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: reg.Name, Labels: map[string]string{ManagedByLabel: ManagedByValue}},
		Webhooks: []admissionregistrationv1.ValidatingWebhook{{
			Name:                    name,
			ClientConfig:            cc,
			Rules:                   webhookRules,
			FailurePolicy:           &failure,
			MatchPolicy:             &matchPolicy,
			NamespaceSelector:       nsSelector,
			ObjectSelector:          &metav1.LabelSelector{},
			SideEffects:             &sideEffects,
			TimeoutSeconds:          &timeout,
			AdmissionReviewVersions: []string{"v1"},
		}},
	}, nil
}

// Register creates the ValidatingWebhookConfiguration reg describes, or
// brings an existing one of that name back to it (taking it over: it gets
// the ManagedByLabel). When the stored one already matches it only reads
// it, so calling it often is cheap. Conflicting writes (another replica)
// are retried.
func Register(ctx context.Context, client kubernetes.Interface, reg Registration) error {
	_, err := register(ctx, client, reg)
	return err
}

// register is Register, saying whether it wrote.
func register(ctx context.Context, client kubernetes.Interface, reg Registration) (bool, error) {
	want, err := reg.object()
	if err != nil {
		return false, err
	}
	vwcs := client.AdmissionregistrationV1().ValidatingWebhookConfigurations()
	wrote := false
	retriable := func(err error) bool { return apierrors.IsConflict(err) || apierrors.IsAlreadyExists(err) }
	err = retry.OnError(retry.DefaultRetry, retriable, func() error {
		cur, err := vwcs.Get(ctx, reg.Name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			_, err = vwcs.Create(ctx, want, metav1.CreateOptions{})
			wrote = err == nil
			return err
		}
		if err != nil {
			return err
		}
		if cur.Labels[ManagedByLabel] == ManagedByValue && equality.Semantic.DeepEqual(cur.Webhooks, want.Webhooks) {
			return nil
		}
		upd := cur.DeepCopy()
		if upd.Labels == nil {
			upd.Labels = map[string]string{}
		}
		upd.Labels[ManagedByLabel] = ManagedByValue
		upd.Webhooks = want.Webhooks
		_, err = vwcs.Update(ctx, upd, metav1.UpdateOptions{})
		wrote = err == nil
		return err
	})
	if err != nil {
		return false, fmt.Errorf("register validating webhook configuration %s: %w", reg.Name, err)
	}
	return wrote, nil
}

// Unregister deletes the ValidatingWebhookConfiguration name if Vigil
// manages it (it has the ManagedByLabel); one that is gone already is not
// an error, one Vigil does not manage is. Run it on uninstall, not when one
// agent replica stops: the others still serve.
func Unregister(ctx context.Context, client kubernetes.Interface, name string) error {
	vwcs := client.AdmissionregistrationV1().ValidatingWebhookConfigurations()
	cur, err := vwcs.Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("unregister validating webhook configuration %s: %w", name, err)
	}
	if cur.Labels[ManagedByLabel] != ManagedByValue {
		return fmt.Errorf("unregister validating webhook configuration %s: not managed by Vigil (no label %s=%s)", name, ManagedByLabel, ManagedByValue)
	}
	uid := cur.UID
	err = vwcs.Delete(ctx, name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("unregister validating webhook configuration %s: %w", name, err)
	}
	return nil
}

// DefaultKeepInterval is how often a Keeper re-asserts the registration:
// the longest a hand edit (or deletion) of it stands.
const DefaultKeepInterval = time.Minute

// KeeperConfig configures a Keeper.
type KeeperConfig struct {
	// Client writes the configuration; it needs get, create and update on
	// validatingwebhookconfigurations.
	Client kubernetes.Interface
	// Registration is what is kept; its CABundle is replaced by the result
	// of CABundle at every pass.
	Registration Registration
	// CABundle returns the current bundle, e.g. Certs.CABundle. Required.
	CABundle func() []byte
	// Interval between passes (0: DefaultKeepInterval).
	Interval time.Duration
	// Log receives a line whenever the configuration was written and when
	// a pass fails. nil discards.
	Log *slog.Logger
}

// Keeper keeps the registration in place: it calls Register at start,
// every Interval, and soon after Kick (wire Certs' OnRotate to it, so a
// new CA bundle reaches the API servers at once).
type Keeper struct {
	cfg  KeeperConfig
	log  *slog.Logger
	kick chan struct{}

	mu       sync.Mutex
	excluded []string // replaces Registration.ExcludedNamespaces when set
}

// NewKeeper checks cfg and returns a Keeper; Run starts it.
func NewKeeper(cfg KeeperConfig) (*Keeper, error) {
	if cfg.Client == nil || cfg.CABundle == nil {
		return nil, errors.New("admission: KeeperConfig.Client and CABundle are required")
	}
	if cfg.Interval <= 0 {
		cfg.Interval = DefaultKeepInterval
	}
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Keeper{cfg: cfg, log: log.With("validatingWebhookConfiguration", cfg.Registration.Name), kick: make(chan struct{}, 1)}, nil
}

// SetExcludedNamespaces replaces the namespaces the registration leaves
// out (after a posture config change) and kicks a pass.
func (k *Keeper) SetExcludedNamespaces(ns []string) {
	k.mu.Lock()
	k.excluded = slices.Clone(ns)
	k.mu.Unlock()
	k.Kick()
}

// Kick asks Run for a pass now. It never blocks and is safe for concurrent
// use; kicks while a pass is pending are merged.
func (k *Keeper) Kick() {
	select {
	case k.kick <- struct{}{}:
	default:
	}
}

// Run registers now, then every Interval and after each Kick, until ctx is
// done; it then returns nil (it does not unregister). A failed pass is
// logged and retried after at most 5 s.
func (k *Keeper) Run(ctx context.Context) error {
	for {
		wait := k.cfg.Interval
		reg := k.cfg.Registration
		reg.CABundle = k.cfg.CABundle()
		k.mu.Lock()
		if k.excluded != nil {
			reg.ExcludedNamespaces = k.excluded
		}
		k.mu.Unlock()
		wrote, err := register(ctx, k.cfg.Client, reg)
		switch {
		case ctx.Err() != nil:
			return nil
		case err != nil:
			k.log.Warn("admission webhook registration failed", "err", err)
			wait = min(wait, 5*time.Second)
		case wrote:
			k.log.Info("admission webhook registered")
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-k.kick:
			t.Stop()
		case <-t.C:
		}
	}
}
