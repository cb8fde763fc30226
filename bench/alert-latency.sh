#!/usr/bin/env bash
# Alert latency, end to end: from the kernel's timestamp of an exec to the
# alert line read from `vigil sensor --alerts-only` on stdout.
#
# Usage (root): bench/alert-latency.sh [samples]   (default 300)
# Each sample execs a copy of /bin/true under a new path with a miner's
# stratum URL in its argv, which raises runtime.crypto-miner-stratum; the
# paths differ so that no two samples aggregate into one alert. Samples are
# 20 ms apart. Prints p50/p90/p99/max in milliseconds.
set -euo pipefail
cd "$(dirname "$0")/.."
samples=${1:-300}
[ "$(id -u)" = 0 ] || { echo "run as root: the sensor loads eBPF programs" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'kill "${spid:-}" 2>/dev/null || true; rm -rf "$tmp"' EXIT
export PATH=/usr/local/go/bin:$PATH
CGO_ENABLED=0 go build -trimpath -o "$tmp/vigil" ./cmd/vigil

mkfifo "$tmp/out"
"$tmp/vigil" sensor --alerts-only --health-interval 1h > "$tmp/out" 2> "$tmp/sensor.err" &
spid=$!
python3 - "$tmp" "$samples" <<'PY'
import json, os, subprocess, sys, time, datetime, threading
tmp, n = sys.argv[1], int(sys.argv[2])
out = open(f"{tmp}/out", "r")
lat, ready = {}, threading.Event()
def wall(rfc3339):  # 2026-11-23T13:02:14.704349504Z, nanoseconds and all
    base, _, frac = rfc3339.rstrip("Z").partition(".")
    t = datetime.datetime.fromisoformat(base).replace(tzinfo=datetime.timezone.utc).timestamp()
    return t + (float("0." + frac) if frac else 0)
def reader():
    for line in out:
        now = time.time()
        a = json.loads(line)
        if "health" in a:
            ready.set()
            continue
        if a.get("rule") != "runtime.crypto-miner-stratum":
            continue
        exe = (a.get("process") or {}).get("exe", "")
        if "/lat-" not in exe:
            continue
        t = wall(a["first_seen"])
        lat[exe] = (now - t) * 1000
threading.Thread(target=reader, daemon=True).start()
if not ready.wait(60):
    sys.exit("sensor did not start: " + open(f"{tmp}/sensor.err").read())
for i in range(n):
    d = f"{tmp}/lat-{i}"
    os.mkdir(d)
    subprocess.run(["cp", "/bin/true", f"{d}/miner"], check=True)
    subprocess.run([f"{d}/miner", "-o", "stratum+tcp://pool.example:3333"], check=False)
    time.sleep(0.02)
deadline = time.time() + 5
while len(lat) < n and time.time() < deadline:
    time.sleep(0.05)
v = sorted(lat.values())
if len(v) < n:
    sys.exit(f"only {len(v)} of {n} alerts arrived")
q = lambda p: v[min(len(v) - 1, int(len(v) * p))]
print(f"alert latency over {len(v)} alerts: p50 {q(0.5):.1f} ms, p90 {q(0.9):.1f} ms, p99 {q(0.99):.1f} ms, max {v[-1]:.1f} ms")
PY
