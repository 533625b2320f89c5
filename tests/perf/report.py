#!/usr/bin/env python3
"""report.py OUT_DIR: OUT_DIR/summary.txt (one key=value line per dnsperf run,
written by lib.sh:measure) -> OUT_DIR/results.md and OUT_DIR/sweep-<server>.dat
(the data of the latency-vs-load plot). Prints results.md.

Medians over the rounds; runs flagged noisy (foreign CPU load or the host's
steal time during the run) are left out when the same cell has clean runs, else the cell is marked '~'.
"""
import math
import os
import statistics
import sys
from collections import OrderedDict, defaultdict

WORKLOAD_ORDER = ["hit", "zipf", "miss", "nxdomain", "tcp"]
SERVER_ORDER = ["heimdall", "heimdall-base", "unbound", "dnsdist", "reflector"]
WORKLOAD_TEXT = {
    "hit": "cache hits: 10k names, warm cache",
    "zipf": "Zipf mix of hits and misses over ~1.1M names (fixed query stream, cache warmed with its first part)",
    "miss": "misses: every name new, cold cache (restarted server)",
    "nxdomain": "NXDOMAIN: 10k names absent from the zone, warm (negative) cache",
    "tcp": "cache hits over TCP (dnsperf -m tcp, 4 connections)",
}


def read_summary(path):
    rows = []
    with open(path) as f:
        for line in f:
            kv = dict(p.split("=", 1) for p in line.split() if "=" in p)
            if "server" in kv:
                rows.append(kv)
    return rows


def read_env(path):
    env = OrderedDict()
    if os.path.exists(path):
        with open(path) as f:
            for line in f:
                if ":" in line:
                    k, v = line.split(":", 1)
                    env.setdefault(k.strip(), v.strip())
    return env


def num(v):
    """'1.5' -> 1.5, 'lost' -> inf, 'na'/missing -> None"""
    if v is None or v == "na":
        return None
    if v == "lost":
        return math.inf
    try:
        return float(v)
    except ValueError:
        return None


def median(rows, key):
    vals = [num(r.get(key)) for r in rows]
    vals = [v for v in vals if v is not None]
    return statistics.median(vals) if vals else None


def clean(rows):
    """drop noisy runs when clean ones exist; returns (rows, all_noisy)"""
    ok = [r for r in rows if r.get("noisy") != "1"]
    return (ok, False) if ok else (rows, bool(rows))


def fmt_ms(v):
    if v is None:
        return "-"
    return "lost" if v == math.inf else f"{v:.3f}"


def fmt_qps(v):
    return "-" if v is None else f"{v:,.0f}"


def fmt_ratio(h, p):
    if h is None or p is None or p == 0 or math.isinf(h) or math.isinf(p):
        return "-"
    return f"{h / p:.2f}"


def group(rows):
    g = defaultdict(list)
    for r in rows:
        g[(r["workload"], r["server"], r["mode"])].append(r)
    return g


def ordered(values, order):
    return sorted(values, key=lambda v: (order.index(v) if v in order else len(order), v))


