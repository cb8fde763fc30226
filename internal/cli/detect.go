package cli

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/spf13/cobra"

	"github.com/vigil-sec/vigil/internal/detect"
	"github.com/vigil-sec/vigil/internal/event"
)

// detectFlags configure the detection engine of `vigil sensor`.
type detectFlags struct {
	off            bool
	alertsOnly     bool
	cluster        string
	driftPolicy    string
	updateInterval time.Duration
}

func (d *detectFlags) register(cmd *cobra.Command) {
	f := cmd.Flags()
	f.BoolVar(&d.off, "no-detect", false, "print events only; run no detection rules")
	f.BoolVar(&d.alertsOnly, "alerts-only", false, "print alerts (and sensor.health) but not the events behind them")
	f.StringVar(&d.cluster, "cluster", "", "cluster name stamped on alerts")
	f.StringVar(&d.driftPolicy, "drift-policy", "", "binary drift policy file (YAML rules: action alert|ignore|block scoped by cluster, namespace, image, labels); default: alert everywhere, never block")
	f.DurationVar(&d.updateInterval, "alert-update-interval", 30*time.Second, "how often an aggregated alert is re-emitted with its new count")
}

// engine loads the rules and builds the engine that writes alerts to emit.
func (d *detectFlags) engine(rf *ruleFlags, node, procRoot string, log *slog.Logger, emit func(*event.Alert)) (*detect.Engine, error) {
	rs, err := rf.loadFor(detect.Options{Kinds: event.SensorKinds}) // no control-plane rules on a node
	if err != nil {
		return nil, fmt.Errorf("load rules: %w", err)
	}
	var policy detect.DriftPolicy
	if d.driftPolicy != "" {
		if policy, err = detect.LoadDriftPolicy(d.driftPolicy); err != nil {
			return nil, err
		}
	}
	enabled := 0
	for _, r := range rs.Rules() {
		if r.IsEnabled() {
			enabled++
		}
	}
	log.Info("detection rules loaded", "enabled", enabled, "total", len(rs.Rules()))
	return detect.New(detect.Config{
		Rules:          rs,
		Drift:          policy,
		Cluster:        d.cluster,
		Node:           node,
		ProcRoot:       procRoot,
		UpdateInterval: d.updateInterval,
		Log:            log,
		Emit:           emit,
	}), nil
}
