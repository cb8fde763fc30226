// Package scanner is the continuous posture scanner of `vigil agent`: it
// lists and watches a cluster's workloads, evaluates every recommendation
// on each as it changes and reports one finding per workload and
// recommendation, healthy or unhealthy, to the server. It sends only what
// changed; a deleted workload's findings are withdrawn.
package scanner

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/oklog/ulid/v2"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"

	"github.com/vigil-sec/vigil/internal/posture"
	"github.com/vigil-sec/vigil/internal/ship"
)

// Sink receives what the scanner finds; *ship.Client is one. Findings
// must be delivered in the order given, and a ScanComplete after the
// findings given before it.
type Sink interface {
	Findings([]ship.Finding)
	ScanComplete(scan string)
}

// Config configures a Scanner.
type Config struct {
	// Client reads the cluster: it needs list and watch on pods, services,
	// replicationcontrollers, deployments, replicasets, statefulsets,
	// daemonsets, jobs and cronjobs in every namespace.
	Client kubernetes.Interface
	// Posture is the validated config to evaluate with; SetPosture
	// replaces it.
	Posture *posture.Config
	Sink    Sink
	Log     *slog.Logger
}

// Scanner keeps every workload's results current. Create it with New, run
// it with Run; SetPosture and Stats are safe to call at any time.
type Scanner struct {
	cfg     Config
	log     *slog.Logger
	scan    string // this run's id, on every finding it sends
	posture atomic.Pointer[posture.Config]
	queue   workqueue.TypedInterface[objKey]
	kinds   []*watched

	// Owned by the worker (Run's goroutine).
	objects   map[objKey]string         // object -> the workload it reports as
	workloads map[string]*workloadState // Workload.String() -> state

	mu    sync.Mutex
	stats Stats
}

// Stats describes what the scanner holds.
type Stats struct {
	// Synced is set once the first full scan has been sent.
	Synced bool `json:"synced"`
	// Objects are the workload objects evaluated (controller-owned pods,
	// ReplicaSets and Jobs are covered by their controller's).
	Objects   int `json:"objects"`
	Workloads int `json:"workloads"`
	// Unhealthy counts workload-recommendation pairs that fail.
	Unhealthy int `json:"unhealthy"`
	// Sent counts findings sent (changes and withdrawals included).
	Sent int64 `json:"sent"`
}

// objKey names one watched object.
type objKey struct{ kind, namespace, name string }

func (k objKey) String() string { return k.kind + "/" + k.namespace + "/" + k.name }

// workloadState is what was last sent for one workload.
type workloadState struct {
	namespace string
	objects   map[objKey]bool   // the objects that report as this workload
	sent      map[string]string // recommendation -> fingerprint of what was sent
	unhealthy int
}

// watched is one kind of object the scanner lists and watches.
type watched struct {
	kind     string
	informer cache.SharedIndexInformer
}

// New returns a Scanner; it starts nothing.
func New(cfg Config) (*Scanner, error) {
	if cfg.Client == nil || cfg.Sink == nil {
		return nil, errors.New("scanner: Config.Client and Config.Sink are required")
	}
	if !cfg.Posture.Validated() {
		return nil, errors.New("scanner: Config.Posture is nil or not validated")
	}
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Scanner{
		cfg:       cfg,
		log:       log,
		scan:      ulid.Make().String(),
		queue:     workqueue.NewTypedWithConfig(workqueue.TypedQueueConfig[objKey]{Name: "vigil-posture"}),
		objects:   map[objKey]string{},
		workloads: map[string]*workloadState{},
	}
	s.posture.Store(cfg.Posture)
	return s, nil
}

// ScanID is the id this run stamps on its findings.
func (s *Scanner) ScanID() string { return s.scan }

// SetPosture replaces the config and re-evaluates every workload with it;
// only the results that change are sent.
func (s *Scanner) SetPosture(cfg *posture.Config) error {
	if !cfg.Validated() {
		return errors.New("scanner: posture config is nil or not validated")
	}
	s.posture.Store(cfg)
	for _, w := range s.kinds {
		for _, k := range w.informer.GetStore().ListKeys() {
			s.enqueue(w.kind, k)
		}
	}
	return nil
}

// Stats returns a snapshot of the counters.
func (s *Scanner) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stats
}

