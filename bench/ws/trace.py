#!/usr/bin/env python3
"""Per-step latency of ours' publish path from an nginx error log written by
modules built with INSITE_WS_TRACE=1 (scripts/build-modules.sh), e.g. a
bench/ws/run.sh folder's nginx-ours-w1/error.log with BENCH_TRACE=1.

    bench/ws/trace.py ERROR_LOG

Steps per (channel, seq), times in microseconds (CLOCK_REALTIME):
  body     the publish's body was read (the POST is complete)
  reply    the script's reply arrived (the 201 goes out now)
  read     the pub/sub message was read and its delivery began
  queued   the frame was queued to every subscriber of this worker
  written  the last subscriber's socket took the frame
Prints p50/p99/max of each step's wait over the messages that have all five.
"""

import re
import sys

LINE = re.compile(r"insite trace (\d+) (publish|deliver) (\S+)"
                  r"(?: seq (\d+))? (body|reply|read|queued)")
FRAME = re.compile(r"insite trace (\d+) frame seq (\d+) written")


def pct(v, p):
    v = sorted(v)
    return v[min(len(v) - 1, int(p / 100.0 * len(v)))] if v else 0


def main(path):
    body = {}          # channel -> [times of bodies not yet matched]
    t = {}             # (channel, seq) -> {step: us}
    last_ch = None
    for line in open(path, errors="replace"):
        f = FRAME.search(line)
        if f:
            # the frame of a channel's seq; with one channel per run (the
            # fixed-rate scenarios) the channel is the last one delivered
            t.setdefault((last_ch, int(f[2])), {})["written"] = int(f[1])
            continue
        m = LINE.search(line)
        if not m:
            continue
        us, kind, a, seq, step = int(m[1]), m[2], m[3], m[4], m[5]
        if kind == "publish" and step == "body":
            body.setdefault(a, []).append(us)
        elif kind == "publish" and step == "reply":
            key = (a, int(seq))
            # replies come in order per connection; take the oldest body
            if body.get(a):
                t.setdefault(key, {})["body"] = body[a].pop(0)
            t.setdefault(key, {})["reply"] = us
        elif kind == "deliver":
            key = (a, int(seq))
            t.setdefault(key, {})[step] = us
            last_ch = a
    steps = [("body", "reply", "Redis round trip (script)"),
             ("reply", "read", "reply -> pub/sub message read"),
             ("body", "read", "body -> pub/sub message read"),
             ("read", "queued", "fan-out: frame queued to all"),
             ("queued", "written", "queued -> last socket write"),
             ("body", "written", "body -> last socket write")]
    full = [v for v in t.values() if all(k in v for k in
                                         ("body", "reply", "read", "queued", "written"))]
    print("messages traced end to end: %d" % len(full))
    print("| step | p50 us | p99 us | max us |")
    print("|---|---|---|---|")
    for a, b, name in steps:
        d = [v[b] - v[a] for v in full]
        print("| %s | %d | %d | %d |" % (name, pct(d, 50), pct(d, 99), max(d) if d else 0))


if __name__ == "__main__":
    main(sys.argv[1])
