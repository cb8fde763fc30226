package simulate

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"path"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/httpstream"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/portforward"
	"k8s.io/client-go/tools/remotecommand"
	"k8s.io/client-go/transport/spdy"
)

// Labels of everything the cluster backend creates. A namespace named
// Namespace without them is someone else's: the backend never touches it.
var Labels = map[string]string{
	"app.kubernetes.io/part-of":   "vigil",
	"app.kubernetes.io/component": "simulation",
}

// scenarioLabel names a victim pod's scenario.
const scenarioLabel = "vigil.dev/simulation"

// Container names of a victim pod.
const (
	victimContainer   = "victim"
	attackerContainer = "attacker"
)

// saDir is where the kubelet mounts a pod's service-account token.
const saDir = "/var/run/secrets/kubernetes.io/serviceaccount/"

// Cluster is the backend of `vigil simulate` without --local: every victim
// is a pod in namespace Namespace of the cluster Kube reaches, with two
// containers: "victim" (the VictimImage, busybox, unprivileged, no added
// capability) and "attacker" (the RelayImage running `vigil simulate
// relay`), which shares the pod's network namespace and is the attacker's
// side of it: the CLI reaches it through a port-forward, so the attacker's
// servers and connections exist only inside the pod, as in local mode.
// Exec goes through the pods/exec subresource. Control-plane scenarios act
// on the API through Kube in Namespace.
//
// Check refuses a Namespace that exists without Labels. The namespace is
// created on first use and deleted by Close; each victim pod (and the
// ConfigMap holding its planted files) by its Remove.
type Cluster struct {
	// Config and Kube reach the cluster as the user (the kubeconfig).
	Config *rest.Config
	Kube   kubernetes.Interface
	// VictimImage is the victim container's image (vigil.dev/victim:TAG
	// of `make images`: Debian's busybox-static), RelayImage the attacker
	// sidecar's (the vigil image). Both are pulled IfNotPresent.
	VictimImage, RelayImage string
	// StartTimeout bounds the wait for a victim pod to run (default 2m).
	StartTimeout time.Duration
	// Logf receives progress lines; nil discards.
	Logf func(format string, args ...any)

	mu      sync.Mutex
	nsReady bool
}

// Name implements Backend.
func (c *Cluster) Name() string { return "cluster" }

// Check implements Backend: the API answers and Namespace, if it exists,
// is the simulation's.
func (c *Cluster) Check() error {
	if c.Kube == nil || c.Config == nil {
		return errors.New("cluster simulation: no Kubernetes client")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ns, err := c.Kube.CoreV1().Namespaces().Get(ctx, Namespace, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		return nil
	case err != nil:
		return fmt.Errorf("cluster simulation: read namespace %s: %w", Namespace, err)
	case !Owned(ns.Labels):
		return fmt.Errorf("cluster simulation: namespace %s exists and is not the simulation's (no labels %s): refusing to use or delete it", Namespace, labelString(Labels))
	}
	return nil
}

// Owned reports whether labels mark an object as the simulation's.
func Owned(labels map[string]string) bool {
	for k, v := range Labels {
		if labels[k] != v {
			return false
		}
	}
	return true
}

func labelString(m map[string]string) string {
	var out []string
	for k, v := range m {
		out = append(out, k+"="+v)
	}
	sort.Strings(out)
	return strings.Join(out, ",")
}

// Skip implements Backend: every scenario runs in a cluster.
func (c *Cluster) Skip(*Scenario) string { return "" }

// Start implements Backend.
func (c *Cluster) Start(ctx context.Context, spec VictimSpec) (Victim, error) {
	return c.StartScenario(ctx, &Scenario{ID: spec.Name, Victim: spec})
}

// StartScenario implements ScenarioStarter.
func (c *Cluster) StartScenario(ctx context.Context, sc *Scenario) (Victim, error) {
	if err := c.ensureNamespace(ctx); err != nil {
		return nil, err
	}
	if sc.ControlPlane {
		return &apiVictim{kube: c.Kube, namespace: Namespace, image: c.VictimImage}, nil
	}
	return c.startPod(ctx, sc)
}

func (c *Cluster) logf(format string, args ...any) {
	if c.Logf != nil {
		c.Logf(format, args...)
	}
}

// ensureNamespace creates Namespace with Labels unless it is there (a
// labelled one left by an interrupted run is reused; one being deleted is
// waited for).
func (c *Cluster) ensureNamespace(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.nsReady {
		return nil
	}
	nsc := c.Kube.CoreV1().Namespaces()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		ns, err := nsc.Get(ctx, Namespace, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			labels := map[string]string{
				// The control-plane scenario's privileged pod must be
				// admitted to raise its alert; it is never scheduled.
				"pod-security.kubernetes.io/enforce": "privileged",
			}
			for k, v := range Labels {
				labels[k] = v
			}
			_, err = nsc.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: Namespace, Labels: labels}}, metav1.CreateOptions{})
			if err == nil {
				c.nsReady = true
				c.logf("namespace %s created", Namespace)
				return nil
			}
			if !apierrors.IsAlreadyExists(err) {
				return fmt.Errorf("create namespace %s: %w", Namespace, err)
			}
		case err != nil:
			return fmt.Errorf("read namespace %s: %w", Namespace, err)
		case !Owned(ns.Labels):
			return fmt.Errorf("namespace %s exists and is not the simulation's (no labels %s): refusing to use it", Namespace, labelString(Labels))
		case ns.DeletionTimestamp == nil:
			c.nsReady = true
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("namespace %s is still being deleted (by an earlier run)", Namespace)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

