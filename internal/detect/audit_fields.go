package detect

import (
	"github.com/vigil-sec/vigil/internal/audit"
	"github.com/vigil-sec/vigil/internal/event"
)

// auditFields are the fields of k8s.audit events (the API server's audit
// log): who did what to which object, and what the object holds. Names
// follow Falco's k8saudit fields where one exists (ka.*).
var auditFields = []*field{
	{name: "ka.verb", typ: tString, doc: "request verb: get, list, watch, create, update, patch, delete, deletecollection",
		str: func(v *view) string { return v.audit().Verb }},
	{name: "ka.stage", typ: tString, doc: "audit stage: RequestReceived, ResponseStarted, ResponseComplete, Panic",
		str: func(v *view) string { return v.audit().Stage }},
	{name: "ka.uri", typ: tString, doc: "request URI, with its query", str: func(v *view) string { return v.audit().RequestURI }},
	{name: "ka.user.name", typ: tString, doc: "authenticated user name", str: func(v *view) string { return v.audit().User.Username }},
	{name: "ka.user.class", typ: tString, doc: "what the user is: control-plane, node, system-account (kube-system's service accounts), service-account, anonymous or user (people and anything else)",
		str: func(v *view) string { return audit.Classify(v.audit().User) }},
	{name: "ka.user.groups", typ: tList, doc: "authenticated user's groups", list: func(v *view) []string { return v.audit().User.Groups }},
	{name: "ka.impuser.name", typ: tString, doc: "impersonated user name, empty without impersonation",
		str: func(v *view) string {
			if u := v.audit().ImpersonatedUser; u != nil {
				return u.Username
			}
			return ""
		}},
	{name: "ka.impuser.groups", typ: tList, doc: "impersonated groups",
		list: func(v *view) []string {
			if u := v.audit().ImpersonatedUser; u != nil {
				return u.Groups
			}
			return nil
		}},
	{name: "ka.useragent", typ: tString, doc: "client user agent", str: func(v *view) string { return v.audit().UserAgent }},
	{name: "ka.sourceips", typ: tList, doc: "client addresses (the first is the client's, as the API server saw it)",
		list: func(v *view) []string { return v.audit().SourceIPs }},
	{name: "ka.target.resource", typ: tString, doc: "resource, e.g. pods, clusterrolebindings",
		str: func(v *view) string { return v.ref().Resource }},
	{name: "ka.target.subresource", typ: tString, doc: "subresource, e.g. exec, attach, token, ephemeralcontainers",
		str: func(v *view) string { return v.ref().Subresource }},
	{name: "ka.target.namespace", typ: tString, doc: "namespace of the object", str: func(v *view) string { return v.ref().Namespace }},
	{name: "ka.target.name", typ: tString, doc: "name of the object", str: func(v *view) string { return v.ref().Name }},
	{name: "ka.target.apigroup", typ: tString, doc: "API group, empty for the core group", str: func(v *view) string { return v.ref().APIGroup }},
	{name: "ka.response.code", typ: tInt, doc: "HTTP status of the response (0 before ResponseComplete)",
		num: func(v *view) int64 {
			if s := v.audit().ResponseStatus; s != nil {
				return int64(s.Code)
			}
			return 0
		}},
	{name: "ka.auth.decision", typ: tString, doc: "authorization decision: allow or forbid",
		str: func(v *view) string { return v.audit().Annotations["authorization.k8s.io/decision"] }},
	{name: "ka.auth.reason", typ: tString, doc: "why the authorizer decided so (e.g. the RBAC binding)",
		str: func(v *view) string { return v.audit().Annotations["authorization.k8s.io/reason"] }},
	{name: "ka.exec.command", typ: tString, doc: "command of an exec request, arguments joined by spaces",
		str: func(v *view) string { return audit.ExecCommand(v.audit()) }},
	{name: "ka.exec.container", typ: tString, doc: "container an exec, attach or log request names",
		str: func(v *view) string { return audit.ExecContainer(v.audit()) }},

	{name: "ka.origin.workload", typ: tString, doc: "for a controller's request on a workload's behalf (a ReplicaSet's pods): the workload at the top, Kind/namespace/name; empty otherwise",
		str: func(v *view) string {
			if o := v.audit().Origin; o != nil {
				return o.Workload
			}
			return ""
		}},
	{name: "ka.origin.user", typ: tString, doc: "who last created or changed that workload (empty if unknown)",
		str: func(v *view) string {
			if o := v.audit().Origin; o != nil {
				return o.User.Username
			}
			return ""
		}},
	{name: "ka.obj.owner", typ: tString, doc: "the object's controlling owner, Kind/name (e.g. ReplicaSet/web-7d9f4)",
		str: func(v *view) string { return v.obj().Owner }},
	{name: "ka.obj.kind", typ: tString, doc: "kind of the request's object (the response's for patches), e.g. Pod, Deployment",
		str: func(v *view) string { return v.obj().Kind }},
	{name: "ka.obj.labels", typ: tMap, doc: "the object's labels", dict: func(v *view) map[string]string { return v.obj().Labels }},
	{name: "ka.obj.annotations", typ: tMap, doc: "the object's annotations", dict: func(v *view) map[string]string { return v.obj().Annotations }},
	{name: "ka.obj.data_keys", typ: tList, doc: "a ConfigMap's or Secret's data keys", list: func(v *view) []string { return keys(v.obj().Data) }},
	{name: "ka.pod.present", typ: tBool, doc: "the object holds a pod spec (a Pod, or a workload's pod template)",
		flag: func(v *view) bool { return v.obj().Pod != nil }},
	{name: "ka.pod.privileged", typ: tBool, doc: "a container of the pod spec is privileged",
		flag: func(v *view) bool { return v.anyContainer(func(c *audit.Container) bool { return c.Privileged }) }},
	{name: "ka.pod.allow_privesc", typ: tBool, doc: "a container sets allowPrivilegeEscalation: true",
		flag: func(v *view) bool { return v.anyContainer(func(c *audit.Container) bool { return c.AllowPrivEsc }) }},
	{name: "ka.pod.run_as_root", typ: tBool, doc: "a container (or the pod) sets runAsUser: 0",
		flag: func(v *view) bool { return v.anyContainer(func(c *audit.Container) bool { return c.RunAsRoot }) }},
	{name: "ka.pod.host_pid", typ: tBool, doc: "hostPID", flag: func(v *view) bool { return v.pod().HostPID }},
	{name: "ka.pod.host_ipc", typ: tBool, doc: "hostIPC", flag: func(v *view) bool { return v.pod().HostIPC }},
	{name: "ka.pod.host_network", typ: tBool, doc: "hostNetwork", flag: func(v *view) bool { return v.pod().HostNetwork }},
	{name: "ka.pod.host_paths", typ: tList, doc: "hostPath volume paths", list: func(v *view) []string { return v.pod().HostPaths }},
	{name: "ka.pod.host_ports", typ: tList, doc: "host ports of the containers",
		list: func(v *view) []string {
			return v.containerList(func(c *audit.Container) []string { return c.HostPorts })
		}},
	{name: "ka.pod.images", typ: tList, doc: "images of every container (init and ephemeral too)",
		list: func(v *view) []string {
			return v.containerList(func(c *audit.Container) []string { return []string{c.Image} })
		}},
	{name: "ka.pod.caps_add", typ: tList, doc: "capabilities added, upper case without CAP_",
		list: func(v *view) []string { return v.containerList(func(c *audit.Container) []string { return c.CapsAdd }) }},
	{name: "ka.pod.ephemeral", typ: tBool, doc: "the pod spec has an ephemeral (debug) container",
		flag: func(v *view) bool { return v.anyContainer(func(c *audit.Container) bool { return c.Ephemeral }) }},
	{name: "ka.pod.service_account", typ: tString, doc: "serviceAccountName of the pod spec", str: func(v *view) string { return v.pod().ServiceAccount }},
	{name: "ka.rbac.role_ref", typ: tString, doc: "a binding's role, Kind/name, e.g. ClusterRole/cluster-admin",
		str: func(v *view) string { return v.obj().RBAC.RoleRef }},
	{name: "ka.rbac.subjects", typ: tList, doc: "a binding's subjects: User:name, Group:name, ServiceAccount:namespace/name",
		list: func(v *view) []string { return v.obj().RBAC.Subjects }},
	{name: "ka.rbac.verbs", typ: tList, doc: "verbs a Role or ClusterRole grants, over all its rules",
		list: func(v *view) []string { return v.obj().RBAC.Verbs }},
	{name: "ka.rbac.resources", typ: tList, doc: "resources a Role or ClusterRole grants", list: func(v *view) []string { return v.obj().RBAC.Resources }},
	{name: "ka.rbac.apigroups", typ: tList, doc: "API groups a Role or ClusterRole grants", list: func(v *view) []string { return v.obj().RBAC.APIGroups }},
	{name: "ka.svc.type", typ: tString, doc: "a Service's type: ClusterIP, NodePort, LoadBalancer, ExternalName",
		str: func(v *view) string { return v.obj().Service.Type }},
	{name: "ka.svc.ports", typ: tList, doc: "a Service's ports and node ports", list: func(v *view) []string { return v.obj().Service.Ports }},
	{name: "ka.csr.username", typ: tString, doc: "the user a CertificateSigningRequest was made by (spec.username)", str: func(v *view) string { return v.obj().CSRUser }},
	{name: "ka.obj.name", typ: tString, doc: "the object's name from its body (a create with generateName has no ka.target.name)",
		str: func(v *view) string { return v.obj().Name }},
	{name: "ka.csr.decision", typ: tString, doc: "a CertificateSigningRequest's Approved or Denied condition (the approval subresource's object holds it)",
		str: func(v *view) string { return v.obj().CSRDecision }},
	{name: "ka.csr.signer", typ: tString, doc: "a CertificateSigningRequest's signerName", str: func(v *view) string { return v.obj().CSRSigner }},
}

