package container

import (
	"strings"
	"testing"
)

const (
	id    = "4c6b0e8f2a1d3e5f7a9b8c7d6e5f4a3b2c1d0e9f8a7b6c5d4e3f2a1b0c9d8e7f"
	outer = "aaaabbbbccccddddeeeeffff00001111222233334444555566667777888899ff"
	uid   = "8b1e6f7c-2d3a-4b5c-9d8e-7f6a5b4c3d2e"
	uidU  = "8b1e6f7c_2d3a_4b5c_9d8e_7f6a5b4c3d2e"
)

func TestParsePath(t *testing.T) {
	for _, tc := range []struct {
		name string
		path string
		want Ref
		ok   bool
	}{
		{"containerd systemd besteffort",
			"/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod" + uidU + ".slice/cri-containerd-" + id + ".scope",
			Ref{ID: id, Runtime: "containerd", PodUID: uid}, true},
		{"containerd systemd burstable",
			"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + uidU + ".slice/cri-containerd-" + id + ".scope",
			Ref{ID: id, Runtime: "containerd", PodUID: uid}, true},
		{"containerd systemd guaranteed",
			"/kubepods.slice/kubepods-pod" + uidU + ".slice/cri-containerd-" + id + ".scope",
			Ref{ID: id, Runtime: "containerd", PodUID: uid}, true},
		{"kubelet cgroupfs burstable",
			"/kubepods/burstable/pod" + uid + "/" + id,
			Ref{ID: id, PodUID: uid}, true},
		{"kubelet cgroupfs guaranteed",
			"/kubepods/pod" + uid + "/" + id,
			Ref{ID: id, PodUID: uid}, true},
		{"kubelet cgroupfs runc id",
			"/kubepods/besteffort/pod" + uid + "/vigil-test-abc123",
			Ref{ID: "vigil-test-abc123", PodUID: uid}, true},
		{"kubelet cgroupfs static pod uid",
			"/kubepods/burstable/pod0123456789abcdef0123456789abcdef/" + id,
			Ref{ID: id, PodUID: "0123456789abcdef0123456789abcdef"}, true},
		{"kubelet cgroupfs pod only",
			"/kubepods/besteffort/pod" + uid,
			Ref{PodUID: uid}, false},
		{"kubelet systemd pod only",
			"/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod" + uidU + ".slice",
			Ref{PodUID: uid}, false},
		{"cri-o systemd",
			"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + uidU + ".slice/crio-" + id + ".scope",
			Ref{ID: id, Runtime: "cri-o", PodUID: uid}, true},
		{"cri-o cgroupfs",
			"/kubepods/burstable/pod" + uid + "/crio-" + id,
			Ref{ID: id, Runtime: "cri-o", PodUID: uid}, true},
		{"cri-o conmon is not the container",
			"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + uidU + ".slice/crio-conmon-" + id + ".scope",
			Ref{ID: id, Runtime: "cri-o", PodUID: uid, Monitor: true}, false},
		{"cri-o conmon in system.slice",
			"/system.slice/crio-conmon-" + id + ".scope",
			Ref{ID: id, Runtime: "cri-o", Monitor: true}, false},
		{"cri-o container under its pod after conmon",
			"/kubepods.slice/kubepods-pod" + uidU + ".slice/crio-" + id + ".scope/container",
			Ref{ID: id, Runtime: "cri-o", PodUID: uid}, true},
		{"docker cgroupfs", "/docker/" + id, Ref{ID: id, Runtime: "docker"}, true},
		{"docker systemd", "/system.slice/docker-" + id + ".scope", Ref{ID: id, Runtime: "docker"}, true},
		{"docker with systemd inside", "/system.slice/docker-" + id + ".scope/init.scope", Ref{ID: id, Runtime: "docker"}, true},
		{"cri-dockerd systemd",
			"/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod" + uidU + ".slice/docker-" + id + ".scope",
			Ref{ID: id, Runtime: "docker", PodUID: uid}, true},
		{"podman", "/machine.slice/libpod-" + id + ".scope", Ref{ID: id, Runtime: "podman"}, true},
		{"podman container leaf", "/machine.slice/libpod-" + id + ".scope/container", Ref{ID: id, Runtime: "podman"}, true},
		{"podman user", "/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-" + id + ".scope", Ref{ID: id, Runtime: "podman"}, true},
		{"podman cgroupfs", "/libpod_parent/libpod-" + id, Ref{ID: id, Runtime: "podman"}, true},
		{"podman conmon", "/machine.slice/libpod-conmon-" + id + ".scope", Ref{ID: id, Runtime: "podman", Monitor: true}, false},
		{"kind node: pod in docker",
			"/docker/" + outer + "/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice/kubelet-kubepods-besteffort-pod" + uidU + ".slice/cri-containerd-" + id + ".scope",
			Ref{ID: id, Runtime: "containerd", PodUID: uid}, true},
		{"kind node cgroupfs",
			"/docker/" + outer + "/kubelet/kubepods/besteffort/pod" + uid + "/" + id,
			Ref{ID: id, PodUID: uid}, true},
		{"k3d node: pod in docker systemd",
			"/system.slice/docker-" + outer + ".scope/kubepods/burstable/pod" + uid + "/" + id,
			Ref{ID: id, PodUID: uid}, true},
		{"kind node itself", "/docker/" + outer + "/kubelet.slice", Ref{ID: outer, Runtime: "docker"}, true},
		{"kind node's kubelet pod dir",
			"/docker/" + outer + "/kubelet/kubepods/besteffort/pod" + uid,
			Ref{ID: outer, Runtime: "docker"}, true},
		{"conmon inside a kind node belongs to the node",
			"/docker/" + outer + "/kubepods.slice/kubepods-pod" + uidU + ".slice/crio-conmon-" + id + ".scope",
			Ref{ID: outer, Runtime: "docker"}, true},
		{"relative path from another cgroup namespace",
			"/../../kubepods-besteffort-pod" + uidU + ".slice/cri-containerd-" + id + ".scope",
			Ref{ID: id, Runtime: "containerd", PodUID: uid}, true},
		{"no leading slash", "docker/" + id, Ref{ID: id, Runtime: "docker"}, true},
		{"bare id elsewhere", "/default/" + id, Ref{ID: id}, true},
		{"runc systemd", "/system.slice/runc-" + id + ".scope", Ref{ID: id, Runtime: "runc"}, true},
		{"runc systemd named", "/system.slice/runc-mycontainer.scope", Ref{ID: "mycontainer", Runtime: "runc"}, true},
		{"runc systemd in docker", "/docker/" + outer + "/system.slice/runc-web_1.scope", Ref{ID: "web_1", Runtime: "runc"}, true},
		{"runc cgroupfs hex id", "/" + id, Ref{ID: id}, true},
		// runc without systemd and without a cgroupsPath uses /<id>: with a
		// non-hex id only runc's state (the resolver's job) tells it from
		// a host cgroup.
		{"runc cgroupfs named: not decidable from the path", "/mycontainer", Ref{}, false},
		{"runc scope needs .scope", "/system.slice/runc-mycontainer", Ref{}, false},
		{"runc scope needs an id", "/system.slice/runc-.scope", Ref{}, false},
		{"runc service is the daemon's", "/system.slice/runc-shim.service", Ref{}, false},
		{"root", "/", Ref{}, false},
		{"empty", "", Ref{}, false},
		{"ssh", "/system.slice/ssh.service", Ref{}, false},
		{"containerd daemon", "/system.slice/containerd.service", Ref{}, false},
		{"docker daemon", "/system.slice/docker.service", Ref{}, false},
		{"user session", "/user.slice/user-1000.slice/session-3.scope", Ref{}, false},
		{"user manager", "/user.slice/user-0.slice/user@0.service/init.scope", Ref{}, false},
		{"init", "/init.scope", Ref{}, false},
		{"kubepods root", "/kubepods.slice/kubepods-besteffort.slice", Ref{}, false},
		{"short hex is no docker id", "/docker/4c6b0e8f2a1d", Ref{}, false},
		{"upper-case hex is no id", "/docker/" + strings.ToUpper(id), Ref{}, false},
		{"runc id outside a pod dir", "/kubepods/besteffort/vigil-test-abc123", Ref{}, false},
		{"runc id under a systemd pod slice", "/kubepods.slice/kubepods-pod" + uidU + ".slice/vigil-test-abc123", Ref{PodUID: uid}, false},
		{"bad pod uid", "/kubepods/besteffort/podnot-a-uid/" + id, Ref{ID: id}, true},
		{"dot dot after pod", "/kubepods/besteffort/pod" + uid + "/..", Ref{PodUID: uid}, false},
		{"scope prefix with short id", "/system.slice/docker-abc.scope", Ref{}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := ParsePath(tc.path)
			if got != tc.want || ok != tc.ok {
				t.Errorf("ParsePath(%q)\n = %+v, %v\nwant %+v, %v", tc.path, got, ok, tc.want, tc.ok)
			}
		})
	}
}

