#!/bin/sh
# /init of the initramfs that hack/vmtest.sh boots in qemu (busybox sh).
#
# Stage 1 copies the initramfs onto a tmpfs and switch_roots into it: the
# kernel refuses pivot_root(2) on the initial rootfs, and runc pivot_roots
# into every container. Stage 2 mounts what the tests need (a layout like
# the build machines': cgroup v1/v2 hybrid where the kernel still has the
# v1 memory controller), runs each test binary listed in /vmtest/tests and
# prints one marker line per binary:
#
#   VMTEST_EXIT <import path> <exit code>
#
# then VMTEST_DONE, and powers off. hack/vmtest.sh fails the run when a
# marker is missing or a code is not 0.
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root TMPDIR=/tmp TERM=dumb GOTRACEBACK=all
# Tells the tests they run under make vmtest, whose kernels must cover what
# the build machines' cannot (e.g. TestKernelModuleAttempt's module loads).
export VIGIL_VMTEST=1

say() { printf '\nvmtest: %s\n' "$*"; }

if [ "$1" != stage2 ]; then
	mkdir -p /newroot
	mount -t tmpfs -o mode=0755,size=90% rootfs /newroot || { say "cannot mount the tmpfs root"; poweroff -f; }
	for f in /* /.[!.]*; do
		case "$f" in /newroot | /proc | /sys | /dev | '/.[!.]*') continue ;; esac
		cp -a "$f" /newroot/ || say "copy of $f failed"
	done
	mkdir -p /newroot/proc /newroot/sys /newroot/dev
	exec switch_root /newroot /init stage2
	say "switch_root failed"
	poweroff -f
fi

try() { "$@" || say "failed: $*"; }

try mount -t proc proc /proc
try mount -t sysfs sysfs /sys
try mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm /dev/mqueue
try mount -t devpts -o gid=5,mode=0620,ptmxmode=0666 devpts /dev/pts
try mount -t tmpfs -o mode=1777 tmpfs /dev/shm
try mount -t mqueue mqueue /dev/mqueue
try mount -t tmpfs -o mode=1777 tmpfs /tmp
try mount -t tmpfs -o mode=0755 tmpfs /run
mkdir -p /run/lock /var
ln -sfn /run /var/run
try mount -t securityfs securityfs /sys/kernel/security
try mount -t tracefs tracefs /sys/kernel/tracing
try mount -t debugfs debugfs /sys/kernel/debug
try mount -t bpf bpf /sys/fs/bpf

# cgroups: the build machines' hybrid layout (every v1 controller on its own
# hierarchy, a named systemd hierarchy, cgroup2 at unified) when the kernel
# has the v1 memory controller; otherwise (6.12: CONFIG_MEMCG_V1 is not set)
# cgroup2 alone at /sys/fs/cgroup, as on a unified-hierarchy host.
hybrid_cgroups() {
	mount -t tmpfs -o mode=0755 tmpfs /sys/fs/cgroup || return 1
	mkdir /sys/fs/cgroup/memory
	if ! mount -t cgroup -o memory cgroup /sys/fs/cgroup/memory 2>/dev/null; then
		rmdir /sys/fs/cgroup/memory
		umount /sys/fs/cgroup
		return 1
	fi
	for c in cpu cpuacct cpuset devices freezer blkio pids; do
		mkdir /sys/fs/cgroup/$c
		mount -t cgroup -o $c cgroup /sys/fs/cgroup/$c 2>/dev/null || { say "no cgroup v1 $c"; rmdir /sys/fs/cgroup/$c; }
	done
	mkdir /sys/fs/cgroup/systemd /sys/fs/cgroup/unified
	try mount -t cgroup -o none,name=systemd cgroup /sys/fs/cgroup/systemd
	try mount -t cgroup2 cgroup2 /sys/fs/cgroup/unified
	cgroups=hybrid
}
if ! hybrid_cgroups; then
	try mount -t cgroup2 cgroup2 /sys/fs/cgroup
	cgroups=unified
fi

try ip link set lo up
hostname vmtest

# Kernel modules hack/vmtest.sh resolved for this kernel, dependencies first.
if [ -s /vmtest/modules ]; then
	while read -r m; do
		insmod "$m" || say "insmod $m failed"
	done </vmtest/modules
fi

btf=no
[ -e /sys/kernel/btf/vmlinux ] && btf=yes
printf '\nVMTEST_KERNEL %s btf=%s cgroups=%s lsm=%s lockdown=%s\n' "$(uname -r)" "$btf" "$cgroups" \
	"$(cat /sys/kernel/security/lsm 2>/dev/null)" "$(cat /sys/kernel/security/lockdown 2>/dev/null)"

set -f # extra test flags are split on blanks but never globbed
args=$(cat /vmtest/args 2>/dev/null)
timeout=$(cat /vmtest/timeout 2>/dev/null)
while IFS='|' read -r pkg bin dir; do
	[ -n "$pkg" ] || continue
	printf '\nVMTEST_START %s\n' "$pkg"
	(cd "$dir" && exec "$bin" -test.v -test.count=1 -test.timeout "${timeout:-10m}" $args) </dev/null 2>&1
	rc=$?
	printf '\nVMTEST_EXIT %s %s\n' "$pkg" "$rc"
done </vmtest/tests

printf '\nVMTEST_DONE\n'
sync
poweroff -f
# poweroff -f does not return; if it did, this makes the kernel stop qemu.
echo o >/proc/sysrq-trigger
