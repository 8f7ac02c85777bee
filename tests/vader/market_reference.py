"""Independent reference values for the analytics worker's correlation and
trend analyses, computed with Python's statistics module (no numpy) on
deterministic series.  Prints one JSON document; tests/unit/
test_analytics_market.c recomputes everything in C and compares.

    /usr/bin/python3 tests/vader/market_reference.py
"""
import json
import math
import random
import statistics as st

DAY = 86400
T0 = 1_700_000_000


def correlation_case():
    rng = random.Random(7)
    ts = [T0 + i * 60 for i in range(400)]
    common = [rng.gauss(0, 0.01) for _ in ts]
    own = {s: [rng.gauss(0, 0.01) for _ in ts] for s in "ABCD"}
    weight = {"A": 1.0, "B": 0.9, "C": 0.2, "D": -0.8}
    series = {}
    for s in "ABCD":
        p, rows = 100.0, []
        for i, t in enumerate(ts):
            p *= math.exp(weight[s] * common[i] + 0.4 * own[s][i])
            rows.append([t, p])
        series[s] = rows
    # gaps: one symbol misses some bars, another has extra ones
    series["B"] = [r for i, r in enumerate(series["B"]) if i % 37 != 5]
    series["C"] = series["C"] + [[ts[-1] + 60 * k, 50.0 + k] for k in range(1, 4)]
    sets = [set(t for t, _ in series[s]) for s in "ABCD"]
    aligned = sorted(set.intersection(*sets))
    rets = {}
    for s in "ABCD":
        px = dict((t, p) for t, p in series[s])
        rets[s] = [math.log(px[b] / px[a]) for a, b in zip(aligned, aligned[1:])]
    matrix = [[1.0 if a == b else st.correlation(rets[a], rets[b]) for b in "ABCD"] for a in "ABCD"]
    return {"symbols": list("ABCD"), "series": series, "points": len(aligned) - 1,
            "matrix": matrix}


def robust_z(xs):
    med = st.median(xs)
    mad = st.median([abs(x - med) for x in xs])
    return [0.6745 * (x - med) / mad for x in xs] if mad > 0 else [0.0] * len(xs)


def trend_case(drift, name):
    rng = random.Random(11)
    bars, p = [], 50.0
    for i in range(120):
        r = drift + rng.gauss(0, 0.01)
        if i == 60 and drift != 0:
            r = 0.15           # a jump: return anomaly
        p *= math.exp(r)
        vol = 1_000_000 + rng.randint(-50_000, 50_000)
        if i == 90:
            vol = 9_000_000    # a volume spike
        hi, lo = p * (1 + abs(rng.gauss(0, 0.005))), p * (1 - abs(rng.gauss(0, 0.005)))
        bars.append([T0 + i * DAY, p, hi, lo, vol])
    x = [(b[0] - bars[0][0]) / DAY for b in bars]
    y = [math.log(b[1]) for b in bars]
    slope, intercept = st.linear_regression(x, y)
    resid = [yi - (intercept + slope * xi) for xi, yi in zip(x, y)]
    sse = sum(e * e for e in resid)
    my = st.fmean(y)
    r2 = 1 - sse / sum((yi - my) ** 2 for yi in y)
    mx = st.fmean(x)
    se = math.sqrt(sse / (len(x) - 2) / sum((xi - mx) ** 2 for xi in x))
    t = slope / se
    trend = "sideways"
    if abs(t) >= 2.0 and r2 >= 0.3:
        trend = "uptrend" if slope > 0 else "downtrend"
    rets = [math.log(b[1] / a[1]) for a, b in zip(bars, bars[1:])]
    anomalies = [["return", bars[i + 1][0]] for i, z in enumerate(robust_z(rets)) if abs(z) > 3.5]
    anomalies += [["volume", bars[i][0]] for i, z in enumerate(robust_z([b[4] for b in bars])) if abs(z) > 3.5]
    return {"name": name, "bars": bars, "slope_per_day": slope, "r_squared": r2,
            "t_stat": t, "trend": trend, "anomalies": anomalies}


def levels_case():
    # hand-made: lows touch ~90 three times and ~80 twice, highs ~110 and ~120
    closes = [100, 95, 91, 95, 100, 105, 109, 105, 100, 95, 90.5, 95, 100, 104,
              110.2, 104, 100, 92, 89.8, 92, 100, 110, 119, 110, 100, 90, 80,
              90, 100, 110, 120.5, 110, 100, 90, 80.6, 90, 100]
    bars = [[T0 + i * DAY, c, c, c, 0] for i, c in enumerate(closes)]
    # pivot lows (extreme of 2 bars either side): 91, 90.5, 89.8, 80, 80.6
    # clusters within 1.5%: {89.8, 90.5, 91} -> 90.4333, {80, 80.6} -> 80.3
    # pivot highs: 109, 110.2, 119, 120.5 -> {109, 110.2} -> 109.6 (110.2 <= 109 * 1.015), {119, 120.5} -> 119.75
    # last close 100: support 90.4333 (3), 80.3 (2); resistance 109.6 (2), 119.75 (2)
    return {"bars": bars,
            "support": [[(89.8 + 90.5 + 91) / 3, 3], [80.3, 2]],
            "resistance": [[109.6, 2], [119.75, 2]]}


print(json.dumps({"correlation": correlation_case(),
                  "trends": [trend_case(0.004, "up"), trend_case(-0.004, "down"),
                             trend_case(0.0, "flat")],
                  "levels": levels_case()}))
