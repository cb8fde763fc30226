package controlplane

import (
	"fmt"

	"github.com/vigil-sec/vigil/internal/audit"
	"github.com/vigil-sec/vigil/internal/detect"
	"github.com/vigil-sec/vigil/internal/event"
)

// Replay runs the k8s.audit rules over audit log files (JSON lines, .gz
// too), in order, as the receiver would have run them over the same
// events (controller attribution included), and returns the alerts in the
// order they were first raised, with their final counts.
func Replay(rules *detect.Ruleset, cluster string, paths []string) ([]event.Alert, audit.Stats, error) {
	var order []string
	byID := map[string]event.Alert{}
	eng := detect.New(detect.Config{Rules: rules, Cluster: cluster, Emit: func(a *event.Alert) {
		if _, ok := byID[a.ID]; !ok {
			order = append(order, a.ID)
		}
		byID[a.ID] = *a
	}})
	var total audit.Stats
	lineage := audit.NewLineage()
	for _, path := range paths {
		f, err := audit.Open(path)
		if err != nil {
			return nil, total, err
		}
		st, _, err := audit.ReadLines(f, true, func(a *event.Audit) error {
			a.Origin = lineage.Observe(a)
			eng.Process(audit.Event(a))
			return nil
		})
		f.Close()
		total.Add(st)
		if err != nil {
			return nil, total, fmt.Errorf("%s: %w", path, err)
		}
	}
	eng.Flush()
	out := make([]event.Alert, len(order))
	for i, id := range order {
		out[i] = byID[id]
	}
	return out, total, nil
}
