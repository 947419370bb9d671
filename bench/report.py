"""What ``make bench`` writes: the tables, the targets met or missed, and ``bench/RESULTS.md``.

Rows are dicts: ``delay``, ``concurrency`` (and ``target`` in comparisons: the request sent)
and one ``Cell`` per target name; stream results are a dict of ``StreamCell`` per target name.
"""

from __future__ import annotations

import datetime
import os
import platform
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from bench.client import Cell, StreamCell, stream_ramp
from bench.hostile import HostileResult, hostile_line

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "RESULTS.md"
COMPARISON_HEADING = "## Comparison"
# The bound for a baseline comparison: no cell more than this much worse in requests/s or p50.
WORSE_LIMIT = 0.15
# Names in prose for the peers bench.peer can run.
PEER_NAMES = {"litellm": "LiteLLM"}


@dataclass(frozen=True)
class ThroughputTarget:
    """Under ``concurrency`` calls of ``delay`` ms upstream: at least ``share`` of the direct
    requests/s and an overhead p99 under ``p99_ms`` (and no error at all, if ``no_errors``)."""

    delay: int
    concurrency: int
    share: float
    p99_ms: float
    no_errors: bool


# The targets of SPEC §13 (issue 12), reported by every run, never asserted by tests.
THROUGHPUT_TARGETS = (
    ThroughputTarget(5000, 1000, 0.95, 500.0, no_errors=True),
    ThroughputTarget(1000, 256, 0.97, 100.0, no_errors=False),
)
PEER_THROUGHPUT = (0, 32, 2.5)  # delay, concurrency: at least this many times the peer's req/s
PEER_OVERHEAD = (0, 1, 0.25)  # delay, concurrency: overhead p50 under this share of the peer's
STREAM_TTFT_P50_MS = 50.0  # time-to-first-token overhead, p50, with every stream complete
# An earlier round's target, still watched: the overhead at concurrency 32 without delay.
TARGET_OVERHEAD = (32, 0, 10.0, 50.0)  # concurrency, delay, p50 and p99 bounds in ms


# --- Numbers --------------------------------------------------------------------------------------


def fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def diff(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def ratio(current: float | None, baseline: float | None) -> float | None:
    return None if current is None or not baseline else current / baseline


def shorten(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1].rstrip() + "…"


def cpu_per_request(cell: Cell) -> float | None:
    """The server's CPU ms per request (per stream for a ``StreamCell``)."""
    done = cell.requests if isinstance(cell, Cell) else cell.streams
    if cell.server_cpu is None or not done:
        return None
    return cell.server_cpu / done * 1000


def mib(cell: Cell | StreamCell | None) -> str:
    """The peak resident memory in MiB, or "-"."""
    if cell is None or cell.peak_rss is None:
        return "-"
    return f"{cell.peak_rss / 2**20:.0f}"


def verdict(ok: bool) -> str:
    return "**MET**" if ok else "**MISSED**"


def peer_name(name: str) -> str:
    return PEER_NAMES.get(name, name)


# --- The machine ----------------------------------------------------------------------------------


def machine() -> dict[str, str]:
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.partition(":")[2].strip()
                break
    except OSError:
        pass
    memory = "?"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    except OSError:
        pass
    return {
        "cpu": f"{model}, {os.cpu_count()} cores",
        "memory": memory,
        "os": f"{platform.system()} {platform.release()}",
        "python": f"{platform.python_implementation()} {platform.python_version()}",
    }


def database_description(args) -> str:
    if args.database_url:
        return args.database_url.split("://", 1)[0] + " (DATABASE_URL)"
    return f"SQLite {sqlite3.sqlite_version} (WAL, synchronous=NORMAL), a fresh file"


# --- Tables ---------------------------------------------------------------------------------------


def table(rows: list[dict]) -> list[str]:
    """The plain run's grid: the gateway beside the direct calls, cell by cell."""
    head = (
        "| delay ms | conc. | gateway req/s | gateway p50 ms | gateway p99 ms | errors "
        "| direct req/s | direct p50 ms | direct p99 ms | overhead p50 ms | overhead p99 ms "
        "| gateway CPU ms/req | client CPU ms/req | gateway peak RSS MiB |"
    )
    lines = [head, "|" + "---:|" * 14]
    for row in rows:
        g, d = row["gateway"], row["direct"]
        errors = str(g.errors) + (f" ({d.errors} direct)" if d.errors else "")
        lines.append(
            f"| {row['delay']} | {row['concurrency']} | {g.rps:.1f} | {fmt(g.pct(50))} "
            f"| {fmt(g.pct(99))} | {errors} | {d.rps:.1f} | {fmt(d.pct(50))} "
            f"| {fmt(d.pct(99))} | {fmt(diff(g.pct(50), d.pct(50)))} "
            f"| {fmt(diff(g.pct(99), d.pct(99)))} | {fmt(cpu_per_request(g), 2)} "
            f"| {fmt(g.client_cpu / g.requests * 1000 if g.requests else None, 2)} | {mib(g)} |"
        )
    return lines


def floor_table(floor: list[dict]) -> list[str]:
    if not floor:
        return []
    lines = [
        "| conc. | req/s | p50 ms | p99 ms | errors | server CPU ms/req | peak RSS MiB |",
        "|" + "---:|" * 7,
    ]
    for row in floor:
        f = row["floor"]
        lines.append(
            f"| {row['concurrency']} | {f.rps:.1f} | {fmt(f.pct(50))} | {fmt(f.pct(99))} "
            f"| {f.errors} | {fmt(cpu_per_request(f), 2)} | {mib(f)} |"
        )
    return lines


def stream_table(streams: dict[str, StreamCell], direct: str = "direct") -> list[str]:
    """One row per target: completion, time to first token (and its overhead over calling the
    fake directly), stream durations, the wave's wall time, CPU and memory."""
    if not streams:
        return []
    lines = [
        "| target | streams | completed | TTFT p50 ms | TTFT p99 ms | TTFT overhead p50 ms "
        "| TTFT overhead p99 ms | stream p50 s | stream p99 s | wave s "
        "| server CPU ms/stream | peak RSS MiB |",
        "|---|" + "---:|" * 11,
    ]
    base = streams.get(direct)
    for name, s in streams.items():
        over50 = over99 = None
        if base is not None and name != direct:
            over50 = diff(s.ttft_pct(50), base.ttft_pct(50))
            over99 = diff(s.ttft_pct(99), base.ttft_pct(99))
        p50, p99 = s.duration_pct(50), s.duration_pct(99)
        lines.append(
            f"| {name} | {s.streams} | {s.completed} ({s.completion:.1%}) "
            f"| {fmt(s.ttft_pct(50))} | {fmt(s.ttft_pct(99))} | {fmt(over50)} | {fmt(over99)} "
            f"| {fmt(p50 and p50 / 1000, 2)} | {fmt(p99 and p99 / 1000, 2)} "
            f"| {s.seconds:.1f} | {fmt(cpu_per_request(s), 2)} | {mib(s)} |"
        )
    return lines


def stream_errors(streams: dict[str, StreamCell]) -> list[str]:
    return [
        f"- streams, {name}: " + ", ".join(f"{k} x{n}" for k, n in s.error_kinds.most_common())
        for name, s in streams.items()
        if s.error_kinds
    ]


def side_by_side_table(rows: list[dict], names: list[str], direct: str = "direct") -> list[str]:
    """A comparison's rows, one line per target and cell, with the overhead over the direct
    call and the share of its requests/s when the run measured it."""
    lines = [
        "| request | delay ms | conc. | target | req/s | % of direct | p50 ms | p99 ms | errors "
        "| overhead p50 ms | overhead p99 ms | server CPU ms/req | peak RSS MiB |",
        "|---|---:|---:|---|" + "---:|" * 9,
    ]
    for row in rows:
        base = row.get(direct)
        for name in [n for n in names if n in row]:
            c = row[name]
            share = over50 = over99 = None
            if base is not None and name != direct:
                share = ratio(c.rps, base.rps)
                over50, over99 = diff(c.pct(50), base.pct(50)), diff(c.pct(99), base.pct(99))
            lines.append(
                f"| {row['target']} | {row['delay']} | {row['concurrency']} | {name} "
                f"| {c.rps:.1f} | {fmt(share and share * 100)} | {fmt(c.pct(50))} "
                f"| {fmt(c.pct(99))} | {c.errors} | {fmt(over50)} | {fmt(over99)} "
                f"| {fmt(cpu_per_request(c), 2)} | {mib(c)} |"
            )
    return lines


def comparison_table(rows: list[dict]) -> list[str]:
    """Baseline against current, cell by cell, as ratios."""
    lines = [
        "| target | delay ms | conc. | req/s base → current | req/s ratio "
        "| p50 ms base → current | p50 ratio | p99 ms base → current | p99 ratio "
        "| errors base / current | server CPU ms/req base → current "
        "| peak RSS MiB base → current |",
        "|---|" + "---:|" * 11,
    ]
    for row in rows:
        b, c = row["baseline"], row["current"]
        lines.append(
            f"| {row['target']} | {row['delay']} | {row['concurrency']} "
            f"| {b.rps:.1f} → {c.rps:.1f} | {fmt(ratio(c.rps, b.rps), 2)} "
            f"| {fmt(b.pct(50))} → {fmt(c.pct(50))} | {fmt(ratio(c.pct(50), b.pct(50)), 2)} "
            f"| {fmt(b.pct(99))} → {fmt(c.pct(99))} | {fmt(ratio(c.pct(99), b.pct(99)), 2)} "
            f"| {b.errors} / {c.errors} "
            f"| {fmt(cpu_per_request(b), 2)} → {fmt(cpu_per_request(c), 2)} "
            f"| {mib(b)} → {mib(c)} |"
        )
    return lines


# --- Targets --------------------------------------------------------------------------------------


def cells_by_load(rows: list[dict], request: str | None = None) -> dict[tuple[int, int], dict]:
    """``{(delay, concurrency): row}`` of the rows sending ``request`` (all rows if None)."""
    return {
        (r["delay"], r["concurrency"]): r
        for r in rows
        if request is None or r.get("target") == request
    }


def overhead_verdict(rows: list[dict], floor: list[dict] = ()) -> list[str]:
    """The plain run's earlier target: the overhead at concurrency 32 without delay."""
    out = []
    c, d, p50_max, p99_max = TARGET_OVERHEAD
    row = cells_by_load(rows).get((d, c))
    if row is None:
        return out
    g, direct = row["gateway"], row["direct"]
    p50, p99 = diff(g.pct(50), direct.pct(50)), diff(g.pct(99), direct.pct(99))
    ok = p50 is not None and p99 is not None and p50 < p50_max and p99 < p99_max
    out.append(
        f"- Overhead at concurrency {c}, delay {d} ms: p50 {fmt(p50)} ms (target < "
        f"{p50_max:g}), p99 {fmt(p99)} ms (target < {p99_max:g}): {verdict(ok)}."
    )
    bare = next((r["floor"] for r in floor if r["concurrency"] == c), None)
    if bare is not None and bare.requests:
        out.append(
            f"  For scale, the same server answering `GET /api/llm/health/` (no "
            f"authentication, no upstream, one `SELECT 1`) at concurrency {c}: "
            f"{bare.rps:.0f} req/s, p50 {fmt(bare.pct(50))} ms, p99 {fmt(bare.pct(99))} ms."
        )
    return out


def _load_label(delay: int, concurrency: int) -> str:
    return f"{f'{delay / 1000:g} s' if delay else 'No'} delay, {concurrency:,} concurrent"


def target_lines(
    cells: dict[tuple[int, int], dict],
    streams: dict[str, StreamCell],
    *,
    ours: str,
    peer: str | None = None,
    baseline: str | None = None,
    direct: str = "direct",
) -> list[str]:
    """SPEC §13's targets, each MET or MISSED with its numbers, or not measured in this run.

    ``cells`` maps (delay, concurrency) to a row of ``Cell`` by target name: ``ours`` (this
    tree's server), ``direct``, and ``peer`` and ``baseline`` when the run had them."""
    lines = []
    for t in THROUGHPUT_TARGETS:
        row = cells.get((t.delay, t.concurrency), {})
        g, d = row.get(ours), row.get(direct)
        want = (
            f"≥ {t.share:.0%} of the direct req/s"
            + (", 0 errors" if t.no_errors else "")
            + f", overhead p99 < {t.p99_ms:g} ms"
        )
        label = _load_label(t.delay, t.concurrency)
        if g is None or d is None or not d.rps:
            lines.append(f"- {label}: {want}: not measured in this run.")
            continue
        over = diff(g.pct(99), d.pct(99))
        ok = (
            g.rps >= t.share * d.rps
            and (g.errors == 0 or not t.no_errors)
            and over is not None
            and over < t.p99_ms
        )
        lines.append(
            f"- {label}: {want}: {g.rps:.1f} req/s = {g.rps / d.rps:.1%} of direct "
            f"({d.rps:.1f}), {g.errors} errors, overhead p99 {fmt(over)} ms, server peak RSS "
            f"{mib(g)} MiB: {verdict(ok)}."
        )
    lines += _peer_lines(cells, ours, peer, baseline, direct)
    lines.append(_stream_line(streams, ours, direct))
    return lines


def _peer_lines(cells, ours: str, peer: str | None, baseline: str | None, direct: str):
    lines = []
    delay, conc, times = PEER_THROUGHPUT
    label, who = _load_label(delay, conc), peer_name(peer or "litellm")
    want = f"≥ {times:g} times {who}'s req/s"
    row = cells.get((delay, conc), {})
    if peer is None or peer not in row or ours not in row:
        lines.append(f"- {label}: {want}: {_missing(peer, 'PEER=litellm')}.")
    else:
        g, p = row[ours], row[peer]
        lines.append(
            f"- {label}: {want}: {g.rps:.1f} vs {p.rps:.1f} req/s = "
            f"{fmt(ratio(g.rps, p.rps), 2)} times: {verdict(g.rps >= times * p.rps)}."
        )
    delay, conc, share = PEER_OVERHEAD
    label = _load_label(delay, conc)
    row = cells.get((delay, conc), {})
    base = row.get(direct)
    want = f"overhead p50 < {share:g} of {who}'s"
    if peer is None or base is None or peer not in row or ours not in row:
        lines.append(f"- {label}: {want}: {_missing(peer, 'PEER=litellm')}.")
    else:
        o, p = diff(row[ours].pct(50), base.pct(50)), diff(row[peer].pct(50), base.pct(50))
        ok = o is not None and p is not None and o < share * p
        lines.append(f"- {label}: {want}: {fmt(o)} vs {fmt(p)} ms: {verdict(ok)}.")
    want = "overhead p50 no worse than the baseline's"
    if baseline is None or baseline not in row or ours not in row:
        lines.append(f"- {label}: {want}: {_missing(baseline, 'BASELINE=<rev>')}.")
    else:
        # Without the direct row the p50 latencies compare the same (the direct call is one).
        what = "overhead p50" if base is not None else "p50 latency"
        sub = base.pct(50) if base is not None else 0.0
        o, b = diff(row[ours].pct(50), sub), diff(row[baseline].pct(50), sub)
        ok = o is not None and b is not None and o <= b
        lines.append(f"- {label}: {want}: {what} {fmt(o)} vs {fmt(b)} ms: {verdict(ok)}.")
    return lines


def _missing(other: str | None, variable: str) -> str:
    """Why a target comparing with ``other`` has no verdict."""
    return f"not measured (make bench {variable})" if other is None else "not measured in this run"


def _stream_line(streams: dict[str, StreamCell], ours: str, direct: str) -> str:
    want = f"all complete, TTFT overhead p50 < {STREAM_TTFT_P50_MS:g} ms"
    s, d = streams.get(ours), streams.get(direct)
    if s is None or d is None:
        return f"- Streams: {want}: not measured in this run."
    over = diff(s.ttft_pct(50), d.ttft_pct(50))
    ok = s.completed == s.streams and over is not None and over < STREAM_TTFT_P50_MS
    return (
        f"- {s.streams:,} concurrent streams: {want}: {s.completed:,}/{s.streams:,} complete, TTFT "
        f"p50 {fmt(s.ttft_pct(50))} ms vs {fmt(d.ttft_pct(50))} ms direct (overhead "
        f"{fmt(over)} ms, p99 {fmt(diff(s.ttft_pct(99), d.ttft_pct(99)))} ms), server peak "
        f"RSS {mib(s)} MiB: {verdict(ok)}."
    )


def comparison_verdict(rows: list[dict]) -> list[str]:
    """The cells where the working tree is more than WORSE_LIMIT worse (req/s or p50)."""
    worse = []
    for row in rows:
        b, c = row["baseline"], row["current"]
        rps, p50 = ratio(c.rps, b.rps), ratio(c.pct(50), b.pct(50))
        reasons = []
        if rps is not None and rps < 1 - WORSE_LIMIT:
            reasons.append(f"req/s x{rps:.2f}")
        if p50 is not None and p50 > 1 + WORSE_LIMIT:
            reasons.append(f"p50 x{p50:.2f}")
        if c.errors > b.errors:
            reasons.append(f"{c.errors} errors (baseline {b.errors})")
        if reasons:
            where = f"{row['target']} delay {row['delay']} ms, concurrency {row['concurrency']}"
            worse.append(f"  - {where}: {', '.join(reasons)}")
    limit = f"{WORSE_LIMIT:.0%}"
    if not worse:
        return [f"- No cell more than {limit} worse than the baseline in req/s or p50: **MET**."]
    return [f"- Cells more than {limit} worse than the baseline (req/s or p50): **MISSED**", *worse]


# --- The plain run's report -----------------------------------------------------------------------


def _others(rows: list[dict], names: tuple[str, ...]) -> str:
    busiest = max(
        (
            (r[n].others_cpu / r[n].seconds, r, n)
            for r in rows
            for n in names
            if n in r and r[n].seconds
        ),
        default=None,
        key=lambda t: t[0],
    )
    if busiest is None or busiest[0] < 0.05:
        return "nothing measurable"
    return (
        f"up to {busiest[0]:.2f} of the {os.cpu_count()} cores during the measured windows "
        f"(most in delay {busiest[1]['delay']} ms, concurrency {busiest[1]['concurrency']}, "
        f"{busiest[2]}): figures from such a run understate the gateway"
    )


def stream_description(args) -> str:
    return (
        f"{args.streams:,} streamed calls at once (started evenly over "
        f"{stream_ramp(args):g} s), each answered by the fake with "
        f"{args.stream_tokens} one-word events {args.stream_interval_ms:g} ms apart "
        f"(`stream_chunk_words=1`, `stream_chunk_delay_ms={args.stream_interval_ms:g}`, no "
        "delay before the first); a stream is complete when it ends normally with the "
        "endpoint's last event. TTFT: from sending the request to the first event carrying "
        "text."
    )


def report(
    args,
    rows: list[dict],
    streams: dict,
    floor: list[dict],
    info: dict,
    hostile: HostileResult | None = None,
) -> str:
    when = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    errors = [
        f"- delay {r['delay']} ms, concurrency {r['concurrency']}, {name}: "
        + ", ".join(f"{k} x{n}" for k, n in r[name].error_kinds.most_common())
        for r in rows
        for name in ("gateway", "direct")
        if r[name].errors
    ] + stream_errors(streams)
    targets = target_lines(cells_by_load(rows), streams, ours="gateway")
    if args.hostile:
        targets.append(
            hostile_line(
                hostile, slowloris=args.slowloris, slow_bodies=args.slow_bodies, idle=args.idle
            )
        )
    lines = [
        "# Benchmark results",
        "",
        f"Made by `{info['command']}` on {when}. Written by `bench/run.py`; do not edit by hand.",
        "",
        "## Figures",
        "",
        *table(rows),
        "",
        *overhead_verdict(rows, floor),
        "",
        "Gateway: `POST /api/llm/generate/` with a small prompt (Token auth), through the "
        "whole stack — authentication, throttles, validation, key resolution, budget check, the "
        "upstream call, and the ledger row and summary update in the database. Direct: the same "
        f"upstream request ({info['provider']}, `{info['upstream_path']}`) sent straight to the "
        "fake. Overhead: gateway minus direct, per percentile. Gateway CPU: the server's "
        "processes' CPU time in the window, per request (it includes their idle background "
        "work, which dominates at 1 request/s); client CPU: the load client's, per gateway "
        "request. Peak RSS: the server's processes' resident memory added up (shared pages "
        "counted in each worker), sampled every 0.5 s during the cell, warm-up included.",
        "",
        "The client keeps `concurrency` requests in flight, so once the gateway is saturated "
        "its latency is concurrency / throughput (Little's law): the delay-0 rows at "
        "concurrency 32 and 256 measure the gateway's throughput on this machine; the "
        "concurrency-1 rows show what one request adds. The direct rows at delay 0 show what "
        "the client and the fake manage together: far more than the gateway, so neither is "
        "the bottleneck.",
        "",
        *(
            [
                "### Streams",
                "",
                *stream_table(streams),
                "",
                f'Gateway: `POST /api/llm/generate/` with `"stream": true` (SSE, `delta` '
                "events then `done`); direct: the same streamed upstream request "
                f"(`{info['stream_path']}`). {stream_description(args)}",
                "",
            ]
            if streams
            else []
        ),
        "### Targets (SPEC §13)",
        "",
        *targets,
        "",
        *(
            [
                "### The server's floor",
                "",
                "`GET /api/llm/health/` on the same server: a DRF view with no authentication, "
                "no throttle and no upstream, one `SELECT 1` — what the server, Django and DRF "
                "cost on this machine before the gateway does anything.",
                "",
                *floor_table(floor),
                "",
            ]
            if floor
            else []
        ),
        *(["Errors:", "", *errors, ""] if errors else []),
        "## Conditions",
        "",
        f"- Machine: {info['cpu']}; {info['memory']} memory; {info['os']}.",
        f"- Python: {info['python']}. Database: {info['database']}.",
        f"- Server: the command `make serve` runs, `{info['serve_command']}`.",
        "- Upstream: the fake (`python -m fake_upstream --no-record "
        "--delay-ms N`) in its own process; 20-word answers.",
        f"- Client: plain asyncio (a minimal HTTP/1.1 client) in one process, one keep-alive "
        f"connection per concurrent "
        f"request, the users starting evenly over one upstream delay (at least 1 s: "
        f"N users with calls of d seconds send N/d requests a second, not N at once every d); "
        f"per cell {args.warmup:g} s warm-up (not counted; at least the upstream delay plus the "
        f"ramp), then {args.duration:g} s measured (at least twice the upstream delay; a "
        "request counts when it finishes inside the window), "
        f"{args.timeout:g} s per request at most; all on 127.0.0.1, client, fake and server "
        f"sharing the machine's cores; open files limit {info['nofile']}.",
        "- Throttle rates 100000/s (they count every request but refuse none); "
        "per-user accounting on, as in production.",
        "- The machine may be shared: before each cell the bench waits (up to "
        f"{args.quiet_wait:g} s) for it to be idle, and a cell during which other processes "
        f"used more than {args.others_limit:g} cores is measured again (up to {args.attempts} "
        "times, the quietest kept). Other processes (not the server, fake or client) used "
        f"{_others(rows, ('gateway', 'direct'))}.",
        "",
    ]
    return "\n".join(lines)


# --- The comparison's report ----------------------------------------------------------------------


def comparison_report(
    args, rows: list[dict], streams: dict[str, StreamCell], names: list[str], info: dict
) -> str:
    """The Comparison section: baseline ratios and/or the peer side by side, the targets."""
    when = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    peer = info.get("peer_name")
    who = " and ".join(
        x
        for x in (
            info.get("baseline") and f"against {info['baseline']}",
            peer and f"beside {peer_name(peer)} {info['peer_version']}",
        )
        if x
    )
    measured = [r for r in rows if r["target"] != "health/"]
    targets = target_lines(
        cells_by_load(measured),
        streams,
        ours="current",
        peer=peer,
        baseline="baseline" if info.get("baseline") else None,
    )
    most = max(
        (r[n].others_cpu / r[n].seconds for r in rows for n in names if n in r and r[n].seconds),
        default=0,
    )
    lines = [
        COMPARISON_HEADING,
        "",
        f"Made by `{info['command']}` on {when}: the working tree ({info['current']}) {who}. "
        "Written by `bench/run.py`; do not edit by hand.",
        "",
    ]
    if info.get("baseline"):
        lines += [
            *comparison_table(rows),
            "",
            *comparison_verdict(rows),
            "",
            "Ratios are current / baseline: above 1 is better for req/s, below 1 is better "
            "for p50 and p99.",
            "",
        ]
    if peer or "direct" in names:
        lines += [*side_by_side_table(rows, names), ""]
    if streams:
        lines += [
            "Streams:",
            "",
            *stream_table(streams),
            "",
            f"{stream_description(args)}",
            "",
        ]
    lines += ["Targets (SPEC §13):", "", *targets, ""]
    errors = [
        f"- {r['target']} delay {r['delay']} ms, concurrency {r['concurrency']}, {n}: "
        + ", ".join(f"{k} x{c}" for k, c in r[n].error_kinds.most_common())
        for r in rows
        for n in names
        if n in r and r[n].errors
    ] + stream_errors(streams)
    if errors:
        lines += ["Errors:", "", *errors, ""]
    lines += [
        f"Requests: {info['requests']}",
        "",
        "How: the servers run at once, each started the way its users start it, with its own "
        "port (this project's by its own `make serve`, each checkout with its own virtualenv "
        "and fresh SQLite database); one fake upstream (this tree's) serves them all. Each "
        "cell is measured on one target after the other, the order rotating from cell to "
        f"cell; per target and cell {args.warmup:g} s warm-up, then {args.duration:g} s "
        "measured (longer with a long upstream delay, as in the figures above), with the same "
        "load client, retries on a busy machine and throttle rates as the figures above.",
        "",
        f"- Machine: {info['cpu']}; {info['memory']} memory; {info['os']}; {info['python']}.",
        f"- Current: `{info['current_serve']}`.",
    ]
    if info.get("baseline"):
        lines.append(f"- Baseline: `{info['baseline_serve']}`.")
    if peer:
        lines.append(f"- {peer_name(peer)}: `{info['peer_serve']}`; {info['peer_setup']}")
    lines += [f"- Other processes used up to {most:.2f} cores during the measured windows.", ""]
    return "\n".join(lines)


def write_results(section: str, heading: str, *, keep: str) -> None:
    """Write ``section`` into RESULTS.md, keeping the part of the file ``keep`` ("before" or
    "after") ``heading``: a plain run rewrites the figures and keeps the last comparison, a
    comparison rewrites its own section and keeps the figures."""
    old = RESULTS.read_text() if RESULTS.exists() else ""
    before, found, after = old.partition(f"\n{heading}\n")
    if keep == "before":
        head = before.rstrip("\n") if found or old else "# Benchmark results"
        text = f"{head}\n\n{section}"
    else:
        text = section.rstrip("\n") + "\n" + (f"\n{heading}\n{after}" if found else "")
    RESULTS.write_text(text)
    print(f"bench: wrote {RESULTS.relative_to(ROOT)}")
