package controlplane

import (
	"testing"
	"time"

	"github.com/vigil-sec/vigil/internal/audit"
	"github.com/vigil-sec/vigil/internal/audit/audittest"
	"github.com/vigil-sec/vigil/internal/detect"
	"github.com/vigil-sec/vigil/internal/event"
)

// BenchmarkAuditPipeline decodes webhook batches of 400 events of a busy
// cluster's mix (audittest.Mix) and runs every built-in rule over them:
// the per-core throughput of control-plane detection, storing aside.
//
//	go test -run '^$' -bench AuditPipeline -benchtime 200x -cpu 1 ./internal/server/controlplane/
func BenchmarkAuditPipeline(b *testing.B) {
	rules, err := detect.Load(detect.Options{})
	if err != nil {
		b.Fatal(err)
	}
	alerts := 0
	eng := detect.New(detect.Config{Rules: rules, Emit: func(*event.Alert) { alerts++ }})
	const perBatch = 400
	events := audittest.Mix(perBatch*50, 1, time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC))
	var batches [][]byte
	bytes := 0
	for i := 0; i < len(events); i += perBatch {
		batches = append(batches, audittest.EventList(events[i:i+perBatch]))
		bytes += len(batches[len(batches)-1])
	}
	b.SetBytes(int64(bytes / len(batches)))
	b.ResetTimer()
	n := 0
	for i := 0; b.Loop(); i++ {
		evs, _, err := audit.DecodeBatch(batches[i%len(batches)])
		if err != nil {
			b.Fatal(err)
		}
		for j := range evs {
			eng.Process(audit.Event(&evs[j]))
		}
		n += len(evs)
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "events/s")
	b.ReportMetric(float64(alerts), "alerts")
}
