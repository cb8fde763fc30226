// Package node brings up a real single-node Kubernetes cluster on the build
// machine for Vigil's end-to-end tests, and tears it down again.
//
// Start runs, as child processes of the test: etcd and kube-apiserver
// (through internal/kubetest, with the kubelet client certificate, the
// admission webhooks and the audit options added), kube-controller-manager,
// kube-scheduler, containerd (its own root, state and socket under a
// temporary directory, restrict_oom_score_adj = true because these machines
// lack CAP_SYS_RESOURCE), kube-proxy in iptables mode and a kubelet. Pods get
// addresses from a bridge CNI network (cni0, PodCIDR) using the plugins of
// Debian's containernetworking-plugins. Images are built without Docker by
// BuildImage (go-containerregistry) and imported into the node's containerd
// with ctr; the sandbox image is busybox sleeping.
//
// kube-apiserver binds to and advertises APIServerAddress, on an interface
// the harness creates (APIInterface), so the kubernetes Service points there
// and pods reach the API server through kube-proxy as in real clusters;
// Options.BeforeAPIServer lets a test start what the API server needs (a
// receiver for its audit webhook) on that address first.
//
// Nothing the node does may reach beyond the machine: the service CIDR is
// routed into APIInterface, which drops it, forwarded pod traffic to
// anything but the pod CIDR, the node's addresses and loopback is dropped
// by a chain the harness owns, and pod-sourced packets
// leaving on the default route's interface are counted so a test can assert
// there were none (Node.EgressPackets).
//
// The harness installs nothing: Check reports what the machine lacks
// (hack/install-deps.sh installs it). Start must run as root, holds a
// machine-wide lock so one node runs at a time, and registers a teardown
// with t.Cleanup that deletes pods, stops every process, kills leftover
// shims, unmounts what kubelet and containerd mounted, deletes cni0, APIInterface, routes,
// iptables chains and cgroups the run added, restores sysctls, and, when the
// test failed, keeps every component's log under artifacts/e2e/.
package node
