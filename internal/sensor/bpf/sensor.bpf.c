//go:build ignore

// SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0)
/*
 * Vigil's node sensor: what processes do, seen from the kernel.
 *
 * Process lifecycle comes from raw scheduler tracepoints (exec, fork,
 * exit); everything else from syscall tracepoints, recorded at sys_enter
 * and sent at sys_exit with the return value, so that a failed attempt is
 * reported as well as a successful one. Sensitive-path opens are filtered
 * here, in the kernel, against the watched_prefix and watched_name maps
 * user space fills. Records go to one ring buffer; a record that does not
 * fit is counted per CPU and per kind in the drops map, never lost silently.
 *
 * Only CO-RE reads (BPF_CORE_READ) touch kernel structs, so one object
 * runs on every kernel with BTF. No kprobes, fentry or LSM: tracepoints and
 * raw tracepoints work wherever eBPF does.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>
#include "sensor.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define OVERLAYFS_SUPER_MAGIC 0x794c7630
#define AF_INET 2
#define AF_INET6 10
#define EINTR 4
#define AT_FDCWD -100
#define AT_EMPTY_PATH 0x1000
/* An unconnected send to one destination is reported once per socket per window. */
#define SEND_WINDOW_NS (60ULL * 1000000000ULL)
/* CLONE_NEWNS, NEWCGROUP, NEWUTS, NEWIPC, NEWUSER, NEWPID, NEWNET, NEWTIME */
#define NS_CLONE_FLAGS (0x00020000 | 0x02000000 | 0x04000000 | 0x08000000 | 0x10000000 | 0x20000000 | 0x40000000 | 0x00000080)

#ifndef container_of
#define container_of(ptr, type, member) ((type *)((void *)(ptr) - bpf_core_field_offset(type, member)))
#endif

/* Set by user space before load. */
volatile const __u32 self_tgid = 0;
/*
 * Wake the reader only once this many bytes wait in the ring buffer (0:
 * after every record). The reader also wakes on a timer, so records never
 * wait longer than its latency bound; batching saves a wakeup per record,
 * which on an exec-heavy node is most of the sensor's cost.
 */
volatile const __u64 wakeup_bytes = 0;
#define NAME_LENS 16
/*
 * The distinct lengths of the names in watched_name, 0 for unused slots.
 * Writable data, not a constant: with constants, 6.1's verifier walks
 * dead branches with impossible bounds and rejects the program.
 */
__u32 name_lens[NAME_LENS] = {};
/*
 * The exit-time gate's first, cheapest step, filled by user space from
 * watched_leaf: for each name length (< 32), a bit per first character
 * (& 63) of the names of that length. leaf_gate covers the opened file's
 * own name (LEAF_FILE, LEAF_NAME), dir_gate its parent's and grandparent's
 * (LEAF_DIR). A name that misses costs two reads and no hash lookup.
 */
__u64 leaf_gate[32] = {};
__u64 dir_gate[32] = {};

/* Unused by the programs: they put the enums into BTF so that bpf2go generates their Go constants. */
volatile const enum record_kind record_kind_max = K_MAX;
volatile const enum exec_flags exec_flags_none = 0;
volatile const enum sys_call sys_call_none = 0;
volatile const enum path_source path_source_none = 0;
volatile const enum net_flags net_flags_none = 0;

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 8 << 20); /* resized by user space */
} events SEC(".maps");

/* Records that did not fit into the ring buffer, per CPU, by kind. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, K_MAX);
	__type(key, __u32);
	__type(value, __u64);
} drops SEC(".maps");

/* Records sent, per CPU, by kind: with drops, the exact count of what happened. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, K_MAX);
	__type(key, __u32);
	__type(value, __u64);
} sent SEC(".maps");

struct watch_key {
	__u32 prefixlen; /* in bits */
	char path[PATH_MAX_K];
};

/* Watched absolute paths (exact files and directory prefixes). */
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 1024);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct watch_key);
	__type(value, struct watch_value);
} watched_prefix SEC(".maps");

struct name_key {
	char name[32];
};

/* Watched base names, matched wherever they are (authorized_keys, .bash_history). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 256);
	__type(key, struct name_key);
	__type(value, __u8);
} watched_name SEC(".maps");

enum leaf_bits {
	LEAF_FILE = 1, /* base name of a watched exact path: walk and match */
	LEAF_NAME = 2, /* a watched base name: matches anywhere */
	LEAF_DIR = 4,  /* last component of a watched directory: an ancestor within two levels */
};

/*
 * The gate of the exit-time check: names user space derives from the
 * watched set. A successful open that the enter did not match is resolved
 * through its struct file only when the opened dentry's name, or its
 * parent's or grandparent's, is here.
 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 512);
	__type(key, struct name_key);
	__type(value, __u8);
} watched_leaf SEC(".maps");

/* Scratch for the forward path built at exit: the key, then slack for the last name. */
struct fwd_path {
	struct watch_key k;
	char slack[NAME_MAX_K];
	__u64 dents[WALK_DEPTH]; /* struct dentry *: a pointer array is beyond bpf2go */
	__u32 n;
	__u32 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct fwd_path);
} fwd_scratch SEC(".maps");

/*
 * A syscall seen at sys_enter, waiting for its sys_exit. Keyed by pid_tgid.
 * Plain hashes, not LRU: an LRU would evict a parked syscall silently,
 * while a full hash fails the update, which is counted in drops. Entries
 * of threads that died between enter and exit are swept by user space.
 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 8192);
	__type(key, __u64);
	__type(value, struct sys_record);
} pending SEC(".maps");

struct pending_net {
	__u64 fd;
	__u16 family;
	__u8 kind;    /* K_CONNECT or K_LISTEN, for drop accounting */
	__u8 sys;     /* enum sys_call */
	__u16 pad[2];
	__u8 addr[SOCKADDR_MAX];
	__u8 pad2[4];
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 8192);
	__type(key, __u64);
	__type(value, struct pending_net);
} pending_net SEC(".maps");

/* A failed execve/execveat's arguments, from its syscall registers. */
struct pending_exec {
	__u64 filename; /* user pointers */
	__u64 argv;
	__s64 dirfd;
	__u64 flags;
	__u8 sys;
	__u8 pad[7];
};


/* When a (process, socket, destination) was last reported for an unconnected send. */
struct send_key {
	__u32 tgid;
	__u32 fd;
	__u16 family;
	__u16 port; /* network order, as in the sockaddr */
	__u8 addr[16];
	__u8 pad[4];
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct send_key);
	__type(value, __u64);
} send_seen SEC(".maps");

