package node

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/vigil-sec/vigil/internal/testproc"
)

// teardown undoes Start, whatever point it reached: pods, processes,
// containers and shims, mounts, network namespaces and interfaces, iptables
// chains, routes, CNI state, cgroups and sysctls. When the test has failed it
// first keeps every log and a snapshot of the machine's network under
// artifacts/e2e/. Problems are reported as test errors; teardown never
// stops half way.
func (n *Node) teardown() { n.teardownOnce.Do(n.tearDown) }

func (n *Node) tearDown() {
	t := n.t
	if n.lock == nil {
		return // another run holds the machine: nothing here is ours
	}
	start := time.Now()
	failed := t.Failed()
	var problems []string
	problem := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	phase := func(name string, f func()) {
		s := time.Now()
		f()
		t.Logf("e2e node: teardown %-16s %5.1fs", name, time.Since(s).Seconds())
	}
	if failed && n.dir != "" {
		n.snapshotDiagnostics()
	}

	if n.procs["kubelet"] != nil && n.Client != nil {
		phase("delete-pods", func() {
			if err := n.deletePods(60 * time.Second); err != nil {
				problem("delete pods: %v", err)
			}
		})
	}
	phase("stop-node", func() {
		for _, name := range slices.Backward(n.order) {
			if name == "containerd" {
				continue
			}
			n.procs[name].Stop(10 * time.Second)
		}
	})
	phase("containers", func() {
		if p := n.procs["containerd"]; p != nil {
			n.removeContainers()
			p.Stop(10 * time.Second)
		}
		if n.sock != "" {
			for _, pid := range pidsWithArg(n.sock) {
				problem("containerd shim %d still running after containerd stopped: killed it", pid)
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
		killCgroupTree()
	})
	if kp := n.bins["kube-proxy"]; kp != "" && n.procs["kube-proxy"] != nil {
		phase("kube-proxy-clean", func() {
			if out, err := run(kp, "--cleanup", "--v=0"); err != nil {
				problem("kube-proxy --cleanup: %v", err)
				_ = os.WriteFile(filepath.Join(n.logDir, "kube-proxy-cleanup.log"), []byte(out), 0o644)
			}
		})
	}
	if n.before != nil {
		phase("host-state", func() {
			for _, e := range n.unmountUnder() {
				problem("%v", e)
			}
			for name := range dirEntries("/var/run/netns") {
				if n.before.netns[name] {
					continue
				}
				p := filepath.Join("/var/run/netns", name)
				_ = syscall.Unmount(p, syscall.MNT_DETACH)
				if err := os.Remove(p); err != nil {
					problem("remove network namespace %s: %v", p, err)
				}
			}
			for name := range dirEntries("/var/log/containers") {
				if !n.before.logs[name] {
					_ = os.Remove(filepath.Join("/var/log/containers", name))
				}
			}
			// runc state of containers containerd did not delete.
			for name := range dirEntries(runcStateDir) {
				if !n.before.runc[name] {
					_ = os.RemoveAll(filepath.Join(runcStateDir, name))
				}
			}
			if !n.before.links[Bridge] {
				_, _ = run("ip", "link", "del", Bridge)
			}
			if ifs, err := netInterfaces(); err == nil {
				for _, name := range ifs {
					if !n.before.links[name] && strings.HasPrefix(name, "veth") {
						_, _ = run("ip", "link", "del", name)
					}
				}
			}
			unguardNetwork(ServiceCIDR)
			for _, e := range removeNewChains(n.before.chains) {
				problem("remove iptables chain: %v", e)
			}
			_ = os.RemoveAll(filepath.Join("/var/lib/cni/networks", cniName))
			// Cached CNI results of this run's sandboxes: the bridge network's
			// and containerd's loopback ("cni-loopback-<sandbox>-lo"), which
			// CNI DEL does not always remove.
			for _, pat := range []string{cniName + "-*", "cni-loopback-*"} {
				rs, _ := filepath.Glob(filepath.Join("/var/lib/cni/results", pat))
				for _, r := range rs {
					if fi, err := os.Stat(r); err == nil && !fi.ModTime().Before(n.started) {
						_ = os.Remove(r)
					}
				}
			}
			problems = append(problems, removeNewNftTables(n.before.nft)...)
			for _, d := range sharedDirs {
				if !n.before.dirs[d] {
					_ = os.Remove(d) // only if empty: anything left is reported below
				}
			}
			for _, e := range removeCgroups() {
				problem("%v", e)
			}
			for _, e := range restoreSysctls(n.before.sysctl) {
				problem("%v", e)
			}
			_ = os.Remove(sysctlFile)
			problems = append(problems, n.leftovers()...)
		})
	}
	if failed || len(problems) > 0 || os.Getenv("VIGIL_E2E_KEEP_LOGS") != "" {
		n.keepArtifacts()
	}
	if n.dir != "" {
		if err := os.RemoveAll(n.dir); err != nil {
			problem("remove %s: %v", n.dir, err)
		}
	}
	if n.lock != nil {
		n.lock.Close()
	}
	t.Logf("e2e node: teardown total %.1fs", time.Since(start).Seconds())
	if len(problems) > 0 {
		t.Errorf("e2e node: step teardown left problems:\n  %s", strings.Join(problems, "\n  "))
	}
}

// deletePods deletes every workload controller (so none makes a pod
// again: a DaemonSet or Deployment the test left behind, e.g. when it
// failed before uninstalling Vigil), then every pod, and waits until they
// are gone and the CNI plugin has released every address (the kubelet has
// torn their sandboxes down).
func (n *Node) deletePods(timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	grace := int64(1)
	orphan := metav1.DeletePropagationOrphan
	del := metav1.DeleteOptions{PropagationPolicy: &orphan}
	apps, batch := n.Client.AppsV1(), n.Client.BatchV1()
	nss, err := n.Client.CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	all := metav1.ListOptions{}
	for _, ns := range nss.Items {
		for _, f := range []func(string) error{
			func(ns string) error { return apps.DaemonSets(ns).DeleteCollection(ctx, del, all) },
			func(ns string) error { return apps.Deployments(ns).DeleteCollection(ctx, del, all) },
			func(ns string) error { return apps.StatefulSets(ns).DeleteCollection(ctx, del, all) },
			func(ns string) error { return apps.ReplicaSets(ns).DeleteCollection(ctx, del, all) },
			func(ns string) error { return batch.CronJobs(ns).DeleteCollection(ctx, del, all) },
			func(ns string) error { return batch.Jobs(ns).DeleteCollection(ctx, del, all) },
		} {
			if err := f(ns.Name); err != nil {
				return fmt.Errorf("delete workload controllers in %s: %w", ns.Name, err)
			}
		}
	}
	pods, err := n.Client.CoreV1().Pods("").List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	for _, p := range pods.Items {
		_ = n.Client.CoreV1().Pods(p.Namespace).Delete(ctx, p.Name, metav1.DeleteOptions{GracePeriodSeconds: &grace})
	}
	return testproc.Poll(timeout, 250*time.Millisecond, nil, func() error {
		pods, err := n.Client.CoreV1().Pods("").List(ctx, metav1.ListOptions{})
		if err != nil {
			return err
		}
		if len(pods.Items) > 0 {
			return fmt.Errorf("%d pods left", len(pods.Items))
		}
		ips, _ := filepath.Glob(filepath.Join("/var/lib/cni/networks", cniName, "10.*"))
		if len(ips) > 0 {
			return fmt.Errorf("CNI addresses still allocated: %v", ips)
		}
		return nil
	})
}

// removeContainers kills and deletes every task and container in the
// node's containerd (what the kubelet did not tear down).
func (n *Node) removeContainers() {
	out, err := n.ctr("containers", "ls", "-q")
	if err != nil {
		return
	}
	for _, id := range strings.Fields(out) {
		_, _ = n.ctr("tasks", "kill", "-s", "SIGKILL", id)
	}
	for _, id := range strings.Fields(out) {
		_, _ = n.ctr("tasks", "delete", "-f", id)
		_, _ = n.ctr("containers", "rm", id)
	}
}

// pidsWithArg lists processes with arg among their command-line arguments.
func pidsWithArg(arg string) []int {
	var pids []int
	ds, _ := os.ReadDir("/proc")
	for _, d := range ds {
		pid, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", d.Name(), "cmdline"))
		if err != nil {
			continue
		}
		if slices.Contains(strings.Split(string(b), "\x00"), arg) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// killCgroupTree kills every process left below CgroupRoot.
func killCgroupTree() {
	for _, root := range cgroupRootDirs() {
		_ = filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
			if err != nil || d.IsDir() || d.Name() != "cgroup.procs" {
				return nil
			}
			b, _ := os.ReadFile(p)
			for _, f := range strings.Fields(string(b)) {
				if pid, err := strconv.Atoi(f); err == nil && pid > 1 {
					_ = syscall.Kill(pid, syscall.SIGKILL)
				}
			}
			return nil
		})
	}
}

// removeCgroups removes CgroupRoot's trees, deepest first.
func removeCgroups() []error {
	var errs []error
	for _, root := range cgroupRootDirs() {
		var dirs []string
		_ = filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
		var err error
		for _, d := range slices.Backward(dirs) {
			for i := 0; i < 20; i++ { // a cgroup empties a moment after its last process dies
				if err = syscall.Rmdir(d); err == nil || err == syscall.ENOENT {
					err = nil
					break
				}
				time.Sleep(50 * time.Millisecond)
			}
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("remove cgroup %s: %w", root, err))
		}
	}
	return errs
}

// mountsUnder lists mount points under dir, deepest first.
func mountsUnder(dir string) []string {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	defer f.Close()
	var mps []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		mp := unescapeMount(fields[4])
		if mp == dir || strings.HasPrefix(mp, dir+"/") {
			mps = append(mps, mp)
		}
	}
	slices.SortFunc(mps, func(a, b string) int { return len(b) - len(a) })
	return slices.Compact(mps)
}

