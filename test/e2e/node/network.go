package node

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// Chains the harness owns. VIGIL-E2E-FWD (mangle FORWARD, before any
// filter chain kube-proxy programs) drops forwarded pod traffic to anything
// but the pod CIDR, the node's addresses and loopback; VIGIL-E2E-EGRESS
// (mangle POSTROUTING, before NAT) counts pod-sourced packets leaving on the
// default route's interface.
const (
	fwdChain    = "VIGIL-E2E-FWD"
	egressChain = "VIGIL-E2E-EGRESS"
)

// APIServerAddress is the address kube-apiserver binds to and advertises
// (the kubernetes Service's endpoint, which kube-proxy DNATs 10.0.0.1:443
// to). It lives on APIInterface, which the harness creates and removes: an
// address of the machine that pods reach (the drop chain lets pods reach the
// node's own addresses) and nothing else sees. APIInterface is a bridge
// without ports, which drops whatever is routed to it: a dummy interface
// would do, but these machines' kernels have no dummy driver.
// Anything else a test serves to pods (Vigil's server) can listen there too.
const (
	APIServerAddress = "10.200.0.1"
	APIInterface     = "vigil-e2e0"
)

// sysctls that the bridge plugin, kubelet and kube-proxy may change; their
// values are restored at teardown.
var sysctls = []string{
	"net/ipv4/ip_forward",
	"net/ipv4/conf/all/route_localnet",
	"net/bridge/bridge-nf-call-iptables",
	"net/bridge/bridge-nf-call-ip6tables",
	"vm/overcommit_memory",
	"vm/panic_on_oom",
	"kernel/panic",
	"kernel/panic_on_oops",
	"kernel/keys/root_maxkeys",
	"kernel/keys/root_maxbytes",
	"net/netfilter/nf_conntrack_max",
	"net/netfilter/nf_conntrack_tcp_timeout_established",
	"net/netfilter/nf_conntrack_tcp_timeout_close_wait",
}

// hostState is what the machine looked like before the node started, so
// teardown removes exactly what the run added.
type hostState struct {
	chains map[string]bool   // "iptables/nat/KUBE-SERVICES"
	nft    map[string]bool   // nftables tables, "ip filter"
	dirs   map[string]bool   // sharedDirs that existed
	netns  map[string]bool   // entries of /var/run/netns
	logs   map[string]bool   // entries of /var/log/containers
	links  map[string]bool   // network interfaces
	runc   map[string]bool   // entries of runcStateDir
	sysctl map[string]string // path under /proc/sys -> value
}

func snapshotHost() (*hostState, error) {
	s := &hostState{
		netns:  dirEntries("/var/run/netns"),
		logs:   dirEntries("/var/log/containers"),
		runc:   dirEntries(runcStateDir),
		links:  map[string]bool{},
		nft:    nftTables(),
		dirs:   map[string]bool{},
		sysctl: map[string]string{},
	}
	var err error
	if s.chains, err = iptablesChains(); err != nil {
		return nil, err
	}
	ifs, err := net.Interfaces()
	if err != nil {
		return nil, fmt.Errorf("list interfaces: %w", err)
	}
	for _, i := range ifs {
		s.links[i.Name] = true
	}
	for _, d := range sharedDirs {
		s.dirs[d] = exists(d)
	}
	for _, k := range sysctls {
		if b, err := os.ReadFile(filepath.Join("/proc/sys", k)); err == nil {
			s.sysctl[k] = strings.TrimSpace(string(b))
		}
	}
	return s, nil
}

// runcStateDir is runc's state directory for containerd's k8s.io namespace
// (runc --root): <id>/state.json per container, removed by runc delete.
const runcStateDir = "/run/containerd/runc/k8s.io"

// sharedDirs are directories outside the run's own that containerd, its
// shims, the CNI plugins and the kubelet create; teardown removes those the
// run created once they are empty, children first.
var sharedDirs = []string{
	"/run/containerd/s",
	"/run/containerd/fifo",
	"/run/containerd/runc/k8s.io",
	"/run/containerd/runc",
	"/run/containerd",
	"/var/lib/cni/networks/" + cniName,
	"/var/lib/cni/networks",
	"/var/lib/cni/results",
	"/var/lib/cni",
	"/var/run/netns",
	"/var/log/containers",
	"/var/log/pods",
}

// nftTables lists the nftables tables ("ip filter", "ip6 nat", ...).
// iptables-nft creates a table the first time any rule touches it.
func nftTables() map[string]bool {
	m := map[string]bool{}
	out, err := run("nft", "list", "tables")
	if err != nil {
		return m
	}
	for _, l := range strings.Split(out, "\n") {
		if f := strings.Fields(l); len(f) == 3 && f[0] == "table" {
			m[f[1]+" "+f[2]] = true
		}
	}
	return m
}

