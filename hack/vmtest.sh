#!/usr/bin/env bash
# Runs the sensor's privileged Go tests under Debian cloud kernels in qemu.
#
#   hack/vmtest.sh [kernel...]        (make vmtest [VM_KERNELS="..."])
#
# A kernel is a series ("6.1", "6.12": the newest Debian cloud kernel of that
# series apt knows), a kernel release ("6.1.0-56-cloud-amd64") or a package
# name ("linux-image-6.12.117+deb12-cloud-amd64"). Default: 6.1 and 6.12.
#
# Each kernel boots under TCG software emulation (KVM does not work on the
# build machines) with an initramfs holding busybox, runc, the test binaries
# (CGO_ENABLED=0 go test -c) and test/vmtest/init.sh as /init, which sets
# VIGIL_VMTEST=1 for the tests: a test whose subject the host kernel lacks
# (module loading on a CONFIG_MODULES=n kernel) must assert it there. Kernels
# run one after another. The script fails when a test binary exits non-zero or its
# VMTEST_EXIT marker is missing (panic, hang, timeout).
#
# Kernels are downloaded with apt-get download and kept, extracted, in
# $VMTEST_CACHE/<kernel release>/ across runs.
#
# Environment:
#   VMTEST_PKGS         packages to test (default ./internal/sensor/...; only
#                       those with test files are built)
#   VMTEST_DIR          Go module directory they are relative to (default:
#                       the repository root)
#   VMTEST_RUN          -test.run regexp
#   VMTEST_SKIP         -test.skip regexp (default: the tests that need a
#                       container runtime or an API server the guest lacks,
#                       covered on the host)
#   VMTEST_ARGS         more test flags, split on blanks (e.g. -test.failfast)
#   VMTEST_TEST_TIMEOUT -test.timeout of each test binary (default 10m)
#   VMTEST_TIMEOUT      wall-clock limit of one VM (default 25m)
#   VMTEST_MEM, VMTEST_SMP   guest memory and CPUs (default 2G, 2)
#   VMTEST_ACCEL        qemu -accel (default tcg,thread=single; see below)
#   VMTEST_MODULES      kernel modules loaded in the guest (default "overlay")
#   VMTEST_HOST_BINS    host binaries copied over busybox applets (default /bin/echo)
#   VMTEST_APPEND       extra kernel command line
#   VMTEST_CACHE        kernel cache (default /var/cache/vigil-vmtest)
#   VMTEST_LOGDIR       where the serial logs go (default a new /tmp dir)
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
init_script=$repo/test/vmtest/init.sh
moddir=${VMTEST_DIR:-$repo}
pkgs=${VMTEST_PKGS:-./internal/sensor/...}
test_timeout=${VMTEST_TEST_TIMEOUT:-10m}
vm_timeout=${VMTEST_TIMEOUT:-25m}
# Single-threaded TCG: with one host thread per vCPU (MTTCG), a vCPU can
# run a stale translation of kernel text that another vCPU is live-patching
# (static keys flip when tracepoints attach), and the guest oopses on a
# leftover int3 in syscall_exit_to_user_mode_prepare. Seen on 6.12, 1 boot in 3.
accel=${VMTEST_ACCEL:-tcg,thread=single}
mem=${VMTEST_MEM:-2G}
smp=${VMTEST_SMP:-2}
modules=${VMTEST_MODULES-overlay}
cache=${VMTEST_CACHE:-/var/cache/vigil-vmtest}
logdir=${VMTEST_LOGDIR:-}
append="console=ttyS0 panic=-1 quiet rdinit=/init ${VMTEST_APPEND:-}"

