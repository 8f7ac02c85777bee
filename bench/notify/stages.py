#!/usr/bin/env python3
"""Where an alert waits inside insite-notify: reads the worker's
log.level = debug stage lines (workers/notify: "stage eval", "stage send";
wall-clock microseconds; a log from before round 5 gives kafka, evaluate,
commit, publish and record only) and prints, per step, p50/p99/max in ms over the
batches and passes that carried alerts:

  kafka    produced (the batch's oldest CreateTime) -> polled by the consumer
  evaluate polled -> rules evaluated
  plan     evaluated -> the fired alerts planned (one statement reads their
           users' settings and hourly counts; quiet hours, rate cap, ICU)
  commit   planned -> the transaction committed (alert rows written planned)
  wake     committed -> the delivery thread starts its next pass
  publish  -> the Redis pipeline of their WebSocket messages answered
  record   -> Kafka messages queued, the outcomes written in the alert rows
           (one statement)

and the worker's part per alert, polled -> published (below).

    stages.py notify.log
"""
import bisect
import re
import sys

pat = re.compile(r"stage (\w+) (.*)")
rows = {"eval": [], "plan": [], "send": []}
for ln in open(sys.argv[1], errors="replace"):
    m = pat.search(ln)
    if m and m.group(1) in rows:
        rows[m.group(1)].append({k: int(v) for k, v in (kv.split("=") for kv in m.group(2).split())})

steps = {k: [] for k in ("kafka", "evaluate", "plan", "commit", "wake", "publish", "record")}
commits = sorted(r["committed_us"] for r in rows["eval"] if r["fired"] > 0)
for r in rows["eval"]:
    if r["fired"] == 0:
        continue
    steps["kafka"].append(r["polled_us"] - r["produced_us"])
    steps["evaluate"].append(r["evaluated_us"] - r["polled_us"])
    planned = r.get("planned_us", r["evaluated_us"])   # before round 5: no plan here
    if "planned_us" in r:
        steps["plan"].append(planned - r["evaluated_us"])
    steps["commit"].append(r["committed_us"] - planned)
for r in rows["send"]:
    start = r.get("woke_us", r.get("start_us"))   # before round 5: start_us, after a plan step
    if "woke_us" in r:
        i = bisect.bisect_right(commits, start) - 1
        if i >= 0:
            steps["wake"].append(start - commits[i])
    steps["publish"].append(r["published_us"] - start)
    steps["record"].append(r["recorded_us"] - r["published_us"])

def q(v, p):
    return v[min(len(v) - 1, int(p * len(v)))] / 1000


print("| step | count | p50 ms | p99 ms | max ms |")
print("|---|---|---|---|---|")
for k, v in steps.items():
    v.sort()
    if v:
        print(f"| {k} | {len(v)} | {q(v, 0.5):.1f} | {q(v, 0.99):.1f} | {v[-1] / 1000:.1f} |")
# The worker's own part, per alert: its update polled by the consumer -> its
# WebSocket message answered by Redis (plan, commit, wake and publish; the
# frame is on its way to the client then).  A batch's alerts leave with the
# first send pass that starts after its commit (before round 5: the first
# planning pass, "stage plan", and the send that follows it).
passes = []
plan_starts = sorted(r["woke_us"] for r in rows["plan"])
for r in rows["send"]:
    start = r.get("woke_us")
    if start is None:
        i = bisect.bisect_right(plan_starts, r["start_us"]) - 1
        start = plan_starts[i] if i >= 0 else r["start_us"]
    passes.append((start, r["published_us"]))
passes.sort()
pstarts = [p[0] for p in passes]
worker = []
for r in rows["eval"]:
    j = bisect.bisect_left(pstarts, r["committed_us"])
    if r["fired"] > 0 and j < len(passes):
        worker.extend([passes[j][1] - r["polled_us"]] * r["fired"])
worker.sort()
if worker:
    print(f"worker part per alert (polled -> published): alerts {len(worker)}, "
          f"p50 {q(worker, 0.5):.1f} ms, p99 {q(worker, 0.99):.1f} ms, max {worker[-1] / 1000:.1f} ms")
sizes = sorted(r["n"] for r in rows["send"])
if sizes:
    print(f"alerts per send pass: p50 {sizes[len(sizes) // 2]}, max {sizes[-1]}; "
          f"passes {len(sizes)}; batches with alerts {len(commits)}")
