package ship

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/vigil-sec/vigil/internal/event"
)

func testAlert(id string, count uint64) event.Alert {
	at := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	return event.Alert{
		ID: id, Rule: "runtime.drift-binary-executed", Title: "A drift binary was executed in a container",
		Severity: event.High, Tactic: "Execution", Techniques: []string{"T1204"}, Status: event.StatusActive,
		FirstSeen: at, LastSeen: at.Add(time.Duration(count) * time.Second), Count: count,
		Node: "node-1", Namespace: "shop", Pod: "web-7d9f", Container: "web", ContainerID: "0f3c",
		Image: "nginx:1.27", Workload: "Deployment/shop/web", Labels: map[string]string{"app": "web"},
		Process:  &event.Process{Pid: 4242, Ppid: 4200, Exe: "/tmp/xmrig", Args: []string{"xmrig", "-o", "pool:3333"}},
		Evidence: map[string]any{"exe": "/tmp/xmrig", "upper_layer": true},
	}
}

// validBatch is a batch with one of everything, as a map so that tests can
// break one field at a time.
func validBatch() map[string]any {
	var m map[string]any
	b := Batch{
		BatchID: "01JDQ3ZK6T0000000000000000", Node: "node-1", Component: "sensor",
		SentAt: time.Date(2026, 11, 22, 10, 0, 1, 0, time.UTC),
		Alerts: []event.Alert{testAlert("01JDQ3ZK6T0000000000000001", 3)},
		Health: []Health{{Node: "node-1", Component: "sensor", State: "installed",
			Health: &event.Health{Mode: "ebpf", EventsTotal: 10}, At: time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)}},
		Inventory: []InventoryItem{{Kind: KindImage, Name: "nginx:1.27", Attrs: map[string]string{"digest": "sha256:00"}}},
		Findings: []Finding{{ID: "f1", Check: "privileged-container", Resource: "Deployment/shop/web", Namespace: "shop",
			Status: Unhealthy, Details: map[string]any{"container": "web"}}},
	}
	data, _ := json.Marshal(b)
	if err := json.Unmarshal(data, &m); err != nil {
		panic(err)
	}
	return m
}

