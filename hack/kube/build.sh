#!/usr/bin/env bash
# Builds the Kubernetes control-plane binaries that internal/kubetest runs
# (kube-apiserver, kube-controller-manager, kube-scheduler, kubelet,
# kube-proxy) from this directory's tools module, into a cache shared by every
# checkout on the machine:
#
#   ${VIGIL_KUBE_CACHE:-/var/cache/vigil-kube}/v1.36.3-<key>/bin
#
# <key> hashes the tools module's go.mod and go.sum, the Go version and this
# script's build recipe, so a version bump builds a fresh directory and an
# unchanged module costs nothing (the binaries are already there). A build
# takes about 6 minutes on 2 idle cores with an empty Go build cache.
#
# The last line on stdout is the bin directory; progress goes to stderr.
# Idempotent and safe to interrupt: binaries are built into a temporary
# directory beside the cache entry and renamed into place only when all are
# built. Concurrent runs serialise on a lock file.
#
# Usage: hack/kube/build.sh               build if needed, print the bin dir
#        hack/kube/build.sh --print-dir   print the bin dir without building
#                                         (it may not exist yet)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache_root=${VIGIL_KUBE_CACHE:-/var/cache/vigil-kube}
go=${GO:-go}

kube_version=v1.36.3 # must match k8s.io/kubernetes in go.mod
binaries=(kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy)
# Same tags as upstream's release builds (hack/lib/golang.sh).
tags=selinux,notest,grpcnotrace
# Bump when the way binaries are built changes, so old cache entries are not reused.
recipe="recipe=2 tags=$tags cgo=0 binaries=${binaries[*]} version=$kube_version"

case "${1:-}" in
"" | --print-dir) ;;
*)
	echo "usage: $0 [--print-dir]" >&2
	exit 2
	;;
esac

grep -q "^require k8s.io/kubernetes $kube_version\$" "$here/go.mod" || {
	echo "build.sh: kube_version $kube_version does not match k8s.io/kubernetes in $here/go.mod" >&2
	exit 1
}

key=$(
	{
		cat "$here/go.mod" "$here/go.sum"
		(cd "$here" && "$go" env GOVERSION GOOS GOARCH)
		echo "$recipe"
	} | sha256sum | cut -c1-16
)
entry="$cache_root/$kube_version-$key"
bindir="$entry/bin"

if [ "${1:-}" = --print-dir ]; then
	echo "$bindir"
	exit 0
fi

complete() {
	local b
	for b in "${binaries[@]}"; do
		[ -x "$bindir/$b" ] || return 1
	done
}

if complete; then
	echo "$bindir"
	exit 0
fi

mkdir -p "$cache_root"
exec 9>"$cache_root/.lock"
flock -n 9 || {
	echo "build.sh: waiting for another build (lock $cache_root/.lock)" >&2
	flock 9
}
if complete; then # another run built it while we waited
	echo "$bindir"
	exit 0
fi

tmp=$(mktemp -d "$cache_root/.tmp-$kube_version-$key.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
chmod 755 "$tmp"
# Leftovers of runs that were killed (the lock says no build is running now).
find "$cache_root" -maxdepth 1 -name '.tmp-*' ! -path "$tmp" -exec rm -rf {} + 2>/dev/null || true

# Stamp the module's release time rather than now, so rebuilds are identical.
build_date=$(cd "$here" && "$go" list -m -f '{{.Time.UTC.Format "2006-01-02T15:04:05Z"}}' k8s.io/kubernetes)
ldflags="-s -w"
for pkg in k8s.io/client-go/pkg/version k8s.io/component-base/version; do
	ldflags+=" -X $pkg.gitVersion=$kube_version"
	ldflags+=" -X $pkg.gitMajor=$(echo "$kube_version" | cut -d. -f1 | tr -d v)"
	ldflags+=" -X $pkg.gitMinor=$(echo "$kube_version" | cut -d. -f2)"
	ldflags+=" -X $pkg.gitTreeState=clean"
	ldflags+=" -X $pkg.buildDate=$build_date"
done

pkgs=()
for b in "${binaries[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$b"); done

echo "build.sh: building ${binaries[*]} $kube_version into $bindir (several minutes)" >&2
start=$(date +%s)
mkdir -p "$tmp/bin"
(
	cd "$here"
	CGO_ENABLED=0 GOFLAGS="${GOFLAGS:-} -mod=readonly" "$go" build -trimpath -tags "$tags" -ldflags "$ldflags" -o "$tmp/bin/" "${pkgs[@]}"
)
for b in "${binaries[@]}"; do
	[ -x "$tmp/bin/$b" ] || {
		echo "build.sh: $b missing after go build" >&2
		exit 1
	}
done
"$tmp/bin/kube-apiserver" --version >&2

rm -rf "$entry" # an incomplete entry can only come from outside this script
mv "$tmp" "$entry"
trap - EXIT
echo "build.sh: built in $(($(date +%s) - start))s" >&2
echo "$bindir"
