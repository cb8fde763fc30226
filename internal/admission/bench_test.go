package admission_test

import (
	"bytes"
	"encoding/json"
	"flag"
	"io"
	"net/http"
	"net/http/httptest"
	"sort"
	"sync"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"

	"github.com/vigil-sec/vigil/internal/admission"
	"github.com/vigil-sec/vigil/internal/posture"
)

var loadDuration = flag.Duration("admission.load", 5*time.Second,
	"how long BenchmarkAdmissionLoad paces 500 requests/s, and at most how long its 200-client run lasts")

// benchPod is a pod as the ReplicaSet controller creates it and the API
// server sends it: an init container, an app and a sidecar, probes, env,
// a projected service-account token and managedFields.
const benchPod = `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"checkout-7c9f8d6b5-x2x7k","generateName":"checkout-7c9f8d6b5-","namespace":"shop",
"uid":"0f3c5a9e-1d2b-4c8e-9f0a-6b7c8d9e0f1a","creationTimestamp":"2026-05-01T10:00:00Z",
"labels":{"app":"checkout","tier":"web","version":"v42","pod-template-hash":"7c9f8d6b5"},
"annotations":{"container.apparmor.security.beta.kubernetes.io/app":"runtime/default","prometheus.io/scrape":"true","prometheus.io/port":"9090"},
"ownerReferences":[{"apiVersion":"apps/v1","kind":"ReplicaSet","name":"checkout-7c9f8d6b5","uid":"5e6f7a8b-9c0d-4e1f-8a2b-3c4d5e6f7a8b","controller":true,"blockOwnerDeletion":true}],
"managedFields":[{"manager":"kube-controller-manager","operation":"Update","apiVersion":"v1","time":"2026-05-01T10:00:00Z","fieldsType":"FieldsV1",
"fieldsV1":{"f:metadata":{"f:annotations":{".":{},"f:prometheus.io/port":{},"f:prometheus.io/scrape":{}},"f:generateName":{},"f:labels":{".":{},"f:app":{},"f:pod-template-hash":{},"f:tier":{},"f:version":{}},"f:ownerReferences":{".":{},"k:{\"uid\":\"5e6f7a8b-9c0d-4e1f-8a2b-3c4d5e6f7a8b\"}":{}}},
"f:spec":{"f:containers":{"k:{\"name\":\"app\"}":{".":{},"f:image":{},"f:name":{},"f:ports":{}},"k:{\"name\":\"proxy\"}":{".":{},"f:image":{},"f:name":{}}},"f:securityContext":{".":{},"f:fsGroup":{},"f:runAsNonRoot":{},"f:runAsUser":{}}}}}]},
"spec":{"serviceAccountName":"checkout","serviceAccount":"checkout","restartPolicy":"Always","terminationGracePeriodSeconds":30,"dnsPolicy":"ClusterFirst","schedulerName":"default-scheduler","enableServiceLinks":true,"preemptionPolicy":"PreemptLowerPriority","priority":0,
"securityContext":{"runAsNonRoot":true,"runAsUser":10001,"fsGroup":10001,"seccompProfile":{"type":"RuntimeDefault"}},
"initContainers":[{"name":"migrate","image":"shop.azurecr.io/shop/checkout-migrate:v42","command":["/migrate","--up"],"resources":{"limits":{"cpu":"200m","memory":"128Mi"},"requests":{"cpu":"100m","memory":"64Mi"}},
"securityContext":{"allowPrivilegeEscalation":false,"readOnlyRootFilesystem":true,"capabilities":{"drop":["ALL"]}},"terminationMessagePath":"/dev/termination-log","terminationMessagePolicy":"File","imagePullPolicy":"IfNotPresent",
"volumeMounts":[{"name":"kube-api-access-7xk2p","readOnly":true,"mountPath":"/var/run/secrets/kubernetes.io/serviceaccount"}]}],
"containers":[{"name":"app","image":"shop.azurecr.io/shop/checkout:v42","ports":[{"name":"http","containerPort":80,"protocol":"TCP"},{"name":"https","containerPort":443,"protocol":"TCP"}],
"env":[{"name":"MODE","value":"prod"},{"name":"DB_HOST","value":"db.shop.svc"},{"name":"POD_NAME","valueFrom":{"fieldRef":{"apiVersion":"v1","fieldPath":"metadata.name"}}}],
"resources":{"limits":{"cpu":"1","memory":"512Mi"},"requests":{"cpu":"250m","memory":"256Mi"}},
"securityContext":{"allowPrivilegeEscalation":false,"readOnlyRootFilesystem":true,"capabilities":{"drop":["ALL"],"add":["NET_BIND_SERVICE"]}},
"volumeMounts":[{"name":"tmp","mountPath":"/tmp"},{"name":"kube-api-access-7xk2p","readOnly":true,"mountPath":"/var/run/secrets/kubernetes.io/serviceaccount"}],
"readinessProbe":{"httpGet":{"path":"/healthz","port":80,"scheme":"HTTP"},"timeoutSeconds":1,"periodSeconds":10,"successThreshold":1,"failureThreshold":3},
"livenessProbe":{"httpGet":{"path":"/livez","port":80,"scheme":"HTTP"},"initialDelaySeconds":10,"timeoutSeconds":1,"periodSeconds":10,"successThreshold":1,"failureThreshold":3},
"terminationMessagePath":"/dev/termination-log","terminationMessagePolicy":"File","imagePullPolicy":"IfNotPresent"},
{"name":"proxy","image":"shop.azurecr.io/mesh/proxy:1.22","args":["proxy","sidecar"],"resources":{"limits":{"cpu":"500m","memory":"256Mi"},"requests":{"cpu":"50m","memory":"64Mi"}},
"securityContext":{"allowPrivilegeEscalation":false,"readOnlyRootFilesystem":true,"runAsUser":1337,"capabilities":{"drop":["ALL"]}},
"volumeMounts":[{"name":"kube-api-access-7xk2p","readOnly":true,"mountPath":"/var/run/secrets/kubernetes.io/serviceaccount"}],
"terminationMessagePath":"/dev/termination-log","terminationMessagePolicy":"File","imagePullPolicy":"IfNotPresent"}],
"volumes":[{"name":"tmp","emptyDir":{}},{"name":"kube-api-access-7xk2p","projected":{"defaultMode":420,"sources":[{"serviceAccountToken":{"expirationSeconds":3607,"path":"token"}},
{"configMap":{"name":"kube-root-ca.crt","items":[{"key":"ca.crt","path":"ca.crt"}]}},{"downwardAPI":{"items":[{"path":"namespace","fieldRef":{"apiVersion":"v1","fieldPath":"metadata.namespace"}}]}}]}}],
"tolerations":[{"key":"node.kubernetes.io/not-ready","operator":"Exists","effect":"NoExecute","tolerationSeconds":300},{"key":"node.kubernetes.io/unreachable","operator":"Exists","effect":"NoExecute","tolerationSeconds":300}]},
"status":{"phase":"Pending","qosClass":"Burstable"}}`

