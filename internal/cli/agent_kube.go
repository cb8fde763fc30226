//go:build !node

package cli

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/oklog/ulid/v2"
	"github.com/spf13/cobra"
	"golang.org/x/sync/errgroup"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
	"k8s.io/klog/v2"

	"github.com/vigil-sec/vigil/internal/admission"
	"github.com/vigil-sec/vigil/internal/install"
	"github.com/vigil-sec/vigil/internal/posture"
	"github.com/vigil-sec/vigil/internal/posture/scanner"
	"github.com/vigil-sec/vigil/internal/ship"
)

// kubeFlags configure the agent's parts that talk to the Kubernetes API:
// the admission webhook (its certificate and registration) and the
// posture scanner.
type kubeFlags struct {
	kubeconfig       string
	namespace        string
	admission        bool
	posture          bool
	webhookService   string
	webhookURL       string
	webhookConfig    string
	failurePolicy    string
	webhookTimeout   time.Duration
	tlsSecret        string
	tlsCA            string
	postureConfig    string
	configPoll       time.Duration
	postureFromSever bool
}

func (f *kubeFlags) register(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVar(&f.kubeconfig, "kubeconfig", "", "kubeconfig to reach the API server (default: the pod's service account, else $KUBECONFIG or ~/.kube/config)")
	fl.StringVar(&f.namespace, "namespace", "", "the agent's own namespace, never subject to the webhook (default: the pod's, else vigil)")
	fl.BoolVar(&f.admission, "admission", true, "serve, register and keep the admission webhook")
	fl.BoolVar(&f.posture, "posture", true, "run the posture scanner")
	fl.StringVar(&f.webhookService, "webhook-service", "vigil-agent", "Service in --namespace through which the API server reaches the webhook (port 443)")
	fl.StringVar(&f.webhookURL, "webhook-url", "", "instead of --webhook-service: the https URL the API server calls, e.g. https://10.0.0.5:8443/validate (agent outside the cluster)")
	fl.StringVar(&f.webhookConfig, "webhook-config", "vigil", "name of the ValidatingWebhookConfiguration the agent owns")
	fl.StringVar(&f.failurePolicy, "failure-policy", "Ignore", "what the API server does when the webhook does not answer: Ignore (admit) or Fail (reject)")
	fl.DurationVar(&f.webhookTimeout, "webhook-timeout", admission.DefaultTimeoutSeconds*time.Second, "how long the API server waits for the webhook (1s-30s)")
	fl.StringVar(&f.tlsSecret, "tls-secret", "vigil-agent-tls", "Secret in --namespace holding the self-managed CA and serving certificate")
	fl.StringVar(&f.tlsCA, "tls-ca", "", "with --tls-cert: the CA bundle (PEM) the API server verifies it with, written into the webhook configuration")
	fl.StringVar(&f.postureConfig, "posture-config", "", "posture configuration file (YAML or JSON; e.g. a mounted ConfigMap), re-read when it changes")
	fl.BoolVar(&f.postureFromSever, "posture-config-from-server", true, "apply the server's posture configuration for this cluster, over --posture-config")
	fl.DurationVar(&f.configPoll, "config-poll", 30*time.Second, "how often the posture configuration is re-read (file and server)")
}

// kubeParts are the agent's running Kubernetes-facing parts.
type kubeParts struct {
	webhook *admission.Webhook              // nil without --admission
	certs   *admission.Certs                // nil without --admission or with --tls-cert
	keeper  *admission.Keeper               // nil without --admission
	scanner atomic.Pointer[scanner.Scanner] // the running one; nil unless this replica leads
	config  *postureSource
}

