package detect

import (
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"unsafe"

	"github.com/google/cel-go/cel"

	"github.com/vigil-sec/vigil/internal/audit"
	"github.com/vigil-sec/vigil/internal/event"
)

// fieldType is what a field holds, in CEL's terms and for the native
// matchers of prefilter.go.
type fieldType int

const (
	tString fieldType = iota
	tInt
	tBool
	tList // list<string>
	tMap  // map<string, string>
)

func (t fieldType) cel() *cel.Type {
	switch t {
	case tInt:
		return cel.IntType
	case tBool:
		return cel.BoolType
	case tList:
		return cel.ListType(cel.StringType)
	case tMap:
		return cel.MapType(cel.StringType, cel.StringType)
	}
	return cel.StringType
}

// field is one name a rule condition or an evidence list can use. Exactly
// the getter of its type is set. Getters never fail: a field the event does
// not have reads as the zero value ("", 0, false, empty).
type field struct {
	name string
	typ  fieldType
	doc  string
	str  func(*view) string
	num  func(*view) int64
	flag func(*view) bool
	list func(*view) []string
	dict func(*view) map[string]string
}

// fields is the vocabulary of rule conditions, in the order `vigil rules
// fields` prints it. Names are stable: they are part of the rule language.
var fields = slices.Concat(sensorFields, auditFields)

