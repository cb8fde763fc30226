package kubetest

import (
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/csv"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/vigil-sec/vigil/internal/testproc"
)

// Admin is the static-token user every cluster has, in group system:masters.
const Admin = "admin"

// DefaultAuditPolicy records every request at the Metadata level.
var DefaultAuditPolicy = []byte(`apiVersion: audit.k8s.io/v1
kind: Policy
rules:
- level: Metadata
`)

// Options configures Start. The zero value is a cluster with only the Admin
// user and the default audit policy, auditing to nowhere.
type Options struct {
	// Users are static-token users besides Admin; each gets a generated
	// token. Grant them rights with RBAC objects created as Admin.
	Users []User
	// AuditPolicy is an audit.k8s.io/v1 Policy; nil means DefaultAuditPolicy.
	AuditPolicy []byte
	// AuditWebhook, when set, makes kube-apiserver send audit events to it.
	AuditWebhook *AuditWebhook
	// AuditLog makes kube-apiserver also write audit events, one JSON
	// audit.k8s.io/v1 Event a line, to Cluster.AuditLogPath.
	AuditLog bool
	// APIServerFlags are appended to kube-apiserver's command line and
	// override the harness's own flags (the last occurrence of a flag wins).
	APIServerFlags []string
	// ReadyTimeout bounds the wait for /readyz; 0 means 60 s.
	ReadyTimeout time.Duration
	// Address, when set, is the IPv4 address kube-apiserver binds to and
	// advertises instead of 127.0.0.1: an address of this machine that pods
	// can reach (the caller owns it, e.g. on a dummy interface). The serving
	// certificate covers it, URL uses it, and the endpoint reconciler points
	// the kubernetes Service at it, so in-cluster clients reach the API
	// server through the Service as in real clusters. The audit webhook may
	// then be on it too (AuditWebhook.URL).
	Address string
}

// User is a static-token user.
type User struct {
	Name   string
	Groups []string
}

// AuditWebhook is where kube-apiserver POSTs audit.k8s.io/v1 EventList JSON,
// in batches.
type AuditWebhook struct {
	// URL is the full https URL, path included (e.g. .../api/v1/audit). It
	// must be on 127.0.0.1, localhost or Options.Address: the harness stays
	// on the machine. (Not http: kube-apiserver's kubeconfig loading sends
	// no credentials over plain HTTP.)
	URL string
	// CAData is the PEM CA bundle that verifies the receiver's certificate.
	CAData []byte
	// Token, if set, is sent as "Authorization: Bearer <Token>".
	Token string
	// ClientCertData and ClientKeyData, if set, are the PEM client
	// certificate and key kube-apiserver presents to the receiver.
	ClientCertData, ClientKeyData []byte
	// BatchMaxWait is how long kube-apiserver buffers events before sending
	// a batch; 0 means 1 s.
	BatchMaxWait time.Duration
}

// Cluster is a running etcd and kube-apiserver (and kube-controller-manager
// once StartControllerManager has been called). Its methods may be called
// from the test's goroutine only.
type Cluster struct {
	t         testing.TB
	dir       string // certificates, configs and logs
	etcdDir   string // etcd's data, removed by Stop
	url       string
	address   string // Options.Address
	ca        *ca
	saKeyPath string
	caPath    string
	auditLog  string
	tokens    map[string]string   // user name -> token
	procs     []*testproc.Process // in start order
	stopOnce  sync.Once
}

// Start runs etcd and kube-apiserver and returns when /readyz answers ok. It
// fails the test if they cannot be started or do not become ready in time.
// The cluster is stopped by t.Cleanup.
func Start(t testing.TB, opts Options) *Cluster {
	t.Helper()
	c := &Cluster{t: t, dir: t.TempDir(), tokens: map[string]string{}}
	t.Cleanup(c.Stop)
	if err := c.start(opts); err != nil {
		t.Fatalf("kubetest: %v", err)
	}
	return c
}

