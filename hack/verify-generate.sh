#!/usr/bin/env bash
# Rebuilds the eBPF objects and Go bindings and fails if they differ from
# what is committed: the committed .o must be what the committed .c makes.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=internal/sensor/bpf
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cp -a "$dir"/. "$tmp"/
(cd "$dir" && go generate ./...)
status=0
for f in sensor_bpfel.go sensor_bpfel.o; do
	if ! cmp -s "$dir/$f" "$tmp/$f"; then
		echo "$dir/$f is stale: run 'make generate' and commit the result" >&2
		status=1
	fi
done
# Leave the tree as it was committed.
cp "$tmp"/sensor_bpfel.go "$tmp"/sensor_bpfel.o "$dir"/
exit $status