// startKubeParts builds the webhook, its certificate and registration and
// the scanner, and runs them in g until ctx is done. The first certificate
// sync and the first posture configuration are done before it returns, so
// the listener can serve at once.
func startKubeParts(ctx context.Context, g *errgroup.Group, f agentFlags, client *ship.Client, addr net.Addr, log *slog.Logger) (*kubeParts, error) {
	klog.SetSlogLogger(log.With("component", "client-go"))
	rc, err := f.kube.restConfig()
	if err != nil {
		return nil, err
	}
	rc.UserAgent = "vigil-agent"
	kc, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("kubernetes client: %w", err)
	}
	ns := f.kube.ownNamespace()
	src, err := newPostureSource(f.kube, client, log)
	if err != nil {
		return nil, err
	}
	kp := &kubeParts{config: src}
	cfg := src.current()
	if f.kube.admission {
		if kp.webhook, err = admission.New(admission.Config{Posture: cfg, Log: log}); err != nil {
			return nil, err
		}
		reg, dns, ips, err := f.kube.registration(ns, addr)
		if err != nil {
			return nil, err
		}
		reg.ExcludedNamespaces = ignoredNamespaces(cfg, ns)
		var kick func([]byte)
		if f.tlsCert == "" {
			kp.certs, err = admission.NewCerts(admission.CertsConfig{Client: kc, Namespace: ns, SecretName: f.kube.tlsSecret,
				DNSNames: dns, IPAddresses: ips, OnRotate: func(b []byte) { kick(b) }, Log: log})
			if err != nil {
				return nil, err
			}
			if err := kp.certs.Sync(ctx); err != nil {
				return nil, fmt.Errorf("serving certificate (Secret %s/%s): %w", ns, f.kube.tlsSecret, err)
			}
		}
		bundle := func() []byte { return kp.certs.CABundle() }
		if kp.certs == nil {
			if f.kube.tlsCA == "" {
				return nil, errors.New("--tls-ca is required with --tls-cert and --admission: the API server must know the CA that signed it")
			}
			pem, err := os.ReadFile(f.kube.tlsCA)
			if err != nil {
				return nil, fmt.Errorf("--tls-ca: %w", err)
			}
			bundle = func() []byte { return pem }
		}
		if kp.keeper, err = admission.NewKeeper(admission.KeeperConfig{Client: kc, Registration: reg, CABundle: bundle, Log: log}); err != nil {
			return nil, err
		}
		kick = func([]byte) { kp.keeper.Kick() }
		if kp.certs != nil {
			g.Go(func() error { return kp.certs.Run(ctx) })
		}
		g.Go(func() error { return kp.keeper.Run(ctx) })
	}
	if f.kube.admission {
		client.Health(ship.Health{Component: "admission", State: "installed"})
	}
	if f.kube.posture {
		client.Health(ship.Health{Component: "posture", State: "installed", Reason: "standby: the replica holding Lease " + scannerLease + " scans"})
		g.Go(func() error { kp.runScanner(ctx, kc, ns, src, client, log); return nil })
	}
	src.apply = func(c *posture.Config) {
		if kp.webhook != nil {
			kp.webhook.SetPosture(c)
			kp.keeper.SetExcludedNamespaces(ignoredNamespaces(c, ns))
		}
		if sc := kp.scanner.Load(); sc != nil {
			sc.SetPosture(c)
		}
	}
	g.Go(func() error { src.run(ctx); return nil })
	return kp, nil
}

// scannerLease is the Lease agent replicas elect the posture scanner's
// leader with: one scanner per cluster, whatever the replicas, so two
// scans never withdraw each other's findings.
const scannerLease = install.ScannerLease