def main_table(g, workloads, servers):
    out = ["| workload | server | QPS at saturation | CPU s / 1M q | lost | offered qps | CPU s / 1M q | p50 ms | p99 ms | p99.9 ms | lost | H/peer QPS | H/peer CPU | H/peer p99 |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for w in workloads:
        stats = {}
        for s in servers:
            sat, sat_noisy = clean(g.get((w, s, "sat"), []))
            fix, fix_noisy = clean(g.get((w, s, "fixed"), []))
            if not sat and not fix:
                continue
            q = [float(r["qps"]) for r in sat]
            stats[s] = dict(
                qps=median(sat, "qps"), qmin=min(q) if q else None, qmax=max(q) if q else None,
                cpu=median(sat, "cpu_s_per_Mq"), lost=sum(int(r.get("lost", 0)) for r in sat),
                sent=sum(int(r.get("sent", 0)) for r in sat),
                offered=median(fix, "offered"), achieved=median(fix, "qps"), fcpu=median(fix, "cpu_s_per_Mq"),
                p50=median(fix, "p50_ms"), p99=median(fix, "p99_ms"), p999=median(fix, "p999_ms"),
                flost=sum(int(r.get("lost", 0)) for r in fix), n=len(sat), noisy=sat_noisy or fix_noisy)
        h = stats.get("heimdall")
        for s, st in stats.items():
            qps = fmt_qps(st["qps"])
            if st["n"] > 1:
                qps += f" ({st['qmin'] / 1000:.1f}k-{st['qmax'] / 1000:.1f}k)"
            offered = fmt_qps(st["offered"])
            if st["offered"] and st["achieved"] is not None and st["achieved"] < 0.97 * st["offered"]:
                offered += f" (got {st['achieved'] / 1000:.1f}k: saturated)"
            cpu = "-" if st["cpu"] is None else f"{st['cpu']:.2f}"
            fcpu = "-" if st["fcpu"] is None else f"{st['fcpu']:.2f}"
            name = s + (" ~" if st["noisy"] else "")
            if s == "heimdall" or not h:
                ratios = ["-", "-", "-"]
            else:
                ratios = [fmt_ratio(h["qps"], st["qps"]), fmt_ratio(h["cpu"], st["cpu"]),
                          fmt_ratio(h["p99"], st["p99"])]
            out.append(f"| {w} | {name} | {qps} | {cpu} | {st['lost']:,} | {offered} | {fcpu} | {fmt_ms(st['p50'])} | "
                       f"{fmt_ms(st['p99'])} | {fmt_ms(st['p999'])} | {st['flost']:,} | " + " | ".join(ratios) + " |")
    return out


def split_table(g, workloads, servers):
    """User and system CPU per query (medians), where the summary has them."""
    out = ["| workload | server | user, sat. | system, sat. | user, fixed load | system, fixed load |",
           "|---|---|---|---|---|---|"]
    for w in workloads:
        for s in servers:
            sat, _ = clean(g.get((w, s, "sat"), []))
            fix, _ = clean(g.get((w, s, "fixed"), []))
            cells = [median(rs, k) for rs in (sat, fix) for k in ("user_s_per_Mq", "sys_s_per_Mq")]
            if all(c is None for c in cells):
                continue
            out.append(f"| {w} | {s} | " + " | ".join("-" if c is None else f"{c:.2f}" for c in cells) + " |")
    return out if len(out) > 2 else []


def sweep_section(g, servers, out_dir):
    loads = sorted({int(float(r["offered"])) for (w, s, m), rs in g.items() if m == "sweep" for r in rs})
    if not loads:
        return []
    out = ["| server | " + " | ".join(f"{q / 1000:g}k offered" for q in loads) + " |",
           "|---|" + "---|" * len(loads)]
    for s in servers:
        cells, dat = [], ["# offered_kqps achieved_kqps p50_ms p99_ms p999_ms lost"]
        for q in loads:
            rs, _ = clean([r for r in g.get(("hit", s, "sweep"), []) if int(float(r["offered"])) == q])
            if not rs:
                cells.append("-")
                continue
            p50, p99, p999, got = (median(rs, k) for k in ("p50_ms", "p99_ms", "p999_ms", "qps"))
            lost = sum(int(r.get("lost", 0)) for r in rs)
            cell = f"{fmt_ms(p50)} / {fmt_ms(p99)} / {fmt_ms(p999)}"
            if got is not None and got < 0.97 * q:
                cell += f" (got {got / 1000:.1f}k)"
            if lost:
                cell += f" ({lost} lost)"
            cells.append(cell)
            # gnuplot: '?' is a missing point (a percentile among lost queries)
            dat.append(" ".join(["%g" % (q / 1000), "%.3f" % ((got or 0) / 1000)] +
                                ["?" if v is None or math.isinf(v) else "%.4f" % v for v in (p50, p99, p999)] +
                                [str(lost)]))
        if any(c != "-" for c in cells):
            out.append(f"| {s} | " + " | ".join(cells) + " |")
            with open(os.path.join(out_dir, f"sweep-{s}.dat"), "w") as f:
                f.write("\n".join(dat) + "\n")
    return out


def notes(rows, g, workloads, servers, out_dir):
    out = []
    rc = defaultdict(lambda: defaultdict(int))
    for r in rows:
        for part in r.get("rcodes", "none").split(","):
            name = "".join(c for c in part if c.isalpha())
            count = "".join(c for c in part if c.isdigit())
            if name and count:
                rc[(r["server"], r["workload"])][name] += int(count)
    for (s, w), codes in sorted(rc.items()):
        bad = {k: v for k, v in codes.items() if k not in ("NOERROR", "NXDOMAIN")}
        if bad:
            out.append(f"- {s} / {w}: unexpected response codes " + ", ".join(f"{k} {v:,}" for k, v in bad.items()))
    for r in rows:
        if r.get("mode") == "sat" and int(r.get("lost", 0)) > 0:
            out.append(f"- {r['server']} / {r['workload']} round {r['round']}: {int(r['lost']):,} of "
                       f"{int(r['sent']):,} queries lost at saturation (udp errors {r.get('udp_err', '?')})")
    for r in rows:
        if int(r.get("reconnections", 0)) > 0:
            out.append(f"- {r['server']} / {r['workload']} {r['mode']} round {r['round']}: dnsperf had to reconnect "
                       f"{r['reconnections']} times (the server closed TCP connections)")
    noisy = [r for r in rows if r.get("noisy") == "1"]
    if noisy:
        out.append(f"- {len(noisy)} of {len(rows)} runs had >= the noisy threshold of foreign CPU load plus steal time "
                   "(shared machine): left out where a clean run of the same cell exists; '~' marks cells with only noisy runs")
    steal = [float(r["steal_pct"]) for r in rows if r.get("steal_pct", "na") not in ("na", "")]
    if steal:
        out.append(f"- steal time (the host running something else while this VM wanted a CPU), in % of one CPU "
                   f"per run: median {statistics.median(steal):.0f}, max {max(steal):.0f}")
    refl_rows, refl_noisy = clean(g.get(("hit", "reflector", "sat"), []))
    refl = median(refl_rows, "qps")
    if refl and not refl_noisy:
        near = [s for s in servers if s != "reflector" and
                (median(clean(g.get(("hit", s, "sat"), []))[0], "qps") or 0) >= 0.9 * refl]
        if near:
            out.append(f"- hit: {', '.join(near)} reached >= 90% of the reflector's {refl:,.0f} qps: at that point "
                       "dnsperf (CPU 0) is the bottleneck, not the server; compare CPU s / 1M q instead of QPS")
    busy0 = [float(r["cpu0"]) for r in rows if r.get("mode") == "sat" and r.get("workload") == "miss"
             and "cpu0" in r and r.get("noisy") != "1"]
    if busy0 and statistics.median(busy0) > 95:
        out.append("- miss runs: CPU 0 (dnsperf + NSD) was ~saturated: the fastest servers' miss QPS is capped by the client side")
    log = os.path.join(out_dir, "logs", "heimdall.log")
    if os.path.exists(log):
        with open(log, errors="replace") as f:
            bad = [l.rstrip() for l in f if " WARN " in l or " ERROR " in l or "panicked" in l]
        if bad:
            out.append(f"- heimdall logged {len(bad)} warning/error lines (logs/heimdall.log), first: `{bad[0][:200]}`")
    return out


def main():
    out_dir = sys.argv[1]
    rows = read_summary(os.path.join(out_dir, "summary.txt"))
    env = read_env(os.path.join(out_dir, "env.txt"))
    g = group(rows)
    workloads = ordered({r["workload"] for r in rows if r["mode"] != "sweep"}, WORKLOAD_ORDER)
    servers = ordered({r["server"] for r in rows}, SERVER_ORDER)

    md = [f"# Heimdall performance: {env.get('date', '')}", ""]
    md.append(f"{env.get('machine', '')}; network namespace: {env.get('netns', '?')}; "
              f"server on CPU {env.get('server_cpu', '?')}, dnsperf and NSD on CPU {env.get('client_cpu', '?')}; "
              f"{env.get('runs', '?')} round(s) of {env.get('duration', '?')} s runs, servers in alternation. "
              f"{env.get('heimdall', '?')}; {env.get('peers', '')}.")
    md += ["", "## Saturation, CPU and latency at a fixed load", ""]
    md += main_table(g, workloads, servers)
    md += ["",
           "Left half: saturation, closed loop (dnsperf -c 4 -T 2 -q 200), QPS median (min-max) over rounds. "
           "Right half: the same queries at a fixed offered load (dnsperf -Q), per-query latency percentiles; "
           "'lost' = the percentile falls among lost queries. CPU s / 1M q: the server process's user+sys CPU per "
           "million answered queries (lower is better). lost: queries lost, all rounds. H/peer: Heimdall divided by "
           "that peer, saturation QPS and CPU, fixed-load p99 (QPS > 1, CPU and p99 < 1: Heimdall is better). "
           "'~': only runs with foreign CPU load or steal time (noisy) for that row.",
           ""]
    for w in workloads:
        md.append(f"- {w}: {WORKLOAD_TEXT.get(w, w)}")
    if env.get("zipf"):
        md.append(f"- {env['zipf']}")
    split = split_table(g, workloads, servers)
    if split:
        md += ["", "## User and system CPU", "",
               "The server's CPU per million answered queries (CPU s / 1M q, i.e. µs per query) split into "
               "user and system time (utime and stime from /proc/PID/stat, medians over the rounds): where a "
               "server's cost is its own code and where it is the kernel's.", ""]
        md += split
    sweep = sweep_section(g, servers, out_dir)
    if sweep:
        md += ["", "## Latency vs offered load (cache hits)", "",
               "p50 / p99 / p99.9 ms per offered load (dnsperf -Q), one run each.", ""]
        md += sweep
        md += ["", "![latency vs offered load](latency.png)"]
    n = notes(rows, g, workloads, servers, out_dir)
    if n:
        md += ["", "## Notes", ""] + n
    text = "\n".join(md) + "\n"
    with open(os.path.join(out_dir, "results.md"), "w") as f:
        f.write(text)
    print(text, end="")


if __name__ == "__main__":
    main()