log() { printf 'vmtest: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

# ---- host packages ---------------------------------------------------------

ensure_packages() {
	local missing=() p
	for p in qemu-system-x86 cpio busybox-static runc xz-utils; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
	done
	[ ${#missing[@]} -eq 0 ] && return
	[ "$(id -u)" -eq 0 ] || die "missing packages (${missing[*]}); run as root or apt-get install them"
	log "installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# ---- kernels ---------------------------------------------------------------

apt_updated=
apt_update_once() {
	[ -n "$apt_updated" ] && return
	apt_updated=1
	log "apt-get update"
	apt-get update -qq || log "apt-get update failed; using the lists apt already has"
}

# Debian's archive mirror as this machine's apt sources name it.
debian_mirror() {
	local uri
	uri=$({ grep -hs '^URIs:' /etc/apt/sources.list.d/*.sources | awk '{for (i = 2; i <= NF; i++) print $i}'
		grep -hs '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list | sed 's/\[[^]]*\]//' | awk '{print $2}'
	} | grep -E '/debian/?$' | head -n1)
	echo "${uri:-http://deb.debian.org/debian}"
}

# Adds bookworm-backports (where Debian kept 6.12 before it reached
# bookworm-security) if apt has no such source yet and the mirror answers.
backports_tried=
add_backports() {
	[ -n "$backports_tried" ] && return 1
	backports_tried=1
	grep -rqs 'bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/ && return 1
	[ "$(id -u)" -eq 0 ] || return 1
	local f=/etc/apt/sources.list.d/vigil-vmtest-backports.list mirror
	mirror=$(debian_mirror)
	log "adding bookworm-backports from $mirror"
	echo "deb $mirror bookworm-backports main" >"$f"
	if ! apt-get update -qq -o Dir::Etc::sourcelist="$f" -o Dir::Etc::sourceparts=- -o APT::Get::List-Cleanup=0; then
		log "$mirror bookworm-backports is not reachable"
		rm -f "$f"
		return 1
	fi
}

# Newest kernel release whose linux-image package apt knows, for an ERE.
apt_newest() {
	apt-cache pkgnames linux-image- 2>/dev/null | sed -n 's/^linux-image-//p' |
		grep -E "^($1)\$" | sort -V | tail -n1 || true
}
cache_newest() {
	ls "$cache" 2>/dev/null | grep -E "^($1)\$" | sort -V | tail -n1 || true
}

# resolve KERNEL prints the kernel release to test.
resolve() {
	local k=${1#linux-image-} re kver
	case "$k" in
	*-cloud-amd64 | *-amd64) echo "$k"; return ;;
	[0-9]*.[0-9]*) ;;
	*) die "unknown kernel '$1': use a series (6.1), a release (6.1.0-56-cloud-amd64) or a package name" ;;
	esac
	# 6.1 -> 6.1.0-56-cloud-amd64; 6.12 -> 6.12.117+deb12-cloud-amd64 or 6.12.x+bpo-cloud-amd64
	re="${k//./\\.}[.-][0-9][^[:space:]]*-cloud-amd64"
	kver=$(apt_newest "$re")
	if [ -z "$kver" ]; then
		apt_update_once
		kver=$(apt_newest "$re")
	fi
	if [ -z "$kver" ] && add_backports; then
		kver=$(apt_newest "$re")
	fi
	[ -n "$kver" ] || kver=$(cache_newest "$re")
	[ -n "$kver" ] || die "no Debian cloud kernel for $k in apt's sources or $cache"
	echo "$kver"
}

# fetch KVER makes $cache/KVER/{vmlinuz,config,modules/} exist.
fetch() {
	local kver=$1 dst=$cache/$1 tmp deb
	[ -f "$dst/vmlinuz" ] && return
	mkdir -p "$cache"
	exec 9>"$cache/.lock"
	flock 9
	if [ ! -f "$dst/vmlinuz" ]; then
		tmp=$(mktemp -d "$cache/.fetch.XXXXXX")
		log "downloading linux-image-$kver"
		(cd "$tmp" && apt-get download -q "linux-image-$kver") >"$tmp/out" 2>&1 || true
		if ! ls "$tmp"/linux-image-*.deb >/dev/null 2>&1; then
			apt_update_once
			(cd "$tmp" && apt-get download -q "linux-image-$kver") >"$tmp/out" 2>&1 || true
		fi
		deb=$(ls "$tmp"/linux-image-*.deb 2>/dev/null | head -n1)
		[ -n "$deb" ] || { cat "$tmp/out" >&2; rm -rf "$tmp"; die "apt-get download linux-image-$kver failed"; }
		dpkg-deb -x "$deb" "$tmp/x"
		mkdir "$tmp/k"
		cp "$tmp/x/boot/vmlinuz-$kver" "$tmp/k/vmlinuz"
		cp "$tmp/x/boot/config-$kver" "$tmp/k/config"
		if [ -d "$tmp/x/lib/modules/$kver" ]; then
			mv "$tmp/x/lib/modules/$kver" "$tmp/k/modules"
		elif [ -d "$tmp/x/usr/lib/modules/$kver" ]; then
			mv "$tmp/x/usr/lib/modules/$kver" "$tmp/k/modules"
		fi
		dpkg-deb -f "$deb" Package Version >"$tmp/k/package"
		rm -rf "$dst"
		mv "$tmp/k" "$dst"
		rm -rf "$tmp"
	fi
	flock -u 9
}

# modfile KVER NAME: the module's file under $cache/KVER/modules, "" if built in.
modfile() {
	local base=$cache/$1/modules n=$2 alt
	alt=${n//_/-}
	grep -qE "/(${n//-/_}|$alt)\.ko\$" "$base/modules.builtin" 2>/dev/null && return
	find "$base/kernel" \( -name "${n//-/_}.ko*" -o -name "$alt.ko*" \) -print -quit 2>/dev/null
}

# add_modules KVER ROOT: copies $modules and their dependencies,
# decompressed, into ROOT and lists them, dependencies first, in ROOT/vmtest/modules.
add_modules() {
	local kver=$1 root=$2 seen=" " order=()
	visit() {
		local n=$1 f deps d
		case "$seen" in *" $n "*) return ;; esac
		seen+="$n "
		f=$(modfile "$kver" "$n")
		if [ -z "$f" ]; then
			grep -qE "/(${n//-/_}|${n//_/-})\.ko\$" "$cache/$kver/modules/modules.builtin" 2>/dev/null ||
				log "$kver: no module $n"
			return
		fi
		deps=$(case "$f" in *.xz) xz -dc "$f" ;; *.zst) zstd -dc "$f" ;; *.gz) gzip -dc "$f" ;; *) cat "$f" ;; esac |
			grep -a -o 'depends=[^[:cntrl:]]*' | head -n1 | sed 's/^depends=//; s/,/ /g')
		for d in $deps; do visit "$d"; done
		order+=("$f")
	}
	for m in $modules; do visit "$m"; done
	mkdir -p "$root/vmtest"
	: >"$root/vmtest/modules"
	local f rel
	for f in "${order[@]}"; do
		rel=/lib/modules/$kver/${f#"$cache/$kver/modules/"}
		rel=${rel%.xz}
		rel=${rel%.zst}
		rel=${rel%.gz}
		mkdir -p "$root$(dirname "$rel")"
		case "$f" in *.xz) xz -dc "$f" ;; *.zst) zstd -dc "$f" ;; *.gz) gzip -dc "$f" ;; *) cat "$f" ;; esac >"$root$rel"
		echo "$rel" >>"$root/vmtest/modules"
	done
}

# ---- initramfs -------------------------------------------------------------

# copy_bin FILE ROOT copies FILE and the shared libraries it needs.
copy_bin() {
	local f=$1 root=$2 lib
	cp -L --parents "$f" "$root"
	for lib in $(ldd "$f" 2>/dev/null | grep -oE '/[^ ]+' || true); do
		cp -L --parents "$lib" "$root"
	done
}

build_root() {
	local root=$1 a pkg name dir
	mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,etc,root,proc,sys,dev,tmp,run,var/tmp,vmtest/bin}
	# busybox: /bin/busybox, /usr/bin/busybox and every applet (/bin/sh, /bin/echo, /usr/bin/env, ...).
	cp /bin/busybox "$root/bin/busybox"
	ln -s ../../bin/busybox "$root/usr/bin/busybox"
	for a in $(/bin/busybox --list-full); do
		[ -e "$root/$a" ] || [ -L "$root/$a" ] || { mkdir -p "$root/$(dirname "$a")"; ln -s /bin/busybox "$root/$a"; }
	done
	# runc (Debian's is linked against libseccomp).
	copy_bin "$(command -v runc)" "$root"
	# Host binaries that replace busybox applets (e.g. /bin/echo: a test that
	# execs it under another argv[0] needs a binary that is not multi-call).
	for a in ${VMTEST_HOST_BINS-/bin/echo}; do
		rm -f "$root$a"
		copy_bin "$a" "$root"
	done
	cp "$init_script" "$root/init"
	chmod 755 "$root/init"

	printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$root/etc/passwd"
	printf 'root:x:0:\ntty:x:5:\nnogroup:x:65534:\n' >"$root/etc/group"
	printf 'root:*:19000:0:99999:7:::\n' >"$root/etc/shadow"
	chmod 600 "$root/etc/shadow"
	echo vmtest >"$root/etc/hostname"
	printf '127.0.0.1 localhost vmtest\n::1 localhost ip6-localhost ip6-loopback\n' >"$root/etc/hosts"
	printf 'hosts: files\n' >"$root/etc/nsswitch.conf"
	ln -s /proc/self/mounts "$root/etc/mtab"

	# The test binaries, and a copy of each package's directory (its files
	# and testdata) at /vmtest/src/<path in the module> to run them in.
	: >"$root/vmtest/tests"
	local mdir rel
	while read -r pkg dir mdir; do
		name=$(echo "$pkg" | tr '/.' '__').test
		rel=/vmtest/src/${dir#"$mdir"}
		rel=${rel%/}
		log "go test -c $pkg"
		(cd "$moddir" && CGO_ENABLED=0 go test -c -o "$root/vmtest/bin/$name" "$pkg")
		mkdir -p "$root$rel"
		find "$dir" -maxdepth 1 -type f -exec cp -p {} "$root$rel/" \;
		[ -d "$dir/testdata" ] && cp -a "$dir/testdata" "$root$rel/"
		echo "$pkg|/vmtest/bin/$name|$rel" >>"$root/vmtest/tests"
	done <"$work/pkgs"

	local args=()
	[ -n "${VMTEST_RUN:-}" ] && args+=(-test.run "$VMTEST_RUN")
	# The CRI client's test starts a real containerd, the pod watch's a real
	# kube-apiserver: they do not depend on the kernel, run on the host in
	# `make unit`, and the guest has neither.
	local skip=${VMTEST_SKIP-^(TestCRIContainerd|TestKubePods|TestKubePodsForbidden)\$}
	[ -n "$skip" ] && args+=(-test.skip "$skip")
	args+=(${VMTEST_ARGS:-})
	echo "${args[*]}" >"$root/vmtest/args"
	echo "$test_timeout" >"$root/vmtest/timeout"
}

mkcpio() { # DIR > archive
	(cd "$1" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet)
}

# ---- run -------------------------------------------------------------------

run_kernel() {
	local kver=$1 log=$logdir/$1.log start rc initrd=$work/initrd-$1.cpio
	rm -rf "$work/mod"
	add_modules "$kver" "$work/mod"
	{ cat "$work/base.cpio"; mkcpio "$work/mod"; } >"$initrd"
	log "booting $kver ($(sed -n 's/^Version: //p' "$cache/$kver/package" 2>/dev/null)), log: $log"
	start=$SECONDS
	rm -f "$work/qemu.pid" "$work/qemu.rc"
	# In the background so that the INT/TERM traps run at once (and stop
	# qemu through its pid file) instead of after the VM ends.
	{
		local q=0
		timeout -k 15s "$vm_timeout" qemu-system-x86_64 -accel "$accel" -cpu max -smp "$smp" -m "$mem" \
			-nographic -no-reboot -nic none -pidfile "$work/qemu.pid" \
			-kernel "$cache/$kver/vmlinuz" -initrd "$initrd" -append "$append" </dev/null 2>&1 || q=$?
		echo $q >"$work/qemu.rc"
	} | sed -u -e 's/\r//g' -e 's/\x1b\[[0-9;?]*[a-zA-Z]//g' -e 's/\x1b[c=>]//g' | tee "$log" | sed -u "s/^/[$kver] /" &
	wait $! || true
	rc=$(cat "$work/qemu.rc" 2>/dev/null || echo 255)
	rm -f "$initrd"
	elapsed[$kver]=$((SECONDS - start))
	[ "$rc" -eq 124 ] && log "$kver: timed out after $vm_timeout"
	qemu_rc[$kver]=$rc
}

# summarize KVER prints one line per package and returns 1 on any failure.
summarize() {
	local kver=$1 log=$logdir/$1.log ok=0 pkg code fails
	printf '%s (%ss, %s):\n' "$kver" "${elapsed[$kver]}" "$(grep -m1 '^VMTEST_KERNEL' "$log" | cut -d' ' -f3- || true)"
	while read -r pkg _; do
		code=$(awk -v p="$pkg" '$1 == "VMTEST_EXIT" && $2 == p && $3 ~ /^[0-9]+$/ {c = $3} END {print c}' "$log")
		if [ -z "$code" ]; then
			printf '  %-55s NO RESULT (qemu exit %s: panic, hang or timeout; see %s)\n' "$pkg" "${qemu_rc[$kver]}" "$log"
			ok=1
		elif [ "$code" -ne 0 ]; then
			fails=$(awk -v p="$pkg" '$0 == "VMTEST_START " p {on = 1; next} /^VMTEST_EXIT / {on = 0} on && /^ *--- FAIL: / {print $3}' "$log" | paste -sd' ')
			printf '  %-55s FAIL (exit %s) %s\n' "$pkg" "$code" "$fails"
			ok=1
		else
			printf '  %-55s ok\n' "$pkg"
		fi
	done <"$work/pkgs"
	return $ok
}

cleanup() {
	if [ -s "$work/qemu.pid" ] && [ ! -e "$work/qemu.rc" ]; then
		kill "$(cat "$work/qemu.pid")" 2>/dev/null || true
		wait 2>/dev/null || true
	fi
	rm -rf "$work" || true
}

main() {
	ensure_packages
	[ -f "$init_script" ] || die "missing $init_script"

	local kernels=("$@") kvers=() k
	[ ${#kernels[@]} -gt 0 ] || kernels=(6.1 6.12)
	for k in "${kernels[@]}"; do kvers+=("$(resolve "$k")"); done
	for k in "${kvers[@]}"; do fetch "$k"; done

	work=$(mktemp -d /tmp/vigil-vmtest.XXXXXX)
	trap cleanup EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM
	[ -n "$logdir" ] || logdir=$(mktemp -d /tmp/vigil-vmtest-logs.XXXXXX)
	mkdir -p "$logdir"

	local t0=$SECONDS
	(cd "$moddir" && go list -f '{{if or .TestGoFiles .XTestGoFiles}}{{.ImportPath}} {{.Dir}} {{.Module.Dir}}{{end}}' $pkgs) | sed '/^$/d' >"$work/pkgs"
	[ -s "$work/pkgs" ] || die "no test files in $pkgs"
	build_root "$work/root"
	mkcpio "$work/root" >"$work/base.cpio"
	rm -rf "$work/root"
	log "built $(wc -l <"$work/pkgs") test binaries and a $(($(stat -c %s "$work/base.cpio") / 1048576)) MiB initramfs in $((SECONDS - t0))s"

	declare -gA elapsed=() qemu_rc=()
	for k in "${kvers[@]}"; do run_kernel "$k"; done

	local status=0
	echo
	echo "vmtest summary (serial logs in $logdir):"
	for k in "${kvers[@]}"; do summarize "$k" || status=1; done
	exit $status
}

main "$@"