func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// unmountUnder unmounts everything the kubelet and containerd mounted under
// the run's directory (volumes, sandbox /dev/shm, overlay rootfs).
func (n *Node) unmountUnder() []error {
	if n.dir == "" {
		return nil
	}
	for range 3 { // stacked mounts show up again after the top one goes
		for _, mp := range mountsUnder(n.dir) {
			if err := syscall.Unmount(mp, 0); err != nil {
				_ = syscall.Unmount(mp, syscall.MNT_DETACH)
			}
		}
	}
	var errs []error
	for _, mp := range mountsUnder(n.dir) {
		errs = append(errs, fmt.Errorf("still mounted after unmount: %s", mp))
	}
	return errs
}

func netInterfaces() ([]string, error) {
	es, err := os.ReadDir("/sys/class/net")
	if err != nil {
		return nil, err
	}
	var names []string
	for _, e := range es {
		names = append(names, e.Name())
	}
	return names, nil
}

// leftovers lists what the run added to the machine and is still there.
func (n *Node) leftovers() []string {
	var left []string
	if n.dir != "" {
		for _, mp := range mountsUnder(n.dir) {
			left = append(left, "mount "+mp)
		}
	}
	if ifs, err := netInterfaces(); err == nil {
		for _, name := range ifs {
			if !n.before.links[name] {
				left = append(left, "network interface "+name)
			}
		}
	}
	if now, err := iptablesChains(); err == nil {
		for k := range now {
			if !n.before.chains[k] {
				left = append(left, "iptables chain "+k)
			}
		}
	}
	for name := range dirEntries(runcStateDir) {
		if !n.before.runc[name] {
			left = append(left, "runc state "+filepath.Join(runcStateDir, name))
		}
	}
	if out, err := run("ip", "route", "show", ServiceCIDR); err == nil && strings.TrimSpace(out) != "" {
		left = append(left, "route "+strings.TrimSpace(out))
	}
	for name := range dirEntries("/var/run/netns") {
		if !n.before.netns[name] {
			left = append(left, "network namespace "+name)
		}
	}
	for _, d := range cgroupRootDirs() {
		left = append(left, "cgroup "+d)
	}
	if n.sock != "" {
		for _, pid := range pidsWithArg(n.sock) {
			left = append(left, fmt.Sprintf("process %d using %s", pid, n.sock))
		}
	}
	if rs, err := os.ReadDir("/var/lib/cni/results"); err == nil {
		for _, r := range rs {
			if fi, err := r.Info(); err == nil && !fi.ModTime().Before(n.started) {
				left = append(left, "CNI result /var/lib/cni/results/"+r.Name())
			}
		}
	}
	for _, d := range sharedDirs {
		if !n.before.dirs[d] && exists(d) {
			left = append(left, "directory "+d)
		}
	}
	slices.Sort(left)
	for i := range left {
		left[i] = "left behind: " + left[i]
	}
	return left
}