// Run lists every workload, sends the full scan followed by ScanComplete,
// then follows the cluster's changes until ctx is done. It returns an
// error if the caches cannot sync (no access to the API, or missing
// rights) before ctx is done.
func (s *Scanner) Run(ctx context.Context) error {
	if s.kinds != nil {
		return errors.New("scanner: Run called twice")
	}
	factory := informers.NewSharedInformerFactoryWithOptions(s.cfg.Client, 0, informers.WithTransform(trim))
	s.kinds = []*watched{
		{"Pod", factory.Core().V1().Pods().Informer()},
		{"Service", factory.Core().V1().Services().Informer()},
		{"ReplicationController", factory.Core().V1().ReplicationControllers().Informer()},
		{"Deployment", factory.Apps().V1().Deployments().Informer()},
		{"ReplicaSet", factory.Apps().V1().ReplicaSets().Informer()},
		{"StatefulSet", factory.Apps().V1().StatefulSets().Informer()},
		{"DaemonSet", factory.Apps().V1().DaemonSets().Informer()},
		{"Job", factory.Batch().V1().Jobs().Informer()},
		{"CronJob", factory.Batch().V1().CronJobs().Informer()},
	}
	byKind := make(map[string]*watched, len(s.kinds))
	for _, w := range s.kinds {
		kind := w.kind
		byKind[kind] = w
		on := func(obj any) {
			if k, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj); err == nil {
				s.enqueue(kind, k)
			}
		}
		if _, err := w.informer.AddEventHandler(cache.ResourceEventHandlerFuncs{
			AddFunc: on, UpdateFunc: func(_, obj any) { on(obj) }, DeleteFunc: on,
		}); err != nil {
			return fmt.Errorf("scanner: watch %s: %w", kind, err)
		}
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer factory.Shutdown()
	factory.Start(ctx.Done())
	start := time.Now()
	for typ, ok := range factory.WaitForCacheSync(ctx.Done()) {
		if !ok {
			return fmt.Errorf("scanner: list %v: not synced before shutdown (can the agent list and watch it?)", typ)
		}
	}
	go func() { <-ctx.Done(); s.queue.ShutDown() }()

	// The first full scan: everything the caches hold, then the marker
	// that lets the server drop what an earlier run sent and no longer
	// holds. Changes queued meanwhile are evaluated again below; unchanged
	// results are not re-sent.
	for _, w := range s.kinds {
		for _, k := range w.informer.GetStore().ListKeys() {
			s.process(w, k)
		}
	}
	s.cfg.Sink.ScanComplete(s.scan)
	s.mu.Lock()
	s.stats.Synced = true
	st := s.stats
	s.mu.Unlock()
	s.log.Info("posture scan complete", "scan", s.scan, "objects", st.Objects, "workloads", st.Workloads,
		"unhealthy", st.Unhealthy, "duration", time.Since(start).Round(time.Millisecond))

	for {
		k, shutdown := s.queue.Get()
		if shutdown {
			return nil
		}
		s.process(byKind[k.kind], cache.NewObjectName(k.namespace, k.name).String())
		s.queue.Done(k)
	}
}

func (s *Scanner) enqueue(kind, key string) {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return
	}
	s.queue.Add(objKey{kind, ns, name})
}

// process evaluates one object as the cache holds it now (absent: gone)
// and sends what changed for its workload.
func (s *Scanner) process(w *watched, key string) {
	ns, name, _ := cache.SplitMetaNamespaceKey(key)
	k := objKey{w.kind, ns, name}
	obj, exists, err := w.informer.GetStore().GetByKey(key)
	var target posture.Target
	if err == nil && exists {
		if ro, ok := obj.(runtime.Object); ok && !coveredByController(ro) {
			target, exists = posture.Extract(ro)
		} else {
			exists = false
		}
	}
	var results []posture.Result
	if exists {
		// No result (an excluded namespace, say) is as good as gone.
		results = posture.EvaluateTarget(s.posture.Load(), &target)
	}
	var out []ship.Finding
	if prev, ok := s.objects[k]; ok && (len(results) == 0 || prev != target.Workload.String()) {
		out = s.detach(k, prev, out)
	}
	if len(results) > 0 {
		out = s.attach(k, target.Workload, results, out)
	}
	if len(out) > 0 {
		s.cfg.Sink.Findings(out)
	}
	s.mu.Lock()
	s.stats.Objects, s.stats.Workloads, s.stats.Sent = len(s.objects), len(s.workloads), s.stats.Sent+int64(len(out))
	s.stats.Unhealthy = 0
	for _, ws := range s.workloads {
		s.stats.Unhealthy += ws.unhealthy
	}
	s.mu.Unlock()
}

