package container

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/vigil-sec/vigil/internal/event"
)

// ErrPending is what an Enricher returns when it has started looking a
// container up in the background (or cannot reach its source right now)
// and wants to be asked again: the Resolver then retries the container's
// enrichment as it does for a container no enricher knew, even when
// another enricher knew it.
var ErrPending = errors.New("container lookup pending")

// DefaultCRISockets lists where CRI runtimes listen: containerd, CRI-O,
// cri-dockerd (Docker under Kubernetes) and k3s's embedded containerd.
// Podman has no CRI.
func DefaultCRISockets() []string {
	return []string{
		"/run/containerd/containerd.sock",
		"/run/crio/crio.sock",
		"/var/run/cri-dockerd.sock",
		"/run/k3s/containerd/containerd.sock",
	}
}

// CRIOptions configure a CRI enricher. The zero value autodetects the
// socket on the host itself.
type CRIOptions struct {
	// HostRoot prefixes every socket path ("" and "/": none).
	HostRoot string
	// Sockets are the CRI sockets to try, in order: the first that exists
	// (as a socket) is used. nil means DefaultCRISockets(); an empty
	// slice disables the enricher.
	Sockets []string
	// Timeout bounds each call to the runtime (0: 200ms).
	Timeout time.Duration
	// Wait is how long Enrich waits for a lookup it started before it
	// answers ErrPending and lets the lookup finish in the background (0:
	// 10ms, the Resolver's first retry; negative: no wait).
	Wait time.Duration
	// MinBackoff and MaxBackoff bound the time the enricher leaves an
	// unreachable socket alone, doubling from MinBackoff after each
	// failure (0: one second and one minute). A socket that did not
	// exist is looked for again every MaxBackoff.
	MinBackoff, MaxBackoff time.Duration
	// CacheSize bounds the answers kept, found or not (0: 8192).
	CacheSize int
	// Log receives the socket's state changes (connected, down, back) and,
	// at debug level, failed lookups; nil discards them.
	Log *slog.Logger
}

// CRI enriches containers from the runtime's CRI API (k8s.io/cri-api
// runtime v1) on its unix socket: ContainerStatus gives a container's
// name, image and the labels through which the kubelet names its pod,
// namespace and pod uid; PodSandboxStatus does the same for a pod's
// sandbox (pause) container. It only calls these read-only methods, and
// Version once per connection.
//
// It is meant to come after the enrichers that read runtime state on
// disk: it asks the runtime only about containers they left incomplete
// (no name, no image, or a pod uid without the pod's name), e.g. CRI-O
// with crun, or state directories the sensor cannot read. Lookups run in
// the background, at most a few at once, each bounded by Timeout; Enrich
// waits for one at most Wait and otherwise answers ErrPending, so the
// event path is never held by the socket. Answers, found or not, are
// cached by container id. When the socket fails (the runtime is down or
// restarting) the enricher backs off, answering ErrPending at once, and
// logs the failure once.
//
// Create it with NewCRI and Close it when done: it holds a connection
// and runs goroutines.
type CRI struct {
	opts  CRIOptions
	cache *cache[string, *criResult]
	calls atomic.Int64 // RPCs made, for tests

	mu       sync.Mutex
	inflight map[string]chan struct{}
	closed   bool
	wg       sync.WaitGroup

	dialMu sync.Mutex // serialises connection attempts (background lookups only)

	stateMu  sync.Mutex // guards the fields below; never held across a call
	conn     *grpc.ClientConn
	client   runtimeapi.RuntimeServiceClient
	endpoint string // socket in use
	runtime  string // the runtime's name from Version
	state    criState
	next     time.Time     // no connection attempt before this
	backoff  time.Duration // current backoff while down
}

type criState int

const (
	criUnknown criState = iota // not tried yet
	criUp
	criDown   // a socket exists but failed
	criAbsent // no socket found
)

// maxCRIInflight bounds the lookups running at once.
const maxCRIInflight = 8

// criResult is what the runtime said of one container; nil fields of a
// container not found.
type criResult struct {
	found                  bool
	name, image, imageID   string
	pod, namespace, podUID string
	runtime                string
	labels                 map[string]string
	started                time.Time
}