func encode(t testing.TB, v any) string {
	t.Helper()
	data, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// with returns validBatch changed by f.
func with(f func(m map[string]any)) map[string]any {
	m := validBatch()
	f(m)
	return m
}

func alert0(m map[string]any) map[string]any { return m["alerts"].([]any)[0].(map[string]any) }
func item0(m map[string]any, k string) map[string]any {
	return m[k].([]any)[0].(map[string]any)
}

func TestDecodeBatchAccepts(t *testing.T) {
	for name, body := range map[string]string{
		"full":                 encode(t, validBatch()),
		"minimal":              `{"batch_id":"01JDQ3ZK6T0000000000000000"}`,
		"not a ULID":           `{"batch_id":"sensor-node-1-42"}`,
		"trailing whitespace":  encode(t, validBatch()) + " \n\t",
		"empty lists":          `{"batch_id":"b","alerts":[],"health":[],"inventory":[],"findings":[]}`,
		"removed finding":      `{"batch_id":"b","findings":[{"id":"f","status":"removed"},{"id":"g","check":"c","resource":"r","status":"removed","scan":"01JDQ3ZK6T0000000000000000"}]}`,
		"scans":                `{"batch_id":"b","findings":[{"id":"f","check":"c","resource":"r","status":"healthy","scan":"01JDQ3ZK6T0000000000000000"}],"completed_scans":["01JDQ3ZK6T0000000000000000"]}`,
		"only completed scans": `{"batch_id":"b","completed_scans":["s1"]}`,
		"null lists":           `{"batch_id":"b","alerts":null}`,
		"status omitted":       encode(t, with(func(m map[string]any) { delete(alert0(m), "status") })),
		"max alerts":           manyAlerts(MaxBatchAlerts),
		"128-byte ids":         fmt.Sprintf(`{"batch_id":%q,"alerts":[{"id":%q,"rule":"r","severity":"low"}]}`, strings.Repeat("b", 128), strings.Repeat("a", 128)),
		"evidence of any type": encode(t, with(func(m map[string]any) {
			alert0(m)["evidence"] = map[string]any{"a": []any{1, "x", nil, map[string]any{"b": true}}}
		})),
	} {
		t.Run(name, func(t *testing.T) {
			b, err := DecodeBatch(strings.NewReader(body))
			if err != nil {
				t.Fatalf("DecodeBatch: %v", err)
			}
			if b.BatchID == "" {
				t.Fatal("no batch id")
			}
		})
	}
}

func TestDecodeBatchRoundTrip(t *testing.T) {
	b, err := DecodeBatch(strings.NewReader(encode(t, validBatch())))
	if err != nil {
		t.Fatal(err)
	}
	if len(b.Alerts) != 1 || b.Alerts[0].Count != 3 || b.Alerts[0].Process.Exe != "/tmp/xmrig" ||
		b.Health[0].Health.Mode != "ebpf" || b.Inventory[0].Attrs["digest"] != "sha256:00" ||
		b.Findings[0].Details["container"] != "web" || !b.SentAt.Equal(time.Date(2026, 11, 22, 10, 0, 1, 0, time.UTC)) {
		t.Fatalf("decoded %+v", b)
	}
}

func manyAlerts(n int) string {
	var sb strings.Builder
	sb.WriteString(`{"batch_id":"b","alerts":[`)
	for i := range n {
		if i > 0 {
			sb.WriteByte(',')
		}
		fmt.Fprintf(&sb, `{"id":"a%d","rule":"r","severity":"low"}`, i)
	}
	sb.WriteString(`]}`)
	return sb.String()
}

func TestDecodeBatchRejects(t *testing.T) {
	tests := []struct {
		name string
		body string
		want string // substring of the error
	}{
		{"empty body", ``, "empty body"},
		{"whitespace only", "  \n", "empty body"},
		{"truncated", `{"batch_id":"b"`, "unexpected end"},
		{"malformed", `{"batch_id":"b",}`, "malformed JSON"},
		{"not JSON", `hello`, "malformed JSON"},
		{"array", `[1]`, "batch: want an object, got an array"},
		{"string", `"b"`, "batch: want an object"},
		{"null", `null`, "batch_id: required"},
		{"trailing object", `{"batch_id":"b"}{"batch_id":"c"}`, "trailing data"},
		{"trailing garbage", `{"batch_id":"b"} x`, "trailing data"},
		{"unknown field", `{"batch_id":"b","extra":1}`, "extra: unknown field"},
		{"unknown alert field", encode(t, with(func(m map[string]any) { alert0(m)["bogus"] = 1 })), "alerts[0].bogus: unknown field"},
		{"unknown process field", encode(t, with(func(m map[string]any) { alert0(m)["process"].(map[string]any)["bogus"] = 1 })), "alerts[0].process.bogus: unknown field"},
		{"unknown health field", encode(t, with(func(m map[string]any) { item0(m, "health")["health"].(map[string]any)["bogus"] = 1 })), "health[0].health.bogus: unknown field"},
		{"unknown inventory field", encode(t, with(func(m map[string]any) { item0(m, "inventory")["bogus"] = 1 })), "inventory[0].bogus: unknown field"},
		{"unknown finding field", encode(t, with(func(m map[string]any) { item0(m, "findings")["bogus"] = 1 })), "findings[0].bogus: unknown field"},
		{"key in another case", `{"BATCH_ID":"b"}`, "BATCH_ID: unknown field"},
		{"duplicate key", `{"batch_id":"b","batch_id":"c"}`, "batch_id: duplicate field"},
		{"duplicate alert key", `{"batch_id":"b","alerts":[{"id":"a","rule":"r","severity":"low","severity":"bad"}]}`, "alerts[0].severity: duplicate field"},
		{"batch_id wrong type", `{"batch_id":1}`, "batch_id: want a string, got a number"},
		{"batch_id missing", `{"node":"n"}`, "batch_id: required"},
		{"batch_id empty", `{"batch_id":""}`, "batch_id: required"},
		{"batch_id too long", fmt.Sprintf(`{"batch_id":%q}`, strings.Repeat("b", 129)), "batch_id: longer than 128"},
		{"batch_id space", `{"batch_id":"a b"}`, "batch_id: byte 1 is not a visible ASCII"},
		{"batch_id control", `{"batch_id":"a\nb"}`, "batch_id: byte 1 is not a visible ASCII"},
		{"batch_id non-ASCII", `{"batch_id":"é"}`, "batch_id: byte 0 is not a visible ASCII"},
		{"sent_at not a time", `{"batch_id":"b","sent_at":"yesterday"}`, "sent_at: \"yesterday\" is not an RFC 3339 time"},
		{"sent_at a number", `{"batch_id":"b","sent_at":5}`, "sent_at: want an RFC 3339 time string, got a number"},
		{"alerts an object", `{"batch_id":"b","alerts":{}}`, "alerts: want an array, got an object"},
		{"alert a string", `{"batch_id":"b","alerts":["x"]}`, "alerts[0]: want an object, got a string"},
		{"too many alerts", manyAlerts(MaxBatchAlerts + 1), "alerts: 10001 alerts, at most 10000"},
		{"alert id missing", encode(t, with(func(m map[string]any) { delete(alert0(m), "id") })), "alerts[0].id: required"},
		{"alert id too long", encode(t, with(func(m map[string]any) { alert0(m)["id"] = strings.Repeat("a", 129) })), "alerts[0].id: longer than 128"},
		{"alert id bad byte", encode(t, with(func(m map[string]any) { alert0(m)["id"] = "a/b c" })), "alerts[0].id: byte 3"},
		{"alert rule missing", encode(t, with(func(m map[string]any) { delete(alert0(m), "rule") })), "alerts[0].rule: required"},
		{"severity missing", encode(t, with(func(m map[string]any) { delete(alert0(m), "severity") })), "alerts[0].severity: \"\" is not informational"},
		{"severity unknown", encode(t, with(func(m map[string]any) { alert0(m)["severity"] = "critical" })), "alerts[0].severity: \"critical\""},
		{"severity wrong case", encode(t, with(func(m map[string]any) { alert0(m)["severity"] = "High" })), "alerts[0].severity: \"High\""},
		{"status unknown", encode(t, with(func(m map[string]any) { alert0(m)["status"] = "open" })), "alerts[0].status: \"open\""},
		{"count negative", encode(t, with(func(m map[string]any) { alert0(m)["count"] = -1 })), "alerts[0].count: -1 is not a valid uint64"},
		{"count fraction", encode(t, with(func(m map[string]any) { alert0(m)["count"] = 1.5 })), "alerts[0].count: 1.5 is not a valid uint64"},
		{"count string", encode(t, with(func(m map[string]any) { alert0(m)["count"] = "3" })), "alerts[0].count: want a number, got a string"},
		{"count overflow", strings.Replace(encode(t, validBatch()), `"count":3`, `"count":18446744073709551616`, 1), "alerts[0].count: 18446744073709551616 is not a valid uint64"},
		{"pid overflow", encode(t, with(func(m map[string]any) { alert0(m)["process"].(map[string]any)["pid"] = 1 << 32 })), "alerts[0].process.pid: 4294967296 is not a valid uint32"},
		{"first_seen not a time", encode(t, with(func(m map[string]any) { alert0(m)["first_seen"] = "now" })), "alerts[0].first_seen: \"now\" is not an RFC 3339"},
		{"techniques a string", encode(t, with(func(m map[string]any) { alert0(m)["techniques"] = "T1204" })), "alerts[0].techniques: want an array"},
		{"labels values not strings", encode(t, with(func(m map[string]any) { alert0(m)["labels"] = map[string]any{"app": 1} })), "alerts[0].labels[\"app\"]: want a string"},
		{"health component missing", encode(t, with(func(m map[string]any) { delete(item0(m, "health"), "component") })), "health[0].component: required"},
		{"health state missing", encode(t, with(func(m map[string]any) { delete(item0(m, "health"), "state") })), "health[0].state: required"},
		{"health counters wrong type", encode(t, with(func(m map[string]any) { item0(m, "health")["health"].(map[string]any)["events_total"] = "x" })), "health[0].health.events_total: want a number"},
		{"inventory kind unknown", encode(t, with(func(m map[string]any) { item0(m, "inventory")["kind"] = "secret" })), "inventory[0].kind: \"secret\""},
		{"inventory name missing", encode(t, with(func(m map[string]any) { delete(item0(m, "inventory"), "name") })), "inventory[0].name: required"},
		{"inventory attrs nested", encode(t, with(func(m map[string]any) { item0(m, "inventory")["attrs"] = map[string]any{"a": map[string]any{}} })), "inventory[0].attrs[\"a\"]: want a string, got an object"},
		{"finding id missing", encode(t, with(func(m map[string]any) { delete(item0(m, "findings"), "id") })), "findings[0].id: required"},
		{"finding id too long", encode(t, with(func(m map[string]any) { item0(m, "findings")["id"] = strings.Repeat("f", 129) })), "findings[0].id: longer than 128"},
		{"finding check missing", encode(t, with(func(m map[string]any) { delete(item0(m, "findings"), "check") })), "findings[0].check: required"},
		{"removed finding id missing", `{"batch_id":"b","findings":[{"status":"removed"}]}`, "findings[0].id: required"},
		{"finding scan not visible ASCII", encode(t, with(func(m map[string]any) { item0(m, "findings")["scan"] = "a b" })), "findings[0].scan: byte 1"},
		{"finding scan too long", encode(t, with(func(m map[string]any) { item0(m, "findings")["scan"] = strings.Repeat("s", 129) })), "findings[0].scan: longer than 128"},
		{"finding scan not a string", encode(t, with(func(m map[string]any) { item0(m, "findings")["scan"] = 1 })), "findings[0].scan"},
		{"completed scan empty", `{"batch_id":"b","completed_scans":[""]}`, "completed_scans[0]: required"},
		{"completed scan bad", `{"batch_id":"b","completed_scans":["ok","x\u0000"]}`, "completed_scans[1]: byte 1"},
		{"completed scans not strings", `{"batch_id":"b","completed_scans":[1]}`, "completed_scans[0]"},
		{"completed scans not a list", `{"batch_id":"b","completed_scans":"s"}`, "completed_scans"},
		{"too many completed scans", `{"batch_id":"b","completed_scans":[` + strings.Repeat(`"s",`, MaxCompletedScans) + `"s"]}`, "completed_scans: 17 ids"},
		{"finding status unknown", encode(t, with(func(m map[string]any) { item0(m, "findings")["status"] = "fine" })), "findings[0].status: \"fine\""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := DecodeBatch(strings.NewReader(tt.body))
			if err == nil {
				t.Fatalf("accepted: %+v", b)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %q does not contain %q", err, tt.want)
			}
			if errors.Is(err, ErrTooLarge) {
				t.Fatalf("error %q wraps ErrTooLarge", err)
			}
		})
	}
}

