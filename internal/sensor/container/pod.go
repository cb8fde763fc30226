package container

import (
	"strings"

	"github.com/vigil-sec/vigil/internal/event"
)

// PodInfo is what the Kubernetes API says of a pod.
type PodInfo struct {
	Name, Namespace string
	Labels          map[string]string
	// OwnerKind and OwnerName are the pod's controlling owner reference
	// (controller: true), empty for a bare pod.
	OwnerKind, OwnerName string
}

// PodSource looks pods up by uid, typically in a cache of the pods
// scheduled to this node that a watch on the API server keeps current.
// The Resolver calls Pod on the event path the first time it sees a
// container of the pod, so Pod must answer from memory and never wait on
// the network; while it answers false the Resolver asks again every
// Options.RetryInterval. Pod must be safe for concurrent use.
type PodSource interface {
	Pod(uid string) (PodInfo, bool)
}

// applyPod fills c from the API's view of its pod: name and namespace
// where the runtime did not give them, the workload, and the pod's labels
// under the container's own.
func applyPod(c *event.Container, p PodInfo) {
	setEmpty(&c.Pod, p.Name)
	setEmpty(&c.Namespace, p.Namespace)
	setEmpty(&c.Workload, WorkloadFromOwners(p.OwnerKind, p.OwnerName))
	c.Labels = mergeLabels(c.Labels, p.Labels)
}

// WorkloadFromOwners names the workload that owns a pod, as Kind/name,
// from the pod's controlling owner: a ReplicaSet named <deployment>-<pod
// template hash> is its Deployment, and a Job named <cronjob>-<scheduled
// time in minutes since the epoch> its CronJob. Other owners
// (StatefulSet, DaemonSet, a ReplicaSet or Job of another name, custom
// resources) name themselves. It returns "" for a pod without an owner.
func WorkloadFromOwners(kind, name string) string {
	if kind == "" || name == "" {
		return ""
	}
	i := strings.LastIndexByte(name, '-')
	if i > 0 {
		prefix, suffix := name[:i], name[i+1:]
		switch {
		case kind == "ReplicaSet" && isTemplateHash(suffix):
			return "Deployment/" + prefix
		case kind == "Job" && isScheduledMinutes(suffix):
			return "CronJob/" + prefix
		}
	}
	return kind + "/" + name
}

// isTemplateHash recognises a pod-template-hash: the Deployment
// controller's 32-bit hash in decimal, each digit re-encoded in an
// alphabet without vowels (nor 0, 1 and 3) so that it never spells words.
// Ten characters at most; fewer than six only for hashes below 100000,
// rare enough to read "web-v2" as a ReplicaSet's own name instead.
func isTemplateHash(s string) bool {
	if len(s) < 6 || len(s) > 10 {
		return false
	}
	for i := range len(s) {
		if !strings.ContainsRune("bcdfghjklmnpqrstvwxz2456789", rune(s[i])) {
			return false
		}
	}
	return true
}

// isScheduledMinutes recognises the CronJob controller's job suffix, the
// scheduled time in minutes since the Unix epoch: eight digits from 1989
// on, nine or ten for the centuries after (a shorter number is a Job
// named e.g. migrate-2).
func isScheduledMinutes(s string) bool {
	if len(s) < 8 || len(s) > 10 {
		return false
	}
	for i := range len(s) {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
