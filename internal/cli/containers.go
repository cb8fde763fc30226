package cli

import (
	"github.com/vigil-sec/vigil/internal/sensor"
	"github.com/vigil-sec/vigil/internal/sensor/container"
)

// newContainers builds the sensor's container attribution. Without a
// cgroup hierarchy (not a Linux host) events carry no container, and the
// sensor's log says why.
func newContainers(cfg sensor.Config) sensor.Containers {
	r, err := container.NewResolver(container.Options{ProcRoot: cfg.ProcRoot, Log: cfg.Log})
	if err != nil {
		cfg.Log.Warn("container attribution is off", "err", err)
		return nil
	}
	for _, w := range r.Warnings() {
		cfg.Log.Warn(w)
	}
	return r
}