// snapshotDiagnostics records the machine's network and the cluster's
// objects in the log directory before teardown changes them.
func (n *Node) snapshotDiagnostics() {
	cmds := map[string][]string{
		"iptables-save.txt":  {"iptables-save", "-c"},
		"ip-addr.txt":        {"ip", "addr"},
		"ip-route.txt":       {"ip", "route", "show", "table", "all"},
		"mountinfo.txt":      {"cat", "/proc/self/mountinfo"},
		"ctr-containers.txt": {n.bins["ctr"], "--address", n.sock, "-n", "k8s.io", "containers", "ls"},
		"ctr-tasks.txt":      {n.bins["ctr"], "--address", n.sock, "-n", "k8s.io", "tasks", "ls"},
	}
	for file, c := range cmds {
		out, err := run(c[0], c[1:]...)
		if err != nil {
			out += "\n" + err.Error()
		}
		_ = os.WriteFile(filepath.Join(n.logDir, file), []byte(out), 0o644)
	}
	if n.Client != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		var b strings.Builder
		if pods, err := n.Client.CoreV1().Pods("").List(ctx, metav1.ListOptions{}); err == nil {
			for _, p := range pods.Items {
				fmt.Fprintf(&b, "%s/%s node=%s phase=%s\n", p.Namespace, p.Name, p.Spec.NodeName, p.Status.Phase)
				for _, c := range p.Status.Conditions {
					fmt.Fprintf(&b, "  %s=%s %s %s\n", c.Type, c.Status, c.Reason, c.Message)
				}
				for _, cs := range p.Status.ContainerStatuses {
					fmt.Fprintf(&b, "  container %s ready=%t state=%+v\n", cs.Name, cs.Ready, cs.State)
				}
			}
		}
		if evs, err := n.Client.CoreV1().Events("").List(ctx, metav1.ListOptions{}); err == nil {
			for _, e := range evs.Items {
				fmt.Fprintf(&b, "event %s %s/%s %s: %s\n", e.Type, e.InvolvedObject.Kind, e.InvolvedObject.Name, e.Reason, e.Message)
			}
		}
		_ = os.WriteFile(filepath.Join(n.logDir, "cluster.txt"), []byte(b.String()), 0o644)
	}
}

