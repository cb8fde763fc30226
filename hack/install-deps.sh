#!/usr/bin/env bash
# Installs the Debian packages Vigil's tests need. Idempotent: installs only
# what is missing, so repeated `make test` runs cost nothing.
set -euo pipefail
pkgs=(runc busybox-static clang-14 llvm-14 libbpf-dev bpftool qemu-system-x86 cpio iproute2 kmod python3 postgresql curl etcd-server chromium fonts-liberation fonts-dejavu-core containerd containernetworking-plugins iptables nftables conntrack)
missing=()
for p in "${pkgs[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
	echo "installing: ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