// sensorFields are the fields of the node sensor's events.
var sensorFields = []*field{
	{name: "kind", typ: tString, doc: "event kind, e.g. process.exec", str: func(v *view) string { return string(v.e.Kind) }},
	{name: "node", typ: tString, doc: "node name", str: func(v *view) string { return v.e.Node }},

	{name: "proc.pid", typ: tInt, doc: "process id", num: func(v *view) int64 { return int64(v.proc().Pid) }},
	{name: "proc.ppid", typ: tInt, doc: "parent process id", num: func(v *view) int64 { return int64(v.proc().Ppid) }},
	{name: "proc.uid", typ: tInt, doc: "real user id", num: func(v *view) int64 { return int64(v.proc().UID) }},
	{name: "proc.euid", typ: tInt, doc: "effective user id", num: func(v *view) int64 { return int64(v.proc().EUID) }},
	{name: "proc.gid", typ: tInt, doc: "real group id", num: func(v *view) int64 { return int64(v.proc().GID) }},
	{name: "proc.exe", typ: tString, doc: "executable path", str: func(v *view) string { return v.proc().Exe }},
	{name: "proc.name", typ: tString, doc: "executable base name (argv[0]'s for memfd and busybox-style multi-call binaries is proc.argv0)", str: func(v *view) string { return v.baseNames().name }},
	{name: "proc.argv0", typ: tString, doc: "base name of argv[0]", str: func(v *view) string { return v.baseNames().argv0 }},
	{name: "proc.args", typ: tList, doc: "argv, argv[0] included", list: func(v *view) []string { return v.proc().Args }},
	{name: "proc.cmdline", typ: tString, doc: "argv joined by spaces", str: func(v *view) string { return v.cmdline() }},
	{name: "proc.cwd", typ: tString, doc: "working directory", str: func(v *view) string { return v.proc().Cwd }},
	{name: "proc.comm", typ: tString, doc: "kernel comm (15 bytes)", str: func(v *view) string { return v.proc().Comm }},
	{name: "proc.tty", typ: tString, doc: "controlling terminal, empty when none", str: func(v *view) string { return v.proc().TTY }},
	{name: "proc.upper_layer", typ: tBool, doc: "executable lives in the container's writable overlay layer", flag: func(v *view) bool { return v.proc().UpperLayer }},
	{name: "proc.drift", typ: tBool, doc: "executable was not part of the container image", flag: func(v *view) bool { return v.proc().Drift }},
	{name: "proc.memfd", typ: tBool, doc: "executable is an anonymous memfd file (fileless)", flag: func(v *view) bool { return v.proc().Memfd }},
	{name: "proc.exit_code", typ: tInt, doc: "exit code of process.exit", num: func(v *view) int64 {
		if c := v.proc().ExitCode; c != nil {
			return int64(*c)
		}
		return 0
	}},

	{name: "parent.pid", typ: tInt, doc: "parent process id", num: func(v *view) int64 { return int64(v.parent().Pid) }},
	{name: "parent.exe", typ: tString, doc: "parent executable path", str: func(v *view) string { return v.parent().Exe }},
	{name: "parent.name", typ: tString, doc: "parent executable base name", str: func(v *view) string { return basename(v.parent().Exe) }},
	{name: "parent.cmdline", typ: tString, doc: "parent argv joined by spaces", str: func(v *view) string { return v.parentCmdline() }},
	{name: "ancestors.names", typ: tList, doc: "base names of the executables of the parent, grandparent and so on", list: func(v *view) []string { return v.ancestorNames() }},
	{name: "ancestors.exes", typ: tList, doc: "executable paths of the parent, grandparent and so on", list: func(v *view) []string { return v.ancestorExes() }},

	{name: "container.id", typ: tString, doc: "container id, empty on the host", str: func(v *view) string { return v.ctr().ID }},
	{name: "container.name", typ: tString, doc: "container name", str: func(v *view) string { return v.ctr().Name }},
	{name: "container.image", typ: tString, doc: "image reference", str: func(v *view) string { return v.ctr().Image }},
	{name: "container.image_repo", typ: tString, doc: "image reference without tag or digest", str: func(v *view) string { return imageRepo(v.ctr().Image) }},
	{name: "container.pod", typ: tString, doc: "pod name", str: func(v *view) string { return v.ctr().Pod }},
	{name: "container.namespace", typ: tString, doc: "pod namespace", str: func(v *view) string { return v.ctr().Namespace }},
	{name: "container.workload", typ: tString, doc: "owning workload, e.g. Deployment/shop/web", str: func(v *view) string { return v.ctr().Workload }},
	{name: "container.labels", typ: tMap, doc: "pod labels", dict: func(v *view) map[string]string { return v.ctr().Labels }},
	{name: "in_container", typ: tBool, doc: "the process is a container's workload (not the runtime's own init setting the container up)", flag: func(v *view) bool {
		return v.e.Container != nil && v.e.Container.ID != "" && !isRuntimeInit(v.proc())
	}},

	{name: "net.protocol", typ: tString, doc: "tcp or udp", str: func(v *view) string { return v.net().Protocol }},
	{name: "net.family", typ: tString, doc: "ipv4 or ipv6", str: func(v *view) string { return v.net().Family }},
	{name: "net.dst_ip", typ: tString, doc: "destination address", str: func(v *view) string { ip, _ := splitHostPort(v.net().Dst); return ip }},
	{name: "net.dst_port", typ: tInt, doc: "destination port", num: func(v *view) int64 { _, p := splitHostPort(v.net().Dst); return p }},
	{name: "net.src_ip", typ: tString, doc: "source (local) address", str: func(v *view) string { ip, _ := splitHostPort(v.net().Src); return ip }},
	{name: "net.src_port", typ: tInt, doc: "source (local) port; the listening port of network.listen", num: func(v *view) int64 { _, p := splitHostPort(v.net().Src); return p }},
	{name: "net.dst_public", typ: tBool, doc: "destination is a global unicast address outside private, loopback and link-local ranges", flag: func(v *view) bool { return isPublic(v.net().Dst) }},

	{name: "file.path", typ: tString, doc: "file path as the process sees it", str: func(v *view) string { return v.file().Path }},
	{name: "file.name", typ: tString, doc: "file base name", str: func(v *view) string { return basename(v.file().Path) }},
	{name: "file.op", typ: tString, doc: "open, chmod, memfd_create", str: func(v *view) string { return v.file().Op }},
	{name: "file.flags", typ: tString, doc: "open flags, e.g. O_WRONLY|O_TRUNC", str: func(v *view) string { return v.file().Flags }},
	{name: "file.mode", typ: tString, doc: "chmod mode, octal", str: func(v *view) string { return v.file().Mode }},
	{name: "file.write", typ: tBool, doc: "opened for writing, creation or truncation", flag: func(v *view) bool { return isWriteOpen(v.file().Flags) }},
	{name: "file.executable", typ: tBool, doc: "chmod grants an execute bit", flag: func(v *view) bool { return isExecMode(v.file().Mode) }},

	{name: "module.op", typ: tString, doc: "load or unload", str: func(v *view) string {
		if v.e.Module == nil {
			return ""
		}
		return v.e.Module.Op
	}},
	{name: "module.name", typ: tString, doc: "module name when known", str: func(v *view) string {
		if v.e.Module == nil {
			return ""
		}
		return v.e.Module.Name
	}},
	{name: "ns.op", typ: tString, doc: "namespace change: unshare or setns (namespace is a reserved word in CEL)", str: func(v *view) string {
		if v.e.Namespace == nil {
			return ""
		}
		return v.e.Namespace.Op
	}},
	{name: "ns.types", typ: tList, doc: "namespace types of an unshare or setns, e.g. user, mnt", list: func(v *view) []string {
		if v.e.Namespace == nil {
			return nil
		}
		return v.e.Namespace.Types
	}},
	{name: "ptrace.request", typ: tString, doc: "ptrace request, e.g. PTRACE_POKETEXT", str: func(v *view) string {
		if v.e.Ptrace == nil {
			return ""
		}
		return v.e.Ptrace.Request
	}},
	{name: "ptrace.target_pid", typ: tInt, doc: "traced process id", num: func(v *view) int64 {
		if v.e.Ptrace == nil {
			return 0
		}
		return int64(v.e.Ptrace.TargetPid)
	}},
	{name: "syscall.name", typ: tString, doc: "system call behind the event", str: func(v *view) string { return v.sys().Name }},
	{name: "syscall.ret", typ: tInt, doc: "its return value", num: func(v *view) int64 { return v.sys().Ret }},
	{name: "syscall.errno", typ: tString, doc: "its error, e.g. EPERM; empty on success", str: func(v *view) string { return v.sys().Errno }},
	{name: "syscall.failed", typ: tBool, doc: "the call failed (the attempt still shows intent)", flag: func(v *view) bool { return v.sys().Errno != "" }},
}