/* Scratch space: records are too large for the 512-byte BPF stack. */
union scratch {
	struct exec_record exec;
	struct sys_record sys;
	struct net_record net;
	struct fork_record fork;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, union scratch);
} scratch SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct watch_key);
} watch_scratch SEC(".maps");

static __always_inline void count(void *map, __u32 kind)
{
	__u64 *n = bpf_map_lookup_elem(map, &kind);
	if (n)
		*n += 1;
}

static __always_inline void emit(void *rec, __u64 size, __u32 kind)
{
	__u64 flags = 0;
	if (wakeup_bytes)
		flags = bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA) + size >= wakeup_bytes ? BPF_RB_FORCE_WAKEUP
											    : BPF_RB_NO_WAKEUP;
	if (bpf_ringbuf_output(&events, rec, size, flags) == 0)
		count(&sent, kind);
	else
		count(&drops, kind);
}

static __always_inline union scratch *get_scratch(void)
{
	__u32 zero = 0;
	return bpf_map_lookup_elem(&scratch, &zero);
}

static __always_inline __u64 cgroup1_id(struct task_struct *task)
{
	int id = bpf_core_enum_value(enum cgroup_subsys_id, memory_cgrp_id);
	if (id < 0 || id >= 16)
		return 0;
	struct css_set *cs = BPF_CORE_READ(task, cgroups);
	struct cgroup_subsys_state *css = 0;
	bpf_core_read(&css, sizeof(css), &cs->subsys[id]);
	if (!css)
		return 0;
	return BPF_CORE_READ(css, cgroup, kn, id);
}

static __always_inline struct pid_namespace *active_pid_ns(struct task_struct *task)
{
	unsigned int level = BPF_CORE_READ(task, thread_pid, level);
	struct upid up;
	struct pid *pid = BPF_CORE_READ(task, thread_pid);
	/* numbers[] is a flexible array: read the element at level. */
	bpf_core_read(&up, sizeof(up), &pid->numbers[level & 31]);
	return up.ns;
}

static __always_inline int fill_header(struct header *h, __u8 kind, struct task_struct *task)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	__u32 tgid = pid_tgid >> 32;
	if (tgid == self_tgid)
		return -1;
	h->kind = kind;
	h->syscall = 0;
	h->flags = 0;
	h->cpu = bpf_get_smp_processor_id();
	h->ktime = bpf_ktime_get_boot_ns();
	h->tgid = tgid;
	h->tid = (__u32)pid_tgid;
	h->ppid = BPF_CORE_READ(task, real_parent, tgid);
	/* uid, gid, suid, sgid, euid: adjacent in struct cred on every kernel; one read. */
	const struct cred *cred = BPF_CORE_READ(task, cred);
	__u32 ids[5] = {};
	bpf_core_read(ids, sizeof(ids), &cred->uid);
	h->uid = ids[0];
	h->gid = ids[1];
	h->euid = ids[4];
	h->cgroup_id = bpf_get_current_cgroup_id();
	h->cgroup1_id = cgroup1_id(task);
	h->pid_ns = BPF_CORE_READ(active_pid_ns(task), ns.inum);
	h->mnt_ns = BPF_CORE_READ(task, nsproxy, mnt_ns, ns.inum);
	h->ret = 0;
	h->start_boottime = BPF_CORE_READ(task, group_leader, start_boottime);
	bpf_get_current_comm(h->comm, sizeof(h->comm));
	return 0;
}

/*
 * walk_path writes the path of (dentry, vfsmnt) as NUL-separated
 * components, leaf first, into buf, stopping at the task's root so that
 * a container's paths read as the container sees them. It returns the
 * bytes written; *truncated is set when the walk ran out of depth or space.
 */
static __always_inline __u32 walk_path(char *buf, struct dentry *dentry, struct vfsmount *vfsmnt,
				       struct task_struct *task, bool *truncated)
{
	struct dentry *root_dentry = BPF_CORE_READ(task, fs, root.dentry);
	struct vfsmount *root_mnt = BPF_CORE_READ(task, fs, root.mnt);
	struct mount *mnt = container_of(vfsmnt, struct mount, mnt);
	__u32 off = 0;
	*truncated = true;

	for (int i = 0; i < WALK_DEPTH; i++) {
		if (dentry == root_dentry && vfsmnt == root_mnt) {
			*truncated = false;
			break;
		}
		struct dentry *mnt_root = BPF_CORE_READ(vfsmnt, mnt_root);
		if (dentry == mnt_root) {
			struct mount *parent = BPF_CORE_READ(mnt, mnt_parent);
			if (parent == mnt) {
				*truncated = false;
				break;
			}
			dentry = BPF_CORE_READ(mnt, mnt_mountpoint);
			mnt = parent;
			vfsmnt = &parent->mnt;
			continue;
		}
		struct dentry *up = BPF_CORE_READ(dentry, d_parent);
		if (up == dentry) {
			*truncated = false;
			break;
		}
		if (off > WALK_MAX - NAME_MAX_K)
			break;
		const unsigned char *name = BPF_CORE_READ(dentry, d_name.name);
		long n = bpf_probe_read_kernel_str(buf + (off & (WALK_MAX - 1)), NAME_MAX_K, name);
		if (n <= 0)
			break;
		off += n;
		dentry = up;
	}
	return off;
}

/* exe_ctime_ns reads the inode ctime across its three layouts (<6.6, 6.6-6.10, 6.11+). */
struct inode___pre66 {
	struct timespec64 i_ctime;
} __attribute__((preserve_access_index));

struct inode___pre611 {
	struct timespec64 __i_ctime;
} __attribute__((preserve_access_index));

static __always_inline __u64 inode_ctime_ns(struct inode *inode)
{
	if (bpf_core_field_exists(inode->i_ctime_sec)) {
		__s64 sec = BPF_CORE_READ(inode, i_ctime_sec);
		/* Since 6.13 the top bit flags a queried ctime (multigrain
		 * timestamps); nanoseconds fit in the low 30 bits. */
		__u32 nsec = BPF_CORE_READ(inode, i_ctime_nsec) & ((1U << 30) - 1);
		return sec * 1000000000ULL + nsec;
	}
	struct timespec64 ts = {};
	struct inode___pre611 *i611 = (void *)inode;
	struct inode___pre66 *i66 = (void *)inode;
	if (bpf_core_field_exists(i611->__i_ctime))
		ts = BPF_CORE_READ(i611, __i_ctime);
	else
		ts = BPF_CORE_READ(i66, i_ctime);
	return ts.tv_sec * 1000000000ULL + ts.tv_nsec;
}

