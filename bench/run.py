"""``make bench``: what the gateway adds to its upstream's latency, over real HTTP on loopback.

    make bench                                   # the full grid, writes bench/RESULTS.md
    make bench BASELINE=<git rev>                # the same grid on this tree and on <rev>
    make bench PEER=litellm                      # ... and on LiteLLM's proxy, in the same run
    .venv/bin/python -m bench.run --delays 1000 --concurrency 256 --streams 0 --no-write

It starts the fake upstream (``python -m fake_upstream``, its own process) and the production
server with the very command ``make serve`` runs (on a free loopback port, a throwaway SQLite
database, the base URLs pointed at the fake, one provider key stored in the admin's key table,
throttle rates high enough never to refuse), creates a user and a DRF token, and then, for each
upstream delay and each concurrency (``DEFAULT_CELLS``: what the targets of SPEC §13 name),
measures

* through the gateway: ``POST /api/llm/generate/`` with a small prompt and ``Token`` auth;
* directly against the fake: the same upstream request the gateway sends for it;

requests/s, p50 and p99 latency and errors, the overhead (gateway minus direct), the server's
CPU time per request and its processes' peak resident memory. Then one wave of streams
(``--streams``, 1,000 by default): ``generate/`` with ``"stream": true`` against the fake
sending a token every 100 ms, for the completion rate and the time to the first token, beside
the same stream taken from the fake directly. The load client (``bench.client``) is plain
asyncio with one connection per concurrent request, so it takes little of the CPU it shares
with the server; the direct rows at delay 0 show what client and fake manage together, far
above the gateway. The client raises its open-files limit to the hard limit first (the servers
it starts inherit it): a thousand connections need more than the usual 1,024.

With ``BASELINE=<rev>`` (``--baseline``) it also serves that revision, built by
``bench.baseline`` (a git worktree, its own virtualenv, database and port, its own ``make
serve``); with ``PEER=litellm`` (``--peer``) LiteLLM's proxy (``bench.peer``). Both against the
same fake, measured one after the other in each cell, the order rotating from cell to cell:
this machine's speed drifts, so only figures taken side by side compare. With a peer every
gateway gets the same OpenAI-shaped request (this project's ``v1/chat/completions``), and the
direct call is measured too. It writes that in RESULTS.md's "Comparison" section and leaves the
figures above it as they were; a plain run keeps that section.

Each cell runs for ``--warmup`` seconds (not counted: connections open, threads start) and
then ``--duration`` seconds; a request counts when it *finishes* inside that window, so
requests/s is the steady rate. Everything it starts it stops, and it only talks to 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shlex
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path

from bench.baseline import baseline_checkout, describe_working_tree
from bench.client import Cell, StreamCell, load, load_streams, raise_fd_limit, stream_ramp
from bench.hostile import HostileResult, attack, hostile_line
from bench.peer import LITELLM_VERSION, PEERS, LiteLLMProxy
from bench.report import (
    COMPARISON_HEADING,
    RESULTS,
    cells_by_load,
    comparison_report,
    comparison_table,
    comparison_verdict,
    database_description,
    machine,
    report,
    shorten,
    side_by_side_table,
    stream_table,
    target_lines,
    write_results,
)
from bench.servers import (
    CHAT_PROVIDER,
    KEYS,
    MODELS,
    ROOT,
    Gateway,
    PeakMemory,
    Target,
    busy_seconds,
    chat_body,
    cpu_seconds,
    direct_target,
    first_call,
    free_port,
    http_json,
    peer_target,
    process_tree,
    server_env,
    start_fake,
    stop,
    wait_for,
)

# Upstream delay (ms) → concurrencies: the loads SPEC §13's targets name, with the
# concurrencies in between that show where the time goes. ``--delays`` alone keeps a listed
# delay's concurrencies (others get DEFAULT_CONCURRENCY); ``--concurrency`` applies to every
# delay.
DEFAULT_CELLS = {0: (1, 32, 256), 1000: (32, 256), 5000: (1000,)}
DEFAULT_CONCURRENCY = (1, 32, 256)


def grid(delays: list[int] | None, concurrency: list[int] | None) -> list[tuple[int, int]]:
    """The (delay ms, concurrency) cells of a run, in order."""
    return [
        (delay, c)
        for delay in (delays if delays is not None else DEFAULT_CELLS)
        for c in (
            concurrency
            if concurrency is not None
            else DEFAULT_CELLS.get(delay, DEFAULT_CONCURRENCY)
        )
    ]


def floor_concurrency(concurrency: list[int] | None) -> list[int]:
    """The concurrencies of the health/ floor: the no-delay cells' by default."""
    return list(concurrency if concurrency is not None else DEFAULT_CELLS[0])


