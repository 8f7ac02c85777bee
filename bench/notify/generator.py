#!/usr/bin/env python3
"""The load of bench/notify/latency.sh: stock_update lines for kcat -P -K '|'
on stdout, paced evenly (not in bursts) so that RATE alerts fire per second.

SYMBOLS symbols L0..L<SYMBOLS-1>, each watched by USERS/SYMBOLS users with
price_above 100.  A crossing of one symbol = an update at 99 then one at 101,
which fires USERS/SYMBOLS alerts; crossings go round the symbols at
RATE / (USERS/SYMBOLS) per second, each at its own scheduled instant.  Every
update's market_time is the wall clock when it is written (the alert's
fired_at, which the WebSocket client subtracts).

A JSON summary goes to SUMMARY: updates and alerts sent, the achieved alert
rate, and how late the sends were against their schedule.

    generator.py USERS SYMBOLS SECONDS RATE SUMMARY
"""
import json
import sys
import time

users, symbols, seconds, rate = (int(x) for x in sys.argv[1:5])
summary = sys.argv[5]
per_crossing = users // symbols
crossings = rate * seconds // per_crossing
interval = per_crossing / rate
out = sys.stdout


def line(sym, price, ts, eid):
    ms = int(ts * 1000)
    mt = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms / 1000)) + ".%03dZ" % (ms % 1000)
    return f"{sym}|" + json.dumps({
        "event_type": "stock_update", "event_id": eid, "source_service": "bench",
        "timestamp": mt, "version": "1.0",
        "data": {"symbol": sym, "price": price, "currency": "USD", "market_time": mt}}) + "\n"


late = []
t0 = time.time()
for k in range(crossings):
    due = t0 + k * interval
    d = due - time.time()
    if d > 0.0002:
        time.sleep(d)
    now = time.time()
    late.append(max(0.0, now - due))
    sym = f"L{k % symbols}"
    out.write(line(sym, 99.0, now - 0.001, f"g-{k}-0") + line(sym, 101.0, now, f"g-{k}-1"))
    out.flush()
t1 = time.time()
late.sort()
with open(summary, "w") as f:
    json.dump({"updates": 2 * crossings, "alerts": crossings * per_crossing,
               "seconds": round(t1 - t0, 2),
               "alerts_per_s": round(crossings * per_crossing / max(t1 - t0, 1e-9), 1),
               "send_late_p50_ms": round(late[len(late) // 2] * 1000, 2),
               "send_late_p99_ms": round(late[int(len(late) * 0.99)] * 1000, 2),
               "send_late_max_ms": round(late[-1] * 1000, 2)}, f)
