package node

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/remotecommand"

	"github.com/vigil-sec/vigil/internal/kubetest"
	"github.com/vigil-sec/vigil/internal/testproc"
)

func TestBuildImage(t *testing.T) {
	if _, err := layerTar(BusyboxImageSpec(BusyboxImage, "/bin/sleep", "1")); err != nil {
		t.Fatal(err)
	}
	file := t.TempDir() + "/img.tar"
	if err := BuildImage(BusyboxImageSpec(BusyboxImage, "/bin/sleep", "1"), file); err != nil {
		t.Fatal(err)
	}
}

// TestNodeRunsPod brings up a single-node cluster, runs a busybox pod from
// an image imported without Docker, execs into it, checks that pod traffic
// bound off the machine is dropped, deletes the pod and tears the node down.
func TestNodeRunsPod(t *testing.T) {
	n := Start(t, Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	pods := n.Client.CoreV1().Pods("default")

	s := time.Now()
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "sleeper", Labels: map[string]string{"app": "sleeper"}},
		Spec: corev1.PodSpec{
			Containers: []corev1.Container{{
				Name:            "sleep",
				Image:           BusyboxImage,
				ImagePullPolicy: corev1.PullNever,
				Command:         []string{"/bin/sh", "-c", "echo sleeper started; exec sleep 3600"},
			}},
			TerminationGracePeriodSeconds: new(int64(1)),
		},
	}
	if _, err := pods.Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatalf("step create-pod: %v", err)
	}
	var got *corev1.Pod
	err := testproc.Poll(90*time.Second, 250*time.Millisecond, nil, func() error {
		var err error
		got, err = pods.Get(ctx, pod.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if got.Status.Phase != corev1.PodRunning {
			return fmt.Errorf("phase %s: %s", got.Status.Phase, podReasons(got))
		}
		return nil
	})
	if err != nil {
		t.Fatalf("step pod-running: %v", err)
	}
	t.Logf("pod Running after %.1fs on %s, IP %s", time.Since(s).Seconds(), got.Spec.NodeName, got.Status.PodIP)
	if !strings.HasPrefix(got.Status.PodIP, strings.TrimSuffix(PodCIDR, "0/24")) {
		t.Errorf("pod IP %s is not in the pod CIDR %s", got.Status.PodIP, PodCIDR)
	}

	s = time.Now()
	out, err := execIn(ctx, n, got, "sh", "-c", "echo hello from $(hostname); id -u")
	if err != nil {
		t.Fatalf("step exec: %v", err)
	}
	if !strings.Contains(out, "hello from sleeper") {
		t.Errorf("exec output %q, want it to contain %q", out, "hello from sleeper")
	}
	t.Logf("exec took %.1fs: %q", time.Since(s).Seconds(), out)

	s = time.Now()
	logs, err := pods.GetLogs(pod.Name, &corev1.PodLogOptions{}).DoRaw(ctx)
	if err != nil {
		t.Fatalf("step logs: %v", err)
	}
	if !strings.Contains(string(logs), "sleeper started") {
		t.Errorf("step logs: got %q, want it to contain %q", logs, "sleeper started")
	}
	t.Logf("logs took %.1fs: %q", time.Since(s).Seconds(), logs)

	// A ClusterIP Service in front of the pod, reached from the pod itself
	// (hairpin): kube-proxy's DNAT, the bridge and the drop rule together.
	s = time.Now()
	if _, err := execIn(ctx, n, got, "sh", "-c", "mkdir -p /tmp/www && echo served-by-sleeper > /tmp/www/index.html && httpd -p 8080 -h /tmp/www"); err != nil {
		t.Fatalf("step service: start httpd: %v", err)
	}
	svc, err := n.Client.CoreV1().Services("default").Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "sleeper"},
		Spec: corev1.ServiceSpec{
			Selector: map[string]string{"app": "sleeper"},
			Ports:    []corev1.ServicePort{{Port: 80, TargetPort: intstr.FromInt32(8080)}},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("step service: %v", err)
	}
	var body string
	err = testproc.Poll(30*time.Second, 500*time.Millisecond, nil, func() error {
		var err error
		// nc, not wget: Debian's static busybox wget segfaults (glibc NSS in a
		// static binary, even for an address literal).
		body, err = execIn(ctx, n, got, "sh", "-c", `printf 'GET / HTTP/1.0\r\n\r\n' | nc -w 3 `+svc.Spec.ClusterIP+" 80")
		if err != nil {
			return err
		}
		if !strings.Contains(body, "served-by-sleeper") {
			return fmt.Errorf("got %q", body)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("step service: GET http://%s/ from the pod: %v", svc.Spec.ClusterIP, err)
	}
	t.Logf("service %s answered through kube-proxy after %.1fs", svc.Spec.ClusterIP, time.Since(s).Seconds())

	// The kubernetes Service: kube-proxy DNATs 10.0.0.1:443 to the API
	// server's address on the node, as in-cluster clients need.
	s = time.Now()
	out, err = execIn(ctx, n, got, "sh", "-c", "nc -w 3 10.0.0.1 443 </dev/null; echo exit=$?")
	if err != nil || !strings.Contains(out, "exit=0") {
		t.Errorf("step kubernetes-service: connect from the pod to 10.0.0.1:443: %v %q", err, out)
	}
	t.Logf("the kubernetes Service (10.0.0.1:443 -> %s) answered the pod in %.1fs", APIServerAddress, time.Since(s).Seconds())

	// Pod traffic bound off the machine: TEST-NET-3 (never routed), and a
	// service IP nothing serves (blackholed). Both must be stopped on the
	// machine: the drop rule counts them, nothing pod-sourced leaves.
	dropsBefore, err := n.DroppedPackets()
	if err != nil {
		t.Fatalf("step network-safety: %v", err)
	}
	for _, target := range []string{"203.0.113.7:80", "10.0.0.77:80"} {
		out, err := execIn(ctx, n, got, "sh", "-c", "nc -w 2 "+strings.Replace(target, ":", " ", 1)+" </dev/null; echo exit=$?")
		if err != nil {
			t.Fatalf("step network-safety: exec nc %s: %v", target, err)
		}
		if strings.Contains(out, "exit=0") {
			t.Errorf("step network-safety: connect from the pod to %s succeeded: %q", target, out)
		}
	}
	drops, err := n.DroppedPackets()
	if err != nil {
		t.Fatalf("step network-safety: %v", err)
	}
	if drops <= dropsBefore {
		t.Errorf("step network-safety: the drop rule stopped no packets (%d before, %d after); did the pod's traffic go elsewhere?", dropsBefore, drops)
	}
	podEgress, ifaceTx, err := n.EgressPackets()
	if err != nil {
		t.Fatalf("step network-safety: %v", err)
	}
	t.Logf("network: %d pod packets dropped, %d pod-sourced packets left on %s (which sent %d packets in all since start, from anything on the machine)",
		drops, podEgress, n.EgressIface, ifaceTx)
	if podEgress != 0 {
		t.Errorf("step network-safety: %d pod-sourced packets left the machine on %s", podEgress, n.EgressIface)
	}

	s = time.Now()
	if err := pods.Delete(ctx, pod.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatalf("step delete-pod: %v", err)
	}
	err = testproc.Poll(60*time.Second, 250*time.Millisecond, nil, func() error {
		_, err := pods.Get(ctx, pod.Name, metav1.GetOptions{})
		if err == nil {
			return fmt.Errorf("pod %s still exists", pod.Name)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("step delete-pod: %v", err)
	}
	t.Logf("pod deleted in %.1fs", time.Since(s).Seconds())
}

func podReasons(p *corev1.Pod) string {
	var rs []string
	for _, c := range p.Status.Conditions {
		if c.Status != corev1.ConditionTrue && c.Message != "" {
			rs = append(rs, fmt.Sprintf("%s: %s", c.Type, c.Message))
		}
	}
	for _, cs := range p.Status.ContainerStatuses {
		if w := cs.State.Waiting; w != nil {
			rs = append(rs, fmt.Sprintf("%s waiting: %s %s", cs.Name, w.Reason, w.Message))
		}
	}
	return strings.Join(rs, "; ")
}

// execIn runs a command in the pod's first container through the API
// server and the kubelet, and returns its stdout and stderr.
func execIn(ctx context.Context, n *Node, pod *corev1.Pod, cmd ...string) (string, error) {
	req := n.Client.CoreV1().RESTClient().Post().Resource("pods").Namespace(pod.Namespace).Name(pod.Name).
		SubResource("exec").VersionedParams(&corev1.PodExecOptions{
		Container: pod.Spec.Containers[0].Name,
		Command:   cmd,
		Stdout:    true,
		Stderr:    true,
	}, scheme.ParameterCodec)
	cfg := n.Cluster.RESTConfig(kubetest.Admin)
	ws, err := remotecommand.NewWebSocketExecutor(cfg, "GET", req.URL().String())
	if err != nil {
		return "", fmt.Errorf("exec %v: %w", cmd, err)
	}
	var stdout, stderr bytes.Buffer
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := ws.StreamWithContext(ctx, remotecommand.StreamOptions{Stdout: &stdout, Stderr: &stderr}); err != nil {
		return stdout.String() + stderr.String(), fmt.Errorf("exec %v: %w (output %q)", cmd, err, stdout.String()+stderr.String())
	}
	return stdout.String() + stderr.String(), nil
}