func (c *Cluster) start(opts Options) error {
	apiserver, err := kubeBinary("kube-apiserver")
	if err != nil {
		return err
	}
	etcd, err := etcdBinary()
	if err != nil {
		return err
	}

	etcdURL, err := c.startEtcd(etcd)
	if err != nil {
		return err
	}

	if c.ca, err = newCA(); err != nil {
		return err
	}
	c.caPath = c.path("ca.crt")
	if err := c.write("ca.crt", c.ca.pem); err != nil {
		return err
	}
	caKey, err := x509.MarshalPKCS8PrivateKey(c.ca.key)
	if err != nil {
		return fmt.Errorf("marshal CA key: %w", err)
	}
	if err := c.write("ca.key", pemBlock("PRIVATE KEY", caKey)); err != nil {
		return err
	}
	hosts := []string{
		"127.0.0.1", "localhost", "10.0.0.1", "kubernetes", "kubernetes.default",
		"kubernetes.default.svc", "kubernetes.default.svc.cluster.local",
	}
	addr := "127.0.0.1"
	if opts.Address != "" {
		if ip := net.ParseIP(opts.Address); ip == nil || ip.To4() == nil || ip.IsLoopback() {
			return fmt.Errorf("Address %q: must be a non-loopback IPv4 address", opts.Address)
		}
		addr = opts.Address
		hosts = append(hosts, addr)
	}
	c.address = opts.Address
	servingCert, servingKey, err := c.ca.issue("kube-apiserver", nil, hosts)
	if err != nil {
		return err
	}
	saPriv, saPub, err := serviceAccountKeys()
	if err != nil {
		return err
	}
	c.saKeyPath = c.path("sa.key")
	for name, data := range map[string][]byte{
		"apiserver.crt": servingCert, "apiserver.key": servingKey,
		"sa.key": saPriv, "sa.pub": saPub,
	} {
		if err := c.write(name, data); err != nil {
			return err
		}
	}
	if err := c.writeTokens(opts.Users); err != nil {
		return err
	}
	policy := opts.AuditPolicy
	if policy == nil {
		policy = DefaultAuditPolicy
	}
	if err := c.write("audit-policy.yaml", policy); err != nil {
		return err
	}

	port, err := testproc.FreePort()
	if err != nil {
		return err
	}
	c.url = "https://" + net.JoinHostPort(addr, strconv.Itoa(port))
	// On loopback the kubernetes Service gets no Endpoints: they may not be
	// loopback addresses, and nothing runs in-cluster to use them.
	reconciler := "none"
	if opts.Address != "" {
		reconciler = "lease"
	}
	args := []string{
		"--etcd-servers=" + etcdURL,
		"--bind-address=" + addr,
		"--advertise-address=" + addr,
		"--endpoint-reconciler-type=" + reconciler,
		"--secure-port=" + strconv.Itoa(port),
		"--cert-dir=" + c.path("apiserver-certs"),
		"--tls-cert-file=" + c.path("apiserver.crt"),
		"--tls-private-key-file=" + c.path("apiserver.key"),
		"--client-ca-file=" + c.caPath,
		"--token-auth-file=" + c.path("tokens.csv"),
		"--authorization-mode=Node,RBAC",
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file=" + c.path("sa.pub"),
		"--service-account-signing-key-file=" + c.path("sa.key"),
		"--service-cluster-ip-range=10.0.0.0/24",
		"--allow-privileged=true",
		"--profiling=false",
		"--audit-policy-file=" + c.path("audit-policy.yaml"),
	}
	if opts.AuditLog {
		c.auditLog = c.path("audit.log")
		args = append(args, "--audit-log-path="+c.auditLog, "--audit-log-format=json")
	}
	if w := opts.AuditWebhook; w != nil {
		if err := c.writeAuditWebhookConfig(w); err != nil {
			return err
		}
		wait := w.BatchMaxWait
		if wait == 0 {
			wait = time.Second
		}
		args = append(args,
			"--audit-webhook-config-file="+c.path("audit-webhook.kubeconfig"),
			"--audit-webhook-batch-max-wait="+wait.String())
	}
	args = append(args, opts.APIServerFlags...)
	p, err := testproc.Start(c.dir, "kube-apiserver", apiserver, args...)
	if err != nil {
		return err
	}
	c.procs = append(c.procs, p)

	timeout := opts.ReadyTimeout
	if timeout == 0 {
		timeout = 60 * time.Second
	}
	if err := c.waitReady(p, timeout); err != nil {
		return fmt.Errorf("kube-apiserver not ready: %w", p.WithLogTail(err, 60))
	}
	return nil
}

