// Package container attributes a process to the container, and the
// Kubernetes pod, it runs in. The sensor asks its Resolver for every event
// (Resolve implements sensor.Containers) with the two cgroup ids its eBPF
// programs record and the process's host pid; events carry the
// *event.Container it returns.
//
// # From cgroup id to path
//
// cgroupV2 is the id of the process's cgroup in the unified (cgroup2)
// hierarchy; cgroupV1 that of its directory in the cgroup v1 memory
// controller's hierarchy, on hosts that still mount one. Both ids are
// kernfs node ids, which on 64-bit machines are the directories' inode
// numbers. The Resolver finds the hierarchies in /proc/self/mountinfo:
// /sys/fs/cgroup on pure cgroup v2 hosts; /sys/fs/cgroup/unified and
// /sys/fs/cgroup/memory on hybrid ones; under Options.HostRoot (e.g.
// /host/sys/fs/cgroup) when the sensor runs in a pod. It maps an id to a
// path, in order:
//
//  1. from its cache (host cgroups are cached too);
//  2. by file handle: open_by_handle_at on the hierarchy's mount with a
//     kernfs handle (type 0xfe, the 8-byte id), then readlink of the new
//     descriptor, O(1), needing CAP_DAC_READ_SEARCH;
//  3. by walking the hierarchy and comparing inode numbers, at most once
//     per Options.RewalkInterval, when file handles are not available;
//  4. from /proc/<pid>/cgroup, every line, when the ids are 0 or could not
//     be mapped yet. That answer is cached under the ids only when a stat
//     shows the paths are the ids' directories: the file tells where the
//     process is now, not where it was when the event happened.
//
// When both ids name containers the more deeply nested one wins, the
// unified hierarchy's on a tie. On hybrid hosts a runtime may leave the
// unified hierarchy alone, and then only the memory controller's path
// names the container.
//
// # From path to container
//
// ParsePath reads the container id, the runtime and the pod uid out of a
// cgroup path. Layouts, innermost container first when they nest (a kind
// or k3d node is a Docker container whose cgroup holds the node's pods):
//
//	containerd, systemd  /kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod<uid_with_underscores>.slice/cri-containerd-<id>.scope
//	kubelet, cgroupfs    /kubepods/burstable/pod<uid>/<id>   (/kubepods/pod<uid>/<id> for guaranteed pods; any runtime, any runc id)
//	CRI-O                .../crio-<id>.scope, .../pod<uid>/crio-<id>; crio-conmon-<id>.scope is its monitor, a host process
//	Docker               /docker/<id>, /system.slice/docker-<id>.scope
//	podman               /machine.slice/libpod-<id>.scope[/container]; libpod-conmon-<id>.scope is its monitor
//	nested (kind, k3d)   /docker/<node id>/kubelet.slice/.../kubelet-kubepods-...-pod<uid>.slice/cri-containerd-<id>.scope
//
// Anything else (/, /system.slice/ssh.service, /user.slice/...) is the
// host.
//
// # Enrichment
//
// The first time a container is seen, Enrichers add what its runtime
// recorded: OCI reads runc's state.json (under containerd's, Docker's or
// runc's own state directory) for the creation time and the bundle, and
// the bundle's config.json for the annotations containerd's CRI plugin and
// CRI-O write (container, pod, namespace, image); Docker reads Docker's
// config.v2.json. A CRI enricher (NewCRI), last, asks the runtime's CRI
// socket about what those left out (ContainerStatus, PodSandboxStatus),
// in the background so that the event path never waits on the socket
// for long. An optional PodSource adds what the Kubernetes API knows
// (labels, the owning workload, see WorkloadFromOwners). A container none
// of them knew yet is described again every Options.RetryInterval for a
// while, since the runtime may not have written its state when the
// container's first process ran.
//
// # Containers that are gone
//
// A container's cgroup directory is removed when it stops (runc deletes
// it), and its processes' /proc entries are gone by then too, so an event
// first resolved after that, typically a late exit, is attributed to the
// host. Because every resolved pair of ids is cached from the first event
// of a process in the container (usually its exec, while it runs), this is
// rare: it takes a container whose first event reaches the Resolver after
// the container ended, or one evicted from the bounded caches meanwhile.
package container
