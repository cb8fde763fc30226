package simulate

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/rest"
)

// startRelay serves a relay on a loopback port, as the attacker sidecar
// does in a pod, and returns a client of it (the CLI's side, without the
// port-forward) and the addresses ADDR added.
func startRelay(t *testing.T, allow ...string) (*RelayClient, func() []string) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var mu sync.Mutex
	var added []string
	done := make(chan error, 1)
	go func() {
		done <- ServeRelay(ctx, l, RelayConfig{AllowAddresses: allow, Logf: t.Logf,
			AddAddress: func(ip netip.Addr) error {
				mu.Lock()
				defer mu.Unlock()
				added = append(added, ip.String())
				return nil
			}})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("ServeRelay: %v", err)
		}
	})
	rc := &RelayClient{Dial: func(ctx context.Context) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "tcp", l.Addr().String())
	}}
	return rc, func() []string { mu.Lock(); defer mu.Unlock(); return append([]string(nil), added...) }
}

func freeLoopbackAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// The relay's DIAL reaches a server in its network (here: loopback) and
// carries bytes both ways, half-close included; it refuses addresses
// that are not the network's own.
func TestRelayDial(t *testing.T) {
	rc, _ := startRelay(t)
	echo, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer echo.Close()
	go func() {
		for {
			c, err := echo.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				b, _ := io.ReadAll(c)
				c.Write([]byte("echo:" + string(b)))
			}()
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := rc.DialVia(ctx, echo.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte("hello"))
	if err := c.(interface{ CloseWrite() error }).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(c)
	if err != nil || string(got) != "echo:hello" {
		t.Fatalf("round trip: %q, %v", got, err)
	}

	for addr, want := range map[string]string{
		"192.0.2.1:80":      "not an address of the victim pod",
		"example.com:80":    "want IPv4",
		freeLoopbackAddr(t): "connection refused",
	} {
		if _, err := rc.DialVia(ctx, addr); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("DIAL %s: %v, want an error with %q", addr, err, want)
		}
	}
}

// LISTEN opens a listener in the relay's network; each connection made to
// it (by the "victim") comes back to the client through its own stream,
// the way the scenarios' fake servers and the reverse shell's listener
// work. Closing the client's listener closes the relay's.
func TestRelayListen(t *testing.T) {
	rc, _ := startRelay(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	addr := freeLoopbackAddr(t)
	l, err := rc.ListenVia(ctx, addr)
	if err != nil {
		t.Fatal(err)
	}
	if l.Addr().String() != addr {
		t.Errorf("listener address %s, want %s", l.Addr(), addr)
	}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				line, _ := bufio.NewReader(c).ReadString('\n')
				c.Write([]byte("attacker got " + line))
			}()
		}
	}()
	for i := range 3 {
		victim, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		victim.Write([]byte("uid=0(root)\n"))
		got, err := io.ReadAll(victim)
		victim.Close()
		if err != nil || string(got) != "attacker got uid=0(root)\n" {
			t.Fatalf("connection %d: %q, %v", i, got, err)
		}
	}
	l.Close()
	if _, err := l.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Accept after Close: %v", err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			break
		}
		c.Close()
		if time.Now().After(deadline) {
			t.Fatal("the relay still listens after the client closed its listener")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, err := rc.ListenVia(ctx, "127.0.0.1:"+itoa(RelayPort)); err == nil {
		t.Error("LISTEN on the relay's own port accepted")
	}
}

func itoa(i int) string { return strconv.Itoa(i) }

