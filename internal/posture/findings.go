package posture

import (
	"crypto/sha256"
	"encoding/hex"

	"github.com/vigil-sec/vigil/internal/ship"
)

// Findings turns results into what a scanner sends to the server: one
// finding per workload and recommendation, keyed so that a later scan of
// the same pair replaces it.
func Findings(results []Result) []ship.Finding {
	out := make([]ship.Finding, 0, len(results))
	for _, r := range results {
		status := ship.Healthy
		if !r.Healthy {
			status = ship.Unhealthy
		}
		resource := r.Workload.String()
		details := map[string]any{"mode": string(r.Mode)}
		if len(r.Violations) > 0 {
			details["violations"] = r.Violations
		}
		out = append(out, ship.Finding{ID: FindingID(r.Recommendation, resource), Check: r.Recommendation, Resource: resource,
			Namespace: r.Workload.Namespace, Status: status, Details: details})
	}
	return out
}

// FindingID is the id of the finding of one recommendation on one
// resource (Workload.String()): the same on every scan, so a later result
// replaces an earlier one.
func FindingID(recommendation, resource string) string {
	sum := sha256.Sum256([]byte(recommendation + "\x00" + resource))
	return hex.EncodeToString(sum[:12])
}
