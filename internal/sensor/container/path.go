package container

import "strings"

// Ref is what a cgroup path says about the container a process runs in.
type Ref struct {
	// ID is the container id: 64 hex digits, or any runc id directly
	// under a kubelet cgroupfs pod directory or in a runc-<id>.scope.
	ID string
	// Runtime is "containerd", "cri-o", "docker", "podman" or "runc" when
	// the layout names it, "" when it does not (the kubelet's cgroupfs
	// layout is the same for every CRI runtime).
	Runtime string
	// PodUID is the Kubernetes pod's uid with dashes, "" outside a pod.
	PodUID string
	// Monitor marks the cgroup of a runtime's per-container monitor
	// (CRI-O's and podman's conmon) rather than of the container: ID is
	// the container it watches, but the monitor runs on the host.
	Monitor bool
}

// scopePrefixes are the container cgroup names runtimes create:
// <prefix><64 hex>, with ".scope" under the systemd driver.
var scopePrefixes = []struct {
	prefix, runtime string
	monitor         bool
}{
	{"cri-containerd-", "containerd", false},
	{"crio-conmon-", "cri-o", true},
	{"crio-", "cri-o", false},
	{"docker-", "docker", false},
	{"libpod-conmon-", "podman", true},
	{"libpod-", "podman", false},
}

// ParsePath reads a cgroup path (as in /proc/<pid>/cgroup, or relative to
// a hierarchy's mount) and reports whether it is inside a container, and
// which. When containers nest (a kind or k3d node is a docker container
// running pods) the innermost wins. A CRI-O or podman conmon scope is not
// a container: ok is false and ref names the watched container with
// Monitor set, unless the monitor itself runs inside an outer container,
// which is then the answer.
func ParsePath(cgroupPath string) (ref Ref, ok bool) {
	ref, _, ok = parsePath(cgroupPath)
	return ref, ok
}

// parsePath is ParsePath that also counts the containers nested in the
// path, so that callers holding several paths of one process can prefer
// the most deeply nested answer.
func parsePath(p string) (ref Ref, depth int, ok bool) {
	var (
		pod       string // pod uid seen since the last container
		parent    string // the previous element
		parentPod bool   // the previous element was a cgroupfs pod<uid>
		monitor   *Ref   // a conmon scope seen after the last container
	)
	for p != "" {
		var elem string
		elem, p, _ = strings.Cut(p, "/")
		if elem == "" {
			continue
		}
		afterPod, afterDocker := parentPod, parent == "docker"
		parent, parentPod = elem, false
		if uid, isPod := podElem(elem); isPod {
			pod, parentPod = uid, !strings.HasSuffix(elem, ".slice")
			continue
		}
		r, isContainer := containerElem(elem, afterPod)
		if !isContainer {
			continue
		}
		if afterDocker && r.Runtime == "" {
			r.Runtime = "docker" // dockerd's cgroupfs layout: /docker/<id>
		}
		r.PodUID, pod = pod, ""
		if r.Monitor {
			monitor = &r
			continue
		}
		ref, depth, monitor = r, depth+1, nil
	}
	if depth > 0 {
		return ref, depth, true
	}
	if monitor != nil {
		return *monitor, 0, false
	}
	return Ref{PodUID: pod}, 0, false
}

// containerElem recognises one path element as a container's cgroup.
// afterPod says the element sits directly under a cgroupfs pod<uid>
// directory, where the kubelet's layout makes any runc id a container.
func containerElem(elem string, afterPod bool) (Ref, bool) {
	name := strings.TrimSuffix(elem, ".scope")
	for _, s := range scopePrefixes {
		if id, found := strings.CutPrefix(name, s.prefix); found && isHexID(id) {
			return Ref{ID: id, Runtime: s.runtime, Monitor: s.monitor}, true
		}
	}
	// runc run --systemd-cgroup without a cgroupsPath puts the container
	// in system.slice:runc:<id>, the unit runc-<id>.scope, whatever the id.
	// (Without systemd runc uses /<id>: a path that says nothing by itself,
	// which the resolver tells from a host cgroup by runc's state.)
	if id, found := strings.CutPrefix(elem, "runc-"); found {
		if id, found = strings.CutSuffix(id, ".scope"); found && isRuncID(id) {
			return Ref{ID: id, Runtime: "runc"}, true
		}
	}
	switch {
	case isHexID(elem):
		return Ref{ID: elem}, true
	case afterPod && isRuncID(elem):
		return Ref{ID: elem}, true
	}
	return Ref{}, false
}

// podElem recognises a kubelet pod cgroup: pod<uid> under the cgroupfs
// driver, <parent>-pod<uid_with_underscores>.slice under systemd.
func podElem(elem string) (uid string, ok bool) {
	if name, found := strings.CutSuffix(elem, ".slice"); found {
		i := strings.LastIndex(name, "-pod")
		if i < 0 {
			return "", false
		}
		uid = strings.ReplaceAll(name[i+len("-pod"):], "_", "-")
	} else if uid, found = strings.CutPrefix(elem, "pod"); !found {
		return "", false
	}
	return uid, isPodUID(uid)
}

// isPodUID accepts a UUID (8-4-4-4-12 hex digits) or 32 bare hex digits,
// the form the kubelet gives static pods.
func isPodUID(s string) bool {
	switch len(s) {
	case 32:
		return isHex(s)
	case 36:
		for i := range len(s) {
			dash := i == 8 || i == 13 || i == 18 || i == 23
			if dash != (s[i] == '-') || !dash && !isHexDigit(s[i]) {
				return false
			}
		}
		return true
	}
	return false
}

// isHexID reports whether s is a 64-digit lowercase hex container id.
func isHexID(s string) bool { return len(s) == 64 && isHex(s) }

func isHex(s string) bool {
	for i := range len(s) {
		if !isHexDigit(s[i]) {
			return false
		}
	}
	return true
}

func isHexDigit(c byte) bool { return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' }

// isRuncID is runc's own rule for container ids (^[\w+\-\.]+$), less the
// two names that are not directories of their own.
func isRuncID(s string) bool {
	if s == "" || s == "." || s == ".." || len(s) > 1024 {
		return false
	}
	for i := range len(s) {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
			c == '_' || c == '+' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}