// Close implements io.Closer: it deletes Namespace, and with it whatever
// a victim's Remove could not, when it carries Labels; a namespace of that
// name without them is left alone.
func (c *Cluster) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	nsc := c.Kube.CoreV1().Namespaces()
	ns, err := nsc.Get(ctx, Namespace, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		return nil
	case err != nil:
		return fmt.Errorf("read namespace %s: %w", Namespace, err)
	case !Owned(ns.Labels):
		return nil
	case ns.DeletionTimestamp != nil:
		return nil
	}
	uid := ns.UID
	err = nsc.Delete(ctx, Namespace, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("delete namespace %s: %w", Namespace, err)
	}
	c.logf("namespace %s deleted", Namespace)
	return nil
}

// podSpec builds a victim pod (and the ConfigMap of its planted files,
// nil when it has none) for sc.
func (c *Cluster) podSpec(sc *Scenario, name string) (*corev1.Pod, *corev1.ConfigMap) {
	spec := sc.Victim
	labels := map[string]string{scenarioLabel: sc.ID}
	for k, v := range Labels {
		labels[k] = v
	}
	// The image has busybox and five links: the init links the applets
	// the scenarios call by path, and the scenario's own links, in the
	// container's writable layer. A symlink's target stays the image's
	// /bin/busybox, so running them is not drift.
	var script strings.Builder
	script.WriteString("set -e\n/bin/busybox mkdir -p /usr/bin /usr/sbin /sbin /usr/local/bin /root /home/app\n")
	fmt.Fprintf(&script, "for a in %s; do [ -e /bin/$a ] || /bin/busybox ln -s busybox /bin/$a; done\n", strings.Join(applets, " "))
	links := make([]string, 0, len(spec.Links))
	for p := range spec.Links {
		links = append(links, p)
	}
	sort.Strings(links)
	for _, p := range links {
		fmt.Fprintf(&script, "/bin/busybox mkdir -p %s && /bin/busybox ln -sf %s %s\n", shellQuote(path.Dir(p)), shellQuote(spec.Links[p]), shellQuote(p))
	}
	args := spec.Args
	if len(args) == 0 {
		args = []string{"/bin/sleep", "86400"}
	}
	script.WriteString("exec")
	for _, a := range args {
		script.WriteString(" " + shellQuote(a))
	}
	script.WriteString("\n")

	env := []corev1.EnvVar{{Name: "PATH", Value: "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"}, {Name: "HOME", Value: "/root"}}
	for _, kv := range spec.Env {
		k, v, _ := strings.Cut(kv, "=")
		env = append(env, corev1.EnvVar{Name: k, Value: v})
	}

	// Planted files come from a ConfigMap, mounted one by one: they are
	// there when the container starts, no process of the victim writes
	// them (which the sensor would see).
	var cm *corev1.ConfigMap
	var mounts []corev1.VolumeMount
	var volumes []corev1.Volume
	files := make([]string, 0, len(spec.Files))
	for p := range spec.Files {
		if sc.PodServiceAccount && strings.HasPrefix(p, saDir) {
			continue // the pod's own token is mounted there
		}
		files = append(files, p)
	}
	sort.Strings(files)
	if len(files) > 0 {
		cm = &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: Namespace, Labels: labels}, BinaryData: map[string][]byte{}}
		var items []corev1.KeyToPath
		for i, p := range files {
			key := "f" + strconv.Itoa(i)
			mode := int32(spec.Files[p].Mode.Perm())
			cm.BinaryData[key] = spec.Files[p].Data
			items = append(items, corev1.KeyToPath{Key: key, Path: key, Mode: &mode})
			mounts = append(mounts, corev1.VolumeMount{Name: "planted", MountPath: p, SubPath: key, ReadOnly: true})
		}
		volumes = append(volumes, corev1.Volume{Name: "planted", VolumeSource: corev1.VolumeSource{
			ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: name}, Items: items}}})
	}

	no, yes := false, true
	root, nonroot := int64(0), int64(65532)
	grace := int64(1)
	relayArgs := []string{"simulate", "relay", "--listen", "127.0.0.1:" + strconv.Itoa(RelayPort)}
	attackerSC := &corev1.SecurityContext{
		AllowPrivilegeEscalation: &no,
		Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
		RunAsUser:                &nonroot, RunAsNonRoot: &yes, ReadOnlyRootFilesystem: &yes,
	}
	if len(sc.LocalAddresses) > 0 {
		// Adding an address to the pod's loopback needs NET_ADMIN, which
		// only root's processes keep in a container: this sidecar only.
		// The fake service on that address listens on the real service's
		// port (the metadata service's 80), which needs NET_BIND_SERVICE.
		attackerSC.Capabilities.Add = []corev1.Capability{"NET_ADMIN", "NET_BIND_SERVICE"}
		attackerSC.RunAsUser, attackerSC.RunAsNonRoot = &root, &no
		for _, a := range sc.LocalAddresses {
			relayArgs = append(relayArgs, "--allow-address", a)
		}
	}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: Namespace, Labels: labels},
		Spec: corev1.PodSpec{
			RestartPolicy:                 corev1.RestartPolicyNever,
			TerminationGracePeriodSeconds: &grace,
			AutomountServiceAccountToken:  &sc.PodServiceAccount,
			EnableServiceLinks:            &no,
			SecurityContext:               &corev1.PodSecurityContext{SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault}},
			Containers: []corev1.Container{
				{
					Name: victimContainer, Image: c.VictimImage, ImagePullPolicy: corev1.PullIfNotPresent,
					Command: []string{"/bin/sh", "-c", script.String()},
					Env:     env, VolumeMounts: mounts,
					// Unprivileged, no capability: the image's root can
					// write its own files (the attacks need /etc, /root,
					// /usr/local/bin), nothing of the node's.
					SecurityContext: &corev1.SecurityContext{
						AllowPrivilegeEscalation: &no,
						Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
					},
				},
				{
					Name: attackerContainer, Image: c.RelayImage, ImagePullPolicy: corev1.PullIfNotPresent,
					Command: []string{"/usr/bin/vigil"}, Args: relayArgs, SecurityContext: attackerSC,
				},
			},
			Volumes: volumes,
		},
	}
	return pod, cm
}

