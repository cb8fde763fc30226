package admission

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"sync/atomic"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utiljson "k8s.io/apimachinery/pkg/util/json"

	"github.com/vigil-sec/vigil/internal/posture"
)

// DefaultMaxBodyBytes bounds an AdmissionReview when Config.MaxBodyBytes is
// 0. etcd stores objects of at most 1.5 MiB, and an UPDATE review carries
// the object twice (object and oldObject), so 4 MiB holds any real review.
const DefaultMaxBodyBytes = 4 << 20

// Config configures a Webhook.
type Config struct {
	// Posture says which recommendations run, in which mode and on which
	// namespaces. It must have been validated (posture.DefaultConfig,
	// ParseConfig, LoadConfig or Validate) and must not change while the
	// Webhook serves; replace it with SetPosture.
	Posture *posture.Config
	// OnFindings receives, for every object the webhook admits on a request
	// that is not a dry run, its unhealthy results: the audit-mode ones and,
	// on UPDATE, deny-mode violations the object already had (see Webhook).
	// It is called on the request path, possibly from many goroutines at
	// once: it must be safe for concurrent use and must not block. It may
	// keep the slice. nil drops them.
	OnFindings func([]posture.Result)
	// Log receives one line per denial (Info) and per admission with
	// findings (Debug). nil discards.
	Log *slog.Logger
	// Now is the clock for the durations logged; nil means time.Now.
	Now func() time.Time
	// MaxBodyBytes bounds a request body; larger ones get 413. 0 means
	// DefaultMaxBodyBytes.
	MaxBodyBytes int64
}

// Webhook is the validating admission webhook, an http.Handler for POSTs of
// admission.k8s.io/v1 AdmissionReviews. It is safe for concurrent use.
//
// It evaluates CREATE and UPDATE of Pods (and their ephemeralcontainers
// subresource), Deployments, ReplicaSets, StatefulSets, DaemonSets, Jobs,
// CronJobs, ReplicationControllers and Services in their current API
// versions (core/v1, apps/v1, batch/v1). Everything else is admitted
// without a look: DELETE and CONNECT, other subresources (pods/status,
// deployments/scale, ...), other kinds and versions.
//
// Pods made by a controller (ownerReferences to a ReplicaSet, Job,
// DaemonSet or StatefulSet) are evaluated like any pod and, in deny mode,
// denied. The workload itself is checked when it is created or changed, so
// the user gets the message from kubectl apply and a denied Deployment never
// makes pods (no second message). Checking the pods too is what stops a
// workload admitted before a recommendation was set to deny, or while the
// webhook was down under failurePolicy Ignore, from rolling out new
// violating pods; its ReplicaSet's events then carry the message, naming
// the workload the pod belongs to.
//
// UPDATE is denied only for violations the update introduces. A deny-mode
// violation the old object already had (same recommendation, same text)
// is returned as a warning instead: otherwise a workload admitted before
// enforcement could not have a label changed, be orphaned or adopted by
// the garbage collector, or have its finalizers removed, and could never
// finish deleting. For the same reason an UPDATE of an object that is
// being deleted (deletionTimestamp set) is admitted without evaluation.
//
// Dry-run requests are evaluated and answered exactly the same, but
// OnFindings is not called.
type Webhook struct {
	cfg     Config
	posture atomic.Pointer[posture.Config]
	log     *slog.Logger
}

// errNotValidated: a Config that has not passed Validate would fail every
// admission.
var errNotValidated = errors.New("admission: the posture config is nil or not validated (call its Validate)")

// New returns a Webhook, or an error if cfg.Posture is nil or has not been
// validated.
func New(cfg Config) (*Webhook, error) {
	if !cfg.Posture.Validated() {
		return nil, errNotValidated
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = DefaultMaxBodyBytes
	}
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	h := &Webhook{cfg: cfg, log: log}
	h.posture.Store(cfg.Posture)
	return h, nil
}

// SetPosture replaces the posture config for the requests that follow;
// requests under way finish with the one they started with. cfg must be
// validated and must not change afterwards.
func (h *Webhook) SetPosture(cfg *posture.Config) error {
	if !cfg.Validated() {
		return errNotValidated
	}
	h.posture.Store(cfg)
	return nil
}

