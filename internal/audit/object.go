package audit

import (
	"encoding/json"
	"net/url"
	"strconv"
	"strings"

	"github.com/vigil-sec/vigil/internal/event"
)

// Object is what rules read of the object an audit event carries: its
// kind and metadata, the pod spec it holds (a Pod's, or the pod template
// of a Deployment, DaemonSet, StatefulSet, ReplicaSet, Job or CronJob),
// RBAC rules and bindings, a Service's exposure, a CSR's signer. It is
// decoded from the request object, or from the response object where the
// request holds a patch or nothing (patch, and the subresources).
type Object struct {
	Kind        string            `json:"kind"`
	Name        string            `json:"-"`
	Namespace   string            `json:"-"`
	Labels      map[string]string `json:"-"`
	Annotations map[string]string `json:"-"`
	Pod         *PodSpec          `json:"-"`
	RBAC        RBAC              `json:"-"`
	Service     Service           `json:"-"`
	CSRSigner   string            `json:"-"`
	CSRUser     string            `json:"-"`
	CSRDecision string            `json:"-"` // Approved or Denied: a CSR's latest such condition
	Data        map[string]string `json:"-"` // a ConfigMap's keys (values dropped)
	// Owner is the controlling owner reference, Kind/name (same
	// namespace), e.g. ReplicaSet/web-7d9f4.
	Owner string `json:"-"`
}

// PodSpec is the security-relevant part of a pod spec.
type PodSpec struct {
	HostPID, HostIPC, HostNetwork bool
	ServiceAccount                string
	Containers                    []Container // containers, initContainers and ephemeralContainers
	HostPaths                     []string    // hostPath volume paths
}

// Container is one container of a pod spec.
type Container struct {
	Name, Image  string
	Ephemeral    bool
	Privileged   bool
	AllowPrivEsc bool     // allowPrivilegeEscalation: true, explicitly
	RunAsRoot    bool     // runAsUser: 0, explicitly (container or pod)
	CapsAdd      []string // upper case, without CAP_
	HostPorts    []string
}

// RBAC is what a Role, ClusterRole or binding grants, summed over rules.
type RBAC struct {
	RoleRef   string   // bindings: Kind/name, e.g. ClusterRole/cluster-admin
	Subjects  []string // bindings: User:alice, Group:g, ServiceAccount:ns/name
	Verbs     []string
	Resources []string
	APIGroups []string
}

// Service is a Service's exposure.
type Service struct {
	Type  string
	Ports []string // port, and nodePort when set
}

// wire is the JSON shape Object is decoded from.
type wire struct {
	Kind     string `json:"kind"`
	Metadata struct {
		Name            string            `json:"name"`
		Namespace       string            `json:"namespace"`
		Labels          map[string]string `json:"labels"`
		Annotations     map[string]string `json:"annotations"`
		OwnerReferences []struct {
			Kind       string `json:"kind"`
			Name       string `json:"name"`
			Controller bool   `json:"controller"`
		} `json:"ownerReferences"`
	} `json:"metadata"`
	Spec struct {
		podSpecWire
		Template    *struct{ Spec podSpecWire } `json:"template"`
		JobTemplate *struct {
			Spec struct {
				Template struct{ Spec podSpecWire } `json:"template"`
			} `json:"spec"`
		} `json:"jobTemplate"`
		Type  string `json:"type"`
		Ports []struct {
			Port     int `json:"port"`
			NodePort int `json:"nodePort"`
		} `json:"ports"`
		SignerName string `json:"signerName"`
		Username   string `json:"username"`
	} `json:"spec"`
	Status struct {
		Conditions []struct {
			Type string `json:"type"`
		} `json:"conditions"`
	} `json:"status"`
	Rules []struct {
		Verbs     []string `json:"verbs"`
		Resources []string `json:"resources"`
		APIGroups []string `json:"apiGroups"`
	} `json:"rules"`
	RoleRef *struct {
		Kind string `json:"kind"`
		Name string `json:"name"`
	} `json:"roleRef"`
	Subjects []struct {
		Kind      string `json:"kind"`
		Name      string `json:"name"`
		Namespace string `json:"namespace"`
	} `json:"subjects"`
	Data map[string]json.RawMessage `json:"data"`
}

type podSpecWire struct {
	HostPID             bool            `json:"hostPID"`
	HostIPC             bool            `json:"hostIPC"`
	HostNetwork         bool            `json:"hostNetwork"`
	ServiceAccountName  string          `json:"serviceAccountName"`
	SecurityContext     *securityWire   `json:"securityContext"`
	Containers          []containerWire `json:"containers"`
	InitContainers      []containerWire `json:"initContainers"`
	EphemeralContainers []containerWire `json:"ephemeralContainers"`
	Volumes             []struct {
		HostPath *struct {
			Path string `json:"path"`
		} `json:"hostPath"`
	} `json:"volumes"`
}

type securityWire struct {
	Privileged               *bool  `json:"privileged"`
	AllowPrivilegeEscalation *bool  `json:"allowPrivilegeEscalation"`
	RunAsUser                *int64 `json:"runAsUser"`
	Capabilities             *struct {
		Add []string `json:"add"`
	} `json:"capabilities"`
}

type containerWire struct {
	Name            string        `json:"name"`
	Image           string        `json:"image"`
	SecurityContext *securityWire `json:"securityContext"`
	Ports           []struct {
		HostPort int `json:"hostPort"`
	} `json:"ports"`
}

func (w *podSpecWire) empty() bool {
	return len(w.Containers) == 0 && len(w.InitContainers) == 0 && len(w.EphemeralContainers) == 0 && len(w.Volumes) == 0 &&
		!w.HostPID && !w.HostIPC && !w.HostNetwork
}