// keepArtifacts copies the run's logs, configurations and kubetest's logs
// to n.artifacts.
func (n *Node) keepArtifacts() {
	if n.artifacts == "" || n.dir == "" {
		return
	}
	copyTree := func(src, dst string, keep func(string) bool) {
		_ = filepath.WalkDir(src, func(p string, d os.DirEntry, err error) error {
			if err != nil {
				return nil
			}
			rel, _ := filepath.Rel(src, p)
			if d.IsDir() {
				// Skip the state of containerd and the kubelet: images, rootfs, volumes.
				if rel == "containerd/root" || rel == "containerd/state" || rel == "kubelet/root" || rel == "images" {
					return filepath.SkipDir
				}
				return nil
			}
			if !d.Type().IsRegular() || !keep(rel) {
				return nil
			}
			_ = copyFile(p, filepath.Join(dst, rel))
			return nil
		})
	}
	copyTree(n.dir, n.artifacts, func(rel string) bool { return !strings.HasSuffix(rel, ".key") })
	if n.kubeDir != "" {
		copyTree(n.kubeDir, filepath.Join(n.artifacts, "kubetest"), func(rel string) bool {
			return strings.HasSuffix(rel, ".log") || strings.HasSuffix(rel, ".yaml")
		})
	}
	n.t.Logf("e2e node: logs kept in %s", n.artifacts)
}

