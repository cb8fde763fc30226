package admission_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/yaml"

	"github.com/vigil-sec/vigil/internal/admission"
	"github.com/vigil-sec/vigil/internal/posture"
)

var (
	podKind        = metav1.GroupVersionKind{Version: "v1", Kind: "Pod"}
	serviceKind    = metav1.GroupVersionKind{Version: "v1", Kind: "Service"}
	deploymentKind = metav1.GroupVersionKind{Group: "apps", Version: "v1", Kind: "Deployment"}
)

// seed returns the JSON of the documents of a seed manifest in
// internal/posture/testdata, by kind: "Deployment" and "Service".
func seed(t testing.TB, file string) map[string][]byte {
	t.Helper()
	data, err := os.ReadFile("../posture/testdata/" + file)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]byte{}
	for _, doc := range strings.Split(string(data), "\n---\n") {
		js, err := yaml.YAMLToJSON([]byte(doc))
		if err != nil {
			t.Fatal(err)
		}
		var tm metav1.TypeMeta
		if err := json.Unmarshal(js, &tm); err != nil {
			t.Fatal(err)
		}
		out[tm.Kind] = js
	}
	return out
}

// seedConfig is the seed's configuration with every enabled
// recommendation in mode (deny or audit); "" keeps the file's modes.
func seedConfig(t testing.TB, mode posture.Mode) *posture.Config {
	t.Helper()
	cfg, err := posture.LoadConfig("../posture/testdata/seed-config.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if mode == "" {
		return cfg
	}
	for _, s := range cfg.Recommendations {
		if s.Mode != posture.Disabled {
			s.Mode = mode
		}
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// evaluate runs posture directly on a manifest, for the expected results.
func evaluate(t testing.TB, cfg *posture.Config, js []byte) []posture.Result {
	t.Helper()
	objs, err := posture.Decode(js)
	if err != nil || len(objs) != 1 {
		t.Fatalf("decode: %v", err)
	}
	var out []posture.Result
	for _, r := range posture.Evaluate(cfg, objs[0]) {
		if !r.Healthy {
			out = append(out, r)
		}
	}
	return out
}

type req struct {
	kind      metav1.GroupVersionKind
	op        admissionv1.Operation
	ns        string
	obj, old  []byte
	dryRun    bool
	sub       string
	uid       types.UID
	noRequest bool
}

func (r req) body(t testing.TB) []byte {
	t.Helper()
	ar := admissionv1.AdmissionReview{TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"}}
	if !r.noRequest {
		uid := r.uid
		if uid == "" {
			uid = "705ab4f5-6393-11e8-b7cc-42010a800002"
		}
		ns := r.ns
		if ns == "" {
			ns = "shop"
		}
		dry := r.dryRun
		ar.Request = &admissionv1.AdmissionRequest{
			UID: uid, Kind: r.kind, Namespace: ns, Operation: r.op, SubResource: r.sub, DryRun: &dry,
			Resource:  metav1.GroupVersionResource{Group: r.kind.Group, Version: r.kind.Version, Resource: strings.ToLower(r.kind.Kind) + "s"},
			Object:    runtime.RawExtension{Raw: r.obj},
			OldObject: runtime.RawExtension{Raw: r.old},
		}
	}
	b, err := json.Marshal(ar)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// findings records what OnFindings receives.
type findings struct {
	mu    sync.Mutex
	calls [][]posture.Result
}

func (f *findings) record(rs []posture.Result) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, rs)
}

func post(t testing.TB, h http.Handler, contentType string, body []byte) *httptest.ResponseRecorder {
	t.Helper()
	r := httptest.NewRequest(http.MethodPost, "/validate", bytes.NewReader(body))
	r.Header.Set("Content-Type", contentType)
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

func decodeResponse(t testing.TB, w *httptest.ResponseRecorder) *admissionv1.AdmissionResponse {
	t.Helper()
	if w.Code != http.StatusOK {
		t.Fatalf("status %d: %s", w.Code, w.Body)
	}
	var out admissionv1.AdmissionReview
	if err := json.Unmarshal(w.Body.Bytes(), &out); err != nil {
		t.Fatal(err)
	}
	if out.APIVersion != "admission.k8s.io/v1" || out.Kind != "AdmissionReview" || out.Response == nil {
		t.Fatalf("malformed response %s", w.Body)
	}
	return out.Response
}

func ids(rs []posture.Result) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = r.Recommendation
	}
	return out
}

func withLabel(t testing.TB, js []byte, key, value string) []byte {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(js, &m); err != nil {
		t.Fatal(err)
	}
	md := m["metadata"].(map[string]any)
	l, _ := md["labels"].(map[string]any)
	if l == nil {
		l = map[string]any{}
	}
	l[key] = value
	md["labels"] = l
	out, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestAdmissionDecisions(t *testing.T) {
	unhealthy, healthy := seed(t, "unhealthy.yaml"), seed(t, "healthy.yaml")
	deny, audit := seedConfig(t, posture.Deny), seedConfig(t, posture.Audit)
	wantDeployment := []string{posture.CPUMemoryLimits, posture.NoPrivileged, posture.ReadOnlyRootFS, posture.NoPrivilegeEscalation,
		posture.RunAsNonRoot, posture.NoHostPIDIPC, posture.LeastCapabilities, posture.AllowedHostPaths, posture.AllowedContainerPorts,
		posture.NoHostNetworkPorts, posture.TrustedRegistries, posture.PSSBaseline}
	if got := ids(evaluate(t, deny, unhealthy["Deployment"])); strings.Join(got, ",") != strings.Join(wantDeployment, ",") {
		t.Fatalf("posture finds %v on the unhealthy deployment, want %v", got, wantDeployment)
	}

	// A controller's pod: the unhealthy deployment's pod template, as the
	// ReplicaSet controller creates it.
	var dep struct {
		Spec struct {
			Template struct {
				Metadata map[string]any `json:"metadata"`
				Spec     map[string]any `json:"spec"`
			} `json:"template"`
		} `json:"spec"`
	}
	if err := json.Unmarshal(unhealthy["Deployment"], &dep); err != nil {
		t.Fatal(err)
	}
	md := dep.Spec.Template.Metadata
	md["name"] = "nginx-unhealthy-deployment-6d4cf56db6-x7k2p"
	md["labels"].(map[string]any)["pod-template-hash"] = "6d4cf56db6"
	md["ownerReferences"] = []any{map[string]any{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "nginx-unhealthy-deployment-6d4cf56db6", "uid": "u1", "controller": true}}
	controllerPod, _ := json.Marshal(map[string]any{"apiVersion": "v1", "kind": "Pod", "metadata": md, "spec": dep.Spec.Template.Spec})

	onlyPrivilegedDenied := seedConfig(t, posture.Audit)
	onlyPrivilegedDenied.Recommendations[posture.NoPrivileged].Mode = posture.Deny
	if err := onlyPrivilegedDenied.Validate(); err != nil {
		t.Fatal(err)
	}
	deleting := func(js []byte) []byte {
		var m map[string]any
		_ = json.Unmarshal(js, &m)
		m["metadata"].(map[string]any)["deletionTimestamp"] = "2026-01-02T03:04:05Z"
		out, _ := json.Marshal(m)
		return out
	}

	tests := []struct {
		name string
		cfg  *posture.Config
		req  req
		// denied lists the recommendations the denial message must name,
		// each with its violations; nil means allowed.
		denied []string
		// warnings is how many warnings, each naming a recommendation of
		// warnRecs; findings is how many OnFindings calls.
		warnings, findings int
		warnRecs           []string
		message            []string // more substrings of the message
		warnText           string   // a substring of every warning
	}{
		{name: "deny: unhealthy deployment", cfg: deny, req: req{kind: deploymentKind, op: admissionv1.Create, obj: unhealthy["Deployment"]},
			denied: wantDeployment, message: []string{"Deployment/shop/nginx-unhealthy-deployment violates 12 Vigil recommendations in deny mode", "fix: "}},
		{name: "deny: dry run is answered the same", cfg: deny, req: req{kind: deploymentKind, op: admissionv1.Create, obj: unhealthy["Deployment"], dryRun: true},
			denied: wantDeployment},
		{name: "deny: unhealthy service", cfg: deny, req: req{kind: serviceKind, op: admissionv1.Create, obj: unhealthy["Service"]},
			denied: []string{posture.AllowedServicePorts}, message: []string{"service port 6001/TCP", "violates 1 Vigil recommendation in"}},
		{name: "deny: controller pod", cfg: deny, req: req{kind: podKind, op: admissionv1.Create, obj: controllerPod},
			denied:  wantDeployment,
			message: []string{"Pod shop/nginx-unhealthy-deployment-6d4cf56db6-x7k2p (of Deployment/shop/nginx-unhealthy-deployment) violates 12"}},
		{name: "deny: healthy deployment", cfg: deny, req: req{kind: deploymentKind, op: admissionv1.Create, obj: healthy["Deployment"]}},
		{name: "deny: healthy service", cfg: deny, req: req{kind: serviceKind, op: admissionv1.Create, obj: healthy["Service"]}},
		{name: "deny: excluded namespace", cfg: deny, req: req{kind: deploymentKind, op: admissionv1.Create, ns: "kube-system", obj: unhealthy["Deployment"]}},
		{name: "deny: DELETE", cfg: deny, req: req{kind: deploymentKind, op: admissionv1.Delete, old: unhealthy["Deployment"]}},
		{name: "deny: CONNECT", cfg: deny, req: req{kind: podKind, op: admissionv1.Connect, sub: "exec", obj: []byte(`{"apiVersion":"v1","kind":"PodExecOptions","command":["sh"]}`)}},
		{name: "deny: status subresource", cfg: deny, req: req{kind: podKind, op: admissionv1.Update, sub: "status", obj: controllerPod, old: controllerPod}},
		{name: "deny: other kind", cfg: deny, req: req{kind: metav1.GroupVersionKind{Version: "v1", Kind: "ConfigMap"}, op: admissionv1.Create, obj: []byte(`{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"c"}}`)}},
		{name: "deny: UPDATE that makes it unhealthy", cfg: deny, req: req{kind: deploymentKind, op: admissionv1.Update, obj: unhealthy["Deployment"], old: healthy["Deployment"]},
			denied: wantDeployment},
		{name: "deny: UPDATE of an already unhealthy deployment", cfg: deny,
			req:      req{kind: deploymentKind, op: admissionv1.Update, obj: withLabel(t, unhealthy["Deployment"], "team", "web"), old: unhealthy["Deployment"]},
			warnings: 19, warnRecs: wantDeployment, findings: 1, warnText: "(deny mode, pre-existing)"},
		{name: "deny: UPDATE of an object being deleted", cfg: deny, req: req{kind: deploymentKind, op: admissionv1.Update, obj: deleting(unhealthy["Deployment"]), old: healthy["Deployment"]}},
		{name: "audit: unhealthy deployment", cfg: audit, req: req{kind: deploymentKind, op: admissionv1.Create, obj: unhealthy["Deployment"]},
			warnings: 19, warnRecs: wantDeployment, findings: 1},
		{name: "audit: dry run has no side effects", cfg: audit, req: req{kind: deploymentKind, op: admissionv1.Create, obj: unhealthy["Deployment"], dryRun: true},
			warnings: 19, warnRecs: wantDeployment},
		{name: "audit: healthy deployment", cfg: audit, req: req{kind: deploymentKind, op: admissionv1.Create, obj: healthy["Deployment"]}},
		{name: "mixed: deny one, audit the rest", cfg: onlyPrivilegedDenied, req: req{kind: deploymentKind, op: admissionv1.Create, obj: unhealthy["Deployment"]},
			denied: []string{posture.NoPrivileged}, warnings: 18, warnRecs: wantDeployment},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var f findings
			h := mustNew(t, admission.Config{Posture: tc.cfg, OnFindings: f.record})
			resp := decodeResponse(t, post(t, h, "application/json", tc.req.body(t)))
			if resp.UID != "705ab4f5-6393-11e8-b7cc-42010a800002" {
				t.Errorf("uid %q", resp.UID)
			}
			if resp.Allowed != (tc.denied == nil) {
				t.Fatalf("allowed = %v, want %v; result %+v", resp.Allowed, tc.denied == nil, resp.Result)
			}
			if tc.denied != nil {
				if resp.Result == nil || resp.Result.Code != 403 || resp.Result.Reason != metav1.StatusReasonForbidden {
					t.Fatalf("result %+v", resp.Result)
				}
				msg := resp.Result.Message
				t.Logf("message:\n%s", msg)
				for _, r := range evaluate(t, tc.cfg, tc.req.obj) {
					named := strings.Contains(msg, "["+r.Recommendation+"]")
					if want := contains(tc.denied, r.Recommendation); named != want {
						t.Errorf("message names %s: %v, want %v", r.Recommendation, named, want)
					}
					for _, v := range r.Violations {
						if named && !strings.Contains(msg, v) {
							t.Errorf("message lacks violation %q", v)
						}
					}
				}
				for _, s := range tc.message {
					if !strings.Contains(msg, s) {
						t.Errorf("message lacks %q", s)
					}
				}
			} else if resp.Result != nil {
				t.Errorf("allowed with a result %+v", resp.Result)
			}
			if len(resp.Warnings) != tc.warnings {
				t.Errorf("%d warnings, want %d:\n%s", len(resp.Warnings), tc.warnings, strings.Join(resp.Warnings, "\n"))
			}
			seen := map[string]bool{}
			for _, w := range resp.Warnings {
				id, _, _ := strings.Cut(strings.TrimPrefix(w, "[vigil] "), ":")
				id, _, _ = strings.Cut(id, " ")
				seen[id] = true
				if !strings.HasPrefix(w, "[vigil] ") || !strings.Contains(w, tc.warnText) {
					t.Errorf("warning %q", w)
				}
			}
			for _, id := range tc.warnRecs {
				if !seen[id] && !contains(tc.denied, id) {
					t.Errorf("no warning for %s", id)
				}
			}
			if len(f.calls) != tc.findings {
				t.Errorf("OnFindings called %d times, want %d", len(f.calls), tc.findings)
			}
			for _, c := range f.calls {
				if len(c) != len(tc.warnRecs) {
					t.Errorf("OnFindings got %v, want %v", ids(c), tc.warnRecs)
				}
			}
		})
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func TestAdmissionBadRequests(t *testing.T) {
	unhealthy := seed(t, "unhealthy.yaml")
	h := mustNew(t, admission.Config{Posture: seedConfig(t, posture.Deny), MaxBodyBytes: 1 << 20})
	good := req{kind: deploymentKind, op: admissionv1.Create, obj: unhealthy["Deployment"]}.body(t)
	huge := append([]byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u","object":{"x":"`), bytes.Repeat([]byte("a"), 2<<20)...)
	huge = append(huge, `"}}}`...)
	tests := []struct {
		name, contentType string
		body              []byte
		status            int
		want              string // in the error
	}{
		{"malformed JSON", "application/json", []byte(`{"apiVersion":`), 400, "decode AdmissionReview"},
		{"not an object", "application/json", []byte(`[1,2]`), 400, "decode AdmissionReview"},
		{"empty body", "application/json", nil, 400, "decode AdmissionReview"},
		{"trailing data", "application/json", append(append([]byte{}, good...), "{}"...), 400, "decode AdmissionReview"},
		{"v1beta1", "application/json", bytes.Replace(good, []byte("admission.k8s.io/v1"), []byte("admission.k8s.io/v1beta1"), 1), 400, "want admission.k8s.io/v1 AdmissionReview"},
		{"wrong kind", "application/json", bytes.Replace(good, []byte(`"kind":"AdmissionReview"`), []byte(`"kind":"Pod"`), 1), 400, "want admission.k8s.io/v1 AdmissionReview"},
		{"missing request", "application/json", req{noRequest: true}.body(t), 400, "no request"},
		{"missing uid", "application/json", bytes.Replace(good, []byte(`"uid":"705ab4f5-6393-11e8-b7cc-42010a800002"`), []byte(`"uid":""`), 1), 400, "no uid"},
		{"missing object", "application/json", req{kind: deploymentKind, op: admissionv1.Create}.body(t), 400, "request object: missing"},
		{"object of the wrong type", "application/json", req{kind: deploymentKind, op: admissionv1.Create, obj: unhealthy["Service"]}.body(t), 400, "object is v1 Service, but the request is for apps/v1 Deployment"},
		{"object of the wrong shape", "application/json", req{kind: deploymentKind, op: admissionv1.Create, obj: []byte(`{"apiVersion":"apps/v1","kind":"Deployment","spec":5}`)}.body(t), 400, "decode Deployment"},
		{"object not an object", "application/json", req{kind: podKind, op: admissionv1.Create, obj: []byte(`"pod"`)}.body(t), 400, "decode Pod"},
		{"huge body", "application/json", huge, 413, "larger than 1048576 bytes"},
		{"wrong content type", "application/yaml", good, 415, "want application/json"},
		{"no content type", "", good, 415, "want application/json"},
		{"content type with charset", "application/json; charset=utf-8", good, 200, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w := post(t, h, tc.contentType, tc.body)
			if w.Code != tc.status {
				t.Fatalf("status %d, want %d: %.300s", w.Code, tc.status, w.Body)
			}
			if w.Header().Get("Content-Type") != "application/json" {
				t.Errorf("Content-Type %q", w.Header().Get("Content-Type"))
			}
			if tc.status == 200 {
				return
			}
			var e struct{ Error string }
			if err := json.Unmarshal(w.Body.Bytes(), &e); err != nil || !strings.Contains(e.Error, tc.want) {
				t.Errorf("error %q (%v), want it to contain %q", e.Error, err, tc.want)
			}
		})
	}

	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/validate", nil))
	if w.Code != http.StatusMethodNotAllowed || w.Header().Get("Allow") != "POST" {
		t.Errorf("GET: %d %v", w.Code, w.Header())
	}
}

// TestAdmissionWarningBudget: many audit violations stay within the API
// server's warning budget and say how many were left out.
func TestAdmissionWarningBudget(t *testing.T) {
	var cs []string
	for i := range 60 {
		cs = append(cs, `{"name":"c`+strings.Repeat("x", 40)+string(rune('a'+i%26))+`-`+string(rune('a'+i/26))+`","image":"nginx","securityContext":{"privileged":true}}`)
	}
	pod := []byte(`{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p"},"spec":{"containers":[` + strings.Join(cs, ",") + `]}}`)
	h := mustNew(t, admission.Config{Posture: seedConfig(t, posture.Audit)})
	resp := decodeResponse(t, post(t, h, "application/json", req{kind: podKind, op: admissionv1.Create, obj: pod}.body(t)))
	total := 0
	for _, w := range resp.Warnings {
		total += len([]rune(w))
		if len([]rune(w)) > 256 {
			t.Errorf("warning of %d runes", len([]rune(w)))
		}
	}
	last := resp.Warnings[len(resp.Warnings)-1]
	if total > 3600 || !strings.Contains(last, "more findings not shown") {
		t.Errorf("%d warnings, %d runes, last %q", len(resp.Warnings), total, last)
	}
}

// TestAdmissionNewRefusesBadConfig: a nil or unvalidated posture config is
// an error at start, not a panic on the first request.
func TestAdmissionNewRefusesBadConfig(t *testing.T) {
	for name, cfg := range map[string]*posture.Config{"nil": nil, "not validated": {}} {
		if _, err := admission.New(admission.Config{Posture: cfg}); err == nil {
			t.Errorf("%s: New accepted it", name)
		}
	}
}

// mustNew is admission.New for a config the test knows is good.
func mustNew(tb testing.TB, cfg admission.Config) *admission.Webhook {
	tb.Helper()
	h, err := admission.New(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	return h
}

// FuzzAdmissionReview: any body gets 200, 400, 413 or 415 and never a
// panic; a 200 is a well-formed AdmissionReview with the request's uid.
func FuzzAdmissionReview(f *testing.F) {
	unhealthy, healthy := seed(f, "unhealthy.yaml"), seed(f, "healthy.yaml")
	for _, r := range []req{
		{kind: deploymentKind, op: admissionv1.Create, obj: unhealthy["Deployment"]},
		{kind: deploymentKind, op: admissionv1.Update, obj: unhealthy["Deployment"], old: healthy["Deployment"]},
		{kind: serviceKind, op: admissionv1.Create, obj: unhealthy["Service"], dryRun: true},
		{kind: podKind, op: admissionv1.Create, obj: []byte(`{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p","ownerReferences":[{"kind":"ReplicaSet","name":"a-1","controller":true}]},"spec":{"hostPID":true,"containers":[{"name":"c","image":"x","securityContext":{"capabilities":{"add":["ALL"]}}}],"ephemeralContainers":[{"name":"d","image":"busybox"}]}}`)},
		{kind: podKind, op: admissionv1.Delete},
		{noRequest: true},
	} {
		f.Add(r.body(f), true)
	}
	f.Add([]byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u","kind":{"group":"batch","version":"v1","kind":"CronJob"},"operation":"CREATE","object":{"spec":{"jobTemplate":{"spec":{"template":{"spec":{"containers":[{"name":"\u0007","image":"a\nb","ports":[{"hostPort":70000}]}]}}}}}}}}`), true)
	f.Add([]byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u"}}`), false)
	f.Add([]byte(`null`), true)
	h := mustNew(f, admission.Config{Posture: seedConfig(f, posture.Deny), MaxBodyBytes: 64 << 10, OnFindings: func([]posture.Result) {}})
	f.Fuzz(func(t *testing.T, body []byte, jsonType bool) {
		ct := "application/json"
		if !jsonType {
			ct = "text/plain"
		}
		w := post(t, h, ct, body)
		switch w.Code {
		case 200:
		case 400, 413, 415:
			var e struct{ Error string }
			if err := json.Unmarshal(w.Body.Bytes(), &e); err != nil || e.Error == "" {
				t.Fatalf("status %d with body %q", w.Code, w.Body)
			}
			return
		default:
			t.Fatalf("status %d: %s", w.Code, w.Body)
		}
		var in admissionv1.AdmissionReview
		if err := json.Unmarshal(body, &in); err != nil || in.Request == nil {
			t.Fatalf("200 for a body encoding/json rejects (%v): %q", err, body)
		}
		resp := decodeResponse(t, w)
		if resp.UID != in.Request.UID || resp.UID == "" {
			t.Fatalf("response uid %q, request uid %q", resp.UID, in.Request.UID)
		}
		if !resp.Allowed && (resp.Result == nil || resp.Result.Code != 403 || resp.Result.Message == "") {
			t.Fatalf("denied without a 403 result: %+v", resp.Result)
		}
	})
}