// ObjectOf decodes the object of a: nil when the event carries none (or
// not one this package understands).
func ObjectOf(a *event.Audit) *Object {
	raw := a.RequestObject
	if a.Verb == "patch" || len(raw) == 0 || (a.ObjectRef != nil && a.ObjectRef.Subresource != "" && len(a.ResponseObject) > 0) {
		if len(a.ResponseObject) > 0 {
			raw = a.ResponseObject
		}
	}
	if len(raw) == 0 || raw[0] != '{' {
		return nil
	}
	var w wire
	if err := json.Unmarshal(raw, &w); err != nil {
		return nil
	}
	o := &Object{Kind: w.Kind, Name: w.Metadata.Name, Namespace: w.Metadata.Namespace,
		Labels: w.Metadata.Labels, Annotations: w.Metadata.Annotations}
	for _, ref := range w.Metadata.OwnerReferences {
		if ref.Controller {
			o.Owner = ref.Kind + "/" + ref.Name
		}
	}
	spec := &w.Spec.podSpecWire
	switch {
	case w.Spec.Template != nil:
		spec = &w.Spec.Template.Spec
	case w.Spec.JobTemplate != nil:
		spec = &w.Spec.JobTemplate.Spec.Template.Spec
	}
	if !spec.empty() {
		o.Pod = podSpec(spec)
	}
	for _, r := range w.Rules {
		o.RBAC.Verbs = appendNew(o.RBAC.Verbs, r.Verbs...)
		o.RBAC.Resources = appendNew(o.RBAC.Resources, r.Resources...)
		o.RBAC.APIGroups = appendNew(o.RBAC.APIGroups, r.APIGroups...)
	}
	if w.RoleRef != nil {
		o.RBAC.RoleRef = w.RoleRef.Kind + "/" + w.RoleRef.Name
	}
	for _, s := range w.Subjects {
		name := s.Name
		if s.Kind == "ServiceAccount" {
			name = s.Namespace + "/" + s.Name
		}
		o.RBAC.Subjects = append(o.RBAC.Subjects, s.Kind+":"+name)
	}
	if w.Kind == "Service" {
		o.Service.Type = w.Spec.Type
		if o.Service.Type == "" {
			o.Service.Type = "ClusterIP"
		}
		for _, p := range w.Spec.Ports {
			o.Service.Ports = append(o.Service.Ports, strconv.Itoa(p.Port))
			if p.NodePort != 0 {
				o.Service.Ports = append(o.Service.Ports, strconv.Itoa(p.NodePort))
			}
		}
	}
	if w.Kind == "CertificateSigningRequest" {
		o.CSRSigner, o.CSRUser = w.Spec.SignerName, w.Spec.Username
		for _, c := range w.Status.Conditions {
			if c.Type == "Approved" || c.Type == "Denied" {
				o.CSRDecision = c.Type
			}
		}
	}
	if len(w.Data) > 0 {
		o.Data = make(map[string]string, len(w.Data))
		for k := range w.Data {
			o.Data[k] = ""
		}
	}
	return o
}

func podSpec(w *podSpecWire) *PodSpec {
	p := &PodSpec{HostPID: w.HostPID, HostIPC: w.HostIPC, HostNetwork: w.HostNetwork, ServiceAccount: w.ServiceAccountName}
	podRoot := w.SecurityContext != nil && w.SecurityContext.RunAsUser != nil && *w.SecurityContext.RunAsUser == 0
	add := func(cs []containerWire, ephemeral bool) {
		for _, c := range cs {
			out := Container{Name: c.Name, Image: c.Image, Ephemeral: ephemeral, RunAsRoot: podRoot}
			if sc := c.SecurityContext; sc != nil {
				out.Privileged = sc.Privileged != nil && *sc.Privileged
				out.AllowPrivEsc = sc.AllowPrivilegeEscalation != nil && *sc.AllowPrivilegeEscalation
				if sc.RunAsUser != nil {
					out.RunAsRoot = *sc.RunAsUser == 0
				}
				if sc.Capabilities != nil {
					for _, capName := range sc.Capabilities.Add {
						out.CapsAdd = append(out.CapsAdd, strings.TrimPrefix(strings.ToUpper(capName), "CAP_"))
					}
				}
			}
			for _, port := range c.Ports {
				if port.HostPort != 0 {
					out.HostPorts = append(out.HostPorts, strconv.Itoa(port.HostPort))
				}
			}
			p.Containers = append(p.Containers, out)
		}
	}
	add(w.Containers, false)
	add(w.InitContainers, false)
	add(w.EphemeralContainers, true)
	for _, v := range w.Volumes {
		if v.HostPath != nil {
			p.HostPaths = append(p.HostPaths, v.HostPath.Path)
		}
	}
	return p
}

func appendNew(list []string, vals ...string) []string {
	for _, v := range vals {
		found := false
		for _, have := range list {
			if have == v {
				found = true
				break
			}
		}
		if !found {
			list = append(list, v)
		}
	}
	return list
}

// ExecCommand is the command of an exec request (pods/exec), from the
// request URI's command parameters, joined by spaces. The URI is decoded
// as the API server decodes it (keys too: comm%61nd is command).
func ExecCommand(a *event.Audit) string {
	return strings.Join(execQuery(a)["command"], " ")
}

// ExecContainer is the container an exec, attach or log request names.
func ExecContainer(a *event.Audit) string {
	return execQuery(a).Get("container")
}

func execQuery(a *event.Audit) url.Values {
	_, query, ok := strings.Cut(a.RequestURI, "?")
	if !ok {
		return nil
	}
	v, _ := url.ParseQuery(query) // what parses is what the API server used
	return v
}
