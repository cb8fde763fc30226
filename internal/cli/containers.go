package cli

import (
	"context"
	"slices"
	"time"

	"k8s.io/client-go/metadata"
	"k8s.io/client-go/rest"

	"github.com/vigil-sec/vigil/internal/sensor"
	"github.com/vigil-sec/vigil/internal/sensor/container"
)

// newContainers builds the sensor's container attribution. Without a
// cgroup hierarchy (not a Linux host) events carry no container, and the
// sensor's log says why. Containers get their pod, namespace, name and
// image from the runtime's state on disk and, for what that leaves out,
// from the runtime's CRI socket (criSockets, nil: the usual paths; "none":
// off). In a pod (the chart's DaemonSet) it also watches the node's pods
// through the API server, for each container's workload and pod labels.
func newContainers(ctx context.Context, cfg sensor.Config, criSockets []string) sensor.Containers {
	opts := container.Options{ProcRoot: cfg.ProcRoot, Log: cfg.Log}
	if rc, err := rest.InClusterConfig(); err == nil && cfg.Node != "" {
		rc.UserAgent = "vigil-sensor"
		if mc, err := metadata.NewForConfig(rc); err == nil {
			if pods, err := container.StartKubePods(ctx, mc, cfg.Node, 30*time.Second); err != nil {
				cfg.Log.Warn("workloads and pod labels are off: the node's pods cannot be watched", "err", err)
			} else {
				opts.Pods = pods
			}
		}
	}
	opts.Enrichers = container.DefaultEnrichers("/")
	var cri *container.CRI
	if !slices.Equal(criSockets, []string{"none"}) {
		cri = container.NewCRI(container.CRIOptions{Sockets: criSockets, Log: cfg.Log})
		opts.Enrichers = append(opts.Enrichers, cri)
	}
	r, err := container.NewResolver(opts)
	if err != nil {
		if cri != nil {
			cri.Close()
		}
		cfg.Log.Warn("container attribution is off", "err", err)
		return nil
	}
	if cri != nil {
		context.AfterFunc(ctx, func() { cri.Close() })
	}
	for _, w := range r.Warnings() {
		cfg.Log.Warn(w)
	}
	return r
}
