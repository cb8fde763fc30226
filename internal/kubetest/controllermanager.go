package kubetest

import (
	"context"
	"fmt"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/vigil-sec/vigil/internal/testproc"
)

// StartControllerManager runs kube-controller-manager against the cluster
// with every default controller, each under its own service account
// (--use-service-account-credentials), so audit events name e.g.
// system:serviceaccount:kube-system:replicaset-controller. It returns once
// the serviceaccount controller has created the "default" ServiceAccount in
// namespace default (pods are rejected before that), failing the test after
// 60 s. Pods stay Pending: there is no scheduler or kubelet. The process is
// stopped by Stop.
func (c *Cluster) StartControllerManager() {
	c.t.Helper()
	if err := c.startControllerManager(); err != nil {
		c.t.Fatalf("kubetest: %v", err)
	}
}

func (c *Cluster) startControllerManager() error {
	bin, err := kubeBinary("kube-controller-manager")
	if err != nil {
		return err
	}
	kubeconfig, err := c.kubeconfig("kube-controller-manager.kubeconfig", "system:kube-controller-manager")
	if err != nil {
		return err
	}
	p, err := testproc.Start(c.dir, "kube-controller-manager", bin,
		"--kubeconfig="+kubeconfig,
		"--controllers=*",
		"--use-service-account-credentials=true",
		"--service-account-private-key-file="+c.saKeyPath,
		"--root-ca-file="+c.caPath,
		"--cluster-signing-cert-file="+c.caPath,
		"--cluster-signing-key-file="+c.path("ca.key"),
		"--service-cluster-ip-range=10.0.0.0/24",
		"--leader-elect=false",
		"--secure-port=0", // no HTTPS endpoint: nothing here reads its metrics
		"--bind-address=127.0.0.1",
		"--cert-dir="+c.path("kube-controller-manager-certs"),
		"--profiling=false",
		"--kube-api-qps=100",
		"--kube-api-burst=200",
		"--v=1",
	)
	if err != nil {
		return err
	}
	c.procs = append(c.procs, p)
	cs := c.Clientset(Admin)
	err = testproc.Poll(60*time.Second, 200*time.Millisecond, p.ExitedErr, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, err := cs.CoreV1().ServiceAccounts("default").Get(ctx, "default", metav1.GetOptions{})
		return err
	})
	if err != nil {
		return fmt.Errorf("kube-controller-manager: no default ServiceAccount: %w", p.WithLogTail(err, 60))
	}
	return nil
}
