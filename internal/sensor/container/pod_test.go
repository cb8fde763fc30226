package container

import (
	"reflect"
	"testing"

	"github.com/vigil-sec/vigil/internal/event"
)

func TestWorkloadFromOwners(t *testing.T) {
	for _, tc := range []struct {
		kind, name, want string
	}{
		{"ReplicaSet", "web-7d9f8c6b5", "Deployment/web"},
		{"ReplicaSet", "api-server-5c4b7f9d8b", "Deployment/api-server"},
		{"ReplicaSet", "web-v2", "ReplicaSet/web-v2"}, // hash characters, but too short for a hash
		{"ReplicaSet", "web-bcdfgh", "Deployment/web"},
		{"ReplicaSet", "frontend", "ReplicaSet/frontend"},
		{"ReplicaSet", "web-main", "ReplicaSet/web-main"}, // a and i are not
		{"ReplicaSet", "web-7d9f8c6b5a", "ReplicaSet/web-7d9f8c6b5a"},
		{"ReplicaSet", "web-7d9f8c6b5bb", "ReplicaSet/web-7d9f8c6b5bb"}, // longer than a hash
		{"ReplicaSet", "-7d9f8c6b5", "ReplicaSet/-7d9f8c6b5"},
		{"Job", "backup-28391234", "CronJob/backup"},
		{"Job", "nightly-report-29123456", "CronJob/nightly-report"},
		{"Job", "migrate-2", "Job/migrate-2"},
		{"Job", "backup-2839123x", "Job/backup-2839123x"},
		{"Job", "backup-12345678901", "Job/backup-12345678901"},
		{"Job", "backup", "Job/backup"},
		{"StatefulSet", "db", "StatefulSet/db"},
		{"StatefulSet", "db-7d9f8c6b5", "StatefulSet/db-7d9f8c6b5"},
		{"DaemonSet", "node-exporter", "DaemonSet/node-exporter"},
		{"Node", "worker-1", "Node/worker-1"}, // static pods' mirror owner
		{"Rollout", "web-7d9f8c6b5", "Rollout/web-7d9f8c6b5"},
		{"", "", ""},
		{"ReplicaSet", "", ""},
		{"", "web", ""},
	} {
		if got := WorkloadFromOwners(tc.kind, tc.name); got != tc.want {
			t.Errorf("WorkloadFromOwners(%q, %q) = %q, want %q", tc.kind, tc.name, got, tc.want)
		}
	}
}

func TestApplyPod(t *testing.T) {
	for _, tc := range []struct {
		name string
		c    event.Container
		pod  PodInfo
		want event.Container
	}{
		{"fills the gaps",
			event.Container{ID: id, PodUID: uid},
			PodInfo{Name: "web-7d9f8c6b5-x2x4q", Namespace: "shop", Labels: map[string]string{"app": "web"}, OwnerKind: "ReplicaSet", OwnerName: "web-7d9f8c6b5"},
			event.Container{ID: id, PodUID: uid, Pod: "web-7d9f8c6b5-x2x4q", Namespace: "shop", Workload: "Deployment/web", Labels: map[string]string{"app": "web"}}},
		{"runtime's names and labels win",
			event.Container{ID: id, Pod: "p", Namespace: "n", Labels: map[string]string{"app": "mine", "x": "1"}},
			PodInfo{Name: "q", Namespace: "m", Labels: map[string]string{"app": "pod", "tier": "front"}},
			event.Container{ID: id, Pod: "p", Namespace: "n", Labels: map[string]string{"app": "mine", "x": "1", "tier": "front"}}},
		{"bare pod", event.Container{ID: id}, PodInfo{Name: "debug"}, event.Container{ID: id, Pod: "debug"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := map[string]string{}
			for k, v := range tc.pod.Labels {
				before[k] = v
			}
			c := tc.c
			applyPod(&c, tc.pod)
			if !reflect.DeepEqual(c, tc.want) {
				t.Errorf("applyPod = %+v\nwant %+v", c, tc.want)
			}
			if len(tc.pod.Labels) > 0 && !reflect.DeepEqual(tc.pod.Labels, before) {
				t.Errorf("the pod source's labels were modified: %v", tc.pod.Labels)
			}
		})
	}
}
