// Package kubetest runs a real Kubernetes control plane for Vigil's tests:
// etcd and kube-apiserver (and, on request, kube-controller-manager) as child
// processes of the test, on 127.0.0.1 only (or on Options.Address, an address
// of this machine the caller owns, for a cluster with pods).
//
// Tests that exercise Vigil against the API server use it: the audit webhook
// receiver (kube-apiserver POSTs audit.k8s.io/v1 EventLists to it), the
// admission webhooks, and anything that needs controllers to act on objects.
//
//	c := kubetest.Start(t, kubetest.Options{
//		Users:        []kubetest.User{{Name: "alice", Groups: []string{"dev"}}},
//		AuditWebhook: &kubetest.AuditWebhook{URL: srv.URL + "/api/v1/audit", CAData: caPEM},
//	})
//	cs := c.Clientset("alice")
//
// # Binaries
//
// kube-apiserver and kube-controller-manager are built from k8s.io/kubernetes
// by the separate tools module in hack/kube (never Vigil's own go.mod) with
// `make kube`, which runs hack/kube/build.sh and caches the result under
// /var/cache/vigil-kube/v1.36.3-<key>/bin. Start looks in $VIGIL_KUBE_BIN if
// set, otherwise asks `hack/kube/build.sh --print-dir` for the cache
// directory. etcd comes from $VIGIL_ETCD, else etcd on $PATH (Debian's
// etcd-server 3.4, installed by hack/install-deps.sh). Missing binaries fail
// the test with a message saying how to get them; they never skip it.
//
// # What Start sets up
//
// A CA generated per cluster signs the API server's serving certificate (for
// 127.0.0.1, localhost, Options.Address and the in-cluster kubernetes names) and any client
// certificates the test asks for (CertConfig). Authentication is by that CA
// and by a static token file holding the admin user (group system:masters)
// plus Options.Users, each with a generated token. Authorization is
// Node,RBAC. Service-account signing keys are generated. Auditing always
// runs with Options.AuditPolicy (default: Metadata for everything) and goes
// to Options.AuditWebhook and/or a log file (Options.AuditLog). Admission
// plugins are kube-apiserver's defaults, privileged pods are allowed, and the
// kubernetes Service has no Endpoints (they may not be loopback addresses)
// unless Options.Address is set.
//
// Every wait is bounded. Processes run in their own process groups and are
// killed by Cluster.Stop, which Start registers with t.Cleanup; when the test
// has failed, the tail of each process's log is written to the test log.
// etcd keeps its data in /dev/shm when it can, so it does not wait on fsync.
package kubetest
