package event

import "time"

// Kind names what an Event reports. Kinds are part of the public contract:
// rules, exporters and users match on them.
type Kind string

// Event kinds emitted by the node sensor.
const (
	ProcessExec     Kind = "process.exec"
	ProcessExit     Kind = "process.exit"
	NetworkConnect  Kind = "network.connect"
	NetworkListen   Kind = "network.listen"
	FileOpen        Kind = "file.open"
	FileWrite       Kind = "file.write"
	FileChmod       Kind = "file.chmod"
	KernelModule    Kind = "kernel.module"
	NamespaceChange Kind = "namespace.change"
	Ptrace          Kind = "ptrace"
	MemfdCreate     Kind = "memfd.create"
	MemfdExec       Kind = "memfd.exec"
	SensorHealth    Kind = "sensor.health"
)

// SensorKinds are the kinds the node sensor emits.
var SensorKinds = []Kind{
	ProcessExec, ProcessExit, NetworkConnect, NetworkListen, FileOpen, FileWrite, FileChmod,
	KernelModule, NamespaceChange, Ptrace, MemfdCreate, MemfdExec, SensorHealth,
}

// K8sAudit is a Kubernetes API server audit event (Audit set).
const K8sAudit Kind = "k8s.audit"

// Event is one thing that happened on a node. Exactly the sub-objects that
// make sense for its Kind are set; host processes have no Container.
type Event struct {
	Kind      Kind       `json:"kind"`
	Time      time.Time  `json:"time"`
	Node      string     `json:"node,omitempty"`
	Process   *Process   `json:"process,omitempty"`
	Container *Container `json:"container,omitempty"`
	Network   *Network   `json:"network,omitempty"`
	File      *File      `json:"file,omitempty"`
	Module    *Module    `json:"module,omitempty"`
	Namespace *Namespace `json:"namespace,omitempty"`
	Ptrace    *PtraceReq `json:"ptrace,omitempty"`
	Syscall   *Syscall   `json:"syscall,omitempty"`
	Health    *Health    `json:"health,omitempty"`
	Audit     *Audit     `json:"audit,omitempty"`
}

// Process describes the process an event is about, with its parent and
// ancestry as the sensor's process tree knew them when the event happened.
type Process struct {
	Pid           uint32    `json:"pid"`
	Ppid          uint32    `json:"ppid"`
	Tid           uint32    `json:"tid,omitempty"`
	UID           uint32    `json:"uid"`
	GID           uint32    `json:"gid"`
	EUID          uint32    `json:"euid"`
	Exe           string    `json:"exe"`
	Args          []string  `json:"args,omitempty"`
	ArgsTruncated bool      `json:"args_truncated,omitempty"`
	Cwd           string    `json:"cwd,omitempty"`
	Comm          string    `json:"comm,omitempty"`
	TTY           string    `json:"tty,omitempty"`
	ExecID        string    `json:"exec_id,omitempty"`
	ParentExecID  string    `json:"parent_exec_id,omitempty"`
	StartTime     time.Time `json:"start_time,omitzero"`
	CgroupID      uint64    `json:"cgroup_id,omitempty"`
	PidNS         uint32    `json:"pid_ns,omitempty"`
	MntNS         uint32    `json:"mnt_ns,omitempty"`
	// UpperLayer is true when the executable lives in the writable (upper)
	// layer of an overlay root filesystem: it was not part of the image.
	UpperLayer bool `json:"upper_layer"`
	// ExeWrittenAfterStart is true when the executable's inode changed after
	// the container started (the drift signal for non-overlay roots).
	ExeWrittenAfterStart bool `json:"exe_written_after_start,omitempty"`
	// Drift is true when either signal above says the binary is not the image's.
	Drift bool `json:"drift,omitempty"`
	// Memfd is true when the executable is an anonymous memfd file.
	Memfd bool `json:"memfd,omitempty"`
	// ExecFailed marks a process.exec that is an attempt: execve/execveat
	// returned an error (in Syscall) and the process kept its image. Exe
	// and Args are what it tried to run; the process tree is unchanged.
	ExecFailed bool      `json:"exec_failed,omitempty"`
	ExitCode   *int      `json:"exit_code,omitempty"`
	Signal     int       `json:"signal,omitempty"`
	Parent     *Lineage  `json:"parent,omitempty"`
	Ancestry   []Lineage `json:"ancestry,omitempty"`
}

