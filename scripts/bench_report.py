#!/usr/bin/env python3
"""Turns the JSON of one `compare` run into Markdown tables and SVG plots.

    scripts/bench_report.py RESULTS.json OUT_DIR [--readme README.md]

Writes OUT_DIR/benchmarks.md, OUT_DIR/bench/throughput.svg and
OUT_DIR/bench/restore.svg. With --readme, replaces the block between
`<!-- bench:start -->` and `<!-- bench:end -->` in that file with a summary.
Every number comes from RESULTS.json: nothing here is typed by hand.
Standard library only (no matplotlib).
"""

import datetime
import html
import json
import math
import os
import sys

LOCKWAL = "lockwal-wal"
POSTGRES = "lockwal-postgres"  # lockwal's PostgreSQL backend: W1/W2 only, when the run had a server
PEERS = ["sqlite", "redb", "fjall"]  # the stores a user would pick instead
DURABLE = [LOCKWAL, POSTGRES] + PEERS  # the durable stores, for the bold "best" in W1/W2
LABELS = {
    "raw-growing": "raw: write+fdatasync, growing file",
    "raw-prealloc": "raw: pwrite+fdatasync, preallocated file",
    "raw-sparse": "raw: pwrite+fdatasync, file pre-sized by set_len (sparse)",
    "raw-group": "raw: group commit, preallocated file",
    "raw-log": "raw: framed log into a Vec",
    "lockwal-wal": "lockwal WAL",
    "lockwal-wal-log": "lockwal WAL, log replay only",
    "lockwal-wal-tail": "lockwal WAL, snapshot + 100,000 log records",
    "lockwal-memory": "lockwal memory (volatile)",
    "lockwal-postgres": "lockwal PostgreSQL",
    "sqlite": "SQLite",
    "redb": "redb",
    "fjall": "fjall",
}
SHORT = {  # plot legends
    "raw-group": "raw group commit (floor)",
    "raw-log": "raw framed log",
    "lockwal-wal": "lockwal WAL",
    "lockwal-wal-log": "lockwal WAL, log only",
    "lockwal-wal-tail": "lockwal WAL, snapshot + 100k records",
    "lockwal-memory": "lockwal memory",
    "lockwal-postgres": "lockwal PostgreSQL",
}
COLORS = {
    "raw-group": "#888888",
    "lockwal-wal": "#d62728",
    "lockwal-wal-log": "#ff9896",
    "lockwal-wal-tail": "#e377c2",
    "lockwal-memory": "#f7b6d2",
    "lockwal-postgres": "#8c564b",
    "sqlite": "#1f77b4",
    "redb": "#2ca02c",
    "fjall": "#9467bd",
    "raw-log": "#888888",
}


def label(peer):
    return LABELS.get(peer, peer)


def num(x, digits=0):
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    if digits == 0:
        return f"{x:,.0f}"
    return f"{x:,.{digits}f}"


def us(x):
    """A latency in microseconds, printed in the unit that reads best."""
    if x is None:
        return "–"
    if x >= 10_000:
        return f"{x / 1000:,.0f} ms"
    if x >= 1000:
        return f"{x / 1000:.1f} ms"
    return f"{x:,.0f} µs" if x >= 10 else f"{x:.1f} µs"


def ratio(a, b):
    if not a or not b:
        return "–"
    r = a / b
    return f"{r:.2f}×" if r < 10 else f"{r:,.0f}×"


def bold_if(text, cond):
    return f"**{text}**" if cond else text


def table(header, rows):
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(out)


def secs(duration):
    """Seconds of a serialized Rust Duration."""
    return duration["secs"] + duration["nanos"] / 1e9


