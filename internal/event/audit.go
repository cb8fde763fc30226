package event

import (
	"encoding/json"
	"time"
)

// Audit is one Kubernetes API server audit event, audit.k8s.io/v1 Event
// with its field names, as the webhook backend and the log backend write
// it. The request and response objects stay raw: rules read the parts
// they need (internal/audit derives them once per event).
type Audit struct {
	Level                    string            `json:"level,omitempty"`
	AuditID                  string            `json:"auditID"`
	Stage                    string            `json:"stage"`
	RequestURI               string            `json:"requestURI"`
	Verb                     string            `json:"verb"`
	User                     AuditUser         `json:"user"`
	ImpersonatedUser         *AuditUser        `json:"impersonatedUser,omitempty"`
	SourceIPs                []string          `json:"sourceIPs,omitempty"`
	UserAgent                string            `json:"userAgent,omitempty"`
	ObjectRef                *ObjectRef        `json:"objectRef,omitempty"`
	ResponseStatus           *ResponseStatus   `json:"responseStatus,omitempty"`
	RequestObject            json.RawMessage   `json:"requestObject,omitempty"`
	ResponseObject           json.RawMessage   `json:"responseObject,omitempty"`
	RequestReceivedTimestamp time.Time         `json:"requestReceivedTimestamp,omitzero"`
	StageTimestamp           time.Time         `json:"stageTimestamp,omitzero"`
	Annotations              map[string]string `json:"annotations,omitempty"`
	// Origin is Vigil's, not the API server's: for a request a controller
	// made on a workload's behalf (a ReplicaSet's pods), the workload at
	// the top of the owner chain and who last wrote it.
	Origin *AuditOrigin `json:"vigilOrigin,omitempty"`
}

// AuditOrigin is the workload and the person behind a controller's request.
type AuditOrigin struct {
	Workload string    `json:"workload"` // Kind/namespace/name, e.g. Deployment/shop/web
	User     AuditUser `json:"user"`     // who last created or changed it (empty if unknown)
}

// AuditUser is the authenticated (or impersonated) identity of a request.
type AuditUser struct {
	Username string              `json:"username"`
	UID      string              `json:"uid,omitempty"`
	Groups   []string            `json:"groups,omitempty"`
	Extra    map[string][]string `json:"extra,omitempty"`
}

// ObjectRef names the object a request was about.
type ObjectRef struct {
	Resource        string `json:"resource,omitempty"`
	Namespace       string `json:"namespace,omitempty"`
	Name            string `json:"name,omitempty"`
	UID             string `json:"uid,omitempty"`
	APIGroup        string `json:"apiGroup,omitempty"`
	APIVersion      string `json:"apiVersion,omitempty"`
	ResourceVersion string `json:"resourceVersion,omitempty"`
	Subresource     string `json:"subresource,omitempty"`
}

// ResponseStatus is the outcome of the request (metav1.Status, in part).
type ResponseStatus struct {
	Code    int    `json:"code,omitempty"`
	Status  string `json:"status,omitempty"`
	Reason  string `json:"reason,omitempty"`
	Message string `json:"message,omitempty"`
}