func TestDecodeBatchSizeLimit(t *testing.T) {
	head := `{"batch_id":"b"}`
	exact := head + strings.Repeat(" ", MaxBatchBytes-len(head))
	if _, err := DecodeBatch(strings.NewReader(exact)); err != nil {
		t.Fatalf("a body of exactly MaxBatchBytes: %v", err)
	}
	_, err := DecodeBatch(strings.NewReader(exact + " "))
	if !errors.Is(err, ErrTooLarge) {
		t.Fatalf("a body of MaxBatchBytes+1: got %v, want ErrTooLarge", err)
	}
	// The decoder stops reading past the limit: an endless body ends.
	_, err = DecodeBatch(endless{})
	if !errors.Is(err, ErrTooLarge) {
		t.Fatalf("endless body: got %v, want ErrTooLarge", err)
	}
}

type endless struct{}

func (endless) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = ' '
	}
	return len(p), nil
}

func TestDecodeBatchErrorsClipValues(t *testing.T) {
	long := strings.Repeat("x", 10000)
	body := encode(t, with(func(m map[string]any) { alert0(m)["severity"] = long }))
	_, err := DecodeBatch(strings.NewReader(body))
	if err == nil || len(err.Error()) > 200 {
		t.Fatalf("error not clipped: %d bytes", len(err.Error()))
	}
}