// BenchmarkAdmissionLoad measures the webhook as the API server sees it:
// AdmissionReview POSTs over TLS (HTTP/2, as the API server's webhook
// client speaks) to an httptest server on loopback, a mix of realistic
// pods and deployments, healthy and unhealthy (admitted, admitted with
// warnings, denied). Latency is measured from when a request was due, so
// queueing behind a saturated server counts.
//
//   - paced-500rps: an open-loop generator sends 500 requests/s for
//     -admission.load (default 5s) from a pool of 64 clients; the target is
//     p99 < 5 ms.
//   - clients-200: 200 clients send back to back, 20,000 requests or
//     -admission.load, whichever ends first; reports throughput and p99.
//
// Per-request figures are reported (p50-ms, p99-ms, req/s); ns/op is 0.
// Each is bounded in count and time, so -benchtime 1x runs each once (about
// 7 s in all; CI can shorten it with `-args -admission.load=500ms`).
func BenchmarkAdmissionLoad(b *testing.B) {
	cfg := seedConfig(b, "")
	for _, id := range []string{posture.NoPrivileged, posture.TrustedRegistries} {
		cfg.Recommendations[id].Mode = posture.Deny
	}
	if err := cfg.Validate(); err != nil {
		b.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(mustNew(b, admission.Config{Posture: cfg, OnFindings: func([]posture.Result) {}}))
	srv.EnableHTTP2 = true
	srv.StartTLS()
	defer srv.Close()
	client := srv.Client()
	client.Timeout = 10 * time.Second
	url := srv.URL + "/validate"

	unhealthy, healthy := seed(b, "unhealthy.yaml"), seed(b, "healthy.yaml")
	bodies := [][]byte{
		req{kind: podKind, op: admissionv1.Create, obj: []byte(benchPod)}.body(b),
		req{kind: podKind, op: admissionv1.Create, obj: []byte(benchPod)}.body(b),
		req{kind: deploymentKind, op: admissionv1.Create, obj: healthy["Deployment"]}.body(b),
		req{kind: deploymentKind, op: admissionv1.Update, obj: healthy["Deployment"], old: healthy["Deployment"]}.body(b),
		req{kind: deploymentKind, op: admissionv1.Create, obj: unhealthy["Deployment"]}.body(b),
	}
	// Check each answer once: admitted, admitted, admitted, admitted,
	// denied.
	for i, body := range bodies {
		resp, err := client.Post(url, "application/json", bytes.NewReader(body))
		if err != nil {
			b.Fatal(err)
		}
		var out admissionv1.AdmissionReview
		err = json.NewDecoder(resp.Body).Decode(&out)
		resp.Body.Close()
		if err != nil || resp.StatusCode != 200 || out.Response.Allowed != (i < 4) {
			b.Fatalf("body %d: status %d, %v, %+v", i, resp.StatusCode, err, out.Response)
		}
	}
	send := func(i int) error {
		resp, err := client.Post(url, "application/json", bytes.NewReader(bodies[i%len(bodies)]))
		if err != nil {
			return err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return &statusError{resp.StatusCode}
		}
		return nil
	}

	b.Run("paced-500rps", func(b *testing.B) {
		const rate, workers = 500, 64
		var lat []time.Duration
		for b.Loop() {
			n := int(loadDuration.Seconds() * rate)
			due := make(chan time.Time, n)
			var (
				mu   sync.Mutex
				errs int
				wg   sync.WaitGroup
			)
			lat = make([]time.Duration, 0, n)
			for w := range workers {
				wg.Go(func() {
					var mine []time.Duration
					for i := w; ; i += workers {
						at, ok := <-due
						if !ok {
							break
						}
						err := send(i)
						mine = append(mine, time.Since(at))
						if err != nil {
							mu.Lock()
							errs++
							mu.Unlock()
						}
					}
					mu.Lock()
					lat = append(lat, mine...)
					mu.Unlock()
				})
			}
			start := time.Now()
			for i := range n {
				at := start.Add(time.Duration(i) * time.Second / rate)
				time.Sleep(time.Until(at))
				due <- at
			}
			close(due)
			wg.Wait()
			if errs > 0 {
				b.Fatalf("%d of %d requests failed", errs, n)
			}
		}
		report(b, lat, 0)
	})

	b.Run("clients-200", func(b *testing.B) {
		const clients, maxRequests = 200, 20000
		var (
			lat     []time.Duration
			elapsed time.Duration
		)
		for b.Loop() {
			var (
				mu   sync.Mutex
				next int
				errs int
				wg   sync.WaitGroup
			)
			lat = make([]time.Duration, 0, maxRequests)
			start := time.Now()
			deadline := start.Add(*loadDuration)
			for range clients {
				wg.Go(func() {
					var mine []time.Duration
					for {
						mu.Lock()
						i := next
						next++
						mu.Unlock()
						if i >= maxRequests || time.Now().After(deadline) {
							break
						}
						t0 := time.Now()
						err := send(i)
						mine = append(mine, time.Since(t0))
						if err != nil {
							mu.Lock()
							errs++
							mu.Unlock()
						}
					}
					mu.Lock()
					lat = append(lat, mine...)
					mu.Unlock()
				})
			}
			wg.Wait()
			elapsed = time.Since(start)
			if errs > 0 {
				b.Fatalf("%d of %d requests failed", errs, len(lat))
			}
		}
		report(b, lat, elapsed)
	})
}

type statusError struct{ code int }

func (e *statusError) Error() string { return http.StatusText(e.code) }

// report turns the last run's latencies into metrics; elapsed > 0 adds the
// throughput.
func report(b *testing.B, lat []time.Duration, elapsed time.Duration) {
	if len(lat) == 0 {
		b.Fatal("no requests")
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	pct := func(p float64) float64 {
		return float64(lat[min(len(lat)-1, int(p*float64(len(lat))))].Microseconds()) / 1000
	}
	b.ReportMetric(float64(len(lat)), "requests")
	b.ReportMetric(pct(0.50), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
	b.ReportMetric(float64(lat[len(lat)-1].Microseconds())/1000, "max-ms")
	if elapsed > 0 {
		b.ReportMetric(float64(len(lat))/elapsed.Seconds(), "req/s")
	}
	b.ReportMetric(0, "ns/op") // the per-request figures above are what matters
}