// ServeHTTP answers an AdmissionReview. A well-formed review always gets
// 200 and an AdmissionReview with the request's uid, whatever the verdict;
// a request that is not one gets 405, 413, 415 or 400 with a JSON body
// {"error": "..."}, which the API server treats as a webhook failure (and
// applies the failure policy).
func (h *Webhook) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		writeError(w, http.StatusMethodNotAllowed, "only POST is allowed")
		return
	}
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		writeError(w, http.StatusUnsupportedMediaType, fmt.Sprintf("Content-Type %q: want application/json", r.Header.Get("Content-Type")))
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, h.cfg.MaxBodyBytes))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("request body larger than %d bytes", mbe.Limit))
			return
		}
		writeError(w, http.StatusBadRequest, "read request body: "+err.Error())
		return
	}
	var in admissionv1.AdmissionReview
	if err := utiljson.Unmarshal(body, &in); err != nil {
		writeError(w, http.StatusBadRequest, "decode AdmissionReview: "+err.Error())
		return
	}
	if in.APIVersion != admissionv1.SchemeGroupVersion.String() || in.Kind != "AdmissionReview" {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("got apiVersion %q kind %q: want admission.k8s.io/v1 AdmissionReview", in.APIVersion, in.Kind))
		return
	}
	if in.Request == nil {
		writeError(w, http.StatusBadRequest, "AdmissionReview has no request")
		return
	}
	if in.Request.UID == "" {
		writeError(w, http.StatusBadRequest, "AdmissionReview request has no uid")
		return
	}
	resp, err := h.review(in.Request)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	resp.UID = in.Request.UID
	writeJSON(w, http.StatusOK, admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: admissionv1.SchemeGroupVersion.String(), Kind: "AdmissionReview"},
		Response: resp,
	})
}

// kinds are the objects the webhook evaluates, by the request's kind.
var kinds = map[metav1.GroupVersionKind]func() runtime.Object{
	{Group: "", Version: "v1", Kind: "Pod"}:                   func() runtime.Object { return &corev1.Pod{} },
	{Group: "", Version: "v1", Kind: "Service"}:               func() runtime.Object { return &corev1.Service{} },
	{Group: "", Version: "v1", Kind: "ReplicationController"}: func() runtime.Object { return &corev1.ReplicationController{} },
	{Group: "apps", Version: "v1", Kind: "Deployment"}:        func() runtime.Object { return &appsv1.Deployment{} },
	{Group: "apps", Version: "v1", Kind: "ReplicaSet"}:        func() runtime.Object { return &appsv1.ReplicaSet{} },
	{Group: "apps", Version: "v1", Kind: "StatefulSet"}:       func() runtime.Object { return &appsv1.StatefulSet{} },
	{Group: "apps", Version: "v1", Kind: "DaemonSet"}:         func() runtime.Object { return &appsv1.DaemonSet{} },
	{Group: "batch", Version: "v1", Kind: "Job"}:              func() runtime.Object { return &batchv1.Job{} },
	{Group: "batch", Version: "v1", Kind: "CronJob"}:          func() runtime.Object { return &batchv1.CronJob{} },
}

// violation identifies one violation across the old and new object of an
// UPDATE.
type violation struct{ rec, text string }