// The scenarios' HTTP helpers work through the relay: a fake server
// (serve) the victim reaches, and the attacker's client (victimHTTP)
// reaching the victim's server, both in the relay's network only.
func TestRelayHTTP(t *testing.T) {
	rc, added := startRelay(t, metadataIP)
	v := &podVictim{name: "test", relay: rc}
	addr := freeLoopbackAddr(t)
	stop, err := serve(v, addr, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("fake:" + r.URL.Path))
	}))
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := waitListening(ctx, v, addr); err != nil {
		t.Fatal(err)
	}
	out, err := webGet(ctx, victimHTTP(v), "http://"+addr+"/latest/api/token")
	if err != nil || out != "fake:/latest/api/token" {
		t.Fatalf("GET through the relay: %q, %v", out, err)
	}
	// ADDR adds only the addresses the relay was started with.
	if err := v.AddLocalAddress(ctx, metadataIP); err != nil {
		t.Fatal(err)
	}
	if err := v.AddLocalAddress(ctx, "10.0.0.1"); err == nil || !strings.Contains(err.Error(), "not started to add") {
		t.Errorf("ADDR 10.0.0.1: %v", err)
	}
	if got := added(); len(got) != 1 || got[0] != metadataIP {
		t.Errorf("added %q, want only %s", got, metadataIP)
	}
	if _, err := rc.request(ctx, "NOPE x"); err == nil || !strings.Contains(err.Error(), "unknown request") {
		t.Errorf("unknown request: %v", err)
	}
}

func newFakeCluster(objs ...corev1.Namespace) (*Cluster, *fake.Clientset) {
	kc := fake.NewClientset()
	for i := range objs {
		kc.CoreV1().Namespaces().Create(context.Background(), &objs[i], metav1.CreateOptions{})
	}
	return &Cluster{Config: &rest.Config{Host: "https://127.0.0.1:1"}, Kube: kc, VictimImage: "vigil.dev/victim:t", RelayImage: "vigil.dev/vigil:t"}, kc
}