func TestParsePathDepth(t *testing.T) {
	for _, tc := range []struct {
		path  string
		depth int
	}{
		{"/", 0},
		{"/docker/" + id, 1},
		{"/docker/" + outer + "/kubepods/pod" + uid + "/" + id, 2},
		{"/docker/" + outer + "/system.slice/docker-" + id + ".scope/kubepods/pod" + uid + "/vigil", 3},
	} {
		if _, depth, _ := parsePath(tc.path); depth != tc.depth {
			t.Errorf("parsePath(%q) depth = %d, want %d", tc.path, depth, tc.depth)
		}
	}
}

func FuzzParsePath(f *testing.F) {
	for _, s := range []string{
		"/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod" + uidU + ".slice/cri-containerd-" + id + ".scope",
		"/kubepods/burstable/pod" + uid + "/" + id,
		"/kubepods/besteffort/pod" + uid + "/vigil-test-abc123",
		"/system.slice/crio-conmon-" + id + ".scope",
		"/docker/" + outer + "/kubepods/pod" + uid + "/" + id,
		"/machine.slice/libpod-" + id + ".scope/container",
		"/system.slice/runc-mycontainer.scope",
		"/", "", "//", "/pod/", "/-pod.slice",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		ref, depth, ok := parsePath(p)
		if ok != (depth > 0) {
			t.Fatalf("parsePath(%q): ok %v with depth %d", p, ok, depth)
		}
		if ok && (ref.ID == "" || strings.Contains(ref.ID, "/") || ref.Monitor) {
			t.Fatalf("parsePath(%q) accepted %+v", p, ref)
		}
		if ref.ID != "" && !strings.Contains(p, ref.ID) {
			t.Fatalf("parsePath(%q): id %q is not in the path", p, ref.ID)
		}
		if ref.PodUID != "" && !isPodUID(ref.PodUID) {
			t.Fatalf("parsePath(%q): pod uid %q", p, ref.PodUID)
		}
	})
}
