package scanner_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/vigil-sec/vigil/internal/posture/scanner"
	"github.com/vigil-sec/vigil/internal/ship"
)

// countSink counts what the scanner sends and signals the completed scan.
type countSink struct {
	findings int
	done     chan struct{}
}

func (c *countSink) Findings(fs []ship.Finding) { c.findings += len(fs) }
func (c *countSink) ScanComplete(string)        { close(c.done) }

// BenchmarkScannerFullScan: the first full scan of a cluster of 10,000
// Deployments (half the seed's unhealthy one, half its healthy one), from
// the informers' cache to every finding handed to the sink. Reported per
// workload.
//
//	go test -run '^$' -bench ScannerFullScan -benchtime 5x ./internal/posture/scanner/
func BenchmarkScannerFullScan(b *testing.B) {
	const n = 10000
	unhealthy := seedObjects(b, "unhealthy.yaml")["Deployment"].(*appsv1.Deployment)
	healthy := seedObjects(b, "healthy.yaml")["Deployment"].(*appsv1.Deployment)
	objs := make([]runtime.Object, 0, n)
	for i := range n {
		d := healthy.DeepCopy()
		if i%2 == 0 {
			d = unhealthy.DeepCopy()
		}
		d.Name, d.Namespace = fmt.Sprintf("web-%05d", i), fmt.Sprintf("team-%02d", i%50)
		objs = append(objs, d)
	}
	cfg := seedConfig(b)
	var perWorkload time.Duration
	var findings int
	for b.Loop() {
		b.StopTimer()
		client := fake.NewClientset(objs...)
		sink := &countSink{done: make(chan struct{})}
		s, err := scanner.New(scanner.Config{Client: client, Posture: cfg, Sink: sink})
		if err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		stopped := make(chan struct{})
		b.StartTimer()
		start := time.Now()
		go func() { s.Run(ctx); close(stopped) }()
		<-sink.done
		perWorkload = time.Since(start) / n
		b.StopTimer()
		cancel()
		<-stopped
		findings = sink.findings
		b.StartTimer()
	}
	b.ReportMetric(float64(perWorkload.Microseconds()), "µs/workload")
	b.ReportMetric(float64(findings), "findings")
}