def median(values):
    values = sorted(values)
    if not values:
        return None
    return values[len(values) // 2] if len(values) % 2 else (values[len(values) // 2 - 1] + values[len(values) // 2]) / 2


class Results:
    def __init__(self, doc):
        self.doc = doc
        self.w1 = {r["peer"]: r["run"] for r in doc.get("w1", [])}
        self.w2 = {r["peer"]: {run["tasks"]: run for run in r["runs"]} for r in doc.get("w2", [])}
        self.w3 = {r["peer"]: r for r in doc.get("w3", [])}
        self.w4 = {r["peer"]: r["queries"] for r in doc.get("w4", [])}
        self.w5 = doc.get("w5")
        self.w6 = doc.get("w6")
        self.w7 = doc.get("w7")
        self.w8 = doc.get("w8")
        self.tasks = doc["settings"]["tasks"]
        self.locks = doc["settings"]["locks"]

    def restore_s(self, peer):
        r = self.w3.get(peer)
        return median([w["total_s"] for w in r["warm"]]) if r and r["warm"] else None

    def open_s(self, peer):
        r = self.w3.get(peer)
        return median([w["open_s"] for w in r["warm"]]) if r and r["warm"] else None

    def peak_rss(self, peer):
        r = self.w3.get(peer)
        return max(w["peak_rss_bytes"] for w in r["warm"]) if r and r["warm"] else None

    def w1_ops(self, peer):
        run = self.w1.get(peer)
        return run["ops_per_sec"] if run else None

    def w2_ops(self, peer, tasks):
        run = self.w2.get(peer, {}).get(tasks)
        return run["ops_per_sec"] if run else None


def machine_section(res):
    d = res.doc
    m = d["machine"]
    s = d["settings"]
    rounds = s.get("rounds", 1)
    when = datetime.datetime.fromtimestamp(d["unix_time"], datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    load_before = ", ".join(f"{x:.2f}" for x in m["loadavg"])
    load_after = ", ".join(f"{x:.2f}" for x in d["load_after"])
    rows = [
        ["run", f"{when}, {d['seconds'] / 60:.0f} min" + (" (**quick mode: tiny sizes, numbers meaningless**)" if s["quick"] else "")],
        ["CPU", f"{m['nproc']} × {m['cpu']} (`nproc` = {m['nproc']})"],
        ["memory", f"{m['mem_gib']} GiB"],
        ["file system", m["fs"]],
        ["kernel", m["kernel"]],
        ["load average (1, 5, 15 min)", f"before: {load_before}; after: {load_after}"],
        ["CPU used by other processes during the run", f"{d['cpu_others'] * 100:.0f}% of all CPUs ({d['cpu_steal'] * 100:.1f}% stolen by the hypervisor)"],
        ["disk writes by other processes during the run",
         f"{d.get('disk_others_written_bytes', 0) / 2**20:,.0f} MiB to {d.get('disk_device', '?')} "
         f"(the device completed {d.get('disk_flushes', 0):,} flushes in all, this run's included)"],
        ["settings", f"{s['locks']:,} locks for W3/W4/W5{'/W6' if 'handles' in s else ''}; tasks {', '.join(map(str, s['tasks']))}; "
                     f"W1/W2: {secs(s['timing']['measure']):g} s measured per point, in {rounds} round{'s' if rounds > 1 else ''} "
                     f"of {secs(s['timing']['measure']) / rounds:.3g} s on a fresh store after {secs(s['timing']['warmup']):g} s of warm-up, "
                     f"each round visiting every store and level in turn (ops and latencies of the rounds pooled); "
                     f"W5: {secs(s['timing']['warmup']):g} s warm-up + {secs(s['timing']['measure']):g} s per phase; "
                     f"{s['queries']:,} queries of each kind; {s['restores']} warm restores (median shown) + 1 cold"
                     + (f"; W6: {s['handles']:,} durable handles, consume window {secs(s['timing']['measure']):g} s after "
                        f"{secs(s['timing']['warmup']):g} s of warm-up" if "handles" in s else "")],
    ]
    if POSTGRES in res.w1 or POSTGRES in res.w2:
        rows.append(["PostgreSQL server", "ran on this machine for the lockwal PostgreSQL rows: its own CPU time and disk writes "
                                          "are counted among the other processes' above"])
    return table(["", ""], rows)


def configs_section(res):
    used = set(res.w1) | set(res.w2) | set(res.w3) | set(res.w4) | ({LOCKWAL} if res.w6 else set())
    rows = [[f"`{p['name']}`", label(p["name"]), p["config"]] for p in res.doc["peers"] if p["name"] in used]
    return table(["name", "store", "exact configuration"], rows)


def w1_section(res):
    floor = res.w1_ops("raw-prealloc")
    fastest_raw = max((res.w1_ops(p) or 0 for p in res.w1 if p.startswith("raw-")), default=0)
    lw = res.w1_ops(LOCKWAL)
    best = max((res.w1_ops(p) or 0 for p in DURABLE), default=0)
    rows = []
    for peer, run in res.w1.items():
        ops = run["ops_per_sec"]
        rows.append([
            label(peer),
            bold_if(num(ops), peer in DURABLE and ops == best),
            us(run["latency"]["p50_us"]),
            us(run["latency"]["p99_us"]),
            ratio(ops, floor),
            ratio(ops, fastest_raw),
            ratio(lw, ops) if peer != LOCKWAL else "",
        ])
    return table(["store", "durable ops/s", "p50", "p99", "÷ raw preallocated (issue's floor)", "÷ fastest raw loop",
                  "lockwal ÷ this"], rows)


def w2_store_size(res):
    """How big a W2 store gets within a round, and whether lockwal compacted in it: the round's length
    decides both (SQLite, for one, checkpoints its WAL every 1,000 pages by default, within a round)."""
    s = res.doc["settings"]
    run = res.w2.get(LOCKWAL, {}).get(64)
    if not run:
        return ""
    rounds = s.get("rounds", 1)
    per_round = secs(s["timing"]["warmup"]) + secs(s["timing"]["measure"]) / rounds
    held = run["ops_per_sec"] * per_round
    compactions = [r["engine"].get("compactions") for r in res.w2[LOCKWAL].values() if r.get("engine")]
    compacted = ("lockwal started no compaction in the last round at any level (its log stays below the size that starts one; "
                 "W5 measures writes during compaction). " if compactions and not any(compactions)
                 else "lockwal compacted during the last round at some levels. ")
    return (f"A store thus holds at most what one warm-up and one round granted: at 64 tasks lockwal's held about "
            f"{held:,.0f} locks when a round ended ({per_round:g} s at {num(run['ops_per_sec'])} grants/s), and "
            + compacted)


def w2_section(res):
    header = ["store"] + [f"{t} task{'s' if t > 1 else ''}" for t in res.tasks]
    rows = []
    best = {t: max((res.w2_ops(p, t) or 0 for p in DURABLE), default=0) for t in res.tasks}
    for peer, runs in res.w2.items():
        row = [label(peer)]
        for t in res.tasks:
            run = runs.get(t)
            if not run:
                row.append("–")
                continue
            ops = run["ops_per_sec"]
            row.append(bold_if(num(ops), peer in DURABLE and ops == best[t]))
        rows.append(row)
    throughput = table(header, rows)

    rows = []
    for peer, runs in res.w2.items():
        row = [label(peer)]
        for t in res.tasks:
            run = runs.get(t)
            row.append(f"{us(run['latency']['p50_us'])} / {us(run['latency']['p99_us'])}" if run else "–")
        rows.append(row)
    latency = table(header, rows)

    # lockwal's PostgreSQL backend gets a column when it ran, but is not a peer.
    others = ([POSTGRES] if res.w2.get(POSTGRES) else []) + PEERS
    rows = []
    for t in res.tasks:
        lw = res.w2_ops(LOCKWAL, t)
        row = [str(t), ratio(lw, res.w2_ops("raw-group", t))]
        row += [ratio(lw, res.w2_ops(p, t)) for p in others]
        lwrun = res.w2.get(LOCKWAL, {}).get(t)
        eng = lwrun and lwrun.get("engine")
        row.append(f"{eng['mean_batch_size']:.1f}" if eng else "–")
        rows.append(row)
    ratios = table(["tasks", "lockwal ÷ raw group commit"] + [f"lockwal ÷ {label(p)}" for p in others] + ["lockwal ops per fdatasync"], rows)
    return f"Throughput (durable grants/s):\n\n{throughput}\n\nLatency of one grant, p50 / p99:\n\n{latency}\n\nRatios:\n\n{ratios}"


def w3_section(res):
    floor = res.restore_s("raw-log")
    lw = res.restore_s(LOCKWAL)
    best = min((res.restore_s(p) for p in [LOCKWAL, "lockwal-wal-log", "lockwal-wal-tail"] + PEERS if res.restore_s(p)), default=None)
    rows = []
    for peer, r in res.w3.items():
        t = res.restore_s(peer)
        warm = r["warm"]
        peak = max((w["peak_rss_bytes"] for w in warm), default=None)
        open_peak = max((w.get("open_peak_rss_bytes", 0) for w in warm), default=0)
        open_s = median([w["open_s"] for w in warm])
        cold = r.get("cold")
        rows.append([
            label(peer),
            bold_if(f"{t:.3f} s" if t else "–", t == best and peer != "raw-log"),
            f"{open_s:.3f} s" if open_s is not None else "–",
            f"{cold['total_s']:.3f} s" if cold else "–",
            f"{peak / 2**20:,.0f} MiB" if peak else "–",
            f"{peak / res.locks:,.0f}" if peak else "–",
            f"{open_peak / 2**20:,.0f} MiB" if open_peak else "–",
            f"{r['disk_bytes'] / 2**20:,.0f} MiB",
            f"{r['build_s']:.1f} s",
            ratio(t, floor),
            ratio(t, lw) if peer != LOCKWAL else "",
        ])
    return table(
        ["store", "open + every lock to the caller, owned, warm", "of which open", "same, cold cache", "peak RSS",
         "peak RSS bytes / lock", "peak RSS after open (before any copy)", "on disk", "build", "÷ raw log", "this ÷ lockwal (lockwal's speedup)"],
        rows)


def w4_section(res):
    def best(kind, pct):
        vals = [res.w4[p][kind][pct] for p in PEERS if p in res.w4]
        return min(vals) if vals else None

    rows = []
    for peer, q in res.w4.items():
        rows.append([
            label(peer),
            us(q["by_client"]["p50_us"]),
            bold_if(us(q["by_client"]["p99_us"]), peer in [LOCKWAL] + PEERS and q["by_client"]["p99_us"] == min(res.w4[p]["by_client"]["p99_us"] for p in [LOCKWAL] + PEERS if p in res.w4)),
            f"{q['by_client_rows']:,.0f}",
            us(q["by_file"]["p50_us"]),
            bold_if(us(q["by_file"]["p99_us"]), peer in [LOCKWAL] + PEERS and q["by_file"]["p99_us"] == min(res.w4[p]["by_file"]["p99_us"] for p in [LOCKWAL] + PEERS if p in res.w4)),
            f"{q['by_file_rows']:,.0f}",
            ratio(q["by_client"]["p99_us"], res.w4[LOCKWAL]["by_client"]["p99_us"]) if LOCKWAL in res.w4 and peer != LOCKWAL else "",
            ratio(q["by_file"]["p99_us"], res.w4[LOCKWAL]["by_file"]["p99_us"]) if LOCKWAL in res.w4 and peer != LOCKWAL else "",
        ])
    return table(["store", "by client p50", "by client p99", "locks returned", "by file p50", "by file p99", "locks returned",
                  "p99 by client: this ÷ lockwal", "p99 by file: this ÷ lockwal"], rows)


def w5_section(res):
    w = res.w5
    if not w:
        return "Not run."
    rows = [
        ["no compaction", num(w["without"]["ops_per_sec"]), us(w["without"]["latency"]["p50_us"]), us(w["without"]["latency"]["p99_us"]), "–"],
        ["compactions back to back", num(w["with"]["ops_per_sec"]), us(w["with"]["latency"]["p50_us"]), us(w["with"]["latency"]["p99_us"]),
         f"{w['compactions']} (mean {w['mean_compaction_s']:.2f} s)"],
    ]
    tasks = w["without"]["tasks"]
    w2 = res.w2.get(LOCKWAL, {}).get(tasks)
    extra = f" The W2 run at {tasks} tasks on an empty store had p99 {us(w2['latency']['p99_us'])}." if w2 else ""
    return (table(["lockwal WAL, " + f"{w['live_locks']:,} live locks, {tasks} tasks", "durable puts/s", "p50", "p99", "compactions in the window"], rows)
            + f"\n\np99 with compactions ÷ p99 without: **{w['p99_ratio']:.2f}×**.{extra}")


def w6_section(res):
    """Issue 18's rows: consume by create GUID, and restore with handles."""
    w = res.w6
    if not w:
        return "Not run."
    parts = []
    c = w.get("consume")
    if c:
        n = c["stored"]
        rows = [
            [f"`consume_handle_by_create_guid` alone: one task, a random one of the {n:,} stored handles per call; "
             "durable (its log record fdatasync'ed before the call returns); returns the handle, owned",
             f"{c['consume']['samples']:,}", us(c["consume"]["p50_us"]), us(c["consume"]["p99_us"]),
             us(c["consume"]["p999_us"]), us(c["consume"]["max_us"])],
            [f"`put_handle` of a fresh handle after each consume, so that {n:,} are stored at every consume "
             "(timed on its own, not part of the row above)",
             f"{c['put_back']['samples']:,}", us(c["put_back"]["p50_us"]), us(c["put_back"]["p99_us"]),
             us(c["put_back"]["p999_us"]), us(c["put_back"]["max_us"])],
        ]
        parts.append(table(["lockwal WAL, " + f"{n:,} stored durable handles", "samples", "p50", "p99", "p99.9", "max"], rows))
        parts.append(f"{num(c['pairs_per_sec'])} consume + put-back pairs per second in the {c['seconds']:g} s window. "
                     f"The store holds the handles only (no locks): loaded in transactions of 1,024 and compacted "
                     f"({c['build_s']:.1f} s, untimed) before the warm-up; {c['compactions']} automatic compaction(s) "
                     "started during the warm-up and window.")
    r = w.get("restore")
    if r:
        warm = r["warm"]
        first = warm[0] if warm else r.get("cold")
        if first:
            cold = r.get("cold")
            runs = warm + ([cold] if cold else [])
            replayed = sorted({x["records_replayed"] for x in runs})
            after = (f"{replayed[0]:,} log record(s) after it" if len(replayed) == 1 else
                     f"{replayed[0]:,} to {replayed[-1]:,} log records after it (each restore opens as a writer: "
                     "its open record and, at close, its clean-shutdown record follow the snapshot for the next)")
            source = (f"the snapshot, then {after}" if all(x["from_snapshot"] for x in runs)
                      else "the log alone (no snapshot)")
            peak = max((x["peak_rss_bytes"] for x in warm), default=None)
            rows = [[
                f"{first['locks']:,} locks + {first['handles']:,} durable handles, compacted after loading, closed cleanly",
                source,
                f"{median([x['open_s'] for x in warm]):.3f} s" if warm else "–",
                f"{median([x['replay_s'] for x in warm]):.3f} s" if warm else "–",
                f"{cold['open_s']:.3f} s" if cold else "–",
                f"{median([x['list_handles_s'] for x in warm]):.3f} s" if warm else "–",
                f"{peak / 2**20:,.0f} MiB" if peak else "–",
                f"{r['disk_bytes'] / 2**20:,.0f} MiB",
                f"{r['build_s']:.1f} s",
            ]]
            parts.append(table(["lockwal WAL store", "open loads", f"restore: `WalLockStore::open`, warm (median of {len(warm)})",
                                "of which snapshot load + log replay", "open, cold cache",
                                "then `list_handles(All)`: every handle, owned", "peak RSS", "on disk", "build"], rows))
    return "\n\n".join(parts) if parts else "Not run."


W7_GRANTS = [
    ("lockwal-wal", "lockwal WAL, `put_lock` (unchecked)"),
    ("lockwal-wal-checked", "lockwal WAL, checked `grant`"),
    ("lockwal-postgres", "lockwal PostgreSQL, one node, `put_lock` (unchecked)"),
    ("lockwal-postgres-checked", "lockwal PostgreSQL, one node, checked `grant`"),
    ("lockwal-postgres-3nodes-checked", "lockwal PostgreSQL, three nodes, checked `grant`"),
]


def w7_section(res):
    """Checked grants: test_lock on a crowded file, and W2's grants checked."""
    w = res.w7
    if not w:
        return "Not run."
    parts = []
    tests = w.get("test") or []
    if tests:
        rows = [[label(t["peer"]), f"{t['test']['locks']:,}", f"{t['test']['latency']['samples']:,}",
                 us(t["test"]["latency"]["p50_us"]), us(t["test"]["latency"]["p99_us"]), us(t["test"]["latency"]["max_us"])]
                for t in tests]
        parts.append("`test_lock` on one file holding shared POSIX locks of distinct owners, each on its own 4 KiB page: "
                     "another owner's candidate over a random page, exclusive (exactly that page's holder refuses it) and "
                     "shared (nothing does) in turn, one call at a time, every answer checked and owned:")
        parts.append(table(["store", "locks on the file", "calls", "p50", "p99", "max"], rows))
    grants = {g["peer"]: g["runs"] for g in w.get("grants") or []}
    rows = []
    # One node's top level: the cluster runs it in all, and three times it
    # (that many per node).
    top = max((run["tasks"] for peer, _ in W7_GRANTS[:4] for run in grants.get(peer, [])), default=None)
    for peer, name in W7_GRANTS:
        for run in grants.get(peer, []):
            tasks = run["tasks"]
            if peer.endswith("3nodes-checked"):
                shown = f"3 × {top}" if tasks == 3 * top else f"{tasks} in all"
            else:
                shown = str(tasks)
            refused = (run.get("engine") or {}).get("refused_grants")
            rows.append([name, shown, num(run["ops_per_sec"]), us(run["latency"]["p50_us"]), us(run["latency"]["p99_us"]),
                         "–" if refused is None else f"{refused:,}"])
    if rows:
        parts.append("W2's fresh grants, each durable before the task's next, the plain and the checked call interleaved "
                     "round by round. The three nodes are three store handles with distinct node ids in this process, on "
                     "one schema of the one PostgreSQL server, each with its own pool of 64 connections; each lock goes to "
                     "the node its id hashes to.")
        parts.append(table(["store", "tasks", "grants/s", "p50", "p99", "grants refused"], rows))
    return "\n\n".join(parts) if parts else "Not run."


def w8_section(res):
    """Failover: lockwal cluster-torture's kills and the time to grace."""
    w = res.w8
    if not w:
        if any(e["workload"] == "w8" for e in res.doc.get("errors", [])):
            return "Failed: the torture's error is under Failures during the run, at the top."
        return "Not run (it needs a PostgreSQL server and the `lockwal` binary; `scripts/compare` provides both when it can)."
    t = w["torture"]
    g = t["grace_after_kill_ms"]
    rows = [[
        f"{t['nodes']} node processes, {t['seconds']} s", f"{t['kills']:,}", f"{t['disconnects']:,}",
        f"{t['takeovers']:,}" + (f" ({t['fenced_alive']:,} of a node still running)" if "fenced_alive" in t else ""),
        f"{g['count']:,}", f"{g['p50']:,.0f} ms", f"{g['max']:,.0f} ms", f"{t['grants_acknowledged']:,}",
        "none" if not t["violations"] else f"**{len(t['violations'])}**",
    ]]
    return "\n\n".join([
        f"`{w['command']}`: real node processes on the comparison's PostgreSQL server (lease 400 ms), SIGKILLed and "
        "restarted at random (0 to 3 leases later), their connections cut from the server side at random, survivors "
        "taking over nodes whose lease expired. The time is from each SIGKILL of a node holding locks, while no grace "
        "was in force, to the cluster being in grace (the node's restart or a survivor's takeover, whichever came "
        "first), polled about every 5 ms: bounded by the lease and the restart delay the run drew, not by lockwal's "
        "own work. Violations are what the torture's checker found (conflicting locks held, a grant during grace, "
        "a lost grant or a returned release, a reclaim by another client, an epoch going back).",
        table(["cluster", "kills", "disconnects", "takeovers", "kills timed", "kill → grace p50", "max",
               "grants acknowledged", "violations"], rows),
    ])


def targets_section(res):
    """The targets of issues 7 and 20, checked against this run's numbers."""
    rows = []

    def check(name, ok, detail):
        rows.append([name, "met" if ok else ("**not met**" if ok is not None else "not measured"), detail])

    lw1, floor1 = res.w1_ops(LOCKWAL), res.w1_ops("raw-prealloc")
    peers1 = {p: res.w1_ops(p) for p in PEERS if res.w1_ops(p)}
    if lw1 and floor1:
        best_p = max(peers1.values()) if peers1 else 0
        check("issue 20, W1: ≥ 0.95× the preallocated raw loop, ahead of every peer",
              lw1 >= 0.95 * floor1 and lw1 > best_p,
              f"{lw1 / floor1:.2f}× the floor; best peer {num(best_p)} ops/s vs lockwal {num(lw1)}")
    else:
        check("issue 20, W1", None, "")

    t = 64 if 64 in res.tasks else max(res.tasks)
    lw2, floor2 = res.w2_ops(LOCKWAL, t), res.w2_ops("raw-group", t)
    peers2 = [res.w2_ops(p, t) for p in PEERS if res.w2_ops(p, t)]
    if lw2 and floor2 and peers2:
        check(f"W2 at {t} tasks: ≥ 80% of raw group commit and ≥ 10× the best peer",
              lw2 >= 0.8 * floor2 and lw2 >= 10 * max(peers2),
              f"{lw2 / floor2 * 100:.0f}% of the floor; {lw2 / max(peers2):.1f}× the best peer")
    else:
        check(f"W2 at {t} tasks", None, "")

    # Issue 20: open + every lock handed to the caller as owned records.
    lw3 = res.restore_s(LOCKWAL)
    peers3 = {p: res.restore_s(p) for p in PEERS if res.restore_s(p)}
    if lw3 and peers3:
        best = min(peers3, key=peers3.get)
        check("issue 20, W3: open + every lock to the caller as owned records ≤ 0.5× the best peer's",
              lw3 <= 0.5 * peers3[best],
              f"{lw3 / peers3[best]:.2f}× (lockwal {lw3:.3f} s, best peer {label(best)} {peers3[best]:.3f} s)")
        rss = {p: res.peak_rss(p) for p in PEERS if res.peak_rss(p)}
        best_rss = min(rss, key=rss.get)
        mine = res.peak_rss(LOCKWAL)
        check("issue 20, W3: peak RSS ≤ 1.2× the best peer's for the same work", mine <= 1.2 * rss[best_rss],
              f"{mine / rss[best_rss]:.2f}× (lockwal {mine / 2**20:,.0f} MiB, best peer {label(best_rss)} {rss[best_rss] / 2**20:,.0f} MiB)")
    else:
        check("issue 20, W3", None, "")

    # Issue 4's restore target: opening a store of 1M locks in a snapshot
    # plus 100,000 log records after it, at least 2x faster than SQLite or
    # redb opening and reading back the same locks. After lockwal's open the
    # locks are in memory, indexed (what the peers' read-back builds); the
    # stricter open + read back through the API is shown beside it.
    tail = res.w3.get("lockwal-wal-tail")
    sr = [res.restore_s(p) for p in ["sqlite", "redb"] if res.restore_s(p)]
    if tail and tail["warm"] and sr:
        open_s = median([w["open_s"] for w in tail["warm"]])
        total = res.restore_s("lockwal-wal-tail")
        peak = max(w.get("open_peak_rss_bytes") or w["peak_rss_bytes"] for w in tail["warm"])
        check("issue 4: open of a snapshot + 100,000 log records ≥ 2× faster than SQLite and redb open + read back; ≤ 300 bytes of RSS per lock (peak after open)",
              min(sr) / open_s >= 2 and peak / res.locks <= 300,
              f"open {open_s:.3f} s = {min(sr) / open_s:.2f}× the faster of SQLite and redb ({min(sr):.3f} s); "
              f"open + read back all {total:.3f} s = {min(sr) / total:.2f}×; {peak / res.locks:,.0f} bytes per lock after open")
    else:
        check("issue 4: snapshot + 100,000 log records", None, "")

    if LOCKWAL in res.w4 and any(p in res.w4 for p in PEERS):
        for kind, name in [("by_client", "by client"), ("by_file", "by file")]:
            best = min(res.w4[p][kind]["p99_us"] for p in PEERS if p in res.w4)
            mine = res.w4[LOCKWAL][kind]["p99_us"]
            check(f"issue 20, W4 {name}: p99 ≥ 10× faster than the best peer (owned results, peers called directly)", best / mine >= 10,
                  f"{best / mine:,.2f}× (lockwal {us(mine)}, best peer {us(best)})")
    else:
        check("W4", None, "")

    if res.w5:
        check("W5: p99 during compaction ≤ 2× without", res.w5["p99_ratio"] <= 2, f"{res.w5['p99_ratio']:.2f}×")
    else:
        check("W5", None, "")
    return table(["target (issue 7 unless named)", "this run", "measured"], rows)


# ---------------------------------------------------------------- SVG


def svg_text(x, y, text, size=12, anchor="start", weight="normal", fill="#222"):
    return (f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}" font-weight="{weight}" '
            f'fill="{fill}">{html.escape(text)}</text>')


def throughput_svg(res, title_machine):
    width, height = 760, 460
    left, right, top, bottom = 80, 230, 50, 60
    pw, ph = width - left - right, height - top - bottom
    series = [(p, runs) for p, runs in res.w2.items() if runs]
    values = [r["ops_per_sec"] for _, runs in series for r in runs.values() if r["ops_per_sec"] > 0]
    if not values:
        return None
    lo = 10 ** math.floor(math.log10(min(values)))
    hi = 10 ** math.ceil(math.log10(max(values)))
    tasks = sorted({t for _, runs in series for t in runs})
    tlo, thi = math.log2(min(tasks)), math.log2(max(tasks)) if max(tasks) > min(tasks) else math.log2(min(tasks)) + 1

    def x(t):
        return left + (math.log2(t) - tlo) / (thi - tlo) * pw

    def y(v):
        return top + ph - (math.log10(v) - math.log10(lo)) / (math.log10(hi) - math.log10(lo)) * ph

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="sans-serif">',
           f'<rect width="{width}" height="{height}" fill="white"/>',
           svg_text(left, 22, "W2: durable grants per second against concurrent tasks (log-log)", 15, weight="bold"),
           svg_text(left, 40, title_machine, 11, fill="#555")]
    decade = lo
    while decade <= hi:
        for m in (1, 2, 5):
            v = decade * m
            if lo <= v <= hi:
                out.append(f'<line x1="{left}" x2="{left + pw}" y1="{y(v):.1f}" y2="{y(v):.1f}" stroke="{"#ccc" if m == 1 else "#eee"}"/>')
                out.append(svg_text(left - 6, y(v) + 4, f"{v:,.0f}", 11, "end"))
        decade *= 10
    for t in tasks:
        out.append(f'<line x1="{x(t):.1f}" x2="{x(t):.1f}" y1="{top}" y2="{top + ph}" stroke="#eee"/>')
        out.append(svg_text(x(t), top + ph + 18, str(t), 11, "middle"))
    out.append(f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="#888"/>')
    out.append(svg_text(left + pw / 2, height - 18, "concurrent tasks", 12, "middle"))
    out.append(f'<text x="18" y="{top + ph / 2:.1f}" font-size="12" text-anchor="middle" transform="rotate(-90 18 {top + ph / 2:.1f})">durable ops/s</text>')
    for i, (peer, runs) in enumerate(series):
        color = COLORS.get(peer, "#444")
        dash = ' stroke-dasharray="6 4"' if peer.startswith("raw") or peer == "lockwal-memory" else ""
        pts = [(x(t), y(runs[t]["ops_per_sec"])) for t in sorted(runs) if runs[t]["ops_per_sec"] > 0]
        out.append(f'<polyline fill="none" stroke="{color}" stroke-width="{3 if peer == LOCKWAL else 2}"{dash} points="'
                   + " ".join(f"{px:.1f},{py:.1f}" for px, py in pts) + '"/>')
        for px, py in pts:
            out.append(f'<circle cx="{px:.1f}" cy="{py:.1f}" r="3" fill="{color}"/>')
        ly = top + 10 + i * 20
        out.append(f'<line x1="{left + pw + 14}" x2="{left + pw + 40}" y1="{ly}" y2="{ly}" stroke="{color}" stroke-width="3"{dash}/>')
        out.append(svg_text(left + pw + 46, ly + 4, SHORT.get(peer, label(peer)), 11))
    out.append("</svg>")
    return "\n".join(out)


def restore_svg(res, title_machine):
    peers = [p for p in res.w3 if res.restore_s(p)]
    if not peers:
        return None
    width, bar_h, gap = 760, 16, 14
    left, right, top = 230, 90, 60
    height = top + len(peers) * (2 * bar_h + gap) + 50
    pw = width - left - right
    cold = {p: res.w3[p]["cold"]["total_s"] for p in peers if res.w3[p].get("cold")}
    vmax = max([res.restore_s(p) for p in peers] + list(cold.values()))
    scale = pw / vmax
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="sans-serif">',
           f'<rect width="{width}" height="{height}" fill="white"/>',
           svg_text(20, 22, f"W3: restore {res.locks:,} locks (open + read every lock back), seconds", 15, weight="bold"),
           svg_text(20, 40, title_machine, 11, fill="#555")]
    for i, peer in enumerate(peers):
        y0 = top + i * (2 * bar_h + gap)
        color = COLORS.get(peer, "#444")
        warm = res.restore_s(peer)
        out.append(svg_text(left - 8, y0 + bar_h + 4, label(peer), 12, "end", "bold" if peer == LOCKWAL else "normal"))
        out.append(f'<rect x="{left}" y="{y0}" width="{max(warm * scale, 1):.1f}" height="{bar_h}" fill="{color}"/>')
        out.append(svg_text(left + warm * scale + 5, y0 + bar_h - 4, f"{warm:.3f} s warm", 11))
        if peer in cold:
            c = cold[peer]
            out.append(f'<rect x="{left}" y="{y0 + bar_h}" width="{max(c * scale, 1):.1f}" height="{bar_h}" fill="{color}" fill-opacity="0.4"/>')
            out.append(svg_text(left + c * scale + 5, y0 + 2 * bar_h - 4, f"{c:.3f} s cold", 11, fill="#555"))
    out.append(f'<line x1="{left}" x2="{left}" y1="{top - 5}" y2="{height - 45}" stroke="#888"/>')
    out.append(svg_text(20, height - 18, "solid: warm page cache (median of the warm runs); pale: files evicted from the page cache first", 11, fill="#555"))
    out.append("</svg>")
    return "\n".join(out)