// NewCRI returns a CRI enricher. It connects lazily, on the first
// container it is asked about.
func NewCRI(opts CRIOptions) *CRI {
	if opts.Sockets == nil {
		opts.Sockets = DefaultCRISockets()
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 200 * time.Millisecond
	}
	if opts.Wait == 0 {
		opts.Wait = 10 * time.Millisecond
	}
	if opts.MinBackoff <= 0 {
		opts.MinBackoff = time.Second
	}
	if opts.MaxBackoff <= 0 {
		opts.MaxBackoff = time.Minute
	}
	opts.MaxBackoff = max(opts.MaxBackoff, opts.MinBackoff)
	if opts.CacheSize <= 0 {
		opts.CacheSize = 8192
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	return &CRI{opts: opts, cache: newCache[string, *criResult](opts.CacheSize), inflight: map[string]chan struct{}{}}
}

// Endpoint returns the socket the enricher talks to and the runtime's
// name, both "" until it connected.
func (r *CRI) Endpoint() (socket, runtime string) {
	r.stateMu.Lock()
	defer r.stateMu.Unlock()
	if r.state != criUp {
		return "", ""
	}
	return r.endpoint, r.runtime
}

// Close waits for the lookups under way and closes the connection.
// Enrich knows nothing afterwards.
func (r *CRI) Close() error {
	r.mu.Lock()
	r.closed = true
	r.mu.Unlock()
	r.wg.Wait()
	r.stateMu.Lock()
	defer r.stateMu.Unlock()
	r.disconnect()
	return nil
}

// needsCRI reports whether c is worth asking the runtime about: a CRI
// container id that what was read on disk left incomplete.
func needsCRI(c *event.Container) bool {
	if c.Runtime == "podman" || !isHexID(c.ID) {
		return false
	}
	return c.Name == "" || c.Image == "" || c.PodUID != "" && (c.Pod == "" || c.Namespace == "")
}

// Enrich implements Enricher.
func (r *CRI) Enrich(c *event.Container) (bool, error) {
	if len(r.opts.Sockets) == 0 || !needsCRI(c) {
		return false, nil
	}
	if res, ok := r.cache.get(c.ID); ok {
		return res.apply(c), nil
	}
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return false, nil
	}
	done, running := r.inflight[c.ID]
	if !running {
		switch st, retryAt := r.status(); {
		case st == criAbsent && time.Now().Before(retryAt):
			r.mu.Unlock()
			return false, nil // no CRI on this host: on-disk state is all there is
		case st == criDown && time.Now().Before(retryAt):
			r.mu.Unlock()
			return false, ErrPending // ask again once the socket may be back
		case len(r.inflight) >= maxCRIInflight:
			r.mu.Unlock()
			return false, ErrPending
		}
		done = make(chan struct{})
		r.inflight[c.ID] = done
		r.wg.Add(1)
		go r.lookup(c.ID, done)
	}
	r.mu.Unlock()
	if r.opts.Wait > 0 {
		t := time.NewTimer(r.opts.Wait)
		select {
		case <-done:
		case <-t.C:
		}
		t.Stop()
	}
	if res, ok := r.cache.get(c.ID); ok {
		return res.apply(c), nil
	}
	if st, _ := r.status(); st == criAbsent {
		return false, nil
	}
	return false, ErrPending
}

// status returns the connection's state and when to try it again.
func (r *CRI) status() (criState, time.Time) {
	r.stateMu.Lock()
	defer r.stateMu.Unlock()
	return r.state, r.next
}

// lookup asks the runtime about container id and caches the answer; on a
// failure of the socket it caches nothing, so that the container is asked
// about again after the backoff.
func (r *CRI) lookup(id string, done chan struct{}) {
	defer func() {
		r.mu.Lock()
		delete(r.inflight, id)
		r.mu.Unlock()
		close(done)
		r.wg.Done()
	}()
	client, runtime, ok := r.connect()
	if !ok {
		return
	}
	res, err := r.query(client, id)
	if err != nil {
		r.failed(err)
		return
	}
	res.runtime = runtime
	r.cache.put(id, res)
}