func FuzzDecodeBatch(f *testing.F) {
	f.Add([]byte(encode(f, validBatch())))
	f.Add([]byte(`{"batch_id":"b","alerts":[{"id":"a","rule":"r","severity":"low"}]}`))
	f.Add([]byte(`{"batch_id":"b","health":[{"component":"sensor","state":"failed","health":{"mode":"netlink"}}]}`))
	f.Add([]byte(`{"batch_id":"b","inventory":[{"kind":"pod","name":"p","attrs":{"a":"b"}}],"findings":[{"id":"f","check":"c","resource":"r","status":"healthy","details":{"x":[1,{"y":null}]}}]}`))
	f.Add([]byte(`{"batch_id":"b","findings":[{"id":"f","status":"removed","scan":"01JDQ3ZK6T0000000000000000"},{"id":"f","check":"c","status":"unhealthy"}],"completed_scans":["01JDQ3ZK6T0000000000000000"]}`))
	f.Add([]byte(`{"batch_id":"b","completed_scans":["",null,1]}`))
	f.Add([]byte(`{"batch_id":"b","batch_id":"c"}`))
	f.Add([]byte(`{"BATCH_ID":"b"}`))
	f.Add([]byte(`{"batch_id":"b"} {}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, data []byte) {
		// The fast key scanner and the token walk agree on everything
		// encoding/json accepts.
		var plain Batch
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.DisallowUnknownFields()
		if dec.Decode(&plain) == nil {
			fast, slow := exactKeys(data, batchType), checkShape(data, batchType)
			if fast != (slow == nil) {
				t.Fatalf("exactKeys %v, checkShape %v", fast, slow)
			}
		}
		b, err := DecodeBatch(bytes.NewReader(data))
		if err != nil {
			if b != nil {
				t.Fatal("a batch and an error")
			}
			return
		}
		// What the decoder accepts is valid, and survives a round trip.
		if err := b.Validate(); err != nil {
			t.Fatalf("accepted an invalid batch: %v", err)
		}
		again, err := json.Marshal(b)
		if err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		if _, err := DecodeBatch(bytes.NewReader(again)); err != nil {
			t.Fatalf("re-encoded batch refused: %v\n%s", err, again)
		}
	})
}

func BenchmarkDecodeBatch(b *testing.B) {
	batch := Batch{BatchID: "01JDQ3ZK6T0000000000000000", SentAt: time.Now()}
	for i := range DefaultBatchSize {
		batch.Alerts = append(batch.Alerts, testAlert(fmt.Sprintf("01JDQ3ZK6T%016d", i), 1))
	}
	data, _ := json.Marshal(batch)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := DecodeBatch(bytes.NewReader(data)); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*DefaultBatchSize)/b.Elapsed().Seconds(), "alerts/s")
}