// runScanner runs the posture scanner while this replica leads, until ctx
// is done. A new leader starts a new scan run; its completed scan lets the
// server drop what the previous leader's run sent and no longer holds.
func (kp *kubeParts) runScanner(ctx context.Context, kc kubernetes.Interface, ns string, src *postureSource, client *ship.Client, log *slog.Logger) {
	id := hostname() + "-" + ulid.Make().String()
	lock := &resourcelock.LeaseLock{LeaseMeta: metav1.ObjectMeta{Name: scannerLease, Namespace: ns},
		Client: kc.CoordinationV1(), LockConfig: resourcelock.ResourceLockConfig{Identity: id}}
	for ctx.Err() == nil {
		le, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
			Lock: lock, LeaseDuration: 15 * time.Second, RenewDeadline: 10 * time.Second, RetryPeriod: 2 * time.Second,
			ReleaseOnCancel: true, Name: scannerLease,
			Callbacks: leaderelection.LeaderCallbacks{
				OnStartedLeading: func(ctx context.Context) {
					sc, err := scanner.New(scanner.Config{Client: kc, Posture: src.current(), Sink: client, Log: log})
					if err != nil {
						log.Error("posture scanner", "err", err)
						return
					}
					kp.scanner.Store(sc)
					defer kp.scanner.Store(nil)
					client.Health(ship.Health{Component: "posture", State: "pending", Reason: "listing the cluster's workloads"})
					go reportScannerSynced(ctx, sc, client)
					log.Info("leading the posture scanner", "identity", id)
					if err := sc.Run(ctx); err != nil {
						log.Error("posture scanner stopped", "err", err)
						client.Health(ship.Health{Component: "posture", State: "failed", Reason: err.Error()})
					}
				},
				OnStoppedLeading: func() {},
			},
		})
		if err != nil {
			log.Error("posture scanner leader election", "err", err)
			return
		}
		le.Run(ctx) // returns when leadership is lost or ctx is done
	}
}

// reportScannerSynced tells the server the posture scanner is installed
// once its first full scan is out.
func reportScannerSynced(ctx context.Context, s *scanner.Scanner, client *ship.Client) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if st := s.Stats(); st.Synced {
			client.Health(ship.Health{Component: "posture", State: "installed"})
			return
		}
	}
}

// ignoredNamespaces are the namespaces the API server need not ask about:
// those no recommendation looks at, and the agent's own, so that the
// cluster can always start the agent again.
func ignoredNamespaces(cfg *posture.Config, own string) []string {
	ns := cfg.IgnoredNamespaces()
	if !slices.Contains(ns, own) {
		ns = append(ns, own)
	}
	return ns
}

// restConfig is --kubeconfig, else the pod's service account, else the
// usual kubeconfig loading rules.
func (f *kubeFlags) restConfig() (*rest.Config, error) {
	if f.kubeconfig == "" {
		if rc, err := rest.InClusterConfig(); err == nil {
			return rc, nil
		}
	}
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = f.kubeconfig
	rc, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, nil).ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("reach the Kubernetes API (not in a pod, and no usable kubeconfig; or run with --admission=false --posture=false): %w", err)
	}
	return rc, nil
}

const serviceAccountNamespace = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"

func (f *kubeFlags) ownNamespace() string {
	if f.namespace != "" {
		return f.namespace
	}
	if b, err := os.ReadFile(serviceAccountNamespace); err == nil && len(bytes.TrimSpace(b)) > 0 {
		return string(bytes.TrimSpace(b))
	}
	return "vigil"
}

// registration describes the webhook configuration, and the names the
// serving certificate must carry for the API server to reach it.
func (f *kubeFlags) registration(ns string, addr net.Addr) (admission.Registration, []string, []net.IP, error) {
	reg := admission.Registration{Name: f.webhookConfig}
	switch strings.ToLower(f.failurePolicy) {
	case "ignore":
		reg.FailurePolicy = admissionregistrationv1.Ignore
	case "fail":
		reg.FailurePolicy = admissionregistrationv1.Fail
	default:
		return reg, nil, nil, fmt.Errorf("--failure-policy %q: want Ignore or Fail", f.failurePolicy)
	}
	if f.webhookTimeout < time.Second || f.webhookTimeout > 30*time.Second {
		return reg, nil, nil, fmt.Errorf("--webhook-timeout %v: the API server allows 1s to 30s", f.webhookTimeout)
	}
	reg.TimeoutSeconds = int32(f.webhookTimeout / time.Second)
	if f.webhookURL != "" {
		u, err := url.Parse(f.webhookURL)
		if err != nil || u.Scheme != "https" || u.Host == "" {
			return reg, nil, nil, fmt.Errorf("--webhook-url %q: want https://HOST[:PORT]/PATH", f.webhookURL)
		}
		reg.URL = f.webhookURL
		if ip := net.ParseIP(u.Hostname()); ip != nil {
			return reg, nil, []net.IP{ip}, nil
		}
		return reg, []string{u.Hostname()}, nil, nil
	}
	path := "/validate"
	reg.Service = &admissionregistrationv1.ServiceReference{Namespace: ns, Name: f.webhookService, Path: &path}
	svc := f.webhookService
	return reg, []string{svc, svc + "." + ns, svc + "." + ns + ".svc", svc + "." + ns + ".svc.cluster.local"}, nil, nil
}