/* in_upper_layer is Falco's test: an overlay inode whose upper dentry is set. */
static __always_inline bool in_upper_layer(struct inode *inode)
{
	if (BPF_CORE_READ(inode, i_sb, s_magic) != OVERLAYFS_SUPER_MAGIC)
		return false;
	struct dentry *upper = 0;
	/* struct ovl_inode { ...; struct inode vfs_inode; struct dentry *__upperdentry; } */
	bpf_core_read(&upper, sizeof(upper), (char *)inode + bpf_core_type_size(struct inode));
	return upper != 0;
}

/* fill_exec_task fills what an exec record says of the task itself, for
 * execs that succeeded and execs that failed alike: its controlling
 * terminal and its pid namespace. */
static __always_inline void fill_exec_task(struct exec_record *r, struct task_struct *task)
{
	r->tty[0] = 0;
	struct tty_struct *tty = BPF_CORE_READ(task, signal, tty);
	if (tty)
		bpf_probe_read_kernel_str(r->tty, sizeof(r->tty), &tty->name);
	struct pid_namespace *pidns = active_pid_ns(task);
	r->pid_ns_level = BPF_CORE_READ(pidns, level);
	r->ns_start_boottime = BPF_CORE_READ(pidns, child_reaper, start_boottime);
}

/* fill_exec_dir records the directory the exec ran in (its cwd, or the
 * dirfd a relative name was looked up in). */
static __always_inline void fill_exec_dir(struct exec_record *r, struct dentry *dir, struct vfsmount *mnt,
					  struct task_struct *task)
{
	bool truncated = false;
	r->cwd_len = walk_path(r->cwd, dir, mnt, task, &truncated);
	if (truncated)
		r->exec_flags |= EXEC_CWD_TRUNCATED;
}

SEC("raw_tracepoint/sched_process_exec")
int on_exec(struct bpf_raw_tracepoint_args *ctx)
{
	struct task_struct *task = (struct task_struct *)ctx->args[0];
	struct linux_binprm *bprm = (struct linux_binprm *)ctx->args[2];
	union scratch *s = get_scratch();
	if (!s)
		return 0;
	struct exec_record *r = &s->exec;
	if (fill_header(&r->h, K_EXEC, task))
		return 0;

	r->exec_flags = 0;
	fill_exec_task(r, task);

	const char *filename = BPF_CORE_READ(bprm, filename);
	long n = bpf_probe_read_kernel_str(r->exe, sizeof(r->exe), filename);
	r->exe_len = n > 0 ? n - 1 : 0;
	if (n == sizeof(r->exe))
		r->exec_flags |= EXEC_EXE_TRUNCATED;

	struct file *file = BPF_CORE_READ(bprm, file);
	struct inode *inode = BPF_CORE_READ(file, f_inode);
	r->exe_ctime_ns = inode_ctime_ns(inode);
	if (in_upper_layer(inode))
		r->exec_flags |= EXEC_UPPER_LAYER;
	const unsigned char *dname = BPF_CORE_READ(file, f_path.dentry, d_name.name);
	bpf_probe_read_kernel_str(r->exe_name, sizeof(r->exe_name), dname);
	if (r->exe_name[0] == 'm' && r->exe_name[1] == 'e' && r->exe_name[2] == 'm' &&
	    r->exe_name[3] == 'f' && r->exe_name[4] == 'd' && r->exe_name[5] == ':')
		r->exec_flags |= EXEC_MEMFD;

	fill_exec_dir(r, BPF_CORE_READ(task, fs, pwd.dentry), BPF_CORE_READ(task, fs, pwd.mnt), task);

	unsigned long arg_start = BPF_CORE_READ(task, mm, arg_start);
	unsigned long arg_end = BPF_CORE_READ(task, mm, arg_end);
	__u64 len = arg_end - arg_start;
	if (len >= ARGS_MAX) {
		len = ARGS_MAX - 1;
		r->exec_flags |= EXEC_ARGS_TRUNCATED;
	}
	len &= ARGS_MAX - 1;
	if (bpf_probe_read_user(r->args, len, (void *)arg_start) != 0)
		len = 0;
	r->args_len = len;

	__u64 size = offsetof(struct exec_record, args) + len;
	if (size > sizeof(*r))
		size = sizeof(*r);
	emit(r, size, K_EXEC);
	return 0;
}

SEC("raw_tracepoint/sched_process_fork")
int on_fork(struct bpf_raw_tracepoint_args *ctx)
{
	struct task_struct *parent = (struct task_struct *)ctx->args[0];
	struct task_struct *child = (struct task_struct *)ctx->args[1];
	if (BPF_CORE_READ(child, pid) != BPF_CORE_READ(child, tgid))
		return 0; /* a thread, not a process */
	union scratch *s = get_scratch();
	if (!s)
		return 0;
	struct fork_record *r = &s->fork;
	if (fill_header(&r->h, K_FORK, parent))
		return 0;
	r->child_tgid = BPF_CORE_READ(child, tgid);
	r->child_start_boottime = BPF_CORE_READ(child, start_boottime);
	emit(r, sizeof(*r), K_FORK);
	return 0;
}

SEC("raw_tracepoint/sched_process_exit")
int on_exit(struct bpf_raw_tracepoint_args *ctx)
{
	struct task_struct *task = (struct task_struct *)ctx->args[0];
	/* Only the last thread of a process reports its exit. */
	if (BPF_CORE_READ(task, signal, live.counter) != 0)
		return 0;
	union scratch *s = get_scratch();
	if (!s)
		return 0;
	struct fork_record *r = &s->fork; /* header only matters */
	if (fill_header(&r->h, K_EXIT, task))
		return 0;
	r->h.ret = BPF_CORE_READ(task, exit_code);
	r->child_tgid = 0;
	r->child_start_boottime = 0;
	emit(r, sizeof(r->h), K_EXIT);
	return 0;
}

/* ---- syscalls: remember at enter, send at exit ---- */

/* sys_scratch returns an empty sys_record in per-CPU scratch space. */
static __always_inline struct sys_record *sys_scratch(void)
{
	union scratch *s = get_scratch();
	if (!s)
		return 0;
	struct sys_record *r = &s->sys;
	r->arg[0] = r->arg[1] = r->arg[2] = 0;
	r->path_len = 0;
	r->path_walked = 0;
	r->resolved = 0;
	r->req_len = 0;
	r->path[0] = 0;
	return r;
}

/* begin returns an empty sys_record with its header filled in. */
static __always_inline struct sys_record *begin(__u8 kind, __u8 sys)
{
	struct sys_record *r = sys_scratch();
	if (!r)
		return 0;
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	if (fill_header(&r->h, kind, task))
		return 0;
	r->h.syscall = sys;
	return r;
}

