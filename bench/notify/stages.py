#!/usr/bin/env python3
"""Where an alert waits inside insite-notify: reads the worker's
log.level = debug stage lines (workers/notify: "stage eval", "stage plan",
"stage send"; wall-clock microseconds) and prints, per step, p50/p99/max in
ms over the batches and passes that carried alerts:

  kafka    produced (the batch's oldest CreateTime) -> polled by the consumer
  evaluate polled -> rules evaluated
  commit   evaluated -> the transaction committed
  wake     committed -> the delivery thread starts its next pass
  plan     pass start -> its alerts rendered (due alerts, settings and
           hourly counts read, quiet hours, rate cap, ICU)
  publish  -> the Redis pipeline of their WebSocket messages answered
  record   -> Kafka messages queued, the plans and outcomes written (one
           statement)

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

steps = {k: [] for k in ("kafka", "evaluate", "commit", "wake", "plan", "publish", "record")}
commits = sorted(r["committed_us"] for r in rows["eval"] if r["fired"] > 0)
for r in rows["eval"]:
    if r["fired"] == 0:
        continue
    steps["kafka"].append(r["polled_us"] - r["produced_us"])
    steps["evaluate"].append(r["evaluated_us"] - r["polled_us"])
    steps["commit"].append(r["committed_us"] - r["evaluated_us"])
for r in rows["plan"]:
    i = bisect.bisect_right(commits, r["woke_us"]) - 1
    if i >= 0:
        steps["wake"].append(r["woke_us"] - commits[i])
starts = sorted(r["woke_us"] for r in rows["plan"])
for r in rows["send"]:
    i = bisect.bisect_right(starts, r["start_us"]) - 1
    if i >= 0:
        steps["plan"].append(r["start_us"] - starts[i])
    steps["publish"].append(r["published_us"] - r["start_us"])
    steps["record"].append(r["recorded_us"] - r["published_us"])


def q(v, p):
    return v[min(len(v) - 1, int(p * len(v)))] / 1000


print("| step | count | p50 ms | p99 ms | max ms |")
print("|---|---|---|---|---|")
for k, v in steps.items():
    v.sort()
    if v:
        print(f"| {k} | {len(v)} | {q(v, 0.5):.1f} | {q(v, 0.99):.1f} | {v[-1] / 1000:.1f} |")
sizes = sorted(r["n"] for r in rows["plan"])
if sizes:
    print(f"alerts per planning pass: p50 {sizes[len(sizes) // 2]}, max {sizes[-1]}; "
          f"passes {len(sizes)}; batches with alerts {len(commits)}")