// startEtcd runs etcd on two free loopback ports and returns its client URL
// once it reports healthy.
func (c *Cluster) startEtcd(bin string) (string, error) {
	// /dev/shm spares etcd's fsyncs (Debian's etcd 3.4 has no --unsafe-no-fsync).
	removeStaleEtcdDirs()
	dataDir, err := os.MkdirTemp(shmDir, shmPrefix)
	if err == nil {
		err = os.WriteFile(filepath.Join(dataDir, "owner.pid"), []byte(strconv.Itoa(os.Getpid())), 0o600)
	}
	if err != nil {
		dataDir, err = os.MkdirTemp(c.dir, "etcd-")
		if err != nil {
			return "", fmt.Errorf("create etcd data dir: %w", err)
		}
	}
	c.etcdDir = dataDir
	dataDir = filepath.Join(dataDir, "data")
	clientPort, err := testproc.FreePort()
	if err != nil {
		return "", err
	}
	peerPort, err := testproc.FreePort()
	if err != nil {
		return "", err
	}
	clientURL := "http://127.0.0.1:" + strconv.Itoa(clientPort)
	peerURL := "http://127.0.0.1:" + strconv.Itoa(peerPort)
	p, err := testproc.Start(c.dir, "etcd", bin,
		"--name=kubetest",
		"--data-dir="+dataDir,
		"--listen-client-urls="+clientURL,
		"--advertise-client-urls="+clientURL,
		"--listen-peer-urls="+peerURL,
		"--initial-advertise-peer-urls="+peerURL,
		"--initial-cluster=kubetest="+peerURL,
		"--initial-cluster-state=new",
		"--logger=zap",
		"--log-level=warn",
	)
	if err != nil {
		return "", err
	}
	c.procs = append(c.procs, p)
	hc := &http.Client{Timeout: 2 * time.Second}
	err = testproc.Poll(30*time.Second, 100*time.Millisecond, p.ExitedErr, func() error {
		resp, err := hc.Get(clientURL + "/health")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if !strings.Contains(string(body), `"health":"true"`) {
			return fmt.Errorf("/health: %s", body)
		}
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("etcd not healthy: %w", p.WithLogTail(err, 40))
	}
	return clientURL, nil
}

const shmDir, shmPrefix = "/dev/shm", "vigil-kubetest-etcd-"

// removeStaleEtcdDirs removes etcd data directories in /dev/shm left by test
// processes that were killed before Stop ran (e.g. by go test -timeout); each
// holds about 120 MB of memory.
func removeStaleEtcdDirs() {
	dirs, _ := filepath.Glob(filepath.Join(shmDir, shmPrefix+"*"))
	for _, d := range dirs {
		b, err := os.ReadFile(filepath.Join(d, "owner.pid"))
		if err != nil {
			continue // being created, or not ours
		}
		pid, err := strconv.Atoi(string(b))
		if err != nil || pid <= 0 {
			continue
		}
		if syscall.Kill(pid, 0) == syscall.ESRCH {
			_ = os.RemoveAll(d)
		}
	}
}

func (c *Cluster) waitReady(p *testproc.Process, timeout time.Duration) error {
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: c.certPool()}}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr, Timeout: 5 * time.Second}
	return testproc.Poll(timeout, 200*time.Millisecond, p.ExitedErr, func() error {
		req, err := http.NewRequest(http.MethodGet, c.url+"/readyz", nil)
		if err != nil {
			return err
		}
		req.Header.Set("Authorization", "Bearer "+c.tokens[Admin])
		resp, err := hc.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("/readyz: %s: %s", resp.Status, body)
		}
		return nil
	})
}

// writeTokens writes the static token file: token,user,uid,"group,...".
func (c *Cluster) writeTokens(users []User) error {
	all := append([]User{{Name: Admin, Groups: []string{"system:masters"}}}, users...)
	var b strings.Builder
	w := csv.NewWriter(&b)
	for _, u := range all {
		if u.Name == "" {
			return fmt.Errorf("static user with an empty name")
		}
		if _, dup := c.tokens[u.Name]; dup {
			return fmt.Errorf("static user %q given twice", u.Name)
		}
		tok := randomToken()
		c.tokens[u.Name] = tok
		if err := w.Write([]string{tok, u.Name, "uid-" + u.Name, strings.Join(u.Groups, ",")}); err != nil {
			return fmt.Errorf("write token file: %w", err)
		}
	}
	w.Flush()
	return c.write("tokens.csv", []byte(b.String()))
}

func (c *Cluster) writeAuditWebhookConfig(w *AuditWebhook) error {
	u, err := url.Parse(w.URL)
	if err != nil {
		return fmt.Errorf("audit webhook URL %q: %w", w.URL, err)
	}
	host := u.Hostname()
	if u.Scheme != "https" || (host != "127.0.0.1" && host != "localhost" && (c.address == "" || host != c.address)) {
		return fmt.Errorf("audit webhook URL %q: must be https on 127.0.0.1, localhost or Options.Address", w.URL)
	}
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["audit"] = &clientcmdapi.Cluster{Server: w.URL, CertificateAuthorityData: w.CAData}
	cfg.AuthInfos["audit"] = &clientcmdapi.AuthInfo{
		Token:                 w.Token,
		ClientCertificateData: w.ClientCertData,
		ClientKeyData:         w.ClientKeyData,
	}
	cfg.Contexts["audit"] = &clientcmdapi.Context{Cluster: "audit", AuthInfo: "audit"}
	cfg.CurrentContext = "audit"
	return c.writeKubeconfig("audit-webhook.kubeconfig", cfg)
}