// removeNewNftTables deletes nftables tables that were not there before
// and hold no rules (what iptables-nft left once the chains are gone).
func removeNewNftTables(before map[string]bool) []string {
	var left []string
	for tbl := range nftTables() {
		if before[tbl] {
			continue
		}
		f := strings.Fields(tbl)
		out, err := run("nft", "-a", "list", "table", f[0], f[1])
		if err != nil {
			continue
		}
		rules := 0
		for _, l := range strings.Split(out, "\n") {
			l = strings.TrimSpace(l)
			if strings.Contains(l, "# handle") && !strings.HasPrefix(l, "table ") && !strings.HasPrefix(l, "chain ") {
				rules++
			}
		}
		if rules > 0 {
			left = append(left, fmt.Sprintf("nftables table %s (%d rules)", tbl, rules))
			continue
		}
		if _, err := run("nft", "delete", "table", f[0], f[1]); err != nil {
			left = append(left, fmt.Sprintf("nftables table %s: %v", tbl, err))
		}
	}
	slices.Sort(left)
	return left
}

// sysctlFile keeps the machine's sysctls while a node runs, so the next run
// can restore them when this one is killed before its teardown.
const sysctlFile = "/run/vigil-e2e-node.sysctl.json"

func saveSysctls(m map[string]string) error {
	b, err := json.Marshal(m)
	if err == nil {
		err = os.WriteFile(sysctlFile, b, 0o600)
	}
	if err != nil {
		return fmt.Errorf("save sysctls: %w", err)
	}
	return nil
}

// restoreSavedSysctls restores what a killed run saved, if anything.
func restoreSavedSysctls() {
	b, err := os.ReadFile(sysctlFile)
	if err != nil {
		return
	}
	var m map[string]string
	if json.Unmarshal(b, &m) == nil {
		restoreSysctls(m)
	}
	_ = os.Remove(sysctlFile)
}

// restoreSysctls writes back every value that differs, and returns what it
// could not write.
func restoreSysctls(m map[string]string) []error {
	var errs []error
	for k, v := range m {
		p := filepath.Join("/proc/sys", k)
		if b, err := os.ReadFile(p); err == nil && strings.TrimSpace(string(b)) != v {
			if err := os.WriteFile(p, []byte(v), 0o644); err != nil {
				errs = append(errs, fmt.Errorf("restore sysctl %s=%s: %w", k, v, err))
			}
		}
	}
	return errs
}

func dirEntries(dir string) map[string]bool {
	m := map[string]bool{}
	es, _ := os.ReadDir(dir)
	for _, e := range es {
		m[e.Name()] = true
	}
	return m
}

// CgroupRoot is the kubelet's cgroupRoot: its kubepods tree lives below
// it, apart from /kubepods, which other tests on these machines use for
// pod-like cgroups of their own (a kubelet kills processes in, and removes,
// pod cgroups it does not know).
const CgroupRoot = "/vigil-e2e"

// cgroupHierarchies lists the mounted cgroup hierarchies: /sys/fs/cgroup
// itself on a cgroup v2 machine, else each directory below it (v1
// controllers and the hybrid's unified v2 tree).
func cgroupHierarchies() []string {
	if exists("/sys/fs/cgroup/cgroup.controllers") {
		return []string{"/sys/fs/cgroup"}
	}
	var hs []string
	ds, _ := filepath.Glob("/sys/fs/cgroup/*")
	for _, d := range ds {
		if fi, err := os.Lstat(d); err == nil && fi.IsDir() && exists(filepath.Join(d, "cgroup.procs")) {
			hs = append(hs, d)
		}
	}
	return hs
}

// cgroupRootDirs lists CgroupRoot in every hierarchy where it exists.
func cgroupRootDirs() []string {
	var ds []string
	for _, h := range cgroupHierarchies() {
		if d := filepath.Join(h, CgroupRoot); exists(d) {
			ds = append(ds, d)
		}
	}
	return ds
}

