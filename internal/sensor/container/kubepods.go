package container

import (
	"context"
	"fmt"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/metadata"
	toolscache "k8s.io/client-go/tools/cache"
)

// KubePods is the PodSource of a sensor running in a cluster: a watch on
// the pods scheduled to its node only (a field selector on spec.nodeName,
// so a node's sensor neither receives nor keeps other nodes' pods), indexed
// by uid. It watches the pods' metadata only (PartialObjectMetadata):
// everything PodInfo needs is there, the API server sends no specs or
// statuses, and the sensor links no typed Kubernetes client.
type KubePods struct {
	informer toolscache.SharedIndexInformer
}

const byUID = "uid"

var podsResource = schema.GroupVersionResource{Version: "v1", Resource: "pods"}

// StartKubePods watches node's pods until ctx is done and waits up to
// timeout for the first list; it returns an error if the list fails (no
// access to the API, or no right to list pods).
func StartKubePods(ctx context.Context, client metadata.Interface, node string, timeout time.Duration) (*KubePods, error) {
	pods := client.Resource(podsResource)
	onNode := func(o metav1.ListOptions) metav1.ListOptions {
		o.FieldSelector = fields.OneTermEqualSelector("spec.nodeName", node).String()
		return o
	}
	lw := &toolscache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			return pods.List(ctx, onNode(o))
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			return pods.Watch(ctx, onNode(o))
		},
	}
	inf := toolscache.NewSharedIndexInformerWithOptions(lw, &metav1.PartialObjectMetadata{}, toolscache.SharedIndexInformerOptions{
		Indexers: toolscache.Indexers{byUID: func(obj any) ([]string, error) {
			if p, ok := obj.(*metav1.PartialObjectMetadata); ok {
				return []string{string(p.UID)}, nil
			}
			return nil, nil
		}},
		ObjectDescription: "pods on node " + node,
	})
	if err := inf.SetTransform(keepPodIdentity); err != nil {
		return nil, err
	}
	go inf.RunWithContext(ctx)
	wait, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if !toolscache.WaitForCacheSync(wait.Done(), inf.HasSynced) {
		return nil, fmt.Errorf("list the pods of node %s: not done in %v (can the sensor list and watch pods?)", node, timeout)
	}
	return &KubePods{informer: inf}, nil
}

// Pod implements PodSource.
func (k *KubePods) Pod(uid string) (PodInfo, bool) {
	objs, err := k.informer.GetIndexer().ByIndex(byUID, uid)
	if err != nil || len(objs) == 0 {
		return PodInfo{}, false
	}
	p := objs[0].(*metav1.PartialObjectMetadata)
	info := PodInfo{Name: p.Name, Namespace: p.Namespace, Labels: p.Labels}
	if ref := metav1.GetControllerOfNoCopy(p); ref != nil {
		info.OwnerKind, info.OwnerName = ref.Kind, ref.Name
	}
	return info, true
}

// keepPodIdentity drops all but the pod's name, namespace, uid, labels and
// owners (annotations and managed fields can be large) before the cache
// stores it.
func keepPodIdentity(obj any) (any, error) {
	p, ok := obj.(*metav1.PartialObjectMetadata)
	if !ok {
		return obj, nil
	}
	return &metav1.PartialObjectMetadata{TypeMeta: p.TypeMeta, ObjectMeta: metav1.ObjectMeta{Name: p.Name, Namespace: p.Namespace, UID: p.UID,
		Labels: p.Labels, OwnerReferences: p.OwnerReferences, ResourceVersion: p.ResourceVersion}}, nil
}