/* park stores r until the same thread's sys_exit sends it. */
static __always_inline void park(struct sys_record *r)
{
	__u64 id = bpf_get_current_pid_tgid();
	if (bpf_map_update_elem(&pending, &id, r, BPF_ANY))
		count(&drops, r->h.kind); /* the map is full: the record is lost, counted */
}

/* finish sends the record parked by this thread's enter; it returns whether there was one. */
static __always_inline int finish(struct trace_event_raw_sys_exit *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct sys_record *r = bpf_map_lookup_elem(&pending, &id);
	if (!r)
		return 0;
	r->h.ret = ctx->ret;
	__u32 kind = r->h.kind;
	__u64 size = offsetof(struct sys_record, path) + (r->path_len & (WALK_MAX - 1)) + 1;
	if (r->resolved)
		size += (r->req_len & (PATH_MAX_K - 1)) + 1;
	if (size > sizeof(*r))
		size = sizeof(*r);
	emit(r, size, kind);
	bpf_map_delete_elem(&pending, &id);
	return 1;
}

/* read_user_path copies a user path into r->path; returns its length. */
static __always_inline long read_user_path(struct sys_record *r, const char *upath)
{
	long n = bpf_probe_read_user_str(r->path, PATH_MAX_K, upath);
	if (n <= 0) {
		r->path[0] = 0;
		r->path_len = 0;
		return 0;
	}
	r->path_len = n - 1;
	return n - 1;
}

/* path_from_fd walks the dentries of an open file descriptor. */
static __always_inline void path_from_fd(struct sys_record *r, __u64 fd)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct file **fds = BPF_CORE_READ(task, files, fdt, fd);
	unsigned int max = BPF_CORE_READ(task, files, fdt, max_fds);
	if (fd >= max)
		return;
	struct file *f = 0;
	bpf_core_read(&f, sizeof(f), &fds[fd]);
	if (!f)
		return;
	bool truncated = false;
	struct dentry *d = BPF_CORE_READ(f, f_path.dentry);
	struct vfsmount *m = BPF_CORE_READ(f, f_path.mnt);
	r->path_len = walk_path(r->path, d, m, task, &truncated);
	r->path_walked = truncated ? 2 : 1;
}

/*
 * watched reports whether path (len bytes, NUL-terminated in r->path) is
 * one of the sensitive paths: an exact file or under a watched directory,
 * or a watched base name anywhere (relative paths included).
 */
static __always_inline bool watched(struct sys_record *r, long len)
{
	if (len <= 0)
		return false;
	__u32 zero = 0;
	struct watch_key *k = bpf_map_lookup_elem(&watch_scratch, &zero);
	if (!k)
		return false;
	if (r->path[0] == '/') {
		k->prefixlen = len * 8;
		bpf_probe_read_kernel(k->path, PATH_MAX_K, r->path);
		struct watch_value *v = bpf_map_lookup_elem(&watched_prefix, k);
		if (v && (!v->exact || v->len == len))
			return true;
	}
	/*
	 * Base names: for each distinct length of a watched name, is the path's
	 * last component that long and in watched_name? No per-byte loop: the
	 * lengths are load-time constants, so the verifier sees straight code.
	 */
	for (int i = 0; i < NAME_LENS; i++) {
		__u32 l = name_lens[i];
		l &= sizeof(((struct name_key *)0)->name) - 1;
		if (l == 0 || l > len)
			continue;
		if (l < len && r->path[(len - l - 1) & (PATH_MAX_K - 1)] != '/')
			continue;
		struct name_key nk = {};
		bpf_probe_read_kernel(nk.name, l & (sizeof(nk.name) - 1), r->path + ((len - l) & (PATH_MAX_K - 1)));
		if (bpf_map_lookup_elem(&watched_name, &nk))
			return true;
	}
	return false;
}

