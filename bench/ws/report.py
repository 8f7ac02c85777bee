#!/usr/bin/env python3
"""Table of a bench/ws/run.sh result folder: figures per scenario and server,
ratios ours / nchan-redis and ours / nchan-mem, and the issue's targets."""

import glob
import json
import os
import sys

SERVERS = ["ours", "nchan-redis", "nchan-mem"]
ORDER = ["idle", "fan1k", "fan10k", "ch10k", "fixed1k", "fixed10k", "quote1k",
         "slow1k", "hold50k"]
TITLE = {
    "idle": "idle connections: worker RSS",
    "fan1k": "1 channel x 1k subscribers, max rate",
    "fan10k": "1 channel x 10k subscribers, max rate",
    "ch10k": "10k channels x 1 subscriber, round-robin, max rate",
    "fixed1k": "100 publishes/s to 1 channel x 1k subscribers",
    "fixed10k": "5 publishes/s to 1 channel x 10k subscribers",
    "slow1k": "50 channels x 100 publishes/s to 1k subscribers, 10 % reading slowly (BENCH_SLOW_BPS, 20 KB/s)",
    "quote1k": "100 publishes/s of 800-byte quote-like messages to 1k subscribers",
    "hold50k": "50k connections held, 5 publishes/s",
}


def load(path):
    with open(path) as f:
        return json.loads(f.read())


def collect(out):
    res = {}
    for meta_path in glob.glob(os.path.join(out, "*.meta.json")):
        meta = load(meta_path)
        tag = meta["tag"]
        clients = [load(p) for p in
                   sorted(glob.glob(os.path.join(out, tag + ".client.*.json")))]
        pub_path = os.path.join(out, tag + ".pub.json")
        meta["pub"] = load(pub_path) if os.path.exists(pub_path) else None
        meta["clients"] = clients
        res[(meta["scenario"], meta["server"])] = meta
    return res


def figures(m):
    cl = m["clients"]
    f = {"subscribers": sum(c["ready_peak"] for c in cl),
         "wanted": m["conns"],
         "failed": sum(c["failed"] for c in cl),
         "closed": sum(c["closed_by_server"] for c in cl),
         "lost": sum(c["lost"] for c in cl),
         "dups": sum(c["dups"] for c in cl),
         "errors": sum(c["error_frames"] for c in cl)}
    if m["scenario"] == "idle":
        f["kb_per_conn"] = ((m["rss_after_kb"] - m["rss_before_kb"])
                            / max(1, f["subscribers"]))
        return f
    deliv = sum(c["deliveries"] for c in cl)
    span = max((c["span_s"] for c in cl), default=0)
    f["deliv_s"] = deliv / span if span > 0 else 0
    f["deliveries"] = deliv
    f["peak_s"] = sum(c["peak_second"] for c in cl)
    f["p50_ms"] = max(c["lat_us"]["p50"] for c in cl) / 1000.0
    f["p99_ms"] = max(c["lat_us"]["p99"] for c in cl) / 1000.0
    f["max_ms"] = max(c["lat_us"]["max"] for c in cl) / 1000.0
    f["cpu_pct"] = m.get("cpu_pct", 0)
    f["published"] = m["pub"]["ok"] if m["pub"] else 0
    f["pub_failed"] = m["pub"]["failed"] if m["pub"] else 0
    slow = [c["slow"] for c in cl if c.get("slow", {}).get("conns")]
    if slow:
        f["slow_conns"] = sum(x["conns"] for x in slow)
        f["slow_closed"] = sum(x["closed"] for x in slow)
        f["slow_p50_ms"] = max(x["p50"] for x in slow) / 1000.0
        f["slow_p99_ms"] = max(x["p99"] for x in slow) / 1000.0
        f["conflated"] = sum(c.get("conflated", 0) for c in cl)
    wire = sum(c.get("wire_bytes", 0) for c in cl)
    f["wire_per_deliv"] = wire / deliv if deliv else 0
    f["compressed_pct"] = (100.0 * sum(c.get("compressed", 0) for c in cl)
                           / deliv if deliv else 0)
    # worker CPU seconds per 1000 deliveries: cpu_pct of the publish span
    secs = m["pub"].get("seconds", 0) if m["pub"] else 0
    f["cpu_ms_per_1k"] = (f["cpu_pct"] / 100.0 * secs * 1000.0 * 1000.0
                          / deliv if deliv and secs else 0)
    return f


def ratio(a, b):
    return "%.2f" % (a / b) if b else "-"


def row(name, vals, fmt):
    cells = [(fmt % v) if isinstance(v, (int, float)) else str(v) for v in vals]
    return "| %s | %s |" % (name, " | ".join(cells))


