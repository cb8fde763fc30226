#!/bin/bash
# a realistic node workload for the sensor to record
cd /tmp/cap
ROUNDS=${1:-20}
python3 -m http.server 18080 --bind 127.0.0.1 --directory /tmp/cap/www >/dev/null 2>&1 &
WEB=$!
./container.sh 300 &
CTR=$!
sleep 1
for r in $(seq 1 $ROUNDS); do
  # cron-style shell jobs
  for f in /etc/hostname /proc/loadavg /proc/meminfo; do cat $f | wc -l >/dev/null; done
  date +%s > /tmp/cap/heartbeat
  ls -la /var/log | sort -k5 -n | tail -3 >/dev/null
  grep -c processor /proc/cpuinfo >/dev/null
  df -h / | awk 'NR==2{print $5}' >/dev/null
  find /tmp/cap/src -name '*.c' -newer /tmp/cap/heartbeat | xargs -r wc -c >/dev/null
  sed -n 1,5p /etc/os-release | tr 'a-z' 'A-Z' >/dev/null
  uname -a >/dev/null; id -u >/dev/null; hostname >/dev/null
  ps -eo pid,comm | head -5 >/dev/null
  # health checks and API calls on loopback
  curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:18080/index.html >/dev/null
  curl -s -m 1 http://127.0.0.1:18080/missing >/dev/null
  # git
  git -C /work/main rev-parse HEAD >/dev/null
  git -C /work/main log --oneline -3 >/dev/null
  git -C /work/main status --porcelain >/dev/null 2>&1
  # python jobs
  python3 -c 'import json,sys; print(json.dumps({"ok": True}))' >/dev/null
  python3 -c 'import urllib.request as u; u.urlopen("http://127.0.0.1:18080/").read()' >/dev/null 2>&1
  # package-like activity (queries only)
  dpkg -l | wc -l >/dev/null
  dpkg -s coreutils >/dev/null 2>&1
  apt-cache policy curl >/dev/null 2>&1
  # builds
  make -s -C /tmp/cap/src clean all >/dev/null 2>&1
  ./src/hello >/dev/null
  if [ $((r % 5)) -eq 1 ]; then
    (cd src/gomod && GOFLAGS=-mod=mod GOCACHE=/tmp/cap/gocache-$r go build -o /tmp/cap/hello-go . ) >/dev/null 2>&1
    pip3 list 2>/dev/null | head -3 >/dev/null
    tar czf /tmp/cap/src.tgz -C /tmp/cap src && gzip -t /tmp/cap/src.tgz
  fi
  sleep 0.2
done
kill $WEB
wait $CTR
