package simulate

import (
	"context"
	"errors"
)

func controlPlane() *Scenario {
	return &Scenario{
		ID:           "control-plane",
		Summary:      "queries the test namespace, creates a privileged pod and a cluster-admin binding, deletes events (audit log)",
		Rules:        []string{"audit.privileged-container", "audit.cluster-admin-binding", "audit.events-deleted"},
		NeedsCluster: true,
		Run: func(context.Context, *Session) error {
			return errors.New("control-plane runs only against a cluster")
		},
	}
}