var fieldByName = func() map[string]*field {
	m := make(map[string]*field, len(fields))
	for _, f := range fields {
		m[f.name] = f
	}
	return m
}()

// value returns f's value for v as a Go value CEL and JSON understand.
// Strings are copied: v's scratch buffers are reused for the next event.
func (f *field) value(v *view) any {
	switch f.typ {
	case tInt:
		return f.num(v)
	case tBool:
		return f.flag(v)
	case tList:
		l := f.list(v)
		if l == nil {
			return []string{}
		}
		return l
	case tMap:
		m := f.dict(v)
		if m == nil {
			return map[string]string{}
		}
		return m
	}
	return strings.Clone(f.str(v))
}

// view is the event under evaluation with its derived values (command
// lines, base names, addresses) computed once, on first use, into buffers
// that the next event reuses: evaluating a benign event allocates nothing.
type view struct {
	e *event.Event

	cmd, pcmd       []byte // buffers of cmdS and pcmdS
	cmdS, pcmdS     string
	cmdOK, pcmdOK   bool
	base            procNames // proc.name and proc.argv0, which many rules look up
	baseOK          bool
	names, exes     []string
	namesOK, exesOK bool
	zeroProc        event.Process
	zeroLineage     event.Lineage
	zeroCtr         event.Container
	zeroNet         event.Network
	zeroFile        event.File
	zeroSys         event.Syscall

	object *audit.Object // k8s.audit: the decoded object
	objOK  bool

	groups groupCache // stateful rules' groups (stateful.go)
}

// reset points v at e and forgets the previous event's derived values.
func (v *view) reset(e *event.Event) {
	v.e = e
	v.cmdOK, v.pcmdOK, v.namesOK, v.exesOK, v.objOK, v.baseOK = false, false, false, false, false, false
	v.groups.userOK, v.groups.treeOK = false, false
	v.cmdS, v.pcmdS = "", ""
	v.base = procNames{}
}

type procNames struct{ name, argv0 string }

// baseNames returns proc.name and proc.argv0, computed once per event.
func (v *view) baseNames() *procNames {
	if !v.baseOK {
		p := v.proc()
		v.base = procNames{basename(p.Exe), basename(first(p.Args))}
		v.baseOK = true
	}
	return &v.base
}

