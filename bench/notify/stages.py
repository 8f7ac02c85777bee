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

and the worker's part per alert, polled -> published (below).  With the
WebSocket client's arrivals ("<alert id> <wall ms>" lines, ws_client.mjs),
also fire -> frame per alert: the batch's rules evaluated (the alert fired;
the eval line's first_id..last_id say which alerts are the batch's) ->
the frame received by the client.  Same machine, same clock.

    stages.py notify.log [arrivals]
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
# fire -> frame, per alert (worker logs from round 5 on carry the ids)
if len(sys.argv) > 2:
    ranges = sorted((r["first_id"], r["last_id"], r["evaluated_us"])
                    for r in rows["eval"] if r["fired"] > 0 and r.get("first_id"))
    firsts = [x[0] for x in ranges]
    fire = []
    for ln in open(sys.argv[2]):
        parts = ln.split()
        if len(parts) != 2:
            continue
        aid, at_ms = int(parts[0]), float(parts[1])
        i = bisect.bisect_right(firsts, aid) - 1
        if i >= 0 and aid <= ranges[i][1]:
            fire.append(at_ms * 1000 - ranges[i][2])
    fire.sort()
    if fire:
        print(f"fire -> frame per alert (rules evaluated -> frame received): alerts {len(fire)}, "
              f"p50 {q(fire, 0.5):.1f} ms, p90 {q(fire, 0.9):.1f} ms, p99 {q(fire, 0.99):.1f} ms, "
              f"max {fire[-1] / 1000:.1f} ms")
    else:
        print("fire -> frame per alert: no alert ids in the worker's stage lines (a binary before round 5)")