// query asks for container id's status, and for a sandbox's when no
// container has that id. err is set only when the socket failed; a
// runtime that does not know the id answers a result that is not found.
func (r *CRI) query(client runtimeapi.RuntimeServiceClient, id string) (*criResult, error) {
	ctx, cancel := context.WithTimeout(context.Background(), r.opts.Timeout)
	defer cancel()
	r.calls.Add(1)
	cs, err := client.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: id})
	if err == nil && cs.GetStatus() != nil {
		return containerResult(cs.GetStatus()), nil
	}
	if transient(err) {
		return nil, err
	}
	if err != nil {
		r.opts.Log.Debug("CRI container status", "id", id, "err", err)
	}
	// Not a container: a pod's sandbox (its pause process) has an id of
	// its own.
	ctx, cancel = context.WithTimeout(context.Background(), r.opts.Timeout)
	defer cancel()
	r.calls.Add(1)
	ps, err := client.PodSandboxStatus(ctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: id})
	if err == nil && ps.GetStatus() != nil {
		return sandboxResult(ps.GetStatus()), nil
	}
	if transient(err) {
		return nil, err
	}
	if err != nil {
		r.opts.Log.Debug("CRI pod sandbox status", "id", id, "err", err)
	}
	return &criResult{}, nil
}

// transient reports whether err is the socket's or the runtime's failure
// rather than the runtime's answer that it does not know the id.
func transient(err error) bool {
	switch status.Code(err) {
	case codes.OK:
		return false
	case codes.Unavailable, codes.DeadlineExceeded, codes.Canceled, codes.ResourceExhausted, codes.Aborted:
		return true
	}
	return false
}

// connect returns a client for the runtime, connecting first when there
// is none; ok is false while the socket is absent or backing off.
func (r *CRI) connect() (client runtimeapi.RuntimeServiceClient, runtime string, ok bool) {
	r.dialMu.Lock()
	defer r.dialMu.Unlock()
	r.stateMu.Lock()
	state, next := r.state, r.next
	client, runtime = r.client, r.runtime
	r.stateMu.Unlock()
	if state == criUp {
		return client, runtime, true
	}
	now := time.Now()
	if now.Before(next) {
		return nil, "", false
	}
	sock := r.find()
	if sock == "" {
		r.stateMu.Lock()
		defer r.stateMu.Unlock()
		if r.state != criAbsent {
			r.opts.Log.Debug("no CRI socket found: containers are described from runtime state on disk only", "tried", strings.Join(r.opts.Sockets, ","))
		}
		r.state, r.next = criAbsent, now.Add(r.opts.MaxBackoff)
		return nil, "", false
	}
	conn, err := grpc.NewClient("unix://"+sock,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(16<<20)))
	if err != nil {
		r.down(sock, err)
		return nil, "", false
	}
	client = runtimeapi.NewRuntimeServiceClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), r.opts.Timeout)
	defer cancel()
	r.calls.Add(1)
	v, err := client.Version(ctx, &runtimeapi.VersionRequest{})
	if err != nil {
		conn.Close()
		r.down(sock, err)
		return nil, "", false
	}
	runtime = runtimeName(v.GetRuntimeName())
	r.stateMu.Lock()
	defer r.stateMu.Unlock()
	if r.state == criDown {
		r.opts.Log.Info("CRI socket is back", "socket", sock, "runtime", v.GetRuntimeName(), "version", v.GetRuntimeVersion())
	} else {
		r.opts.Log.Info("CRI socket connected: containers that runtime state on disk leaves incomplete are looked up there (status calls only)",
			"socket", sock, "runtime", v.GetRuntimeName(), "version", v.GetRuntimeVersion())
	}
	r.disconnect()
	r.conn, r.client, r.endpoint, r.runtime = conn, client, sock, runtime
	r.state, r.backoff, r.next = criUp, 0, time.Time{}
	return client, runtime, true
}

// find returns the first of the configured sockets that exists, as the
// sensor sees it.
func (r *CRI) find() string {
	for _, s := range r.opts.Sockets {
		p := filepath.Join(r.opts.HostRoot, s)
		fi, err := os.Stat(p)
		if err == nil && fi.Mode().Type() == fs.ModeSocket {
			return p
		}
	}
	return ""
}

// failed records a failure of the socket during a lookup.
func (r *CRI) failed(err error) {
	r.stateMu.Lock()
	defer r.stateMu.Unlock()
	if r.state == criUp { // else another lookup saw it first
		r.downLocked(r.endpoint, err)
	}
}

// down backs off from sock after err.
func (r *CRI) down(sock string, err error) {
	r.stateMu.Lock()
	defer r.stateMu.Unlock()
	r.downLocked(sock, err)
}

