#!/usr/bin/env bash
# Sensor overhead: wall time of an exec- and connect-heavy workload with
# `vigil sensor --output jsonl` running vs. without, plus the sensor's CPU
# per 10,000 events, its peak RSS, and whether any event was lost.
#
# Usage (root): bench/sensor-overhead.sh [rounds]   (env: EXECS, CONNECTS, TAGS)
# The sensor measured is the node build (TAGS=node, what the chart's
# DaemonSet runs); TAGS= measures the full vigil binary's `vigil sensor`.
# Baseline and sensor runs alternate, ROUNDS times each; the figures are
# medians, so a noisy neighbour skews both sides alike.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
EXECS=${EXECS:-20000}
CONNECTS=${CONNECTS:-20000}
[ "$(id -u)" = 0 ] || { echo "run as root: the sensor loads eBPF programs" >&2; exit 1; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export PATH=/usr/local/go/bin:$PATH
TAGS=${TAGS-node}
CGO_ENABLED=0 go build -trimpath -tags "$TAGS" -o "$tmp/vigil" ./cmd/vigil
CGO_ENABLED=0 go build -trimpath -o "$tmp/workload" ./bench/workload

workload() { "$tmp/workload" -execs "$EXECS" -connects "$CONNECTS"; }

# ticks: utime+stime of a pid, in clock ticks.
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

for i in $(seq "$rounds"); do
	workload > "$tmp/base.$i.json"

	"$tmp/vigil" sensor --output jsonl --health-interval 1h > "$tmp/events.$i.jsonl" 2> "$tmp/sensor.$i.err" &
	spid=$!
	# Ready when the first sensor.health event (programs attached) is out.
	for _ in $(seq 300); do
		grep -q '"sensor.health"' "$tmp/events.$i.jsonl" 2>/dev/null && break
		sleep 0.1
	done
	grep -q '"sensor.health"' "$tmp/events.$i.jsonl" || { cat "$tmp/sensor.$i.err"; echo "sensor did not start" >&2; exit 1; }
	t0=$(ticks "$spid")
	workload > "$tmp/with.$i.json"
	sleep 1 # let the sensor catch up before reading its CPU time
	t1=$(ticks "$spid")
	hwm=$(awk '/VmHWM/ {print $2}' "/proc/$spid/status")
	kill -INT "$spid"
	wait "$spid" || true
	echo "{\"ticks\": $((t1 - t0)), \"hwm_kib\": $hwm}" > "$tmp/sensor.$i.json"
done

python3 - "$tmp" "$rounds" "$(getconf CLK_TCK)" <<'PY'
import json, statistics, sys
tmp, rounds, hz = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rows = []
for i in range(1, rounds + 1):
    base = json.load(open(f"{tmp}/base.{i}.json"))
    with_ = json.load(open(f"{tmp}/with.{i}.json"))
    sens = json.load(open(f"{tmp}/sensor.{i}.json"))
    pid = with_["pid"]
    execs = connects = total = 0
    health = None
    for line in open(f"{tmp}/events.{i}.jsonl"):
        e = json.loads(line)
        total += 1
        k = e["kind"]
        p = e.get("process") or {}
        if k == "process.exec" and p.get("ppid") == pid:
            execs += 1
        elif k == "network.connect" and p.get("pid") == pid:
            connects += 1
        elif k == "sensor.health":
            health = e["health"]
    rows.append(dict(base=base["seconds"], with_=with_["seconds"],
                     base_exec=base["exec_seconds"], with_exec=with_["exec_seconds"],
                     base_conn=base["connect_seconds"], with_conn=with_["connect_seconds"],
                     execs=execs, connects=connects, events=total,
                     dropped=health.get("dropped_total", 0), cpu=sens["ticks"] / hz,
                     rss=sens["hwm_kib"] / 1024))
    r = rows[-1]
    print(f"round {i}: without {r['base']:.2f}s, with {r['with_']:.2f}s ({r['with_']/r['base']:.3f}x); "
          f"events {total}, workload execs seen {execs}/{with_['execs']}, connects seen {connects}/{with_['connects']}, "
          f"dropped {r['dropped']}; sensor CPU {r['cpu']:.2f}s, peak RSS {r['rss']:.1f} MiB")
med = lambda k: statistics.median(r[k] for r in rows)
events = med("events")
print()
print(f"median wall time: without {med('base'):.2f}s, with sensor {med('with_'):.2f}s: ratio {med('with_')/med('base'):.3f}"
      f" (execs {med('with_exec')/med('base_exec'):.3f}, connects {med('with_conn')/med('base_conn'):.3f})")
# Each round's two runs are adjacent, so their ratio cancels the
# machine's drift between rounds; the median of those is printed too.
print(f"median of the per-round ratios: {statistics.median(r['with_'] / r['base'] for r in rows):.3f}")
print(f"events per run: {events:.0f}; lost: {sum(r['dropped'] for r in rows)} dropped in the kernel; "
      f"workload events delivered: {min(r['execs'] for r in rows)}/{json.load(open(f'{tmp}/with.1.json'))['execs']} execs, "
      f"{min(r['connects'] for r in rows)}/{json.load(open(f'{tmp}/with.1.json'))['connects']} connects (worst run)")
print(f"sensor CPU per 10,000 events: {statistics.median(r['cpu'] / r['events'] * 10000 for r in rows):.3f}s; "
      f"peak RSS: {max(r['rss'] for r in rows):.1f} MiB (max of runs)")
PY