func copyFile(src, dst string) error {
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// cleanStale undoes what a run killed before its teardown (go test
// -timeout, SIGKILL) left: its containerd and shims, the mounts under its
// directory, the directory, cni0 and kube-proxy's chains. It runs under the
// machine-wide lock, so no other node is running.
func cleanStale(kubeProxy string) []string {
	var cleaned []string
	dirs, _ := filepath.Glob("/tmp/vigil-e2e-*")
	for _, d := range dirs {
		for _, pid := range pidsWithArg(filepath.Join(d, "containerd", "containerd.sock")) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		n := &Node{dir: d}
		_ = n.unmountUnder()
		if err := os.RemoveAll(d); err == nil {
			cleaned = append(cleaned, d)
		}
	}
	killCgroupTree()
	if out, err := run("ip", "-4", "addr", "show", "dev", Bridge); err == nil && strings.Contains(out, "10.244.0.1/") {
		_, _ = run("ip", "link", "del", Bridge)
		cleaned = append(cleaned, Bridge)
	}
	if len(dirs) > 0 && kubeProxy != "" {
		if out, _ := run("iptables-save", "-t", "nat"); strings.Contains(out, ":KUBE-SERVICES") {
			_, _ = run(kubeProxy, "--cleanup", "--v=0")
			cleaned = append(cleaned, "kube-proxy chains")
		}
	}
	if len(dirs) > 0 {
		// The kubelet's and kube-proxy's remaining chains (canaries,
		// KUBE-FIREWALL), the killed sandboxes' network namespaces, the
		// killed shims' sockets and the empty tables iptables-nft made.
		if chains, err := iptablesChains(); err == nil {
			keep := map[string]bool{}
			for k := range chains {
				if !strings.Contains(k, "/KUBE-") {
					keep[k] = true
				}
			}
			_ = removeNewChains(keep)
		}
		for name := range dirEntries("/var/run/netns") {
			if strings.HasPrefix(name, "cni-") {
				p := filepath.Join("/var/run/netns", name)
				_ = syscall.Unmount(p, syscall.MNT_DETACH)
				_ = os.Remove(p)
			}
		}
		for name := range dirEntries("/run/containerd/s") {
			p := filepath.Join("/run/containerd/s", name)
			if c, err := net.Dial("unix", p); err == nil {
				c.Close()
			} else {
				_ = os.Remove(p)
			}
		}
		_ = removeNewNftTables(map[string]bool{})
		for _, pat := range []string{cniName + "-*", "cni-loopback-*"} {
			rs, _ := filepath.Glob(filepath.Join("/var/lib/cni/results", pat))
			for _, r := range rs {
				_ = os.Remove(r)
			}
		}
		_ = os.RemoveAll(filepath.Join("/var/lib/cni/networks", cniName))
		// Links to the killed run's pod logs, which went with its directory.
		for name := range dirEntries("/var/log/containers") {
			p := filepath.Join("/var/log/containers", name)
			if _, err := os.Stat(p); os.IsNotExist(err) {
				_ = os.Remove(p)
			}
		}
		// runc state of the killed run's containers (their bundles were in
		// its directory).
		for name := range dirEntries(runcStateDir) {
			b, err := os.ReadFile(filepath.Join(runcStateDir, name, "state.json"))
			if err == nil && strings.Contains(string(b), `bundle=/tmp/vigil-e2e-`) {
				_ = os.RemoveAll(filepath.Join(runcStateDir, name))
			}
		}
		for _, d := range sharedDirs {
			_ = os.Remove(d) // only if empty
		}
		cleaned = append(cleaned, "kubelet chains, netns, shim sockets, runc state")
	}
	_ = os.RemoveAll(filepath.Join("/var/lib/cni/networks", cniName))
	return cleaned
}