// kubeconfig writes a kubeconfig that reaches this cluster with a client
// certificate for name and groups, and returns its path.
func (c *Cluster) kubeconfig(file, name string, groups ...string) (string, error) {
	cert, key, err := c.ca.issue(name, groups, nil)
	if err != nil {
		return "", err
	}
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["kubetest"] = &clientcmdapi.Cluster{Server: c.url, CertificateAuthorityData: c.ca.pem}
	cfg.AuthInfos[name] = &clientcmdapi.AuthInfo{ClientCertificateData: cert, ClientKeyData: key}
	cfg.Contexts["kubetest"] = &clientcmdapi.Context{Cluster: "kubetest", AuthInfo: name}
	cfg.CurrentContext = "kubetest"
	return c.path(file), c.writeKubeconfig(file, cfg)
}

func (c *Cluster) writeKubeconfig(file string, cfg *clientcmdapi.Config) error {
	b, err := clientcmd.Write(*cfg)
	if err != nil {
		return fmt.Errorf("encode %s: %w", file, err)
	}
	return c.write(file, b)
}

// Kubeconfig writes a kubeconfig file that reaches the cluster with a
// client certificate for name and groups (any identity, e.g. a service
// account's "system:serviceaccount:NS:NAME"), and returns its path.
func (c *Cluster) Kubeconfig(name string, groups ...string) string {
	c.t.Helper()
	file := "kubeconfig-" + strings.NewReplacer(":", "_", "/", "_").Replace(name)
	path, err := c.kubeconfig(file, name, groups...)
	if err != nil {
		c.t.Fatalf("kubetest: %v", err)
	}
	return path
}

// URL is the API server's base URL, https://127.0.0.1:<port> (or
// Options.Address instead of 127.0.0.1).
func (c *Cluster) URL() string { return c.url }

// CAData is the PEM CA that signed the API server's serving certificate and
// that kube-apiserver trusts for client certificates.
func (c *Cluster) CAData() []byte { return c.ca.pem }

// AuditLogPath is the audit log file, or "" unless Options.AuditLog was set.
func (c *Cluster) AuditLogPath() string { return c.auditLog }

// Token returns a static user's bearer token; unknown users fail the test.
func (c *Cluster) Token(user string) string {
	c.t.Helper()
	tok, ok := c.tokens[user]
	if !ok {
		c.t.Fatalf("kubetest: no static user %q (known: %v)", user, c.userNames())
	}
	return tok
}

// RESTConfig returns a client config that authenticates as a static user
// (Admin or one of Options.Users) with its bearer token.
func (c *Cluster) RESTConfig(user string) *rest.Config {
	c.t.Helper()
	return &rest.Config{
		Host:            c.url,
		BearerToken:     c.Token(user),
		TLSClientConfig: rest.TLSClientConfig{CAData: c.ca.pem},
		QPS:             100,
		Burst:           200,
	}
}

// CertConfig returns a client config that authenticates with a client
// certificate, signed by the cluster CA, for any user name and groups; use it
// for identities that are not static users (e.g. system:node:<name>).
func (c *Cluster) CertConfig(name string, groups ...string) *rest.Config {
	c.t.Helper()
	cert, key, err := c.ca.issue(name, groups, nil)
	if err != nil {
		c.t.Fatalf("kubetest: %v", err)
	}
	return &rest.Config{
		Host:            c.url,
		TLSClientConfig: rest.TLSClientConfig{CAData: c.ca.pem, CertData: cert, KeyData: key},
		QPS:             100,
		Burst:           200,
	}
}

// Clientset returns a clientset for a static user, as RESTConfig.
func (c *Cluster) Clientset(user string) *kubernetes.Clientset {
	c.t.Helper()
	cs, err := kubernetes.NewForConfig(c.RESTConfig(user))
	if err != nil {
		c.t.Fatalf("kubetest: clientset for %s: %v", user, err)
	}
	return cs
}

// Stop kills every process of the cluster, newest first, and removes etcd's
// data. It is idempotent and registered with t.Cleanup by Start. If the test
// has failed, the tail of each process's log not already in a failure message
// goes to the test log.
func (c *Cluster) Stop() {
	c.stopOnce.Do(func() {
		if c.t.Failed() {
			for _, p := range c.procs {
				if p.Reported() {
					continue
				}
				c.t.Log(p.TailSection(40))
			}
		}
		for _, p := range slices.Backward(c.procs) {
			p.Stop(10 * time.Second)
		}
		if c.etcdDir != "" {
			_ = os.RemoveAll(c.etcdDir)
		}
	})
}

func (c *Cluster) path(name string) string { return filepath.Join(c.dir, name) }

func (c *Cluster) write(name string, data []byte) error {
	if err := os.WriteFile(c.path(name), data, 0o600); err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	return nil
}

func (c *Cluster) certPool() *x509.CertPool {
	pool := x509.NewCertPool()
	pool.AddCert(c.ca.cert)
	return pool
}

func (c *Cluster) userNames() []string {
	var names []string
	for n := range c.tokens {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

func randomToken() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