// review decides one request. An error means the request is malformed.
func (h *Webhook) review(req *admissionv1.AdmissionRequest) (*admissionv1.AdmissionResponse, error) {
	allow := &admissionv1.AdmissionResponse{Allowed: true}
	if req.Operation != admissionv1.Create && req.Operation != admissionv1.Update {
		return allow, nil
	}
	newObj, ok := kinds[req.Kind]
	if !ok || !(req.SubResource == "" || req.Kind.Kind == "Pod" && req.SubResource == "ephemeralcontainers") {
		return allow, nil
	}
	start := h.cfg.Now()
	cfg := h.posture.Load()
	obj, err := decodeObject(req.Object.Raw, req.Kind, req.Namespace, newObj)
	if err != nil {
		return nil, fmt.Errorf("request object: %w", err)
	}
	m, err := meta.Accessor(obj)
	if err != nil { // every kind above has ObjectMeta
		return nil, fmt.Errorf("request object: %w", err)
	}
	if req.Operation == admissionv1.Update && m.GetDeletionTimestamp() != nil {
		return allow, nil
	}
	results := posture.Evaluate(cfg, obj)

	// On UPDATE, violations the old object had already do not deny.
	var before map[violation]bool
	if req.Operation == admissionv1.Update && len(req.OldObject.Raw) > 0 {
		if old, err := decodeObject(req.OldObject.Raw, req.Kind, req.Namespace, newObj); err == nil {
			for _, r := range posture.Evaluate(cfg, old) {
				for _, v := range r.Violations {
					if before == nil {
						before = make(map[violation]bool)
					}
					before[violation{r.Recommendation, v}] = true
				}
			}
		}
	}

	var (
		unhealthy []posture.Result
		denied    []posture.Result // deny mode, unhealthy
		deny      bool             // some deny-mode violation is new
	)
	for _, r := range results {
		if r.Healthy {
			continue
		}
		unhealthy = append(unhealthy, r)
		if r.Mode != posture.Deny {
			continue
		}
		denied = append(denied, r)
		for _, v := range r.Violations {
			if !before[violation{r.Recommendation, v}] {
				deny = true
			}
		}
	}
	if len(unhealthy) == 0 {
		return allow, nil
	}

	dryRun := req.DryRun != nil && *req.DryRun
	subject := describe(req.Kind.Kind, m, unhealthy[0].Workload)
	resp := &admissionv1.AdmissionResponse{Allowed: !deny, Warnings: warnings(unhealthy, deny)}
	if deny {
		resp.Result = &metav1.Status{
			Status:  metav1.StatusFailure,
			Code:    http.StatusForbidden,
			Reason:  metav1.StatusReasonForbidden,
			Message: denyMessage(subject, denied),
		}
		ids := make([]string, len(denied))
		for i, r := range denied {
			ids[i] = r.Recommendation
		}
		h.log.Info("admission denied", "operation", req.Operation, "object", subject, "recommendations", ids,
			"user", req.UserInfo.Username, "dryRun", dryRun, "duration", h.cfg.Now().Sub(start))
		return resp, nil
	}
	h.log.Debug("admitted with findings", "operation", req.Operation, "object", subject, "unhealthy", len(unhealthy),
		"dryRun", dryRun, "duration", h.cfg.Now().Sub(start))
	if !dryRun && h.cfg.OnFindings != nil {
		h.cfg.OnFindings(unhealthy)
	}
	return resp, nil
}

// decodeObject decodes an AdmissionRequest's object as the request's kind,
// filling in the namespace of the request when the object has none.
func decodeObject(raw []byte, kind metav1.GroupVersionKind, ns string, newObj func() runtime.Object) (runtime.Object, error) {
	if len(raw) == 0 {
		return nil, errors.New("missing")
	}
	obj := newObj()
	if err := utiljson.Unmarshal(raw, obj); err != nil {
		return nil, fmt.Errorf("decode %s: %w", kind.Kind, err)
	}
	// The API server sends the object in the request's version, with its
	// apiVersion and kind set; anything else is not what it claims to be.
	if gvk := obj.GetObjectKind().GroupVersionKind(); !gvk.Empty() &&
		(gvk.Group != kind.Group || gvk.Version != kind.Version || gvk.Kind != kind.Kind) {
		want := schema.GroupVersion{Group: kind.Group, Version: kind.Version}
		return nil, fmt.Errorf("object is %s %s, but the request is for %s %s", gvk.GroupVersion(), gvk.Kind, want, kind.Kind)
	}
	if m, err := meta.Accessor(obj); err == nil && m.GetNamespace() == "" {
		m.SetNamespace(ns)
	}
	return obj, nil
}

// writeJSON writes v; encoding our own response types cannot fail.
func writeJSON(w http.ResponseWriter, status int, v any) {
	data, err := json.Marshal(v)
	if err != nil {
		status, data = http.StatusInternalServerError, []byte(`{"error":"encode response"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(append(data, '\n'))
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]string{"error": msg})
}