// postureSource keeps the agent's posture configuration: the server's for
// this cluster when it has one (cluster's own or fleet-wide), else the
// --posture-config file, else the defaults. A document that does not parse
// is logged and the configuration in force stays.
type postureSource struct {
	flags  kubeFlags
	client *ship.Client
	log    *slog.Logger
	apply  func(*posture.Config) // set before run

	mu         sync.Mutex
	cfg        *posture.Config
	fileDoc    []byte
	serverDoc  []byte // nil: the server has none for this cluster
	serverETag string
	origin     string // where cfg came from: server, file or builtin
}

func newPostureSource(f kubeFlags, client *ship.Client, log *slog.Logger) (*postureSource, error) {
	s := &postureSource{flags: f, client: client, log: log, cfg: posture.DefaultConfig(), origin: "builtin"}
	if f.postureConfig != "" {
		doc, err := os.ReadFile(f.postureConfig)
		if err != nil {
			return nil, fmt.Errorf("--posture-config: %w", err)
		}
		cfg, err := posture.ParseConfig(doc)
		if err != nil {
			return nil, fmt.Errorf("--posture-config %s: %w", f.postureConfig, err)
		}
		s.fileDoc, s.cfg, s.origin = doc, cfg, "file"
	}
	if f.postureFromSever {
		// Best effort: the server may be down; the poll catches up.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		s.pollServer(ctx)
		s.choose()
	}
	return s, nil
}

// current is the configuration in force.
func (s *postureSource) current() *posture.Config {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cfg
}

// Origin says where the configuration in force came from.
func (s *postureSource) Origin() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.origin
}

// run re-reads the file and polls the server every --config-poll and
// applies a changed configuration.
func (s *postureSource) run(ctx context.Context) {
	t := time.NewTicker(s.flags.configPoll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		changed := s.pollFile()
		if s.flags.postureFromSever && s.pollServer(ctx) {
			changed = true
		}
		if changed && s.choose() {
			s.apply(s.current())
		}
	}
}

func (s *postureSource) pollFile() bool {
	if s.flags.postureConfig == "" {
		return false
	}
	doc, err := os.ReadFile(s.flags.postureConfig)
	if err != nil {
		s.log.Warn("posture config file unreadable; keeping the configuration in force", "file", s.flags.postureConfig, "err", err)
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if bytes.Equal(doc, s.fileDoc) {
		return false
	}
	s.fileDoc = doc
	return true
}

func (s *postureSource) pollServer(ctx context.Context) bool {
	s.mu.Lock()
	etag := s.serverETag
	s.mu.Unlock()
	doc, tag, err := s.client.FetchPostureConfig(ctx, etag)
	switch {
	case errors.Is(err, ship.ErrNotModified):
		return false
	case err != nil:
		s.log.Warn("posture config: server unreachable; keeping the configuration in force", "err", err)
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.serverETag = tag
	if len(bytes.TrimSpace(doc)) == 0 {
		doc = nil
	}
	if bytes.Equal(doc, s.serverDoc) && (doc == nil) == (s.serverDoc == nil) {
		return false
	}
	s.serverDoc = doc
	return true
}

// choose picks the configuration by precedence and reports whether the
// one in force changed.
func (s *postureSource) choose() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	doc, origin := s.serverDoc, "server"
	if doc == nil {
		doc, origin = s.fileDoc, "file"
	}
	cfg := posture.DefaultConfig()
	if doc == nil {
		origin = "builtin"
	} else {
		var err error
		if cfg, err = posture.ParseConfig(doc); err != nil {
			s.log.Error("posture config from the "+origin+" does not parse; keeping the configuration in force", "err", err)
			return false
		}
	}
	s.cfg, s.origin = cfg, origin
	s.log.Info("posture configuration in force", "from", origin)
	return true
}