# ---------------------------------------------------------------- main


def render(res, rel_json):
    m = res.doc["machine"]
    s = res.doc["settings"]
    parts = [
        "# Benchmarks: lockwal against the stores users would pick instead",
        "",
        f"Generated by `scripts/compare` from one run ([{os.path.basename(rel_json)}]({rel_json})); "
        "do not edit by hand: rerun the script. Every figure below comes from that one run on the machine named here, "
        "so ratios between stores are meaningful; absolute numbers are not portable to another disk.",
        "",
    ]
    if s["quick"]:
        parts += ["> **Quick mode**: tiny data sets and windows of a fraction of a second. These numbers only show that every bench runs.", ""]
    if res.doc.get("errors"):
        parts += ["Failures during the run:", "", table(["workload", "store", "error"], [[e["workload"], e["peer"], e["error"]] for e in res.doc["errors"]]), ""]
    parts += [
        "## Machine and noise", "", machine_section(res), "",
        "The machine has 2 cores and one virtual disk shared with other work; the CPU time and disk writes of other processes above say how quiet it was. "
        "Between runs on this kind of virtual disk figures move by up to a third, so compare figures of one run only. "
        "Within a run the disk drifts too: W1 and W2 measure every store and level in rounds, each round visiting all of them in turn, "
        "so that no store is measured only in a slow stretch.", "",
        "## Targets", "", targets_section(res), "",
        "## Plots", "", "![throughput against concurrency](bench/throughput.svg)", "", "![restore time per store](bench/restore.svg)", "",
        "## W1: serial durable grant + release",
        "",
        "One task grants a lock and releases it, each write durable before the next starts; grants and releases both count as ops. "
        "Best durable store in bold (the raw loops and the memory backend are bounds, not stores).",
        "", w1_section(res), "",
        "## W2: concurrent durable grants",
        "",
        "N tasks each grant fresh locks, each grant durable before that task's next one, on a fresh store per round. "
        + w2_store_size(res) +
        "Synchronous engines (SQLite, redb, fjall) run on tokio's blocking pool, one thread per call in flight, as an async file server would call them."
        + (" lockwal's PostgreSQL backend is async; its tasks share the store's connection pool (size under Configurations)."
           if res.w2.get(POSTGRES) else ""),
        "", w2_section(res), "",
        f"## W3: restore {res.locks:,} locks",
        "",
        "Open the store in a fresh process and hand every lock to the caller as an owned `PersistedLock` in a `Vec` the caller keeps, "
        "the way a file server's lock manager fills its own tables at boot (peers: decode every record through their own API, called directly on "
        "the benchmark thread; lockwal: `open`, then `for_each_lock`, unsorted, into a `Vec` sized by `count`). "
        "\"Of which open\" is the open alone. "
        "Each store's files are written back to the disk (`fsync` of each) after its build, before its first restore, so that no restore "
        "runs during the writeback of its own build. "
        "Peak RSS is `VmHWM` of that process, including file pages it mapped. Cold: the store's files are evicted from the page cache "
        "(`posix_fadvise(DONTNEED)`) before the process starts.",
        "", w3_section(res), "",
        f"## W4: queries on {res.locks:,} locks",
        "",
        "Random client (about 1,000 locks each) and random file (about 100 locks each), one query at a time, every result an owned, "
        "decoded `Vec<PersistedLock>` sorted by lock id. Peers answer through their indexes, their synchronous APIs called directly on the "
        "benchmark thread (no thread pool); lockwal through `list_locks`, from memory.",
        "", w4_section(res), "",
        "## W5: durable puts while compactions run (lockwal only)", "", w5_section(res), "",
        "## W6: SMB durable handles (lockwal WAL only)",
        "",
        "lockwal's WAL backend in its default configuration (`lockwal-wal` under Configurations), called as a file server would call it: "
        "through the public `LockStore` API, every result owned. Handle `n` is a pure function of `n` (`benches/compare/src/data.rs`, `handle`): "
        "an SMB 3.x durable open with its own `FileId` and create GUID, on one of 4 shares, three in four with a lease. "
        "Consume: the reconnect path, on a store of durable handles only. "
        "Restore: the store's files are written back to the disk after its build, then it is opened in a fresh process (its own peak RSS), "
        "warm and then with its files evicted from the page cache.",
        "", w6_section(res), "",
        "## W7: checked grants (lockwal only)", "", w7_section(res), "",
        "## W8: failover of a PostgreSQL cluster node (lockwal only)", "", w8_section(res), "",
        "## Configurations", "", configs_section(res), "",
        "## How to reproduce", "",
        "```sh",
        "scripts/compare            # full run (about 15 minutes), rewrites docs/benchmarks.md and docs/bench/",
        "scripts/compare --quick    # seconds: tiny sizes, output to a temporary directory",
        "target/release/compare --workloads w6 --out w6.json   # W6 alone (built by scripts/compare); then:",
        "# W8 alone: scripts/pg-throwaway run target/release/compare --workloads w8 --lockwal target/release/lockwal --out w8.json",
        "python3 scripts/bench_report.py w6.json /tmp/w6       # renders /tmp/w6/benchmarks.md",
        "# lockwal PostgreSQL (W1/W2/W7/W8): scripts/compare starts a throwaway cluster (scripts/pg-throwaway) when the server",
        "# binaries are installed, or uses LOCKWAL_TEST_PG_URL when set; otherwise that row is left out",
        "cargo bench -p lockwal-compare            # the criterion benches (W1-W5, every peer)",
        "cargo bench -p lockwal-compare -- --test  # each criterion bench once, on tiny stores (CI)",
        "```",
        "",
    ]
    return "\n".join(parts)


