/* SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0) */
/*
 * Records the sensor's BPF programs send to user space through the ring
 * buffer. bpf2go generates the Go mirror of these structs (-type flags), and
 * internal/sensor/bpf/decode.go reads them; keep the three in step.
 */
#ifndef VIGIL_SENSOR_H
#define VIGIL_SENSOR_H

#define ARGS_MAX 4096 /* bytes of argv kept per exec; power of two */
#define PATH_MAX_K 256 /* bytes of a user-supplied path kept */
#define WALK_MAX 1024 /* bytes of a path built by walking dentries */
#define WALK_DEPTH 32 /* components walked before giving up */
#define NAME_MAX_K 256
#define TTY_NAME 16
#define COMM_LEN 16
#define SOCKADDR_MAX 28 /* sizeof(struct sockaddr_in6) */

enum record_kind {
	K_EXEC = 1,
	K_EXIT,
	K_FORK,
	K_CONNECT,
	K_LISTEN,
	K_OPEN,
	K_CHMOD,
	K_MEMFD_CREATE,
	K_PTRACE,
	K_MODULE,
	K_UNSHARE,
	K_SETNS,
	K_MAX, /* size of the per-kind counter arrays */
};

enum exec_flags {
	EXEC_UPPER_LAYER = 1 << 0,   /* executable is in an overlayfs upper layer */
	EXEC_MEMFD = 1 << 1,         /* executable is a memfd */
	EXEC_ARGS_TRUNCATED = 1 << 2,
	EXEC_CWD_TRUNCATED = 1 << 3,
	EXEC_EXE_TRUNCATED = 1 << 4,
	EXEC_FAILED = 1 << 5,        /* a failed execve/execveat: h.ret is the error */
	EXEC_DIRFD = 1 << 6,         /* cwd holds the execveat dirfd's path, not the cwd */
};

/* Which syscall a pending record came from, for the user-space name. */
enum sys_call {
	SYS_OPENAT = 1,
	SYS_OPENAT2,
	SYS_OPEN,
	SYS_CREAT,
	SYS_CHMOD,
	SYS_FCHMOD,
	SYS_FCHMODAT,
	SYS_FCHMODAT2,
	SYS_CONNECT,
	SYS_LISTEN,
	SYS_MEMFD_CREATE,
	SYS_PTRACE,
	SYS_INIT_MODULE,
	SYS_FINIT_MODULE,
	SYS_DELETE_MODULE,
	SYS_UNSHARE,
	SYS_SETNS,
	SYS_EXECVE,
	SYS_EXECVEAT,
	SYS_SENDTO,
	SYS_SENDMSG,
};

/* sys_record.resolved: how the path was found. */
enum path_source {
	PATH_REQUESTED = 0, /* the string the caller passed */
	PATH_RESOLVED = 1,  /* walked from the opened file; the requested string follows it */
};

/* net_record.net_flags */
enum net_flags {
	NET_SEND = 1 << 0, /* an unconnected send: the destination came with sendto/sendmsg */
};

/* Common header of every record. */
struct header {
	__u8 kind;
	__u8 syscall;
	__u16 flags;
	__u32 cpu;
	__u64 ktime; /* CLOCK_BOOTTIME ns */
	__u32 tgid;
	__u32 tid;
	__u32 ppid;
	__u32 uid;
	__u32 gid;
	__u32 euid;
	__u64 cgroup_id;  /* cgroup v2 id (inode of the unified dir) */
	__u64 cgroup1_id; /* kernfs id of the memory controller's v1 dir */
	__u32 pid_ns;
	__u32 mnt_ns;
	__s64 ret; /* syscall return value, or exit code */
	__u64 start_boottime; /* thread-group leader start, CLOCK_BOOTTIME ns */
	char comm[COMM_LEN];
};

/* K_EXEC: sent with only args_len bytes of args. */
struct exec_record {
	struct header h;
	__u64 exe_ctime_ns;      /* realtime ns of the executable's inode ctime */
	__u64 ns_start_boottime; /* start of the pid namespace's init */
	__u32 pid_ns_level;      /* 0 on the host */
	__u32 exec_flags;
	__u16 exe_len;
	__u16 cwd_len;
	__u16 args_len;
	__u16 pad;
	char tty[TTY_NAME];
	char exe[PATH_MAX_K];  /* bprm->filename as passed to execve */
	char exe_name[NAME_MAX_K]; /* d_name of the executable (memfd:..., busybox) */
	char cwd[WALK_MAX];    /* NUL-separated components, leaf first */
	char args[ARGS_MAX];   /* NUL-separated argv */
};

/* K_FORK: a new process (not a thread). */
struct fork_record {
	struct header h;
	__u32 child_tgid;
	__u32 pad;
	__u64 child_start_boottime;
};

/* K_CONNECT, K_LISTEN */
struct net_record {
	struct header h;
	__u16 family;
	__u16 sock_type;
	__u16 protocol;
	__u16 local_port;  /* host order */
	__u16 remote_port; /* host order */
	__u16 net_flags;
	__u16 pad[2];
	__u8 local_addr[16];
	__u8 remote_addr[16];
};

/*
 * K_OPEN, K_CHMOD, K_MEMFD_CREATE, K_PTRACE, K_MODULE, K_UNSHARE,
 * K_SETNS: a syscall with up to three integer arguments and one path or
 * name. path_walked marks a path built by a dentry walk (NUL-separated
 * components, leaf first) rather than a user-supplied string.
 */
struct sys_record {
	struct header h;
	__u64 arg[3];
	__u16 path_len;
	__u8 path_walked;
	__u8 resolved;    /* enum path_source */
	__u16 req_len;    /* PATH_RESOLVED: length of the requested path after path's NUL */
	__u8 pad[2];
	char path[WALK_MAX];
};

/* Value of the watched-path LPM trie. */
struct watch_value {
	__u16 len;   /* length of the watched string */
	__u8 exact;  /* 1: the whole path must match, 0: prefix */
	__u8 pad;
};

#endif
