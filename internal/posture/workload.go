package posture

import (
	"fmt"
	"strings"
	"sync"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"sigs.k8s.io/yaml"
)

// Workload names what a user owns and fixes: a Deployment, not the
// ReplicaSet or Pod it made.
type Workload struct {
	Kind      string `json:"kind"`
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
}

// String is Kind/namespace/name, e.g. Deployment/shop/web.
func (w Workload) String() string { return w.Kind + "/" + w.Namespace + "/" + w.Name }

// Target is what Evaluate checks in one object: the pod a workload runs,
// or a Service.
type Target struct {
	Workload Workload
	// Labels are the pod's labels (a controller's pod template labels), or
	// a Service's own; label selectors in the Config match them.
	Labels map[string]string
	// Meta is the pod's metadata (a controller's pod template metadata,
	// with the namespace filled in): the AppArmor annotations live there.
	Meta *metav1.ObjectMeta
	// Spec is the pod spec; nil for a Service.
	Spec *corev1.PodSpec
	// Service is set for a Service, nil otherwise.
	Service *corev1.Service
}

// Extract finds the pod spec or Service in a Pod, Deployment, ReplicaSet,
// StatefulSet, DaemonSet, Job, CronJob, ReplicationController or Service.
// It returns false for any other object. A Pod or ReplicaSet made by a
// controller is named after the workload its ownerReferences point to:
// a Pod of ReplicaSet web-6d4cf56db6 (label pod-template-hash=6d4cf56db6)
// is Deployment web, a ReplicaSet owned by Deployment web is Deployment
// web, a Job owned by CronJob nightly is CronJob nightly. An empty
// namespace is "default". The Target points into obj; it does not copy it.
func Extract(obj runtime.Object) (Target, bool) {
	var (
		om   *metav1.ObjectMeta
		tm   *metav1.ObjectMeta
		spec *corev1.PodSpec
		kind string
	)
	switch o := obj.(type) {
	case *corev1.Pod:
		om, tm, spec, kind = &o.ObjectMeta, &o.ObjectMeta, &o.Spec, "Pod"
	case *appsv1.Deployment:
		om, tm, spec, kind = &o.ObjectMeta, &o.Spec.Template.ObjectMeta, &o.Spec.Template.Spec, "Deployment"
	case *appsv1.ReplicaSet:
		om, tm, spec, kind = &o.ObjectMeta, &o.Spec.Template.ObjectMeta, &o.Spec.Template.Spec, "ReplicaSet"
	case *appsv1.StatefulSet:
		om, tm, spec, kind = &o.ObjectMeta, &o.Spec.Template.ObjectMeta, &o.Spec.Template.Spec, "StatefulSet"
	case *appsv1.DaemonSet:
		om, tm, spec, kind = &o.ObjectMeta, &o.Spec.Template.ObjectMeta, &o.Spec.Template.Spec, "DaemonSet"
	case *batchv1.Job:
		om, tm, spec, kind = &o.ObjectMeta, &o.Spec.Template.ObjectMeta, &o.Spec.Template.Spec, "Job"
	case *batchv1.CronJob:
		om, tm, spec, kind = &o.ObjectMeta, &o.Spec.JobTemplate.Spec.Template.ObjectMeta, &o.Spec.JobTemplate.Spec.Template.Spec, "CronJob"
	case *corev1.ReplicationController:
		if o.Spec.Template == nil {
			return Target{}, false
		}
		om, tm, spec, kind = &o.ObjectMeta, &o.Spec.Template.ObjectMeta, &o.Spec.Template.Spec, "ReplicationController"
	case *corev1.Service:
		ns := o.Namespace
		if ns == "" {
			ns = "default"
		}
		return Target{
			Workload: Workload{Kind: "Service", Namespace: ns, Name: o.Name},
			Labels:   o.Labels,
			Meta:     &o.ObjectMeta,
			Service:  o,
		}, true
	default:
		return Target{}, false
	}
	ns := om.Namespace
	if ns == "" {
		ns = "default"
	}
	if tm != om && tm.Namespace != ns {
		// A template's metadata carries no namespace; the checks (and the
		// upstream evaluator) may want it. Copy rather than write into obj.
		m := *tm
		m.Namespace = ns
		tm = &m
	}
	w := Workload{Kind: kind, Namespace: ns, Name: om.Name}
	if ref := metav1.GetControllerOfNoCopy(om); ref != nil {
		switch {
		case kind == "Pod" && ref.Kind == "ReplicaSet":
			if h := om.Labels["pod-template-hash"]; h != "" && strings.HasSuffix(ref.Name, "-"+h) {
				w.Kind, w.Name = "Deployment", strings.TrimSuffix(ref.Name, "-"+h)
			} else {
				w.Kind, w.Name = ref.Kind, ref.Name
			}
		case kind == "Pod":
			w.Kind, w.Name = ref.Kind, ref.Name
		case kind == "ReplicaSet" && ref.Kind == "Deployment",
			kind == "Job" && ref.Kind == "CronJob":
			w.Kind, w.Name = ref.Kind, ref.Name
		}
	}
	return Target{Workload: w, Labels: tm.Labels, Meta: tm, Spec: spec}, true
}

// decoder decodes the kinds Extract understands, plus v1 List.
var decoder = sync.OnceValue(func() runtime.Decoder {
	s := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{corev1.AddToScheme, appsv1.AddToScheme, batchv1.AddToScheme} {
		if err := add(s); err != nil {
			panic("posture: build scheme: " + err.Error())
		}
	}
	return serializer.NewCodecFactory(s).UniversalDeserializer()
})

// Decode decodes one YAML or JSON document into the objects in it: one
// object, or every item of a List (v1 List, or a typed list such as
// DeploymentList), recursively. A kind outside core/v1, apps/v1 and
// batch/v1, or a document with no apiVersion or kind (a Helm values file, a
// kustomization), gives an error for which IsNotWorkload is true.
func Decode(doc []byte) ([]runtime.Object, error) {
	obj, _, err := decoder().Decode(doc, nil, nil)
	if err != nil {
		if runtime.IsMissingKind(err) || runtime.IsMissingVersion(err) {
			return nil, &notWorkloadError{"a document without apiVersion and kind"}
		}
		if runtime.IsNotRegisteredError(err) {
			var tm metav1.TypeMeta
			if yaml.Unmarshal(doc, &tm) == nil {
				return nil, &notWorkloadError{tm.APIVersion + " " + tm.Kind}
			}
		}
		return nil, err
	}
	if l, ok := obj.(*corev1.List); ok {
		var out []runtime.Object
		for i, it := range l.Items {
			objs, err := Decode(it.Raw)
			if err != nil && !IsNotWorkload(err) {
				return nil, fmt.Errorf("items[%d]: %w", i, err)
			}
			out = append(out, objs...)
		}
		return out, nil
	}
	if meta.IsListType(obj) {
		items, err := meta.ExtractList(obj)
		if err != nil {
			return nil, err
		}
		return items, nil
	}
	return []runtime.Object{obj}, nil
}

type notWorkloadError struct{ kind string }

func (e *notWorkloadError) Error() string { return e.kind + " is not an object vigil checks" }

// IsNotWorkload reports whether Decode failed only because the document
// is of a kind no recommendation reads (a ConfigMap is decoded, and
// Evaluate simply returns nothing for it).
func IsNotWorkload(err error) bool {
	_, ok := err.(*notWorkloadError)
	return ok
}