def readme_block(res):
    rows = []
    t = 64 if 64 in res.tasks else max(res.tasks)
    for peer in ["raw-prealloc", "raw-group", LOCKWAL, POSTGRES] + PEERS:
        w1 = res.w1_ops(peer)
        w2 = res.w2_ops(peer, t)
        w3 = res.restore_s(peer if peer != "raw-prealloc" else "raw-log")
        q = res.w4.get(peer)
        if not any([w1, w2, w3, q]):
            continue
        name = label(peer) if peer != "raw-prealloc" else "raw floor (preallocated loop; framed log for restore)"
        open_s = res.open_s(peer if peer != "raw-prealloc" else "raw-log")
        rows.append([bold_if(name, peer == LOCKWAL), num(w1), num(w2), f"{w3:.2f} s" if w3 else "–",
                     f"{open_s:.2f} s" if w3 and open_s is not None else "–",
                     us(q["by_client"]["p99_us"]) if q else "–", us(q["by_file"]["p99_us"]) if q else "–"])
    m = res.doc["machine"]
    return "\n".join([
        "<!-- bench:start (generated by scripts/compare; do not edit) -->",
        f"Measured in one run on {m['nproc']} × {m['cpu']}, {m['fs'].split(' (')[0]}, kernel {m['kernel']}"
        + (" (quick mode: not real numbers)" if res.doc["settings"]["quick"] else "") + ". "
        "Full tables, ratios, configurations and the machine's load: [docs/benchmarks.md](docs/benchmarks.md).",
        "",
        table(["store", "W1 serial durable grant + release, ops/s", f"W2 durable grants/s, {t} tasks",
               f"W3 open + every lock to the caller as owned records, {res.locks:,} locks", "W3 open only",
               "W4 p99, locks of a client (~1,000), owned", "W4 p99, locks of a file (~100), owned"], rows),
        "",
        "![throughput against concurrency](docs/bench/throughput.svg)",
        "<!-- bench:end -->",
    ])


