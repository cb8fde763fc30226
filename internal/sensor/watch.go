package sensor

import "github.com/vigil-sec/vigil/internal/sensor/bpf"

// DefaultWatchPaths are the sensitive files whose opens the kernel reports:
// credentials, the dynamic linker's preload list, Kubernetes and kubelet
// credentials, SSH and cron persistence. Directory entries end in '/'.
var DefaultWatchPaths = []bpf.WatchPath{
	{Path: "/etc/shadow"}, {Path: "/etc/gshadow"}, {Path: "/etc/shadow-"}, {Path: "/etc/sudoers"},
	{Path: "/etc/ld.so.preload"}, {Path: "/etc/crontab"}, {Path: "/etc/ssh/sshd_config"},
	{Path: "/etc/kubernetes/admin.conf"}, {Path: "/etc/kubernetes/kubelet.conf"},
	{Path: "/etc/kubernetes/controller-manager.conf"}, {Path: "/etc/kubernetes/scheduler.conf"},
	{Path: "/etc/kubernetes/super-admin.conf"}, {Path: "/var/lib/kubelet/kubeconfig"},
	{Path: "/root/.kube/config"}, {Path: "/proc/kcore"},
	{Path: "/var/run/secrets/kubernetes.io/", Prefix: true}, {Path: "/run/secrets/kubernetes.io/", Prefix: true},
	{Path: "/var/run/secrets/eks.amazonaws.com/", Prefix: true}, {Path: "/var/run/secrets/azure/", Prefix: true},
	{Path: "/run/secrets/eks.amazonaws.com/", Prefix: true}, {Path: "/run/secrets/azure/", Prefix: true},
	{Path: "/var/run/secrets/pods.eks.amazonaws.com/", Prefix: true},
	{Path: "/etc/kubernetes/bootstrap-kubelet.conf"}, {Path: "/var/lib/kubelet/bootstrap-kubeconfig"}, {Path: "/etc/gshadow-"},
	{Path: "/etc/sudoers.d/", Prefix: true}, {Path: "/etc/cron.d/", Prefix: true},
	{Path: "/var/spool/cron/", Prefix: true}, {Path: "/root/.ssh/", Prefix: true},
	{Path: "/etc/kubernetes/pki/", Prefix: true}, {Path: "/var/lib/kubelet/pki/", Prefix: true},
	{Path: "/root/.aws/", Prefix: true}, {Path: "/root/.docker/", Prefix: true},
	{Path: "/root/.config/gcloud/", Prefix: true}, {Path: "/root/.azure/", Prefix: true},
	{Path: "/etc/cron.hourly/", Prefix: true}, {Path: "/etc/cron.daily/", Prefix: true},
	{Path: "/etc/cron.weekly/", Prefix: true}, {Path: "/etc/cron.monthly/", Prefix: true},
	{Path: "/etc/anacrontab"},
	// Container escapes through kernel helpers, and kernel tuning for miners.
	{Path: "/proc/sys/kernel/core_pattern"}, {Path: "/proc/sysrq-trigger"}, {Path: "/proc/sys/kernel/sysrq"},
	{Path: "/proc/sys/kernel/modprobe"}, {Path: "/proc/sys/kernel/hotplug"}, {Path: "/sys/kernel/uevent_helper"},
	{Path: "/proc/sys/fs/binfmt_misc/register"},
	{Path: "/proc/sys/vm/nr_hugepages"}, {Path: "/proc/sys/vm/nr_overcommit_hugepages"},
	{Path: "/sys/kernel/mm/hugepages/", Prefix: true}, {Path: "/dev/cpu/", Prefix: true},
	// Log tampering: login records and the system logs attackers truncate.
	// (Pod and container logs are left out: log shippers read them all day.)
	{Path: "/var/run/utmp"}, {Path: "/run/utmp"}, {Path: "/var/log/wtmp"}, {Path: "/var/log/btmp"},
	{Path: "/var/log/lastlog"}, {Path: "/var/log/faillog"}, {Path: "/var/log/auth.log"}, {Path: "/var/log/secure"},
	{Path: "/var/log/syslog"}, {Path: "/var/log/messages"}, {Path: "/var/log/kern.log"}, {Path: "/var/log/cron"},
	{Path: "/var/log/audit/", Prefix: true}, {Path: "/var/log/journal/", Prefix: true},
}

// DefaultWatchNames are base names watched in every directory: SSH keys,
// shell histories and credentials of any user, and cgroup release agents.
var DefaultWatchNames = []string{
	"authorized_keys", "authorized_keys2", "id_rsa", "id_ecdsa", "id_ed25519",
	".bash_history", ".zsh_history", ".ash_history", ".sh_history", ".mysql_history", ".psql_history",
	".history", ".python_history", ".node_repl_history",
	".git-credentials", ".netrc", ".pgpass", ".npmrc", ".pypirc", ".my.cnf",
	// cgroup v1 escape (the release_agent trick).
	"release_agent", "notify_on_release",
}