func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// startPod creates sc's victim pod, waits for it to run and for its relay
// to answer through a port-forward.
func (c *Cluster) startPod(ctx context.Context, sc *Scenario) (_ Victim, err error) {
	name := Prefix + sc.ID + "-" + randomHex(4)
	pod, cm := c.podSpec(sc, name)
	v := &podVictim{c: c, name: name, hasConfigMap: cm != nil}
	defer func() {
		if err != nil {
			_ = v.Remove()
		}
	}()
	if cm != nil {
		if _, err := c.Kube.CoreV1().ConfigMaps(Namespace).Create(ctx, cm, metav1.CreateOptions{}); err != nil {
			return nil, fmt.Errorf("create ConfigMap %s/%s: %w", Namespace, name, err)
		}
	}
	if _, err := c.Kube.CoreV1().Pods(Namespace).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		return nil, fmt.Errorf("create pod %s/%s: %w", Namespace, name, err)
	}
	c.logf("pod %s/%s created", Namespace, name)
	if v.containerID, err = c.waitRunning(ctx, name); err != nil {
		return nil, err
	}
	if err := v.forward(ctx); err != nil {
		return nil, err
	}
	return v, nil
}

// waitRunning waits until both containers of pod name run and returns the
// victim container's id as alerts carry it (the runtime's prefix, e.g.
// containerd://, removed).
func (c *Cluster) waitRunning(ctx context.Context, name string) (string, error) {
	timeout := c.StartTimeout
	if timeout <= 0 {
		timeout = 2 * time.Minute
	}
	deadline := time.Now().Add(timeout)
	state := "not found"
	for {
		pod, err := c.Kube.CoreV1().Pods(Namespace).Get(ctx, name, metav1.GetOptions{})
		if err != nil && ctx.Err() != nil {
			return "", ctx.Err()
		}
		if err == nil {
			id, s, fatal := podState(pod)
			if id != "" {
				return id, nil
			}
			state = s
			if fatal {
				return "", fmt.Errorf("pod %s/%s: %s", Namespace, name, state)
			}
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("pod %s/%s did not run within %v: %s", Namespace, name, timeout, state)
		}
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// podState reads a victim pod's status: the victim container's id once
// both containers run, else what it waits for, and whether that will not
// resolve by itself.
func podState(pod *corev1.Pod) (id, state string, fatal bool) {
	if pod.Status.Phase == corev1.PodFailed || pod.Status.Phase == corev1.PodSucceeded {
		return "", "the pod ended (" + string(pod.Status.Phase) + ")", true
	}
	if pod.Spec.NodeName == "" {
		state = "not scheduled to a node"
		for _, cond := range pod.Status.Conditions {
			if cond.Type == corev1.PodScheduled && cond.Message != "" {
				state += ": " + cond.Message
			}
		}
		return "", state, false
	}
	running := 0
	state = "containers starting on node " + pod.Spec.NodeName
	for _, cs := range pod.Status.ContainerStatuses {
		switch {
		case cs.State.Running != nil:
			running++
			if cs.Name == victimContainer {
				id = ContainerIDOf(cs.ContainerID)
			}
		case cs.State.Waiting != nil:
			w := cs.State.Waiting
			state = fmt.Sprintf("container %s: %s %s", cs.Name, w.Reason, w.Message)
			if slices.Contains([]string{"ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull", "CreateContainerConfigError", "CreateContainerError"}, w.Reason) {
				return "", state + " (image " + imageOf(pod, cs.Name) + ": build it with `make images` and load it on the nodes, or pass --victim-image/--relay-image)", true
			}
		case cs.State.Terminated != nil:
			t := cs.State.Terminated
			return "", fmt.Sprintf("container %s exited: %s (code %d) %s", cs.Name, t.Reason, t.ExitCode, t.Message), true
		}
	}
	if running < len(pod.Spec.Containers) || id == "" {
		return "", state, false
	}
	return id, "", false
}

func imageOf(pod *corev1.Pod, container string) string {
	for _, ct := range pod.Spec.Containers {
		if ct.Name == container {
			return ct.Image
		}
	}
	return ""
}

// ContainerIDOf turns a pod status's container id (containerd://<id>,
// cri-o://<id>) into the bare id the sensor's alerts carry.
func ContainerIDOf(statusID string) string {
	if _, id, ok := strings.Cut(statusID, "://"); ok {
		return id
	}
	return statusID
}

// podVictim is a victim pod of the Cluster backend.
type podVictim struct {
	c            *Cluster
	name         string
	containerID  string
	hasConfigMap bool

	mu     sync.Mutex
	stop   chan struct{} // stops the port-forward
	relay  *RelayClient
	closed bool
}

func (v *podVictim) ContainerID() string { return v.containerID }

// Exec implements Victim through the pods/exec subresource: WebSocket
// first, SPDY when the API server cannot upgrade to it.
func (v *podVictim) Exec(ctx context.Context, args ...string) (string, error) {
	req := v.c.Kube.CoreV1().RESTClient().Post().Resource("pods").Namespace(Namespace).Name(v.name).SubResource("exec").
		VersionedParams(&corev1.PodExecOptions{Container: victimContainer, Command: args, Stdout: true, Stderr: true}, scheme.ParameterCodec)
	exec, err := newExecutor(v.c.Config, req.URL())
	if err != nil {
		return "", err
	}
	var stdout, stderr bytes.Buffer
	err = exec.StreamWithContext(ctx, remotecommand.StreamOptions{Stdout: &stdout, Stderr: &stderr})
	out := stdout.String() + stderr.String()
	if err != nil {
		return out, fmt.Errorf("exec %q in pod %s: %w", args, v.name, err)
	}
	return out, nil
}

func newExecutor(cfg *rest.Config, u *url.URL) (remotecommand.Executor, error) {
	ws, err := remotecommand.NewWebSocketExecutor(cfg, http.MethodGet, u.String())
	if err != nil {
		return nil, fmt.Errorf("exec: %w", err)
	}
	sp, err := remotecommand.NewSPDYExecutor(cfg, http.MethodPost, u)
	if err != nil {
		return nil, fmt.Errorf("exec: %w", err)
	}
	return remotecommand.NewFallbackExecutor(ws, sp, func(err error) bool {
		return httpstream.IsUpgradeFailure(err) || httpstream.IsHTTPSProxyError(err)
	})
}

// forward starts a port-forward to the pod's relay on a loopback port of
// this machine and waits until the relay answers.
func (v *podVictim) forward(ctx context.Context) error {
	u := v.c.Kube.CoreV1().RESTClient().Post().Resource("pods").Namespace(Namespace).Name(v.name).SubResource("portforward").URL()
	tunnel, err := portforward.NewSPDYOverWebsocketDialer(u, v.c.Config)
	if err != nil {
		return fmt.Errorf("port-forward: %w", err)
	}
	rt, upgrader, err := spdy.RoundTripperFor(v.c.Config)
	if err != nil {
		return fmt.Errorf("port-forward: %w", err)
	}
	dialer := portforward.NewFallbackDialer(tunnel, spdy.NewDialer(upgrader, &http.Client{Transport: rt}, http.MethodPost, u),
		func(err error) bool { return httpstream.IsUpgradeFailure(err) || httpstream.IsHTTPSProxyError(err) })
	stop, ready := make(chan struct{}), make(chan struct{})
	pf, err := portforward.NewOnAddresses(dialer, []string{"127.0.0.1"}, []string{"0:" + strconv.Itoa(RelayPort)}, stop, ready, io.Discard, io.Discard)
	if err != nil {
		return fmt.Errorf("port-forward to pod %s: %w", v.name, err)
	}
	v.mu.Lock()
	v.stop = stop
	v.mu.Unlock()
	failed := make(chan error, 1)
	go func() { failed <- pf.ForwardPorts() }()
	select {
	case <-ready:
	case err := <-failed:
		return fmt.Errorf("port-forward to pod %s: %w", v.name, err)
	case <-ctx.Done():
		return ctx.Err()
	}
	ports, err := pf.GetPorts()
	if err != nil || len(ports) != 1 {
		return fmt.Errorf("port-forward to pod %s: no local port: %v", v.name, err)
	}
	local := net.JoinHostPort("127.0.0.1", strconv.Itoa(int(ports[0].Local)))
	rc := &RelayClient{Dial: func(ctx context.Context) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "tcp", local)
	}}
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := rc.request(ctx, "PING")
		if err == nil {
			c.Close()
			break
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the attacker relay in pod %s does not answer: %w", v.name, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	v.mu.Lock()
	v.relay = rc
	v.mu.Unlock()
	return nil
}

func (v *podVictim) relayClient() (*RelayClient, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.relay == nil || v.closed {
		return nil, fmt.Errorf("pod %s: no attacker relay", v.name)
	}
	return v.relay, nil
}

func (v *podVictim) Dial(ctx context.Context, addr string) (net.Conn, error) {
	rc, err := v.relayClient()
	if err != nil {
		return nil, err
	}
	return rc.DialVia(ctx, addr)
}

func (v *podVictim) Listen(addr string) (net.Listener, error) {
	rc, err := v.relayClient()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return rc.ListenVia(ctx, addr)
}

func (v *podVictim) AddLocalAddress(ctx context.Context, ip string) error {
	rc, err := v.relayClient()
	if err != nil {
		return err
	}
	return rc.AddAddress(ctx, ip)
}

// Remove stops the port-forward and deletes the pod and its ConfigMap.
func (v *podVictim) Remove() error {
	v.mu.Lock()
	if v.stop != nil && !v.closed {
		close(v.stop)
	}
	v.closed = true
	v.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var errs []error
	grace := int64(0)
	if err := v.c.Kube.CoreV1().Pods(Namespace).Delete(ctx, v.name, metav1.DeleteOptions{GracePeriodSeconds: &grace}); err != nil && !apierrors.IsNotFound(err) {
		errs = append(errs, fmt.Errorf("delete pod %s/%s: %w", Namespace, v.name, err))
	}
	if v.hasConfigMap {
		if err := v.c.Kube.CoreV1().ConfigMaps(Namespace).Delete(ctx, v.name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("delete ConfigMap %s/%s: %w", Namespace, v.name, err))
		}
	}
	return errors.Join(errs...)
}