# --- Measuring ------------------------------------------------------------------------------------


def set_delay(fake_url: str, delay: int) -> None:
    http_json("POST", f"{fake_url}/_fake/config", {"delay_ms": delay})


@contextlib.contextmanager
def paced_streams(fake_url: str, tokens: int, interval_ms: float) -> Iterator[None]:
    """The fake streams ``tokens`` one-word events ``interval_ms`` apart, no delay before the
    first (its ``FakeConfig`` pacing); its configuration as it was afterwards."""
    url = f"{fake_url}/_fake/config"
    pacing = {
        "delay_ms": 0,
        "completion_words": tokens,
        "stream_chunk_words": 1,
        "stream_chunk_delay_ms": interval_ms,
    }
    before = http_json("GET", url)
    http_json("POST", url, pacing)
    try:
        yield
    finally:
        http_json("POST", url, {k: before[k] for k in pacing})


def _account(cell: Cell | StreamCell, marks: list, has_server: bool) -> None:
    """The server's and the other processes' CPU time in the window (``marks``: the (server,
    fake, machine) CPU seconds when it opened and closed)."""
    if len(marks) != 2:
        return
    (server0, fake0, busy0), (server1, fake1, busy1) = marks
    if has_server:
        cell.server_cpu = server1 - server0
    cell.fake_cpu = fake1 - fake0
    ours = (server1 - server0) + (fake1 - fake0) + cell.client_cpu
    cell.others_cpu = max(0.0, (busy1 - busy0) - ours)


def _marker(target: Target, fake) -> tuple[list, Callable[[bool], None]]:
    marks: list[tuple[float, float, float]] = []
    pids = process_tree(target.process.pid) if target.process is not None else []

    def on_window(start: bool) -> None:
        marks.append((cpu_seconds(pids), cpu_seconds([fake.pid]), busy_seconds()))

    return marks, on_window


def ramp_of(delay: int) -> float:
    """Seconds over which a cell's users start: one call's length (at least a second), so that
    a closed loop of N users with calls of ``delay`` ms sends N / delay requests a second
    evenly, as N independent users would, instead of N at once every ``delay``."""
    return max(1.0, delay / 1000)


def cell_window(args, delay: int) -> tuple[float, float]:
    """(warm-up, measured) seconds of a cell with ``delay`` ms upstream: at least the ramp and
    one call's length of warm-up (every user has had an answer) and two calls' length measured
    (else a 5 s call could finish in no window at all)."""
    warmup = max(args.warmup, delay / 1000 + ramp_of(delay))
    return warmup, max(args.duration, 2 * delay / 1000)


def measure(
    args, target: Target, fake, concurrency: int, delay: int, url: str | None = None
) -> Cell:
    """One cell: ``target``'s request (or a GET of ``url``) at ``concurrency``."""
    warmup, duration = cell_window(args, delay)
    request = target.request(False)
    url, body, headers = (url, None, {}) if url else (request.url, request.body, request.headers)
    marks, on_window = _marker(target, fake)
    with PeakMemory(target.process) as memory:
        cell = asyncio.run(
            load(
                url,
                body,
                headers,
                concurrency=concurrency,
                warmup=warmup,
                duration=duration,
                timeout=args.timeout,
                on_window=on_window,
                ramp=ramp_of(delay),
            )
        )
    cell.peak_rss = memory.peak
    _account(cell, marks, target.process is not None)
    return cell