// attach records that object k reports as workload w with these results,
// and appends the findings that differ from what was sent for w.
func (s *Scanner) attach(k objKey, w posture.Workload, results []posture.Result, out []ship.Finding) []ship.Finding {
	name := w.String()
	ws := s.workloads[name]
	if ws == nil {
		ws = &workloadState{namespace: w.Namespace, objects: map[objKey]bool{}, sent: map[string]string{}}
		s.workloads[name] = ws
	}
	ws.objects[k] = true
	s.objects[k] = name
	now := make(map[string]bool, len(results))
	ws.unhealthy = 0
	for i, f := range posture.Findings(results) {
		now[f.Check] = true
		if !results[i].Healthy {
			ws.unhealthy++
		}
		fp := fingerprint(&results[i])
		if ws.sent[f.Check] == fp {
			continue
		}
		ws.sent[f.Check] = fp
		f.Scan = s.scan
		out = append(out, f)
	}
	for rec := range ws.sent {
		if !now[rec] {
			delete(ws.sent, rec)
			out = append(out, s.removed(rec, name, ws.namespace))
		}
	}
	return out
}

// detach forgets that object k reports as workload name; when no object
// is left, the workload's findings are withdrawn.
func (s *Scanner) detach(k objKey, name string, out []ship.Finding) []ship.Finding {
	delete(s.objects, k)
	ws := s.workloads[name]
	if ws == nil {
		return out
	}
	delete(ws.objects, k)
	if len(ws.objects) > 0 {
		return out
	}
	for rec := range ws.sent {
		out = append(out, s.removed(rec, name, ws.namespace))
	}
	delete(s.workloads, name)
	return out
}

// removed withdraws the finding of one recommendation on one workload.
func (s *Scanner) removed(rec, resource, namespace string) ship.Finding {
	return ship.Finding{ID: posture.FindingID(rec, resource), Check: rec, Resource: resource, Namespace: namespace,
		Status: ship.Removed, Scan: s.scan}
}

// fingerprint is what a finding says, to send it only when it changes.
func fingerprint(r *posture.Result) string {
	return fmt.Sprintf("%t|%s|%s", r.Healthy, r.Mode, strings.Join(r.Violations, "\n"))
}

// coveredByController reports whether obj was made by a controller the
// scanner evaluates itself (a Deployment's ReplicaSets and their pods, a
// CronJob's Jobs, a StatefulSet's pods, ...): its template is the
// workload's, reported once under the controller's name.
func coveredByController(obj runtime.Object) bool {
	m, err := meta.Accessor(obj)
	if err != nil {
		return false
	}
	ref := metav1.GetControllerOfNoCopy(m)
	if ref == nil {
		return false
	}
	switch ref.APIVersion + "/" + ref.Kind {
	case "apps/v1/Deployment", "apps/v1/ReplicaSet", "apps/v1/StatefulSet", "apps/v1/DaemonSet",
		"batch/v1/Job", "batch/v1/CronJob", "v1/ReplicationController":
		return true
	}
	return false
}

// trim drops what the scanner never reads before the cache stores it:
// managed fields and status everywhere, and the spec of pods a watched
// controller made (their template is checked on the controller). A large
// cluster's pods then cost the agent little more than their names.
func trim(obj any) (any, error) {
	if m, err := meta.Accessor(obj); err == nil {
		m.SetManagedFields(nil)
		if a := m.GetAnnotations(); a[corev1.LastAppliedConfigAnnotation] != "" {
			delete(a, corev1.LastAppliedConfigAnnotation)
		}
	}
	switch o := obj.(type) {
	case *corev1.Pod:
		o.Status = corev1.PodStatus{}
		if coveredByController(o) {
			o.Spec = corev1.PodSpec{}
		}
	case *corev1.Service:
		o.Status = corev1.ServiceStatus{}
	case *appsv1.Deployment:
		o.Status = appsv1.DeploymentStatus{}
	case *appsv1.ReplicaSet:
		o.Status = appsv1.ReplicaSetStatus{}
		if coveredByController(o) {
			o.Spec.Template = corev1.PodTemplateSpec{}
		}
	case *appsv1.StatefulSet:
		o.Status = appsv1.StatefulSetStatus{}
	case *appsv1.DaemonSet:
		o.Status = appsv1.DaemonSetStatus{}
	case *batchv1.Job:
		o.Status = batchv1.JobStatus{}
		if coveredByController(o) {
			o.Spec.Template = corev1.PodTemplateSpec{}
		}
	case *batchv1.CronJob:
		o.Status = batchv1.CronJobStatus{}
	}
	return obj, nil
}