// apiVictim is a control-plane scenario's victim: the cluster's API, as
// the user, in Namespace. It has no container: Exec and the network are
// not there.
type apiVictim struct {
	kube      kubernetes.Interface
	namespace string
	image     string
}

var errNoWorkload = errors.New("the control-plane victim is the API: it has no container")

func (*apiVictim) ContainerID() string { return "" }
func (*apiVictim) Exec(context.Context, ...string) (string, error) {
	return "", errNoWorkload
}
func (*apiVictim) Dial(context.Context, string) (net.Conn, error) { return nil, errNoWorkload }
func (*apiVictim) Listen(string) (net.Listener, error)            { return nil, errNoWorkload }
func (*apiVictim) AddLocalAddress(context.Context, string) error  { return errNoWorkload }
func (*apiVictim) Remove() error                                  { return nil }

// apiProxy forwards plain-HTTP requests to the cluster's API server over
// TLS (the kubeconfig's CA and server name) exactly as they came, their
// Authorization and User-Agent included: it adds none of the user's
// credentials, so a request is the API's as much as its sender's token
// allows.
func (c *Cluster) apiProxy() (http.Handler, error) {
	anon := rest.AnonymousClientConfig(c.Config)
	anon.UserAgent = ""
	rt, err := rest.TransportFor(anon)
	if err != nil {
		return nil, fmt.Errorf("API forwarder: %w", err)
	}
	target, _, err := rest.DefaultServerUrlFor(anon)
	if err != nil {
		return nil, fmt.Errorf("API forwarder: %w", err)
	}
	return &httputil.ReverseProxy{
		Rewrite:   func(r *httputil.ProxyRequest) { r.SetURL(target) },
		Transport: rt,
	}, nil
}