def stream_timeout(args) -> float:
    """Per stream: the request timeout beyond three times the stream's own length."""
    return args.timeout + 3 * args.stream_tokens * args.stream_interval_ms / 1000


def measure_streams(args, target: Target, fake) -> StreamCell:
    request = target.request(True)
    marks, on_window = _marker(target, fake)
    with PeakMemory(target.process) as memory:
        cell = asyncio.run(
            load_streams(
                request.url,
                request.body,
                request.headers,
                request.shape,
                streams=args.streams,
                ramp=stream_ramp(args),
                timeout=stream_timeout(args),
                on_window=on_window,
            )
        )
    cell.peak_rss = memory.peak
    _account(cell, marks, target.process is not None)
    return cell


def measure_quietly(args, once: Callable[[], Cell | StreamCell], label: str):
    """``once()`` again while other processes took more than ``--others-limit`` cores during
    it (up to ``--attempts`` times in all, waiting first for a quiet machine); the quietest."""
    best = None
    for attempt in range(args.attempts):
        wait_for_quiet(args.quiet_wait, args.others_limit)
        cell = once()
        others = cell.others_cpu / cell.seconds if cell.seconds else 0.0
        if best is None or cell.others_cpu < best.others_cpu:
            best = cell
        if others <= args.others_limit:
            break
        if attempt + 1 < args.attempts:
            print(
                f"bench: other processes used {others:.2f} cores during {label}: "
                "measuring it again",
                flush=True,
            )
    return best


def wait_for_quiet(seconds: float, limit: float) -> None:
    """Wait until the machine is nearly idle for a second (our server idles between cells),
    at most ``seconds``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        before = busy_seconds()
        time.sleep(1.0)
        if busy_seconds() - before < limit:
            return


def describe(delay: int, concurrency: int, name: str, cell: Cell) -> str:
    text = (
        f"delay={delay}ms c={concurrency} {name}: {cell.rps:.1f} req/s "
        f"p50={fmt_ms(cell.pct(50))}ms p99={fmt_ms(cell.pct(99))}ms errors={cell.errors}"
    )
    if cell.server_cpu is not None and cell.requests:
        text += f" cpu={cell.server_cpu / cell.requests * 1000:.2f}ms/req"
    if cell.peak_rss is not None:
        text += f" rss={cell.peak_rss / 2**20:.0f}MiB"
    if cell.requests:
        text += f" client_cpu={cell.client_cpu / cell.requests * 1000:.2f}ms/req"
    text += f" others={cell.others_cpu / cell.seconds:.2f} cores" if cell.seconds else ""
    return text


def describe_streams(name: str, cell: StreamCell) -> str:
    text = (
        f"streams={cell.streams} {name}: {cell.completed} complete "
        f"ttft p50={fmt_ms(cell.ttft_pct(50))}ms p99={fmt_ms(cell.ttft_pct(99))}ms "
        f"stream p50={fmt_ms(cell.duration_pct(50))}ms wave={cell.seconds:.1f}s"
    )
    if cell.server_cpu is not None and cell.streams:
        text += f" cpu={cell.server_cpu / cell.streams * 1000:.1f}ms/stream"
    if cell.peak_rss is not None:
        text += f" rss={cell.peak_rss / 2**20:.0f}MiB"
    if cell.seconds:
        text += (
            f" client={cell.client_cpu / cell.seconds:.2f} cores"
            f" fake={cell.fake_cpu / cell.seconds:.2f} cores"
            f" others={cell.others_cpu / cell.seconds:.2f} cores"
        )
    if cell.error_kinds:
        text += " errors=" + ",".join(f"{k}x{n}" for k, n in cell.error_kinds.most_common())
    return text


def fmt_ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


# --- The plain run --------------------------------------------------------------------------------


@contextlib.contextmanager
def bench_run() -> Iterator[tuple[Path, object, str, dict[str, str]]]:
    """A working directory and the fake upstream: (workdir, fake process, its URL, base URLs)."""
    with tempfile.TemporaryDirectory(prefix="alwrity-bench-") as tmp:
        workdir = Path(tmp)
        with open(workdir / "fake.log", "w") as fake_log:
            fake, fake_url, base = start_fake(0, fake_log)
        try:
            yield workdir, fake, fake_url, base
        finally:
            stop(fake)


def current_gateway(workdir: Path, base: dict[str, str], database_url: str = "") -> Gateway:
    """This working tree, served by ``make serve`` with the project's ``.venv``."""
    database_url = database_url or f"sqlite:///{workdir / 'current.sqlite3'}"
    env = server_env(free_port(), base, database_url)
    return Gateway("current", ROOT, Path(sys.executable), env, workdir / "current.log")