def main(argv):
    if len(argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    results, out_dir = argv[1], argv[2]
    readme = argv[argv.index("--readme") + 1] if "--readme" in argv else None
    with open(results) as f:
        res = Results(json.load(f))
    os.makedirs(os.path.join(out_dir, "bench"), exist_ok=True)
    m = res.doc["machine"]
    title = f"{m['nproc']} × {m['cpu']}, {m['fs'].split(' (')[0]}, kernel {m['kernel']}; one run"
    rel_json = os.path.relpath(os.path.abspath(results), os.path.abspath(out_dir))
    with open(os.path.join(out_dir, "benchmarks.md"), "w") as f:
        f.write(render(res, rel_json))
    for name, svg in [("throughput.svg", throughput_svg(res, title)), ("restore.svg", restore_svg(res, title))]:
        if svg:
            with open(os.path.join(out_dir, "bench", name), "w") as f:
                f.write(svg + "\n")
    if readme:
        with open(readme) as f:
            text = f.read()
        start = text.find("<!-- bench:start")
        end = text.find("<!-- bench:end -->")
        if start < 0 or end < 0:
            print(f"{readme}: no bench:start/bench:end block, left alone", file=sys.stderr)
        else:
            text = text[:start] + readme_block(res) + text[end + len("<!-- bench:end -->"):]
            with open(readme, "w") as f:
                f.write(text)
    print(f"wrote {out_dir}/benchmarks.md and {out_dir}/bench/*.svg", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
