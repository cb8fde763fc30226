#!/bin/bash
# a busybox container under runc with a kubelet-style cgroup path
set -e
B=/tmp/cap/bundle; rm -rf $B; mkdir -p $B/rootfs/{bin,proc,dev,sys,tmp,etc,root,app,www}
cp "$(command -v busybox)" $B/rootfs/bin/busybox
for a in sh cat cp chmod echo sleep ls id wget true env mkdir rm date grep sed awk wc sort head tail ps httpd uname hostname find tr cut md5sum gzip; do ln -s busybox $B/rootfs/bin/$a; done
echo 'root:x:0:0:root:/root:/bin/sh' > $B/rootfs/etc/passwd
echo '<p>hi</p>' > $B/rootfs/www/index.html
cat > $B/rootfs/app/run.sh <<'IN'
#!/bin/sh
httpd -p 127.0.0.1:8081 -h /www
i=0
while [ $i -lt $1 ]; do
  date +%s > /tmp/heartbeat
  wget -q -O /tmp/page http://127.0.0.1:8081/index.html
  cat /proc/meminfo | head -3 > /dev/null
  ls -la /tmp > /dev/null
  grep -c hi /tmp/page > /dev/null || true
  echo "tick $i" | md5sum | cut -c1-8 > /tmp/sum
  ps > /dev/null
  sleep 0.05
  i=$((i+1))
done
IN
chmod +x $B/rootfs/app/run.sh
cd $B && runc spec
python3 - "$1" <<'PY'
import json,sys
c=json.load(open('config.json'))
c['process']['terminal']=False
c['process']['args']=['/bin/sh','/app/run.sh',sys.argv[1]]
c['process']['cwd']='/app'
c['root']['readonly']=False
c['linux']['cgroupsPath']='/kubepods/besteffort/pod5b0c6a52-9f43-4a7e-a0a6-0c2f4e7d1a11/7c1e9a2f5d3b4c6e8a0f1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f6'
c['linux']['namespaces']=[n for n in c['linux']['namespaces'] if n['type']!='network']
json.dump(c,open('config.json','w'))
PY
runc run -b $B vigilcap-$$ </dev/null >/dev/null 2>&1