// makeCgroupRoot creates CgroupRoot in every hierarchy (the kubelet
// requires it to exist), giving v1 cpusets their parent's CPUs and memory
// nodes.
func makeCgroupRoot() error {
	for _, h := range cgroupHierarchies() {
		d := filepath.Join(h, CgroupRoot)
		if err := os.Mkdir(d, 0o755); err != nil && !os.IsExist(err) {
			return fmt.Errorf("create cgroup %s: %w", d, err)
		}
		for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
			if b, err := os.ReadFile(filepath.Join(h, f)); err == nil && !exists("/sys/fs/cgroup/cgroup.controllers") {
				if err := os.WriteFile(filepath.Join(d, f), b, 0o644); err != nil {
					return fmt.Errorf("set %s of %s: %w", f, d, err)
				}
			}
		}
	}
	return nil
}

func exists(p string) bool {
	_, err := os.Lstat(p)
	return err == nil
}

// iptablesChains lists every chain of every table, IPv4 and IPv6, as
// "<cmd>/<table>/<chain>".
func iptablesChains() (map[string]bool, error) {
	m := map[string]bool{}
	for _, cmd := range []string{"iptables", "ip6tables"} {
		out, err := run(cmd+"-save", "-c")
		if err != nil {
			return nil, err
		}
		table := ""
		sc := bufio.NewScanner(strings.NewReader(out))
		for sc.Scan() {
			l := sc.Text()
			switch {
			case strings.HasPrefix(l, "*"):
				table = l[1:]
			case strings.HasPrefix(l, ":"):
				m[cmd+"/"+table+"/"+strings.Fields(l[1:])[0]] = true
			}
		}
	}
	return m, nil
}

// removeNewChains deletes every iptables chain that was not in before: first
// the rules that jump to it, then its rules, then the chain.
func removeNewChains(before map[string]bool) []error {
	now, err := iptablesChains()
	if err != nil {
		return []error{err}
	}
	var added []string
	for k := range now {
		if !before[k] {
			added = append(added, k)
		}
	}
	slices.Sort(added)
	var errs []error
	for _, k := range added {
		parts := strings.SplitN(k, "/", 3)
		cmd, table, chain := parts[0], parts[1], parts[2]
		out, err := run(cmd, "-w", "-t", table, "-S")
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, l := range strings.Split(out, "\n") {
			f := strings.Fields(l)
			if len(f) < 3 || f[0] != "-A" || !slices.Contains(f, chain) {
				continue
			}
			if i := slices.Index(f, "-j"); i < 0 || i+1 >= len(f) || f[i+1] != chain {
				if i := slices.Index(f, "-g"); i < 0 || i+1 >= len(f) || f[i+1] != chain {
					continue
				}
			}
			_, _ = run(cmd, append([]string{"-w", "-t", table, "-D"}, f[1:]...)...)
		}
	}
	for _, k := range added {
		parts := strings.SplitN(k, "/", 3)
		_, _ = run(parts[0], "-w", "-t", parts[1], "-F", parts[2])
	}
	for _, k := range added {
		parts := strings.SplitN(k, "/", 3)
		if _, err := run(parts[0], "-w", "-t", parts[1], "-X", parts[2]); err != nil {
			errs = append(errs, err)
		}
	}
	return errs
}

// defaultRoute returns the interface of the IPv4 default route.
func defaultRoute() (string, error) {
	out, err := run("ip", "-4", "route", "show", "default")
	if err != nil {
		return "", err
	}
	f := strings.Fields(out)
	if i := slices.Index(f, "dev"); i >= 0 && i+1 < len(f) {
		return f[i+1], nil
	}
	return "", fmt.Errorf("no IPv4 default route (ip route: %q)", strings.TrimSpace(out))
}

// ifaceIPv4 returns the first global IPv4 address of an interface.
func ifaceIPv4(name string) (net.IP, error) {
	i, err := net.InterfaceByName(name)
	if err != nil {
		return nil, fmt.Errorf("interface %s: %w", name, err)
	}
	addrs, err := i.Addrs()
	if err != nil {
		return nil, fmt.Errorf("addresses of %s: %w", name, err)
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil && n.IP.IsGlobalUnicast() {
			return n.IP.To4(), nil
		}
	}
	return nil, fmt.Errorf("interface %s has no global IPv4 address", name)
}

// hostIPv4s returns every IPv4 address of the machine.
func hostIPv4s() []string {
	var ips []string
	addrs, _ := net.InterfaceAddrs()
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil && !n.IP.IsLoopback() {
			ips = append(ips, n.IP.String())
		}
	}
	return ips
}

// addAPIInterface creates APIInterface, an empty bridge, with
// APIServerAddress/32. unguardNetwork removes it.
func addAPIInterface() error {
	for _, c := range [][]string{
		{"link", "add", APIInterface, "type", "bridge"},
		{"addr", "add", APIServerAddress + "/32", "dev", APIInterface},
		{"link", "set", APIInterface, "up"},
	} {
		if _, err := run("ip", c...); err != nil {
			return fmt.Errorf("interface for the API server's address: %w", err)
		}
	}
	return nil
}