// A namespace named vigil-simulation without the simulation's labels is
// someone else's: the backend refuses to start, and Close leaves it.
func TestClusterNamespaceGuard(t *testing.T) {
	ctx := context.Background()
	foreign := corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: Namespace, Labels: map[string]string{"app.kubernetes.io/part-of": "vigil"}}}
	c, kc := newFakeCluster(foreign)
	if err := c.Check(); err == nil || !strings.Contains(err.Error(), "not the simulation's") {
		t.Errorf("Check over a foreign namespace: %v", err)
	}
	if _, err := c.StartScenario(ctx, controlPlane()); err == nil {
		t.Error("a victim started in a foreign namespace")
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := kc.CoreV1().Namespaces().Get(ctx, Namespace, metav1.GetOptions{}); err != nil {
		t.Errorf("the foreign namespace was deleted: %v", err)
	}

	// Without one, the backend creates it labelled, and Close deletes it.
	c, kc = newFakeCluster()
	if err := c.Check(); err != nil {
		t.Fatal(err)
	}
	v, err := c.StartScenario(ctx, controlPlane())
	if err != nil {
		t.Fatal(err)
	}
	if v.ContainerID() != "" {
		t.Errorf("control-plane victim has container %q", v.ContainerID())
	}
	ns, err := kc.CoreV1().Namespaces().Get(ctx, Namespace, metav1.GetOptions{})
	if err != nil || !Owned(ns.Labels) {
		t.Fatalf("namespace %v labels %v", err, ns.Labels)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := kc.CoreV1().Namespaces().Get(ctx, Namespace, metav1.GetOptions{}); err == nil {
		t.Error("the simulation's namespace survived Close")
	}
}

// A victim pod: the victim container unprivileged with every capability
// dropped; the attacker sidecar gets NET_ADMIN (and NET_BIND_SERVICE, for
// the fake service on port 80 there) only for a scenario that adds a
// loopback address; in a cluster recon uses the pod's own token.
func TestClusterPodSpec(t *testing.T) {
	c, _ := newFakeCluster()
	for _, sc := range All() {
		if sc.ControlPlane {
			continue
		}
		pod, cm := c.podSpec(sc, "vigil-sim-"+sc.ID+"-0000")
		victim, attacker := pod.Spec.Containers[0], pod.Spec.Containers[1]
		if victim.Image != c.VictimImage || attacker.Image != c.RelayImage || victim.ImagePullPolicy != corev1.PullIfNotPresent {
			t.Errorf("%s: images %s %s", sc.ID, victim.Image, attacker.Image)
		}
		vs := victim.SecurityContext
		if vs.Privileged != nil || *vs.AllowPrivilegeEscalation || len(vs.Capabilities.Add) != 0 || vs.Capabilities.Drop[0] != "ALL" {
			t.Errorf("%s: victim security context %+v", sc.ID, vs)
		}
		added := attacker.SecurityContext.Capabilities.Add
		netAdmin := slices.Equal(added, []corev1.Capability{"NET_ADMIN", "NET_BIND_SERVICE"})
		if netAdmin != (sc.ID == "lateral-movement") || (!netAdmin && len(added) > 0) {
			t.Errorf("%s: attacker adds %v", sc.ID, attacker.SecurityContext.Capabilities.Add)
		}
		if !Owned(pod.Labels) || pod.Labels[scenarioLabel] != sc.ID {
			t.Errorf("%s: labels %v", sc.ID, pod.Labels)
		}
		if *pod.Spec.AutomountServiceAccountToken != (sc.ID == "recon") {
			t.Errorf("%s: automount %v", sc.ID, *pod.Spec.AutomountServiceAccountToken)
		}
		for _, m := range victim.VolumeMounts {
			if strings.HasPrefix(m.MountPath, saDir) {
				t.Errorf("%s: planted %s over the pod's token", sc.ID, m.MountPath)
			}
		}
		for _, e := range victim.Env {
			// recon's API address is the attacker's forwarder on the
			// pod's loopback (to the real API server).
			want := map[string]string{"KUBERNETES_SERVICE_HOST": "127.0.0.1", "KUBERNETES_SERVICE_PORT": "6443"}[e.Name]
			if strings.HasPrefix(e.Name, "KUBERNETES_SERVICE_") && (sc.ID != "recon" || e.Value != want) {
				t.Errorf("%s: env %s=%s", sc.ID, e.Name, e.Value)
			}
		}
		if (cm != nil) != (len(victim.VolumeMounts) > 0) {
			t.Errorf("%s: ConfigMap %v, mounts %v", sc.ID, cm != nil, victim.VolumeMounts)
		}
		if sc.ID == "webshell" && !strings.Contains(victim.Command[2], "'/usr/sbin/httpd'") {
			t.Errorf("webshell init: %s", victim.Command[2])
		}
	}
	if got := ContainerIDOf("containerd://0123abcd"); got != "0123abcd" {
		t.Errorf("ContainerIDOf: %q", got)
	}
}

// The relay's ADDR adds an address to lo by rtnetlink (the vigil image has
// no `ip`): here in a throwaway network namespace of a locked thread, the
// real relay (default AddAddress) adds 169.254.169.254, which then answers
// a LISTEN and a DIAL there. Runs as root in CI; fails without it.
func TestRelayAddsLoopbackAddress(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("needs root (creates a network namespace): run the tests as root, as CI does")
	}
	errc := make(chan error, 1)
	go func() {
		// The thread is never unlocked: it ends with the goroutine, its
		// namespace with it.
		runtime.LockOSThread()
		errc <- func() error {
			if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
				return err
			}
			fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
			if err != nil {
				return err
			}
			defer unix.Close(fd)
			ifr, err := unix.NewIfreq("lo")
			if err != nil {
				return err
			}
			ifr.SetUint16(unix.IFF_UP | unix.IFF_LOOPBACK | unix.IFF_RUNNING)
			if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
				return fmt.Errorf("set lo up: %w", err)
			}
			ip := netip.MustParseAddr(metadataIP)
			if isLocalAddress(ip) {
				return errors.New("169.254.169.254 is already local in a new namespace")
			}
			r := &relay{cfg: RelayConfig{AllowAddresses: []string{metadataIP}, AddAddress: addLoopbackAddress, LocalAddress: isLocalAddress}}
			if err := r.addAddress(metadataIP); err != nil {
				return err
			}
			if err := r.addAddress(metadataIP); err != nil {
				return fmt.Errorf("adding it again: %w", err)
			}
			if !isLocalAddress(ip) {
				return errors.New("169.254.169.254 is not local after ADDR")
			}
			l, err := r.listen(metadataIP + ":80")
			if err != nil {
				return err
			}
			defer l.Close()
			go func() {
				if c, err := l.Accept(); err == nil {
					c.Write([]byte("fake metadata"))
					c.Close()
				}
			}()
			c, err := r.dial(context.Background(), metadataIP+":80")
			if err != nil {
				return err
			}
			defer c.Close()
			b, err := io.ReadAll(c)
			if string(b) != "fake metadata" {
				return fmt.Errorf("read %q, %v", b, err)
			}
			return nil
		}()
	}()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}
