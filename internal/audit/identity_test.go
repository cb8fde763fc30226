package audit

import (
	"testing"

	"github.com/vigil-sec/vigil/internal/event"
)

func TestClassify(t *testing.T) {
	for _, tc := range []struct {
		user event.AuditUser
		want string
	}{
		{event.AuditUser{Username: "system:anonymous", Groups: []string{"system:unauthenticated"}}, ClassAnonymous},
		{event.AuditUser{Username: "system:node:node-1", Groups: []string{"system:nodes"}}, ClassNode},
		{event.AuditUser{Username: "system:kube-scheduler"}, ClassControlPlane},
		{event.AuditUser{Username: "system:serviceaccount:kube-system:replicaset-controller"}, ClassControlPlane},
		{event.AuditUser{Username: "system:serviceaccount:kube-system:coredns"}, ClassSystemAccount},
		{event.AuditUser{Username: "system:serviceaccount:ci:deployer"}, ClassServiceAccount},
		{event.AuditUser{Username: "system:serviceaccount:shop:web-controller"}, ClassServiceAccount},
		{event.AuditUser{Username: "alice@example.com", Groups: []string{"system:authenticated"}}, ClassUser},
		{event.AuditUser{Username: "kubernetes-admin", Groups: []string{"system:masters"}}, ClassUser},
	} {
		if got := Classify(tc.user); got != tc.want {
			t.Errorf("Classify(%q) = %s, want %s", tc.user.Username, got, tc.want)
		}
	}
}