def under_attack(args, gateway) -> HostileResult:
    """``bench.hostile``'s attack on ``gateway`` for ``--hostile`` seconds."""
    parts = urllib.parse.urlsplit(gateway.url)
    print(
        f"bench: {args.slowloris} slowloris + {args.slow_bodies} slow-body + {args.idle} idle "
        f"connections for {args.hostile:g} s, probing health/ and making one generation",
        flush=True,
    )
    result = asyncio.run(
        attack(
            parts.hostname,
            parts.port,
            gateway.token,
            seconds=args.hostile,
            slowloris=args.slowloris,
            slow_bodies=args.slow_bodies,
            idle=args.idle,
        )
    )
    line = hostile_line(
        result, slowloris=args.slowloris, slow_bodies=args.slow_bodies, idle=args.idle
    )
    print(f"bench: {line.removeprefix('- ')}", flush=True)
    return result


def run(args: argparse.Namespace) -> int:
    if args.baseline or args.peer:
        return run_comparison(args)
    info = machine()
    rows: list[dict] = []
    streams: dict[str, StreamCell] = {}
    floor: list[dict] = []  # GET health/ per concurrency: what the server costs doing nothing
    hostile: HostileResult | None = None
    with bench_run() as (workdir, fake, fake_url, base):
        gateway = current_gateway(workdir, base, args.database_url)
        try:
            gateway.start([args.provider])
            ours = gateway.target("generate", args.provider)
            first_call(ours)
            direct = direct_target(args.provider, base)
            info.update(
                command=args.command,
                provider=args.provider,
                upstream_path=direct.request(False).url.removeprefix(fake_url),
                stream_path=direct.request(True).url.removeprefix(fake_url),
                database=database_description(args),
                serve_command=gateway.serve_command,
                nofile=str(args.nofile),
            )
            targets = {"gateway": ours, **({} if args.gateway_only else {"direct": direct})}
            for delay, concurrency in grid(args.delays, args.concurrency):
                set_delay(fake_url, delay)
                row = {"delay": delay, "concurrency": concurrency, "direct": Cell()}
                for name, target in targets.items():
                    label = f"delay={delay}ms c={concurrency} {name}"
                    row[name] = measure_quietly(
                        args,
                        lambda t=target, c=concurrency, d=delay: measure(args, t, fake, c, d),
                        label,
                    )
                    print(f"bench: {describe(delay, concurrency, name, row[name])}", flush=True)
                rows.append(row)
            if args.streams:
                with paced_streams(fake_url, args.stream_tokens, args.stream_interval_ms):
                    for name, target in targets.items():
                        streams[name] = measure_quietly(
                            args, lambda t=target: measure_streams(args, t, fake), "streams"
                        )
                        print(f"bench: {describe_streams(name, streams[name])}", flush=True)
            if args.hostile:
                set_delay(fake_url, 0)
                hostile = under_attack(args, gateway)
            if not args.no_floor:
                set_delay(fake_url, 0)
                for concurrency in floor_concurrency(args.concurrency):
                    cell = measure_quietly(
                        args,
                        lambda c=concurrency: measure(args, ours, fake, c, 0, ours.health),
                        f"floor c={concurrency}",
                    )
                    print(f"bench: {describe(0, concurrency, 'floor', cell)}", flush=True)
                    floor.append({"concurrency": concurrency, "floor": cell})
        finally:
            gateway.stop()
    print()
    text = report(args, rows, streams, floor, info, hostile)
    print(text.partition("\n## Conditions")[0])
    if not args.no_write:
        write_results(text, COMPARISON_HEADING, keep="after")
    return 0