def table(scen, per):
    servers = [s for s in SERVERS if s in per]
    lines = ["", "### %s" % TITLE.get(scen, scen), "",
             "| | %s | ours/nchan-redis | ours/nchan-mem |" % " | ".join(servers),
             "|---" * (len(servers) + 3) + "|"]

    def add(label, key, fmt, better=None):
        vals = [per[s].get(key, "-") for s in servers]
        o = per.get("ours", {}).get(key)
        r1 = ratio(o, per["nchan-redis"][key]) if o is not None and "nchan-redis" in per else "-"
        r2 = ratio(o, per["nchan-mem"][key]) if o is not None and "nchan-mem" in per else "-"
        lines.append(row(label, vals + [r1, r2], fmt))

    if scen == "idle":
        add("KB RSS per idle connection", "kb_per_conn", "%.2f")
    else:
        add("deliveries/s (whole run)", "deliv_s", "%.0f")
        add("best second, deliveries", "peak_s", "%.0f")
        add("p50 publish->deliver ms", "p50_ms", "%.2f")
        add("p99 publish->deliver ms", "p99_ms", "%.2f")
        add("max ms", "max_ms", "%.1f")
        add("messages published", "published", "%d")
        add("worker CPU %", "cpu_pct", "%d")
        if scen == "slow1k":
            add("slow readers", "slow_conns", "%d")
            add("slow readers closed by the server", "slow_closed", "%d")
            add("slow readers: age of what they read, p50 ms", "slow_p50_ms", "%.0f")
            add("slow readers: age, p99 ms", "slow_p99_ms", "%.0f")
            add("messages conflated away", "conflated", "%d")
        if scen == "quote1k":
            add("bytes on the wire per delivery", "wire_per_deliv", "%.0f")
            add("deliveries compressed %", "compressed_pct", "%.0f")
            add("worker CPU ms per 1k deliveries", "cpu_ms_per_1k", "%.2f")
    add("subscribed / wanted", "subscribers", "%d")
    lines.append(row("lost / dup / closed by server / failed",
                     ["%d / %d / %d / %d" % (per[s]["lost"], per[s]["dups"],
                                             per[s]["closed"], per[s]["failed"])
                      for s in servers] + ["", ""], "%s"))
    return lines


def targets(res):
    out = ["", "### targets (issue 3), ours vs the same run's nchan", ""]

    def get(scen, srv, key):
        m = res.get((scen, srv))
        return figures(m).get(key) if m else None

    def check(label, ok, detail):
        out.append("- [%s] %s: %s" % ("met" if ok else "MISSED", label, detail))

    kb = get("idle", "ours", "kb_per_conn")
    if kb is not None:
        check("<= 5 KB per idle connection", kb <= 5, "%.2f KB" % kb)
    for scen in ("fan1k", "fan10k", "ch10k"):
        o, r, mem = (get(scen, s, "deliv_s") for s in SERVERS)
        if o is not None and r:
            check(">= 1.5x nchan-redis deliveries/s in %s" % scen, o >= 1.5 * r,
                  "%.0f vs %.0f (%.2fx)" % (o, r, o / r))
        if scen != "ch10k" and o is not None and mem:
            check(">= nchan-mem deliveries/s in %s" % scen, o >= mem,
                  "%.0f vs %.0f (%.2fx)" % (o, mem, o / mem))
    for scen in ("fixed1k", "fixed10k"):
        o = get(scen, "ours", "p99_ms")
        others = [v for v in (get(scen, "nchan-redis", "p99_ms"),
                              get(scen, "nchan-mem", "p99_ms")) if v is not None]
        if o is not None and others:
            check("fixed-rate p99 no worse than nchan's in %s" % scen,
                  o <= min(others) * 1.0001,
                  "%.2f ms vs best nchan %.2f ms" % (o, min(others)))
    lost = [figures(m)["lost"] + figures(m)["closed"] + figures(m)["dups"]
            for (s, srv), m in res.items() if srv == "ours"]
    if lost:
        check("0 lost (no duplicate, no subscriber closed) for ours", sum(lost) == 0,
              "%d lost, duplicated or closed over all scenarios" % sum(lost))
    h = res.get(("hold50k", "ours"))
    if h:
        f = figures(h)
        check("50,000 concurrent connections held", f["subscribers"] >= 50000
              and f["closed"] == 0 and f["lost"] == 0,
              "%d subscribed, %d closed, %d lost" % (f["subscribers"],
                                                     f["closed"], f["lost"]))
    return out


def main():
    out = sys.argv[1]
    res = collect(out)
    if not res:
        sys.exit("no results in %s" % out)
    lines = []
    machine = os.path.join(out, "machine.txt")
    if os.path.exists(machine):
        with open(machine) as f:
            lines += ["```", f.read().rstrip(), "```"]
    for scen in ORDER:
        per = {srv: figures(m) for (s, srv), m in res.items() if s == scen}
        if per:
            lines += table(scen, per)
    lines += targets(res)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