/* open_enter is on the hot path: filter on the path before anything else. */
static __always_inline int open_enter(__u8 sys, const char *upath, __u64 flags, __u64 mode)
{
	struct sys_record *r = sys_scratch();
	if (!r)
		return 0;
	long len = read_user_path(r, upath);
	if (!watched(r, len))
		return 0;
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	if (fill_header(&r->h, K_OPEN, task))
		return 0;
	r->h.syscall = sys;
	r->arg[0] = flags;
	r->arg[1] = mode;
	park(r);
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_openat")
int enter_openat(struct trace_event_raw_sys_enter *ctx)
{
	return open_enter(SYS_OPENAT, (const char *)ctx->args[1], ctx->args[2], ctx->args[3]);
}

SEC("tracepoint/syscalls/sys_enter_openat2")
int enter_openat2(struct trace_event_raw_sys_enter *ctx)
{
	__u64 how[2] = {};
	bpf_probe_read_user(how, sizeof(how), (void *)ctx->args[2]);
	return open_enter(SYS_OPENAT2, (const char *)ctx->args[1], how[0], how[1]);
}

SEC("tracepoint/syscalls/sys_enter_open")
int enter_open(struct trace_event_raw_sys_enter *ctx)
{
	return open_enter(SYS_OPEN, (const char *)ctx->args[0], ctx->args[1], ctx->args[2]);
}

SEC("tracepoint/syscalls/sys_enter_creat")
int enter_creat(struct trace_event_raw_sys_enter *ctx)
{
	/* creat(path, mode) == open(path, O_CREAT|O_WRONLY|O_TRUNC, mode) */
	return open_enter(SYS_CREAT, (const char *)ctx->args[0], 01101, ctx->args[1]);
}

static __always_inline int chmod_enter(__u8 sys, const char *upath, __s64 fd, __u64 mode)
{
	if (!(mode & 0111))
		return 0;
	struct sys_record *r = begin(K_CHMOD, sys);
	if (!r)
		return 0;
	if (upath)
		read_user_path(r, upath);
	else
		path_from_fd(r, fd);
	r->arg[0] = mode;
	park(r);
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_chmod")
int enter_chmod(struct trace_event_raw_sys_enter *ctx)
{
	return chmod_enter(SYS_CHMOD, (const char *)ctx->args[0], -1, ctx->args[1]);
}

SEC("tracepoint/syscalls/sys_enter_fchmodat")
int enter_fchmodat(struct trace_event_raw_sys_enter *ctx)
{
	return chmod_enter(SYS_FCHMODAT, (const char *)ctx->args[1], -1, ctx->args[2]);
}

SEC("tracepoint/syscalls/sys_enter_fchmodat2")
int enter_fchmodat2(struct trace_event_raw_sys_enter *ctx)
{
	return chmod_enter(SYS_FCHMODAT2, (const char *)ctx->args[1], -1, ctx->args[2]);
}

SEC("tracepoint/syscalls/sys_enter_fchmod")
int enter_fchmod(struct trace_event_raw_sys_enter *ctx)
{
	return chmod_enter(SYS_FCHMOD, 0, ctx->args[0], ctx->args[1]);
}

SEC("tracepoint/syscalls/sys_enter_memfd_create")
int enter_memfd_create(struct trace_event_raw_sys_enter *ctx)
{
	struct sys_record *r = begin(K_MEMFD_CREATE, SYS_MEMFD_CREATE);
	if (!r)
		return 0;
	read_user_path(r, (const char *)ctx->args[0]);
	r->arg[0] = ctx->args[1];
	park(r);
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_ptrace")
int enter_ptrace(struct trace_event_raw_sys_enter *ctx)
{
	__u64 req = ctx->args[0];
	/* TRACEME, POKETEXT/DATA/USER, SETREGS, ATTACH, SETREGSET, SEIZE: the requests that take control. */
	if (!(req == 0 || req == 4 || req == 5 || req == 6 || req == 13 || req == 16 || req == 0x4205 ||
	      req == 0x4206))
		return 0;
	struct sys_record *r = begin(K_PTRACE, SYS_PTRACE);
	if (!r)
		return 0;
	r->arg[0] = req;
	r->arg[1] = ctx->args[1];
	park(r);
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_init_module")
int enter_init_module(struct trace_event_raw_sys_enter *ctx)
{
	struct sys_record *r = begin(K_MODULE, SYS_INIT_MODULE);
	if (!r)
		return 0;
	r->arg[0] = ctx->args[1];
	read_user_path(r, (const char *)ctx->args[2]); /* module parameters */
	park(r);
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_finit_module")
int enter_finit_module(struct trace_event_raw_sys_enter *ctx)
{
	struct sys_record *r = begin(K_MODULE, SYS_FINIT_MODULE);
	if (!r)
		return 0;
	r->arg[0] = ctx->args[2];
	path_from_fd(r, ctx->args[0]);
	park(r);
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_delete_module")
int enter_delete_module(struct trace_event_raw_sys_enter *ctx)
{
	struct sys_record *r = begin(K_MODULE, SYS_DELETE_MODULE);
	if (!r)
		return 0;
	r->arg[0] = ctx->args[1];
	read_user_path(r, (const char *)ctx->args[0]);
	park(r);
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_unshare")
int enter_unshare(struct trace_event_raw_sys_enter *ctx)
{
	if (!(ctx->args[0] & NS_CLONE_FLAGS))
		return 0;
	struct sys_record *r = begin(K_UNSHARE, SYS_UNSHARE);
	if (!r)
		return 0;
	r->arg[0] = ctx->args[0];
	park(r);
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_setns")
int enter_setns(struct trace_event_raw_sys_enter *ctx)
{
	struct sys_record *r = begin(K_SETNS, SYS_SETNS);
	if (!r)
		return 0;
	r->arg[0] = ctx->args[1];
	r->arg[1] = ctx->args[0];
	path_from_fd(r, ctx->args[0]); /* e.g. "net:[4026531840]" or a pidfd */
	park(r);
	return 0;
}

/* ---- opens that evade the enter-time string match ---- */

/* file_from_fd returns the struct file behind fd in the current task. */
static __always_inline struct file *file_from_fd(struct task_struct *task, __u64 fd)
{
	struct fdtable *fdt = BPF_CORE_READ(task, files, fdt);
	unsigned int max = 0;
	struct file **fds = 0;
	if (bpf_core_field_offset(fdt->fd) == bpf_core_field_offset(fdt->max_fds) + sizeof(void *)) {
		struct {
			__u64 max; /* unsigned int, padded */
			struct file **fd;
		} t = {};
		bpf_core_read(&t, sizeof(t), &fdt->max_fds); /* one read for both */
		max = (unsigned int)t.max;
		fds = t.fd;
	} else {
		max = BPF_CORE_READ(fdt, max_fds);
		fds = BPF_CORE_READ(fdt, fd);
	}
	if (fd >= max)
		return 0;
	struct file *f = 0;
	bpf_core_read(&f, sizeof(f), &fds[fd]);
	return f;
}

/*
 * leaf_bits looks a dentry's name up in watched_leaf, when the length and
 * first character of the name pass gate (leaf_gate or dir_gate).
 */
/* d_parent and d_name, adjacent in struct dentry: one read for both. */
struct dentry_up {
	struct dentry *parent;
	struct qstr name;
};

static __always_inline int read_up(struct dentry *d, struct dentry_up *u)
{
	if (bpf_core_field_offset(d->d_name) == bpf_core_field_offset(d->d_parent) + sizeof(void *))
		return bpf_core_read(u, sizeof(*u), &d->d_parent);
	u->parent = BPF_CORE_READ(d, d_parent);
	return bpf_core_read(&u->name, sizeof(u->name), &d->d_name);
}

static __always_inline __u8 leaf_bits(struct dentry_up *u, __u64 *gate)
{
	struct qstr q = u->name;
	__u32 len = q.len;
	if (len == 0 || len >= 32)
		return 0;
	unsigned char c = 0;
	bpf_probe_read_kernel(&c, 1, q.name);
	if (!((gate[len & 31] >> (c & 63)) & 1))
		return 0;
	struct name_key nk = {};
	if (bpf_probe_read_kernel_str(nk.name, sizeof(nk.name), q.name) <= 1)
		return 0;
	__u8 *v = bpf_map_lookup_elem(&watched_leaf, &nk);
	return v ? *v : 0;
}

/*
 * resolve_path builds the absolute path of (dentry, mnt) as the task sees
 * it into fp->k.path, the way d_path does: up to the task's root, across
 * mounts. It returns the length, or -1 when the path is too deep or long.
 */
static __always_inline long resolve_path(struct fwd_path *fp, struct dentry *dentry, struct vfsmount *vfsmnt,
					 struct task_struct *task)
{
	struct dentry *root_dentry = BPF_CORE_READ(task, fs, root.dentry);
	struct vfsmount *root_mnt = BPF_CORE_READ(task, fs, root.mnt);
	struct mount *mnt = container_of(vfsmnt, struct mount, mnt);
	/*
	 * Through the map, n reaches the verifier as any number: it checks
	 * each loop once, not once for every depth a walk can be at.
	 */
	*(volatile __u32 *)&fp->n = 0;
	__u32 n = *(volatile __u32 *)&fp->n & (2 * WALK_DEPTH - 1);
	bool done = false;

	for (int i = 0; i < WALK_DEPTH; i++) {
		if (dentry == root_dentry && vfsmnt == root_mnt) {
			done = true;
			break;
		}
		struct dentry *mnt_root = BPF_CORE_READ(vfsmnt, mnt_root);
		if (dentry == mnt_root) {
			struct mount *parent = BPF_CORE_READ(mnt, mnt_parent);
			if (parent == mnt) {
				done = true;
				break;
			}
			dentry = BPF_CORE_READ(mnt, mnt_mountpoint);
			mnt = parent;
			vfsmnt = &parent->mnt;
			continue;
		}
		struct dentry *up = BPF_CORE_READ(dentry, d_parent);
		if (up == dentry) {
			done = true;
			break;
		}
		fp->dents[n & (WALK_DEPTH - 1)] = (__u64)dentry;
		n = (n + 1) & (2 * WALK_DEPTH - 1); /* the same range on every path: states prune */
		dentry = up;
	}
	if (!done)
		return -1;
	if (n > WALK_DEPTH)
		return -1;
	__u32 off = 0;
	for (int i = WALK_DEPTH - 1; i >= 0; i--) {
		if (i >= n)
			continue;
		if (off >= PATH_MAX_K - 1)
			return -1;
		__u64 o = off;
		asm volatile("%0 &= 255" : "+r"(o)); /* PATH_MAX_K - 1, seen by the verifier */
		fp->k.path[o] = '/';
		o++; /* at most PATH_MAX_K: the slack takes the rest of the name */
		struct dentry *d = (struct dentry *)fp->dents[i & (WALK_DEPTH - 1)];
		const unsigned char *name = BPF_CORE_READ(d, d_name.name);
		long l = bpf_probe_read_kernel_str(fp->k.path + o, NAME_MAX_K, name);
		if (l <= 0)
			return -1;
		off = o + l - 1;
	}
	if (off == 0) {
		fp->k.path[0] = '/';
		fp->k.path[1] = 0;
		off = 1;
	}
	if (off >= PATH_MAX_K)
		return -1;
	return off;
}

/*
 * open_resolved is the exit-time check of a successful open the enter did
 * not match: a relative path, "//", "/./", "..", a symlink, a dirfd,
 * /proc/self/root. A cheap gate first (the opened name, its parent's or
 * grandparent's in watched_leaf), then the real path against the watched set.
 */
static __always_inline int open_resolved(struct trace_event_raw_sys_exit *ctx, __u8 sys)
{
	long fd = ctx->ret;
	if (fd < 0)
		return 0;
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct file *f = file_from_fd(task, fd);
	if (!f)
		return 0;
	struct dentry *d = BPF_CORE_READ(f, f_path.dentry);
	struct dentry_up u = {};
	if (read_up(d, &u))
		return 0;
	__u8 bits = leaf_bits(&u, leaf_gate);
	if (!(bits & (LEAF_FILE | LEAF_NAME))) {
		if (read_up(u.parent, &u))
			return 0;
		if (!(leaf_bits(&u, dir_gate) & LEAF_DIR)) {
			if (read_up(u.parent, &u) || !(leaf_bits(&u, dir_gate) & LEAF_DIR))
				return 0;
		}
	}
	__u32 zero = 0;
	struct fwd_path *fp = bpf_map_lookup_elem(&fwd_scratch, &zero);
	if (!fp)
		return 0;
	long len = resolve_path(fp, d, BPF_CORE_READ(f, f_path.mnt), task);
	if (len <= 0)
		return 0;
	if (!(bits & LEAF_NAME)) {
		fp->k.prefixlen = len * 8;
		struct watch_value *v = bpf_map_lookup_elem(&watched_prefix, &fp->k);
		if (!v || (v->exact && v->len != len))
			return 0;
	}
	union scratch *s = get_scratch();
	if (!s)
		return 0;
	struct sys_record *r = &s->sys;
	if (fill_header(&r->h, K_OPEN, task))
		return 0;
	r->h.syscall = sys;
	r->h.ret = fd;
	r->arg[2] = 0;
	r->path_walked = 0;
	r->resolved = PATH_RESOLVED;
	/* A mask the verifier sees: clang would otherwise drop it as redundant. */
	asm volatile("%0 &= 255" : "+r"(len));
	bpf_probe_read_kernel(r->path, PATH_MAX_K, fp->k.path);
	r->path[len & (PATH_MAX_K - 1)] = 0;
	r->path_len = len;
	/* What the caller asked for and with which flags, from its syscall registers. */
	__u64 upath = 0, flags = 0, mode = 0;
	struct pt_regs *regs = (struct pt_regs *)bpf_task_pt_regs(bpf_get_current_task_btf());
	if (bpf_core_field_exists(regs->si)) {
		if (sys == SYS_OPEN) {
			upath = BPF_CORE_READ(regs, di);
			flags = BPF_CORE_READ(regs, si);
			mode = BPF_CORE_READ(regs, dx);
		} else if (sys == SYS_CREAT) {
			upath = BPF_CORE_READ(regs, di);
			flags = 01101;
			mode = BPF_CORE_READ(regs, si);
		} else {
			upath = BPF_CORE_READ(regs, si);
			flags = BPF_CORE_READ(regs, dx);
			mode = BPF_CORE_READ(regs, r10);
			if (sys == SYS_OPENAT2) {
				__u64 how[2] = {};
				bpf_probe_read_user(how, sizeof(how), (void *)flags);
				flags = how[0];
				mode = how[1];
			}
		}
	} else {
		flags = BPF_CORE_READ(f, f_flags);
	}
	r->arg[0] = flags;
	r->arg[1] = mode;
	r->req_len = 0;
	if (upath) {
		long n = bpf_probe_read_user_str(r->path + (len & (PATH_MAX_K - 1)) + 1, PATH_MAX_K, (void *)upath);
		if (n > 0)
			r->req_len = n - 1;
	}
	__u64 size = offsetof(struct sys_record, path) + (len & (PATH_MAX_K - 1)) + 1 + (r->req_len & (PATH_MAX_K - 1)) + 1;
	if (size > sizeof(*r))
		size = sizeof(*r);
	emit(r, size, K_OPEN);
	return 0;
}

/* open_exit sends what the enter parked, or else checks the opened file. */
static __always_inline int open_exit(struct trace_event_raw_sys_exit *ctx, __u8 sys)
{
	if (finish(ctx))
		return 0;
	return open_resolved(ctx, sys);
}

#define OPEN_EXIT(name, sys)                                         \
	SEC("tracepoint/syscalls/sys_exit_" #name)                   \
	int exit_##name(struct trace_event_raw_sys_exit *ctx)        \
	{                                                            \
		return open_exit(ctx, sys);                          \
	}

OPEN_EXIT(openat, SYS_OPENAT)
OPEN_EXIT(openat2, SYS_OPENAT2)
OPEN_EXIT(open, SYS_OPEN)
OPEN_EXIT(creat, SYS_CREAT)

/* One sys_exit handler per syscall: each only finds what its enter parked. */
#define EXIT(name)                                                   \
	SEC("tracepoint/syscalls/sys_exit_" #name)                   \
	int exit_##name(struct trace_event_raw_sys_exit *ctx)        \
	{                                                            \
		finish(ctx);                                         \
		return 0;                                            \
	}

EXIT(chmod)
EXIT(fchmodat)
EXIT(fchmodat2)
EXIT(fchmod)
EXIT(memfd_create)
EXIT(ptrace)
EXIT(init_module)
EXIT(finit_module)
EXIT(delete_module)
EXIT(unshare)
EXIT(setns)

/* ---- network: connect and listen, with the socket's own addresses ---- */

static __always_inline struct sock *sock_from_fd(__u64 fd)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct file **fds = BPF_CORE_READ(task, files, fdt, fd);
	unsigned int max = BPF_CORE_READ(task, files, fdt, max_fds);
	if (fd >= max)
		return 0;
	struct file *f = 0;
	bpf_core_read(&f, sizeof(f), &fds[fd]);
	if (!f)
		return 0;
	struct socket *sock = BPF_CORE_READ(f, private_data);
	if (!sock)
		return 0;
	return BPF_CORE_READ(sock, sk);
}

static __always_inline void fill_local(struct net_record *r, struct sock *sk)
{
	r->sock_type = BPF_CORE_READ(sk, sk_type);
	r->protocol = BPF_CORE_READ(sk, sk_protocol);
	r->local_port = BPF_CORE_READ(sk, __sk_common.skc_num);
	if (r->family == AF_INET)
		bpf_core_read(r->local_addr, 4, &sk->__sk_common.skc_rcv_saddr);
	else
		bpf_core_read(r->local_addr, 16, &sk->__sk_common.skc_v6_rcv_saddr);
}

/* park_net stores p until the same thread's sys_exit; a full map is a counted drop. */
static __always_inline void park_net(struct pending_net *p)
{
	__u64 id = bpf_get_current_pid_tgid();
	if (bpf_map_update_elem(&pending_net, &id, p, BPF_ANY))
		count(&drops, p->kind);
}

SEC("tracepoint/syscalls/sys_enter_connect")
int enter_connect(struct trace_event_raw_sys_enter *ctx)
{
	struct pending_net p = {};
	void *uaddr = (void *)ctx->args[1];
	bpf_probe_read_user(&p.family, sizeof(p.family), uaddr);
	if (p.family != AF_INET && p.family != AF_INET6)
		return 0;
	if ((bpf_get_current_pid_tgid() >> 32) == self_tgid)
		return 0;
	p.fd = ctx->args[0];
	p.kind = K_CONNECT;
	p.sys = SYS_CONNECT;
	bpf_probe_read_user(p.addr, sizeof(p.addr), uaddr);
	park_net(&p);
	return 0;
}

static __always_inline int net_exit(struct trace_event_raw_sys_exit *ctx, __u8 sys)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct pending_net *p = bpf_map_lookup_elem(&pending_net, &id);
	if (!p)
		return 0;
	if (p->sys != sys)
		goto out;
	union scratch *s = get_scratch();
	if (!s)
		goto out;
	struct net_record *r = &s->net;
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	if (fill_header(&r->h, K_CONNECT, task))
		goto out;
	r->h.syscall = sys;
	r->h.ret = ctx->ret;
	r->family = p->family;
	r->net_flags = sys == SYS_CONNECT ? 0 : NET_SEND;
	__builtin_memset(r->local_addr, 0, sizeof(r->local_addr));
	__builtin_memset(r->remote_addr, 0, sizeof(r->remote_addr));
	/* sockaddr_in: port at 2, addr at 4; sockaddr_in6: port at 2, addr at 8. */
	r->remote_port = (__u16)(p->addr[2] << 8 | p->addr[3]);
	if (p->family == AF_INET)
		__builtin_memcpy(r->remote_addr, &p->addr[4], 4);
	else
		__builtin_memcpy(r->remote_addr, &p->addr[8], 16);
	struct sock *sk = sock_from_fd(p->fd);
	r->sock_type = r->protocol = r->local_port = 0;
	if (sk)
		fill_local(r, sk);
	emit(r, sizeof(*r), K_CONNECT);
out:
	bpf_map_delete_elem(&pending_net, &id);
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_connect")
int exit_connect(struct trace_event_raw_sys_exit *ctx)
{
	return net_exit(ctx, SYS_CONNECT);
}

/*
 * Unconnected sends (UDP without connect(), TCP Fast Open): the
 * destination comes with sendto/sendmsg. Reported as a connect with
 * NET_SEND, once per (process, socket, destination) per SEND_WINDOW_NS,
 * so a chatty DNS client is not a firehose.
 */
static __always_inline int send_enter(__u8 sys, __u64 fd, void *uaddr)
{
	struct pending_net p = {};
	bpf_probe_read_user(&p.family, sizeof(p.family), uaddr);
	if (p.family != AF_INET && p.family != AF_INET6)
		return 0;
	__u64 id = bpf_get_current_pid_tgid();
	if ((id >> 32) == self_tgid)
		return 0;
	bpf_probe_read_user(p.addr, sizeof(p.addr), uaddr);
	struct send_key k = {};
	k.tgid = id >> 32;
	k.fd = fd;
	k.family = p.family;
	k.port = p.addr[2] | p.addr[3] << 8;
	if (p.family == AF_INET)
		__builtin_memcpy(k.addr, &p.addr[4], 4);
	else
		__builtin_memcpy(k.addr, &p.addr[8], 16);
	__u64 now = bpf_ktime_get_boot_ns();
	__u64 *last = bpf_map_lookup_elem(&send_seen, &k);
	if (last && now - *last < SEND_WINDOW_NS)
		return 0;
	bpf_map_update_elem(&send_seen, &k, &now, BPF_ANY);
	p.fd = fd;
	p.kind = K_CONNECT;
	p.sys = sys;
	park_net(&p);
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_sendto")
int enter_sendto(struct trace_event_raw_sys_enter *ctx)
{
	if (!ctx->args[4])
		return 0; /* send() on a connected socket: its connect was reported */
	return send_enter(SYS_SENDTO, ctx->args[0], (void *)ctx->args[4]);
}

SEC("tracepoint/syscalls/sys_exit_sendto")
int exit_sendto(struct trace_event_raw_sys_exit *ctx)
{
	return net_exit(ctx, SYS_SENDTO);
}

SEC("tracepoint/syscalls/sys_enter_sendmsg")
int enter_sendmsg(struct trace_event_raw_sys_enter *ctx)
{
	void *name = 0;
	bpf_probe_read_user(&name, sizeof(name), (void *)ctx->args[1]); /* msg_name is first */
	if (!name)
		return 0;
	return send_enter(SYS_SENDMSG, ctx->args[0], name);
}

SEC("tracepoint/syscalls/sys_exit_sendmsg")
int exit_sendmsg(struct trace_event_raw_sys_exit *ctx)
{
	return net_exit(ctx, SYS_SENDMSG);
}

SEC("tracepoint/syscalls/sys_enter_listen")
int enter_listen(struct trace_event_raw_sys_enter *ctx)
{
	if ((bpf_get_current_pid_tgid() >> 32) == self_tgid)
		return 0;
	struct pending_net p = {};
	p.fd = ctx->args[0];
	p.kind = K_LISTEN;
	p.sys = SYS_LISTEN;
	park_net(&p);
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_listen")
int exit_listen(struct trace_event_raw_sys_exit *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct pending_net *p = bpf_map_lookup_elem(&pending_net, &id);
	if (!p)
		return 0;
	__u64 fd = p->fd;
	__u8 psys = p->sys;
	bpf_map_delete_elem(&pending_net, &id);
	if (psys != SYS_LISTEN)
		return 0;
	struct sock *sk = sock_from_fd(fd);
	if (!sk)
		return 0;
	__u16 family = BPF_CORE_READ(sk, __sk_common.skc_family);
	if (family != AF_INET && family != AF_INET6)
		return 0;
	union scratch *s = get_scratch();
	if (!s)
		return 0;
	struct net_record *r = &s->net;
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	if (fill_header(&r->h, K_LISTEN, task))
		return 0;
	r->h.syscall = SYS_LISTEN;
	r->h.ret = ctx->ret;
	r->family = family;
	r->net_flags = 0;
	__builtin_memset(r->local_addr, 0, sizeof(r->local_addr));
	__builtin_memset(r->remote_addr, 0, sizeof(r->remote_addr));
	r->remote_port = 0;
	fill_local(r, sk);
	emit(r, sizeof(*r), K_LISTEN);
	return 0;
}

/* ---- failed execs: sched_process_exec only sees the successful ones ---- */

#define ARGV_MAX 32

/*
 * exec_exit reports a failed exec. sched_process_exec reports the
 * successful ones, so this is the whole hook: no sys_enter program, no map.
 * The caller's memory and its syscall registers are intact after a
 * failure, so filename, argv and dirfd are read from them, only then.
 */
static __always_inline int exec_exit(struct trace_event_raw_sys_exit *ctx, __u8 sys)
{
	long ret = ctx->ret;
	if (ret >= 0)
		return 0;
	struct pt_regs *regs = (struct pt_regs *)bpf_task_pt_regs(bpf_get_current_task_btf());
	if (!bpf_core_field_exists(regs->si))
		return 0; /* x86-64's registers; other architectures: not reported */
	struct pending_exec pe = {.sys = sys, .dirfd = AT_FDCWD};
	struct pending_exec *p = &pe;
	if (sys == SYS_EXECVE) {
		p->filename = BPF_CORE_READ(regs, di);
		p->argv = BPF_CORE_READ(regs, si);
	} else {
		p->dirfd = (int)BPF_CORE_READ(regs, di);
		p->filename = BPF_CORE_READ(regs, si);
		p->argv = BPF_CORE_READ(regs, dx);
		p->flags = BPF_CORE_READ(regs, r8);
	}
	union scratch *s = get_scratch();
	if (!s)
		return 0;
	struct exec_record *r = &s->exec;
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	if (fill_header(&r->h, K_EXEC, task))
		return 0;
	r->h.syscall = p->sys;
	r->h.ret = ret;
	r->exec_flags = EXEC_FAILED;
	r->exe_ctime_ns = 0;
	r->exe_name[0] = 0;
	fill_exec_task(r, task);
	long n = bpf_probe_read_user_str(r->exe, sizeof(r->exe), (void *)p->filename);
	if (n <= 0) {
		r->exe[0] = 0;
		n = 1;
	}
	r->exe_len = n - 1;
	if (n == sizeof(r->exe))
		r->exec_flags |= EXEC_EXE_TRUNCATED;

	/* The directory a relative name is looked up in: the dirfd's, or the cwd. */
	struct dentry *dir = 0;
	struct vfsmount *dir_mnt = 0;
	if (p->dirfd != AT_FDCWD && (r->exe[0] != '/' || (p->flags & AT_EMPTY_PATH))) {
		struct file *f = file_from_fd(task, p->dirfd);
		if (f) {
			dir = BPF_CORE_READ(f, f_path.dentry);
			dir_mnt = BPF_CORE_READ(f, f_path.mnt);
			r->exec_flags |= EXEC_DIRFD;
		}
	}
	if (!dir) {
		dir = BPF_CORE_READ(task, fs, pwd.dentry);
		dir_mnt = BPF_CORE_READ(task, fs, pwd.mnt);
	}
	fill_exec_dir(r, dir, dir_mnt, task);

	__u32 off = 0;
	const char *const *argv = (const char *const *)p->argv;
	for (int i = 0; i < ARGV_MAX && argv; i++) {
		const char *arg = 0;
		if (bpf_probe_read_user(&arg, sizeof(arg), &argv[i]) || !arg)
			break;
		if (off >= ARGS_MAX / 2) {
			r->exec_flags |= EXEC_ARGS_TRUNCATED;
			break;
		}
		long l = bpf_probe_read_user_str(r->args + (off & (ARGS_MAX / 2 - 1)), ARGS_MAX / 2, arg);
		if (l <= 0)
			break;
		off += l;
		if (i == ARGV_MAX - 1)
			r->exec_flags |= EXEC_ARGS_TRUNCATED;
	}
	__u64 len = off;
	asm volatile("%0 &= 4095" : "+r"(len)); /* ARGS_MAX - 1, seen by the verifier */
	r->args_len = len;
	__u64 size = offsetof(struct exec_record, args) + len;
	emit(r, size, K_EXEC);
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_execve")
int exit_execve(struct trace_event_raw_sys_exit *ctx)
{
	return exec_exit(ctx, SYS_EXECVE);
}

SEC("tracepoint/syscalls/sys_exit_execveat")
int exit_execveat(struct trace_event_raw_sys_exit *ctx)
{
	return exec_exit(ctx, SYS_EXECVEAT);
}