# --- Side by side: another revision (BASELINE=<rev>), a peer (PEER=litellm) -----------------------


def run_comparison(args: argparse.Namespace) -> int:
    """Serve the working tree beside ``args.baseline`` and/or a peer gateway against one fake
    upstream and measure them in turn, cell by cell, the order rotating, so drift in the
    machine's speed hits them alike."""
    info = machine()
    # With a peer every gateway gets the OpenAI-shaped request, answered by OpenRouter's route.
    api, provider = ("chat", CHAT_PROVIDER) if args.peer else ("generate", args.provider)
    with contextlib.ExitStack() as stack:
        checkout = stack.enter_context(baseline_checkout(args.baseline)) if args.baseline else None
        workdir, fake, url, base = stack.enter_context(bench_run())
        servers: list = [current_gateway(workdir, base)]
        if checkout is not None:
            env = server_env(free_port(), base, f"sqlite:///{workdir / 'baseline.sqlite3'}")
            servers.append(
                Gateway(
                    "baseline",
                    checkout.root,
                    checkout.python,
                    env,
                    workdir / "baseline.log",
                    checkout.make_args,
                )
            )
            subject = shorten(checkout.subject, 80)
            info["baseline"] = f"{checkout.rev} ({checkout.short}, “{subject}”)"
        proxy = None
        if args.peer:
            proxy = LiteLLMProxy(free_port(), workdir, version=args.peer_version)
            servers.append(proxy)
        try:
            keys = sorted({args.provider, provider})
            targets = start_targets(servers, api, provider, keys, base)
            if args.peer:
                targets["direct"] = direct_target(provider, base)
            info.update(
                command=args.command,
                provider=provider,
                current=describe_working_tree(),
                requests=requests_description(targets, api),
                nofile=str(args.nofile),
                **{f"{s.name}_serve": s.serve_command for s in servers if s is not proxy},
            )
            if proxy is not None:
                info.update(peer_description(proxy))
            request = {"generate": "generate/", "chat": "v1/chat/completions"}[api]
            rows, streams = measure_side_by_side(args, targets, fake, url, request)
        finally:
            for server in servers:
                if server.process is not None:
                    stop(server.process)
    names = list(targets)
    print()
    if args.baseline:
        print("\n".join(comparison_table(rows)))
        print("\n".join(comparison_verdict(rows)))
    print("\n".join(side_by_side_table(rows, names)))
    print("\n".join(stream_table(streams)))
    measured = cells_by_load([r for r in rows if r["target"] != "health/"])
    baseline = "baseline" if args.baseline else None
    peer = proxy.name if proxy is not None else None
    print("\n".join(target_lines(measured, streams, ours="current", peer=peer, baseline=baseline)))
    if not args.no_write:
        text = comparison_report(args, rows, streams, names, info)
        write_results(text, COMPARISON_HEADING, keep="before")
    return 0