// guardNetwork routes the service CIDR into APIInterface and installs
// the harness's chains. Teardown is unguardNetwork.
//
// The route, not a blackhole: a ClusterIP kube-proxy does not translate
// still goes nowhere (an empty bridge drops what it is sent, and forwarded
// pod packets to it are dropped by fwdChain first), but a process on the
// host can connect to a ClusterIP, as on a real node: kube-apiserver calls
// an admission webhook through its Service's ClusterIP, and connect(2) to a
// blackholed address fails before kube-proxy's OUTPUT DNAT sees a packet.
func guardNetwork(podCIDR, serviceCIDR, egressIface string) error {
	if _, err := run("ip", "route", "replace", serviceCIDR, "dev", APIInterface); err != nil {
		return fmt.Errorf("route for the service CIDR: %w", err)
	}
	ipt := func(args ...string) error {
		_, err := run("iptables", append([]string{"-w", "-t", "mangle"}, args...)...)
		return err
	}
	steps := [][]string{
		{"-N", fwdChain},
		{"-A", fwdChain, "-s", podCIDR, "-d", podCIDR, "-j", "RETURN"},
		{"-A", fwdChain, "-s", podCIDR, "-d", "127.0.0.0/8", "-j", "RETURN"},
	}
	for _, ip := range hostIPv4s() {
		steps = append(steps, []string{"-A", fwdChain, "-s", podCIDR, "-d", ip + "/32", "-j", "RETURN"})
	}
	steps = append(steps,
		[]string{"-A", fwdChain, "-s", podCIDR, "-j", "DROP"},
		[]string{"-A", fwdChain, "-d", podCIDR, "!", "-s", podCIDR, "-j", "DROP"},
		[]string{"-I", "FORWARD", "1", "-j", fwdChain},
		[]string{"-N", egressChain},
		[]string{"-A", egressChain, "-o", egressIface, "-s", podCIDR, "-j", "RETURN"},
		[]string{"-I", "POSTROUTING", "1", "-j", egressChain},
	)
	for _, s := range steps {
		if err := ipt(s...); err != nil {
			return fmt.Errorf("install %s/%s: %w", fwdChain, egressChain, err)
		}
	}
	return nil
}

// unguardNetwork removes what guardNetwork and addAPIInterface installed; missing pieces are
// not errors (it also cleans up after a run that was killed).
func unguardNetwork(serviceCIDR string) {
	_, _ = run("ip", "route", "del", serviceCIDR)
	_, _ = run("ip", "link", "del", APIInterface)
	for _, hook := range [][2]string{{"FORWARD", fwdChain}, {"POSTROUTING", egressChain}} {
		for {
			if _, err := run("iptables", "-w", "-t", "mangle", "-D", hook[0], "-j", hook[1]); err != nil {
				break
			}
		}
		_, _ = run("iptables", "-w", "-t", "mangle", "-F", hook[1])
		_, _ = run("iptables", "-w", "-t", "mangle", "-X", hook[1])
	}
}

// chainCounter returns the packet count of the rule of chain (mangle table)
// whose spec contains match and ends in target.
func chainCounter(chain, target string, match ...string) (uint64, error) {
	out, err := run("iptables", "-w", "-t", "mangle", "-S", chain, "-v")
	if err != nil {
		return 0, err
	}
	for _, l := range strings.Split(out, "\n") {
		// "-A CHAIN -s 10.244.0.0/24 -c <packets> <bytes> -j DROP"
		f := strings.Fields(l)
		j, c := slices.Index(f, "-j"), slices.Index(f, "-c")
		if len(f) < 2 || f[0] != "-A" || j < 0 || j+1 >= len(f) || f[j+1] != target || c < 0 || c+1 >= len(f) {
			continue
		}
		ok := true
		for _, m := range match {
			if !strings.Contains(l, m) {
				ok = false
			}
		}
		if ok {
			return strconv.ParseUint(f[c+1], 10, 64)
		}
	}
	return 0, fmt.Errorf("no rule ending in %s matching %q in mangle/%s:\n%s", target, match, chain, out)
}

// ifaceTxPackets is the transmit packet counter of an interface.
func ifaceTxPackets(iface string) (uint64, error) {
	b, err := os.ReadFile(filepath.Join("/sys/class/net", iface, "statistics/tx_packets"))
	if err != nil {
		return 0, fmt.Errorf("tx packets of %s: %w", iface, err)
	}
	return strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
}
