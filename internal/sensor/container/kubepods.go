package container

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	toolscache "k8s.io/client-go/tools/cache"
)

// KubePods is the PodSource of a sensor running in a cluster: a watch on
// the pods scheduled to its node only (a field selector on spec.nodeName,
// so a node's sensor neither receives nor keeps other nodes' pods), indexed
// by uid. Only what PodInfo needs is kept in memory.
type KubePods struct {
	informer toolscache.SharedIndexInformer
}

const byUID = "uid"

// StartKubePods watches node's pods until ctx is done and waits up to
// timeout for the first list; it returns an error if the list fails (no
// access to the API, or no right to list pods).
func StartKubePods(ctx context.Context, client kubernetes.Interface, node string, timeout time.Duration) (*KubePods, error) {
	factory := informers.NewSharedInformerFactoryWithOptions(client, 0,
		informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.FieldSelector = fields.OneTermEqualSelector("spec.nodeName", node).String()
		}),
		informers.WithTransform(keepPodIdentity))
	inf := factory.Core().V1().Pods().Informer()
	if err := inf.AddIndexers(toolscache.Indexers{byUID: func(obj any) ([]string, error) {
		if p, ok := obj.(*corev1.Pod); ok {
			return []string{string(p.UID)}, nil
		}
		return nil, nil
	}}); err != nil {
		return nil, err
	}
	factory.Start(ctx.Done())
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
	p := objs[0].(*corev1.Pod)
	info := PodInfo{Name: p.Name, Namespace: p.Namespace, Labels: p.Labels}
	if ref := metav1.GetControllerOfNoCopy(p); ref != nil {
		info.OwnerKind, info.OwnerName = ref.Kind, ref.Name
	}
	return info, true
}

// keepPodIdentity drops all but the pod's name, namespace, uid, labels and
// owners before the cache stores it.
func keepPodIdentity(obj any) (any, error) {
	p, ok := obj.(*corev1.Pod)
	if !ok {
		return obj, nil
	}
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: p.Name, Namespace: p.Namespace, UID: p.UID,
		Labels: p.Labels, OwnerReferences: p.OwnerReferences, ResourceVersion: p.ResourceVersion}}, nil
}