// downLocked is down with stateMu held. Only the first failure after the
// socket worked (or the very first) is logged above debug level.
func (r *CRI) downLocked(sock string, err error) {
	r.disconnect()
	r.backoff = min(max(2*r.backoff, r.opts.MinBackoff), r.opts.MaxBackoff)
	r.next = time.Now().Add(r.backoff)
	if r.state != criDown {
		r.opts.Log.Warn("CRI socket unreachable: containers are described from runtime state on disk until it is back",
			"socket", sock, "retry_in", r.backoff, "err", err)
	} else {
		r.opts.Log.Debug("CRI socket still unreachable", "socket", sock, "retry_in", r.backoff, "err", err)
	}
	r.state = criDown
}

// disconnect closes the connection, if any; stateMu is held.
func (r *CRI) disconnect() {
	if r.conn != nil {
		r.conn.Close()
	}
	r.conn, r.client = nil, nil
}

// runtimeName maps a CRI runtime's name to the one Vigil's events use.
func runtimeName(s string) string {
	switch strings.ToLower(s) {
	case "cri-o", "crio":
		return "cri-o"
	case "docker", "cri-dockerd":
		return "docker"
	}
	return s
}

// The kubelet's labels on every container and sandbox it creates.
const (
	labelPodName       = "io.kubernetes.pod.name"
	labelPodNamespace  = "io.kubernetes.pod.namespace"
	labelPodUID        = "io.kubernetes.pod.uid"
	labelContainerName = "io.kubernetes.container.name"
)

func containerResult(s *runtimeapi.ContainerStatus) *criResult {
	l := s.GetLabels()
	res := &criResult{
		found:     true,
		name:      l[labelContainerName],
		pod:       l[labelPodName],
		namespace: l[labelPodNamespace],
		podUID:    l[labelPodUID],
		labels:    l,
		image:     readableImage(s),
		imageID:   s.GetImageId(),
		started:   nanos(s.GetStartedAt()),
	}
	if res.name == "" {
		res.name = s.GetMetadata().GetName()
	}
	if res.imageID == "" {
		res.imageID = s.GetImageRef()
	}
	if res.started.IsZero() {
		res.started = nanos(s.GetCreatedAt())
	}
	if len(res.labels) == 0 {
		res.labels = nil
	}
	return res
}

func sandboxResult(s *runtimeapi.PodSandboxStatus) *criResult {
	m := s.GetMetadata()
	res := &criResult{
		found:     true,
		pod:       m.GetName(),
		namespace: m.GetNamespace(),
		podUID:    m.GetUid(),
		labels:    s.GetLabels(),
		started:   nanos(s.GetCreatedAt()),
	}
	if len(res.labels) == 0 {
		res.labels = nil
	}
	return res
}

// readableImage is the container's image as people name it: the image
// spec when it is a name (containerd gives a repo tag there), else what
// the pod spec said, else the digested reference.
func readableImage(s *runtimeapi.ContainerStatus) string {
	for _, v := range []string{s.GetImage().GetImage(), s.GetImage().GetUserSpecifiedImage(), s.GetImageRef()} {
		if v != "" && !isImageID(v) {
			return v
		}
	}
	return s.GetImage().GetImage()
}

// isImageID recognises an image id rather than a name: sha256:<hex> or
// bare hex.
func isImageID(s string) bool {
	s = strings.TrimPrefix(s, "sha256:")
	return len(s) == 64 && isHex(s)
}

func nanos(ns int64) time.Time {
	if ns <= 0 {
		return time.Time{}
	}
	return time.Unix(0, ns).UTC()
}

// apply fills the empty fields of c and reports whether the runtime knew
// the container.
func (res *criResult) apply(c *event.Container) bool {
	if !res.found {
		return false
	}
	setEmpty(&c.Name, res.name)
	setEmpty(&c.Image, res.image)
	setEmpty(&c.ImageID, res.imageID)
	setEmpty(&c.Pod, res.pod)
	setEmpty(&c.Namespace, res.namespace)
	setEmpty(&c.PodUID, res.podUID)
	setEmpty(&c.Runtime, res.runtime)
	if c.StartTime.IsZero() {
		c.StartTime = res.started
	}
	if c.Labels == nil {
		c.Labels = res.labels
	}
	return true
}

// String describes the enricher for logs.
func (r *CRI) String() string {
	return fmt.Sprintf("CRI(%s)", strings.Join(r.opts.Sockets, ","))
}