def start_targets(
    servers: list, api: str, provider: str, keys: list[str], base: dict[str, str]
) -> dict[str, Target]:
    """Start each server (this project's with a key for each of ``keys``, a peer configured
    for the fake's OpenRouter route), check one call through it (``api``, answered by
    ``provider``), and return what the cells measure."""
    targets: dict[str, Target] = {}
    for server in servers:
        if isinstance(server, LiteLLMProxy):
            server.start(MODELS[CHAT_PROVIDER], base["OPENROUTER_BASE_URL"], KEYS[CHAT_PROVIDER])
            # Its workers import for a while (tens of seconds on a busy 2-core machine).
            wait_for(server.url + server.health_path, server.process, server.log_path, 600)
            targets[server.name] = peer_target(server)
        else:
            server.start(keys)
            targets[server.name] = server.target(api, provider)
        first_call(targets[server.name])
    return targets


def peer_description(proxy: LiteLLMProxy) -> dict[str, str]:
    return {
        "peer_name": proxy.name,
        "peer_version": proxy.version,
        "peer_serve": proxy.serve_command,
        "peer_setup": (
            f"`litellm[proxy]=={proxy.version}` in its own virtualenv (var/bench-peer/), "
            f"{proxy.workers} workers, one deployment `openai/{MODELS[CHAT_PROVIDER]}` with "
            "`api_base` the fake's OpenRouter route, a master key, no database, spend logs off."
        ),
    }


def measure_side_by_side(
    args, targets: dict[str, Target], fake, fake_url: str, request: str
) -> tuple[list[dict], dict[str, StreamCell]]:
    """Every cell on every target in turn (the first target rotating from cell to cell), the
    health/ floor of those that have one, then the wave of streams."""
    names = list(targets)
    cells = [(request, d, c) for d, c in grid(args.delays, args.concurrency)]
    if not args.no_floor:
        cells += [("health/", 0, c) for c in floor_concurrency(args.concurrency)]
    rows = []
    for index, (kind, delay, concurrency) in enumerate(cells):
        set_delay(fake_url, delay)
        row = {"target": kind, "delay": delay, "concurrency": concurrency}
        for name in rotated(names, index):
            target = targets[name]
            if kind == "health/" and target.health is None:
                continue
            health = target.health if kind == "health/" else None
            row[name] = measure_quietly(
                args,
                lambda t=target, c=concurrency, d=delay, h=health: measure(args, t, fake, c, d, h),
                f"{kind} delay={delay}ms c={concurrency} {name}",
            )
            label = f"{kind} {name}"
            print(f"bench: {describe(delay, concurrency, label, row[name])}", flush=True)
        rows.append(row)
    streams: dict[str, StreamCell] = {}
    if args.streams:
        with paced_streams(fake_url, args.stream_tokens, args.stream_interval_ms):
            for name in rotated(names, len(cells)):
                streams[name] = measure_quietly(
                    args,
                    lambda t=targets[name]: measure_streams(args, t, fake),
                    f"streams {name}",
                )
                print(f"bench: {describe_streams(name, streams[name])}", flush=True)
    return rows, {name: streams[name] for name in names if name in streams}


def rotated(names: list[str], index: int) -> list[str]:
    """``names`` starting at ``index`` (modulo their number): who goes first changes with
    every cell, so no target always runs on a machine its predecessor just warmed."""
    shift = index % len(names) if names else 0
    return names[shift:] + names[:shift]


def requests_description(targets: dict[str, Target], api: str) -> str:
    """Which request each target gets (for the report; URLs only, no credentials)."""
    where = "; ".join(
        f"{name} `POST {urllib.parse.urlsplit(t.request(False).url).path}`"
        + (" (the fake)" if t.process is None else "")
        for name, t in targets.items()
    )
    if api != "chat":
        return f"`POST generate/` with a small prompt (Token auth): {where}."
    body = chat_body(False)
    return (
        "like for like, every gateway gets the same OpenAI-shaped request, "
        f'`{{"model": "{body["model"]}", "messages": [one user message], "temperature": '
        f'{body["temperature"]}, "max_tokens": {body["max_tokens"]}}}` (the streams add '
        '`"stream": true`) with its own credential as a Bearer token (this project: a DRF '
        "token; LiteLLM: its master key), and each sends it on to the fake's OpenRouter route; "
        f"direct is that upstream request sent to the fake itself. {where}."
    )


