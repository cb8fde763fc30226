package audit

import (
	"strings"

	"github.com/vigil-sec/vigil/internal/event"
)

// Lineage attributes what controllers do to the people behind it. It
// remembers, per cluster, who last created or changed each workload (the
// last writer) and which object owns which (a Pod its ReplicaSet, a
// ReplicaSet its Deployment, a Job its CronJob), both learned from the
// audit stream itself. A pod the replicaset controller creates is then
// the Deployment's, written by the person who last changed it.
type Lineage struct {
	writers map[string]event.AuditUser // Kind/ns/name -> last writer
	parents map[string]string          // Kind/ns/name -> owner's Kind/ns/name
}

// maxLineage bounds each map; a full map is emptied (maps keep no age)
// and fills again from the stream.
const maxLineage = 50_000

// NewLineage returns an empty index.
func NewLineage() *Lineage {
	return &Lineage{writers: map[string]event.AuditUser{}, parents: map[string]string{}}
}

// kinds of the objects lineage follows, by resource.
var lineageKinds = map[string]string{
	"pods": "Pod", "replicasets": "ReplicaSet", "deployments": "Deployment", "daemonsets": "DaemonSet",
	"statefulsets": "StatefulSet", "jobs": "Job", "cronjobs": "CronJob",
}

// isController tells the control plane's own identities, which act for
// the objects they manage, from the people and tools that write them.
func isController(user string) bool {
	return user == "system:kube-controller-manager" ||
		strings.HasPrefix(user, "system:serviceaccount:kube-system:") && strings.HasSuffix(user, "-controller")
}

// Observe learns from a successful write and, when a controller made it,
// returns where it came from (nil otherwise): set it as the event's
// Origin before the rules see the event. Not safe for concurrent use.
func (l *Lineage) Observe(a *event.Audit) *event.AuditOrigin {
	ref := a.ObjectRef
	if ref == nil || ref.Subresource != "" || a.Stage != "ResponseComplete" ||
		(a.Verb != "create" && a.Verb != "update" && a.Verb != "patch") ||
		a.ResponseStatus == nil || a.ResponseStatus.Code >= 300 {
		return nil
	}
	kind := lineageKinds[ref.Resource]
	if kind == "" {
		return nil
	}
	name := ref.Name
	obj := ObjectOf(a)
	if obj != nil && name == "" {
		name = obj.Name // a create's name comes from the object (empty with generateName)
	}
	key := kind + "/" + ref.Namespace + "/" + name
	owner := ""
	if obj != nil && obj.Owner != "" {
		okind, oname, _ := strings.Cut(obj.Owner, "/")
		owner = okind + "/" + ref.Namespace + "/" + oname
		if name != "" {
			l.set(l.parents, key, owner)
		}
	}
	if !isController(a.User.Username) {
		if name != "" {
			if len(l.writers) >= maxLineage {
				clear(l.writers)
			}
			l.writers[key] = a.User
		}
		return nil
	}
	if owner == "" {
		return nil
	}
	top := owner
	for range 4 {
		p, ok := l.parents[top]
		if !ok {
			break
		}
		top = p
	}
	return &event.AuditOrigin{Workload: top, User: l.writers[top]}
}

func (l *Lineage) set(m map[string]string, k, v string) {
	if len(m) >= maxLineage {
		clear(m)
	}
	m[k] = v
}