func (v *view) proc() *event.Process {
	if v.e.Process != nil {
		return v.e.Process
	}
	return &v.zeroProc
}

func (v *view) parent() *event.Lineage {
	if p := v.e.Process; p != nil && p.Parent != nil {
		return p.Parent
	}
	return &v.zeroLineage
}

func (v *view) ctr() *event.Container {
	if v.e.Container != nil {
		return v.e.Container
	}
	return &v.zeroCtr
}

func (v *view) net() *event.Network {
	if v.e.Network != nil {
		return v.e.Network
	}
	return &v.zeroNet
}

func (v *view) file() *event.File {
	if v.e.File != nil {
		return v.e.File
	}
	return &v.zeroFile
}

func (v *view) sys() *event.Syscall {
	if v.e.Syscall != nil {
		return v.e.Syscall
	}
	return &v.zeroSys
}

// cmdline is argv joined by spaces. The string aliases v's buffer (or
// the event's only argument): it is valid until the next reset, and
// field.value copies it before it escapes.
func (v *view) cmdline() string {
	if !v.cmdOK {
		v.cmdS = joinArgs(&v.cmd, v.proc().Args)
		v.cmdOK = true
	}
	return v.cmdS
}

func (v *view) parentCmdline() string {
	if !v.pcmdOK {
		v.pcmdS = joinArgs(&v.pcmd, v.parent().Args)
		v.pcmdOK = true
	}
	return v.pcmdS
}

func (v *view) ancestorNames() []string {
	if !v.namesOK {
		v.names = v.names[:0]
		for _, a := range v.ancestry() {
			v.names = append(v.names, basename(a.Exe))
		}
		v.namesOK = true
	}
	return v.names
}

func (v *view) ancestorExes() []string {
	if !v.exesOK {
		v.exes = v.exes[:0]
		for _, a := range v.ancestry() {
			v.exes = append(v.exes, a.Exe)
		}
		v.exesOK = true
	}
	return v.exes
}

// ancestry is the parent first, then its ancestors. The sensor's Ancestry
// already starts with the parent; a bare Parent (fixtures, audit events)
// stands alone. In a container it ends at the container runtime (runc,
// containerd-shim, ...): what started the runtime on the host is not the
// container's story, and rules must not see the node's tooling there.
func (v *view) ancestry() []event.Lineage {
	p := v.e.Process
	if p == nil {
		return nil
	}
	if len(p.Ancestry) > 0 {
		if v.e.Container != nil && v.e.Container.ID != "" {
			for i, a := range p.Ancestry {
				if isContainerRuntime(basename(a.Exe)) || len(a.Args) > 0 && isContainerRuntime(basename(a.Args[0])) {
					return p.Ancestry[:i+1]
				}
			}
		}
		return p.Ancestry
	}
	if p.Parent != nil {
		return []event.Lineage{*p.Parent}
	}
	return nil
}

// joinArgs joins args with spaces into *buf, which it grows once to the
// length needed and keeps for the next call, and returns the result as a
// string aliasing *buf. A single argument is returned as it is.
func joinArgs(buf *[]byte, args []string) string {
	switch len(args) {
	case 0:
		return ""
	case 1:
		return args[0]
	}
	n := len(args) - 1
	for _, a := range args {
		n += len(a)
	}
	b := slices.Grow((*buf)[:0], n)
	for i, a := range args {
		if i > 0 {
			b = append(b, ' ')
		}
		b = append(b, a...)
	}
	*buf = b
	return unsafeString(b)
}

func unsafeString(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}

func first(l []string) string {
	if len(l) == 0 {
		return ""
	}
	return l[0]
}

// basename is the last element of a slash-separated path, without
// allocating; "memfd:x (deleted)" and other non-paths come back whole.
func basename(p string) string {
	if i := strings.LastIndexByte(p, '/'); i >= 0 {
		return p[i+1:]
	}
	return p
}