# --- Main -----------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--delays",
        type=int,
        nargs="+",
        help=f"upstream ms (default: {', '.join(map(str, DEFAULT_CELLS))})",
    )
    parser.add_argument(
        "--concurrency",
        type=int,
        nargs="+",
        help="for every delay (default per delay: "
        + "; ".join(f"{d} ms: {', '.join(map(str, c))}" for d, c in DEFAULT_CELLS.items())
        + ")",
    )
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds per cell, not counted")
    parser.add_argument("--duration", type=float, default=10.0, help="measured seconds per cell")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per request")
    parser.add_argument(
        "--streams", type=int, default=1000, help="streamed calls at once (0: no stream cell)"
    )
    parser.add_argument("--stream-tokens", type=int, default=100, help="events per stream")
    parser.add_argument(
        "--stream-interval-ms", type=float, default=100.0, help="between a stream's events"
    )
    # By default over one stream's length (tokens x interval), as the cells' users start over
    # one call's length: a thousand users with 10 s streams start a hundred a second. At least
    # 2 s: the fake builds a whole stream's events when it starts it (about 1 ms of CPU), and a
    # thousand in one second would delay the direct streams' first tokens by 100 ms or more.
    parser.add_argument(
        "--stream-ramp",
        type=float,
        default=None,
        help="seconds over which the streams start (default: one stream's length, at least 2)",
    )
    parser.add_argument(
        "--hostile",
        type=float,
        default=25.0,
        help="seconds of slow and idle connections against the server (0: none)",
    )
    parser.add_argument("--slowloris", type=int, default=400, help="clients trickling headers")
    parser.add_argument("--slow-bodies", type=int, default=400, help="clients trickling a body")
    parser.add_argument("--idle", type=int, default=1500, help="idle keep-alive connections")
    parser.add_argument("--provider", default="gemini", choices=sorted(KEYS))
    parser.add_argument("--gateway-only", action="store_true", help="skip the direct rows")
    parser.add_argument("--database-url", help="default: a fresh SQLite file")
    parser.add_argument("--no-floor", action="store_true", help="skip GET health/ rows")
    parser.add_argument("--no-write", action="store_true", help=f"do not write {RESULTS.name}")
    parser.add_argument("--command", default="make bench", help="how this run was started")
    parser.add_argument(
        "--baseline",
        metavar="REV",
        help="also serve this git revision (its own checkout, venv and database) and compare",
    )
    parser.add_argument(
        "--peer",
        choices=PEERS,
        help="also serve this other gateway (installed once under var/bench-peer/) and compare",
    )
    parser.add_argument("--peer-version", default=LITELLM_VERSION, help="the peer's release")
    # The machine may be shared (a test suite, another build): a cell during which other
    # processes used more than --others-limit cores is measured again, up to --attempts times
    # in all (the quietest attempt is kept), after waiting up to --quiet-wait seconds for the
    # machine to calm down.
    parser.add_argument(
        "--others-limit", type=float, default=0.15, help="cores others may use during a cell"
    )
    parser.add_argument("--attempts", type=int, default=3, help="measurements of a busy cell")
    parser.add_argument(
        "--quiet-wait", type=float, default=30.0, help="seconds to wait for a quiet machine"
    )
    args = parser.parse_args(argv)
    if (args.baseline or args.peer) and args.database_url:
        parser.error("a comparison gives each server its own SQLite file: no --database-url")
    if args.peer and args.gateway_only:
        parser.error("--peer measures the direct calls too: no --gateway-only")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.nofile = raise_fd_limit()
    started = time.monotonic()
    try:
        code = run(args)
    except KeyboardInterrupt:
        return 130
    print(f"bench: done in {time.monotonic() - started:.0f} s ({shlex.join(sys.argv)})")
    return code


if __name__ == "__main__":
    sys.exit(main())