// Lineage is the short form of a process used for parents and ancestors.
type Lineage struct {
	Pid    uint32   `json:"pid"`
	Exe    string   `json:"exe,omitempty"`
	Args   []string `json:"args,omitempty"`
	ExecID string   `json:"exec_id,omitempty"`
}

// Container attributes a process to the container and pod it runs in.
type Container struct {
	ID        string            `json:"id"`
	Runtime   string            `json:"runtime,omitempty"`
	Name      string            `json:"name,omitempty"`
	Image     string            `json:"image,omitempty"`
	ImageID   string            `json:"image_id,omitempty"`
	Pod       string            `json:"pod,omitempty"`
	PodUID    string            `json:"pod_uid,omitempty"`
	Namespace string            `json:"namespace,omitempty"`
	Workload  string            `json:"workload,omitempty"`
	Labels    map[string]string `json:"labels,omitempty"`
	StartTime time.Time         `json:"start_time,omitzero"`
}

// Network is the socket side of a connect or listen.
type Network struct {
	Protocol string `json:"protocol"`
	Family   string `json:"family,omitempty"`
	Src      string `json:"src,omitempty"`
	Dst      string `json:"dst,omitempty"`
	// Send marks a network.connect that is an unconnected send
	// (sendto/sendmsg with a destination: UDP without connect(), TCP Fast
	// Open), reported once per process, socket and destination a minute.
	Send bool `json:"send,omitempty"`
}

// File is the file side of open, write, chmod and memfd events.
type File struct {
	Path  string `json:"path"`
	Op    string `json:"op"`
	Flags string `json:"flags,omitempty"`
	Mode  string `json:"mode,omitempty"`
	// Resolved marks a Path that is the real path of the opened file, found
	// after the open because the path the caller passed (RequestedPath:
	// relative, with "//" or "/./", through a symlink, a dirfd or
	// /proc/self/root) did not name a watched file as written.
	Resolved      bool   `json:"resolved,omitempty"`
	RequestedPath string `json:"requested_path,omitempty"`
}

// Module is a kernel module load or unload attempt.
type Module struct {
	Op   string `json:"op"`
	Name string `json:"name,omitempty"` // the module file (finit_module) or name (delete_module)
	// Params are the module parameters given to init_module.
	Params string `json:"params,omitempty"`
	// Size is the byte length of the image given to init_module.
	Size uint64 `json:"size,omitempty"`
}

// Namespace is an unshare or setns call.
type Namespace struct {
	Op    string   `json:"op"`
	Types []string `json:"types,omitempty"`
}

// PtraceReq is a ptrace call against another process.
type PtraceReq struct {
	Request   string `json:"request"`
	TargetPid uint32 `json:"target_pid"`
}

// Syscall is the outcome of the system call behind an event. Events are
// recorded whether or not the call succeeded: a failed attempt is intent.
type Syscall struct {
	Name  string `json:"name"`
	Ret   int64  `json:"ret"`
	Errno string `json:"errno,omitempty"`
}

// Health reports the sensor's own state: what it loaded, what it lost.
type Health struct {
	// Mode is "ebpf", or "netlink" in the fallback that sees execs only.
	Mode     string   `json:"mode"`
	Warnings []string `json:"warnings,omitempty"`
	// EventsTotal counts events the sensor emitted.
	EventsTotal uint64 `json:"events_total"`
	// DroppedTotal counts kernel records lost because the ring buffer was
	// full, per CPU and per record kind below; KernelSentByKind counts the
	// records that made it, so sent+dropped is what happened.
	DroppedTotal     uint64            `json:"dropped_total"`
	DroppedPerCPU    []uint64          `json:"dropped_per_cpu,omitempty"`
	DroppedByKind    map[string]uint64 `json:"dropped_by_kind,omitempty"`
	KernelSentByKind map[string]uint64 `json:"kernel_sent_by_kind,omitempty"`
	DecodeErrors     uint64            `json:"decode_errors_total"`
	ProcessCache     int               `json:"process_cache"`
	CacheEvictions   uint64            `json:"cache_evictions_total"`
}
