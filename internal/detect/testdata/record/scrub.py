#!/usr/bin/env python3
"""Turn a raw `vigil sensor --output jsonl --no-detect` recording of
workload.sh into the benchmark's node mix: keep the workload's process tree
(and its container), drop what ran above it, name the node and the container
as a kubelet would, and replace local paths and host names."""
import base64, json, re, sys

NODE = "node-1"
CTR = {"runtime": "runc", "name": "web", "image": "registry.example.com/shop/web:1.8.2",
       "image_id": "sha256:4f1c2b0e9d8a7c6b5a4938271605f4e3d2c1b0a9f8e7d6c5b4a3928170f6e5d4",
       "pod": "web-6c9f7d8b5-x2k4q", "namespace": "shop", "workload": "Deployment/shop/web",
       "labels": {"app": "web", "pod-template-hash": "6c9f7d8b5"}}
SUBST = [("/tmp/cap", "/srv/jobs"), ("/work/main", "/srv/src/shop"), ("/root/.pyenv", "/opt/pyenv"),
         ("workload.sh", "nightly.sh"), ("container.sh", "web-ctr.sh"), ("vigilcap-", "web-")]
host, node_in = sys.argv[1], sys.argv[2]
SUBST.append((host, NODE))
SHIM = {"exe": "/usr/bin/containerd-shim-runc-v2"}
CRON = [{"pid": 812, "exe": "/usr/sbin/cron", "args": ["/usr/sbin/cron", "-f"]},
        {"pid": 1, "exe": "/usr/lib/systemd/systemd", "args": ["/sbin/init"]}]

def s(x):
    if isinstance(x, str):
        for a, b in SUBST:
            x = x.replace(a, b)
        return x
    if isinstance(x, list):
        return [s(i) for i in x]
    if isinstance(x, dict):
        return {k: s(v) for k, v in x.items()}
    return x

def execid(x):
    try:
        raw = base64.urlsafe_b64decode(x + "=" * (-len(x) % 4)).decode()
    except Exception:
        return x
    raw = raw.replace(node_in + ":", NODE + ":", 1)
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")

def is_root(l):
    return l.get("exe", "") == "/tmp/cap/workload.sh" or any("workload.sh" in a for a in l.get("args", [])[:2])

def fix_lineage(l):
    if "exec_id" in l:
        l["exec_id"] = execid(l["exec_id"])
    return l

out = []
for line in open(sys.argv[3]):
    e = json.loads(line)
    if e["kind"] == "sensor.health":
        continue
    p = e.get("process")
    if not p:
        continue
    anc = p.get("ancestry", [])
    cut = next((i for i, a in enumerate(anc) if is_root(a)), None)
    if cut is None and not is_root(p):
        continue  # not the workload's: other tenants of the machine
    if is_root(p):
        anc = list(CRON)
        p["parent"] = dict(CRON[0])
        p["ppid"] = CRON[0]["pid"]
    else:
        anc = anc[:cut + 1] + CRON
    if e.get("container"):
        # as under a kubelet: the container's init hangs from the shim
        r = next((i for i, a in enumerate(anc) if a.get("exe") == "/usr/sbin/runc"), None)
        if r is not None:
            anc = anc[:r] + [dict(SHIM, pid=anc[r]["pid"], args=["/usr/bin/containerd-shim-runc-v2", "-namespace", "k8s.io", "-id", e["container"]["id"], "-address", "/run/containerd/containerd.sock"])] + CRON[1:]
        e["container"].update(CTR)
    p["ancestry"] = [fix_lineage(a) for a in anc]
    if p.get("parent"):
        fix_lineage(p["parent"])
        if p["parent"].get("exe") == "/usr/sbin/runc" and e.get("container"):
            p["parent"]["exe"] = SHIM["exe"]
            p["parent"]["args"] = anc[0].get("args", []) if anc else []
    for k in ("exec_id", "parent_exec_id"):
        if k in p:
            p[k] = execid(p[k])
    e["node"] = NODE
    out.append(s(e))
for e in out:
    print(json.dumps(e, separators=(",", ":")))