// imageRepo strips the tag and digest: "ghcr.io/a/b:1.2@sha256:..." -> "ghcr.io/a/b".
func imageRepo(ref string) string {
	if i := strings.IndexByte(ref, '@'); i >= 0 {
		ref = ref[:i]
	}
	if i := strings.LastIndexByte(ref, ':'); i >= 0 && !strings.Contains(ref[i:], "/") {
		ref = ref[:i]
	}
	return ref
}

// splitHostPort splits "1.2.3.4:80" and "[::1]:80" without allocating.
func splitHostPort(hp string) (string, int64) {
	i := strings.LastIndexByte(hp, ':')
	if i < 0 {
		return hp, 0
	}
	host, port := hp[:i], hp[i+1:]
	if len(host) >= 2 && host[0] == '[' && host[len(host)-1] == ']' {
		host = host[1 : len(host)-1]
	}
	p, err := strconv.ParseInt(port, 10, 32)
	if err != nil {
		return hp, 0
	}
	return host, p
}

func isPublic(hp string) bool {
	host, _ := splitHostPort(hp)
	a, err := netip.ParseAddr(host)
	if err != nil {
		return false
	}
	a = a.Unmap()
	return a.IsGlobalUnicast() && !a.IsPrivate() && !cgnat.Contains(a)
}

var cgnat = netip.MustParsePrefix("100.64.0.0/10")

func isWriteOpen(flags string) bool {
	return strings.Contains(flags, "O_WRONLY") || strings.Contains(flags, "O_RDWR") ||
		strings.Contains(flags, "O_TRUNC") || strings.Contains(flags, "O_CREAT")
}

// isExecMode reports whether an octal chmod mode grants any execute bit.
func isExecMode(mode string) bool {
	m, err := strconv.ParseUint(strings.TrimPrefix(mode, "0o"), 8, 32)
	return err == nil && m&0o111 != 0
}

// FieldInfo documents one name of the rule language.
type FieldInfo struct{ Name, Type, Doc string }

// Fields lists the fields conditions can use, for `vigil rules fields`.
func Fields() []FieldInfo {
	out := make([]FieldInfo, len(fields))
	for i, f := range fields {
		out[i] = FieldInfo{f.name, f.typ.cel().String(), f.doc}
	}
	return out
}

// Functions lists Vigil's additions to CEL's standard functions.
func Functions() []FieldInfo {
	return []FieldInfo{
		{"contains_any(string, list<string>)", "bool", "the string contains any of the substrings"},
		{"image_in(string, list<string>)", "bool", "the image reference names an item as whole words, between / : @ - _ . (\"csi\" matches sig-storage/csi-provisioner, not csiminer); an item starting with a registry host must start the reference"},
		{"any_in(list<string>, list<string>)", "bool", "any element of the first list is in the second (e.g. any_in(ancestors.names, web_server_binaries))"},
		{"basename(string)", "string", "last element of a path"},
		{"ti_miner_binary / ti_attack_tool / ti_scanner / ti_credential_tool / ti_ddos_tool / ti_proxyware(name)", "bool", "the executable name is on that threat-intelligence list"},
		{"ti_miner_pool / ti_oast_domain / ti_malicious_domain(host)", "bool", "the host or a parent domain is on that list"},
		{"ti_malicious_ip(ip)", "bool", "the address is on the malicious-IP list"},
		{"ti_miner_port(int)", "bool", "a port mining pools commonly use"},
		{"ti_miner_pool_in / ti_oast_domain_in / ti_malicious_domain_in / ti_malicious_ip_in(text)", "bool", "free text (a command line) names a host or address on that list"},
	}
}

// isContainerRuntime names the processes that start containers: the edge
// between a container's process tree and the node's.
func isContainerRuntime(name string) bool {
	switch name {
	case "runc", "crun", "youki", "runsc", "conmon", "containerd", "dockerd":
		return true
	}
	return strings.HasPrefix(name, "containerd-shim")
}

// isRuntimeInit reports the container runtime's own init process (runc
// init and its kin), which runs inside the new container's cgroup and
// namespaces to set it up before the workload's exec.
func isRuntimeInit(p *event.Process) bool {
	if strings.HasPrefix(p.Comm, "runc:") {
		return true
	}
	return len(p.Args) > 1 && p.Args[1] == "init" && isContainerRuntime(basename(p.Args[0]))
}