var (
	zeroAudit  event.Audit
	zeroRef    event.ObjectRef
	zeroObject audit.Object
	zeroPod    audit.PodSpec
)

func (v *view) audit() *event.Audit {
	if v.e.Audit != nil {
		return v.e.Audit
	}
	return &zeroAudit
}

func (v *view) ref() *event.ObjectRef {
	if r := v.audit().ObjectRef; r != nil {
		return r
	}
	return &zeroRef
}

// obj is the event's decoded object, decoded on first use.
func (v *view) obj() *audit.Object {
	if !v.objOK {
		v.objOK = true
		v.object = nil
		if v.e.Audit != nil {
			v.object = audit.ObjectOf(v.e.Audit)
		}
	}
	if v.object != nil {
		return v.object
	}
	return &zeroObject
}

func (v *view) pod() *audit.PodSpec {
	if p := v.obj().Pod; p != nil {
		return p
	}
	return &zeroPod
}

func (v *view) anyContainer(f func(*audit.Container) bool) bool {
	for i := range v.pod().Containers {
		if f(&v.pod().Containers[i]) {
			return true
		}
	}
	return false
}

func (v *view) containerList(f func(*audit.Container) []string) []string {
	var out []string
	for i := range v.pod().Containers {
		out = append(out, f(&v.pod().Containers[i])...)
	}
	return out
}

func keys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}
