"""``make bench``'s own parts (bench/): the cells it runs, how it finds make serve's command,
its load client against the real fake upstream, its memory sampler, and the targets it reports.

The figures themselves are never asserted here: they are measured by ``make bench``."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap

import pytest

from bench.client import (
    GEMINI_EVENTS,
    GENERATE_EVENTS,
    OPENAI_CHUNKS,
    Cell,
    StreamCell,
    failure,
    load,
    load_streams,
    percentile,
)
from bench.peer import litellm_config
from bench.report import comparison_report, report, target_lines
from bench.run import DEFAULT_CELLS, cell_window, grid, parse_args, rotated
from bench.servers import PeakMemory, exec_line, upstream_request
from fake_upstream import FakeUpstream


def test_the_default_grid_has_the_cells_the_targets_name():
    cells = grid(None, None)
    assert (5000, 1000) in cells and (1000, 256) in cells
    assert {(0, 1), (0, 32), (0, 256)} <= set(cells)
    assert cells == [(d, c) for d, cs in DEFAULT_CELLS.items() for c in cs]


def test_delays_alone_keep_their_concurrencies_and_concurrency_applies_to_every_delay():
    assert grid([5000, 200], None) == [(5000, 1000), (200, 1), (200, 32), (200, 256)]
    assert grid(None, [8]) == [(0, 8), (1000, 8), (5000, 8)]
    assert grid([5000], [1000, 2]) == [(5000, 1000), (5000, 2)]


def test_a_long_delay_gets_a_window_that_sees_its_calls_finish():
    args = parse_args(["--warmup", "2", "--duration", "3"])
    assert cell_window(args, 0) == (2, 3)
    # The users start over one call's length (5 s), then one call's length more of warm-up.
    assert cell_window(args, 5000) == (10, 10)
    assert cell_window(args, 1000) == (2, 3)


def test_the_order_of_targets_rotates_from_cell_to_cell():
    names = ["current", "litellm", "direct"]
    assert [rotated(names, i)[0] for i in range(4)] == ["current", "litellm", "direct", "current"]


MAKE_N_GUNICORN = textwrap.dedent(
    """\
    echo "==> Migrating the database"
    .venv/bin/python manage.py migrate --noinput
    echo "==> gunicorn on http://127.0.0.1:8000/"
    exec .venv/bin/gunicorn alwrity.wsgi:application \\
    \t--bind "127.0.0.1:8000" \\
    \t--workers "3"
    """
)


@pytest.mark.parametrize(
    ("output", "command"),
    [
        (
            MAKE_N_GUNICORN,
            '.venv/bin/gunicorn alwrity.wsgi:application --bind "127.0.0.1:8000" --workers "3"',
        ),
        (
            "@exec .venv/bin/granian --interface asgi alwrity.asgi:application\n",
            ".venv/bin/granian --interface asgi alwrity.asgi:application",
        ),
        (
            "echo hi\n  exec  uvicorn alwrity.asgi:application --port 9\n",
            "uvicorn alwrity.asgi:application --port 9",
        ),
        ("echo no server here\nexecutable --not-exec\n", None),
    ],
)
def test_the_serve_command_is_the_exec_line_whatever_the_server(output, command):
    assert exec_line(output) == command


def test_percentiles_are_nearest_rank_in_milliseconds():
    values = [i / 1000 for i in range(1, 101)]  # 1..100 ms
    assert percentile(values, 50) == pytest.approx(50)
    assert percentile(values, 99) == pytest.approx(99)
    assert percentile([0.004], 99) == pytest.approx(4)
    assert percentile([], 50) is None


def test_a_refusal_is_counted_with_its_error_code():
    assert failure(429, b'{"error": {"code": "rate_limited", "message": "x"}}') == (
        "HTTP 429 rate_limited"
    )
    assert failure(500, b'{"error": {"type": "server_error", "code": null}}') == (
        "HTTP 500 server_error"
    )
    assert failure(502, b"<html>bad gateway</html>") == "HTTP 502"
    assert failure(429, b'{"error": {"code": 429, "status": "RESOURCE_EXHAUSTED"}}') == "HTTP 429"


@pytest.fixture(scope="module")
def paced_fake():
    """The real fake upstream, streaming 6 one-word events 20 ms apart."""
    pacing = {"completion_words": 6, "stream_chunk_words": 1, "stream_chunk_delay_ms": 20}
    with FakeUpstream(record_requests=False, **pacing) as fake:
        yield fake


def run_streams(request, *, streams: int, ramp: float = 0):
    """``load_streams`` of ``request`` (an ``upstream_request``), 10 s a stream at most."""
    return asyncio.run(
        load_streams(
            request.url,
            request.body,
            request.headers,
            request.shape,
            streams=streams,
            ramp=ramp,
            timeout=10,
        )
    )


@pytest.mark.parametrize("provider", ["gemini", "openrouter"])
def test_streams_through_the_real_fake_complete_with_their_first_token_timed(paced_fake, provider):
    request = upstream_request(provider, paced_fake.base_urls, stream=True)
    assert request.shape is (GEMINI_EVENTS if provider == "gemini" else OPENAI_CHUNKS)
    cell = run_streams(request, streams=5, ramp=0.05)
    assert (cell.completed, cell.errors, cell.completion) == (5, 0, 1.0)
    assert len(cell.ttft) == 5 and len(cell.durations) == 5
    # Seven or more events 20 ms apart: the first token comes long before the end.
    assert max(cell.ttft) < 0.1 < min(cell.durations)
    assert cell.seconds >= min(cell.durations)


def test_a_stream_without_its_last_event_is_not_complete(paced_fake):
    request = upstream_request("openrouter", paced_fake.base_urls, stream=True)
    paced_fake.script("openrouter", ["no_done"])
    try:
        cell = run_streams(request, streams=1)
    finally:
        paced_fake.clear_scripts()
    assert (cell.completed, dict(cell.error_kinds)) == (0, {"incomplete": 1})
    assert len(cell.ttft) == 1  # the tokens came; the end did not


def test_a_refused_stream_is_counted_with_its_status(paced_fake):
    request = upstream_request("openrouter", paced_fake.base_urls, stream=True)
    paced_fake.script("openrouter", [{"status": 503}])
    try:
        cell = run_streams(request, streams=1)
    finally:
        paced_fake.clear_scripts()
    assert cell.completed == 0 and not cell.ttft
    assert list(cell.error_kinds) and next(iter(cell.error_kinds)).startswith("HTTP 503")


def test_the_gateway_stream_shape_finds_deltas_and_done():
    body = b'data: {"delta":"Echo:"}\n\nevent: done\ndata: {"id":1}\n\n'
    assert GENERATE_EVENTS.token.search(body) and GENERATE_EVENTS.done in body
    role_only = b'data: {"choices":[{"delta":{"role":"assistant","content":""}}]}\n\n'
    assert not OPENAI_CHUNKS.token.search(role_only)


def test_load_keeps_requests_in_flight_and_counts_them(paced_fake):
    request = upstream_request("gemini", paced_fake.base_urls)
    windows = []
    cell = asyncio.run(
        load(
            request.url,
            request.body,
            request.headers,
            concurrency=4,
            warmup=0.2,
            duration=0.5,
            timeout=5,
            on_window=windows.append,
        )
    )
    assert windows == [True, False]
    assert cell.requests > 4 and cell.errors == 0 and cell.rps == cell.requests / 0.5


def test_peak_memory_follows_the_whole_process_tree():
    code = "import time; x = bytearray(64 * 2**20); x[::4096] = b'1' * len(x[::4096]); "
    code += "time.sleep(1.5)"
    parent = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import subprocess, sys; subprocess.run([sys.executable, '-c', {code!r}])",
        ],
    )
    try:
        with PeakMemory(parent, every=0.1) as memory:
            parent.wait(10)
    finally:
        parent.kill()
    assert memory.peak is not None and memory.peak > 64 * 2**20  # the child's 64 MiB
    assert PeakMemory(None).__enter__().peak is None


def cell(rps: float, p50: float, p99: float, errors: int = 0, rss: int | None = None) -> Cell:
    """A measured cell with ``rps`` over 10 s, latencies at the given ms percentiles."""
    n = int(rps * 10)
    latencies = sorted([p50 / 1000] * (n - n // 50) + [p99 / 1000] * (n // 50))
    return Cell(n, errors, 10.0, latencies, peak_rss=rss)


def streams(completed: int, total: int, ttft_ms: float) -> StreamCell:
    return StreamCell(total, completed, 12.0, [ttft_ms / 1000] * completed, [10.0] * completed)


def test_the_targets_are_reported_met_or_missed_with_their_numbers():
    cells = {
        (5000, 1000): {
            "current": cell(195, 5020, 5300, rss=400 * 2**20),
            "direct": cell(200, 5001, 5003),
        },
        (1000, 256): {"current": cell(230, 1050, 1400), "direct": cell(255, 1001, 1002)},
        (0, 32): {
            "current": cell(700, 40, 120),
            "litellm": cell(240, 130, 160),
            "direct": cell(9000, 3, 5),
        },
        (0, 1): {
            "current": cell(400, 2.0, 4),
            "litellm": cell(90, 10.2, 16),
            "baseline": cell(380, 2.4, 5),
            "direct": cell(3000, 0.3, 0.6),
        },
    }
    waves = {"current": streams(1000, 1000, 30), "direct": streams(1000, 1000, 2)}
    lines = target_lines(cells, waves, ours="current", peer="litellm", baseline="baseline")
    text = "\n".join(lines)
    assert len(lines) == 6
    assert (
        "97.5% of direct (200.0), 0 errors, overhead p99 297.0 ms, server peak RSS 400 MiB: **MET**"
        in lines[0]
    )
    assert "90.2% of direct" in lines[1] and lines[1].endswith("**MISSED**.")
    assert "700.0 vs 240.0 req/s = 2.92 times: **MET**" in lines[2]
    assert "1.7 vs 9.9 ms: **MET**" in lines[3]
    assert "overhead p50 1.7 vs 2.1 ms: **MET**" in lines[4]
    assert "1,000/1,000 complete" in lines[5] and "overhead 28.0 ms" in lines[5]
    assert "**MET**" in lines[5] and "not measured" not in text


def test_targets_missing_from_a_run_say_how_to_measure_them():
    lines = target_lines({}, {}, ours="gateway")
    assert all("not measured" in line for line in lines)
    assert sum("PEER=litellm" in line for line in lines) == 2
    assert sum("BASELINE=<rev>" in line for line in lines) == 1
    incomplete = {"gateway": streams(912, 1000, 20), "direct": streams(1000, 1000, 2)}
    assert target_lines({}, incomplete, ours="gateway")[-1].endswith("**MISSED**.")


def test_the_plain_report_renders_every_section():
    args = parse_args(["--no-write"])
    rows = [
        {
            "delay": 0,
            "concurrency": 32,
            "gateway": cell(600, 40, 120, rss=300 * 2**20),
            "direct": cell(9000, 3, 5),
        }
    ]
    info = {
        "command": "make bench",
        "provider": "gemini",
        "upstream_path": "/gemini/x",
        "stream_path": "/gemini/y",
        "database": "SQLite",
        "serve_command": "gunicorn …",
        "cpu": "cpu",
        "memory": "1 GiB",
        "os": "Linux",
        "python": "CPython",
        "nofile": "20000",
    }
    text = report(args, rows, {"gateway": streams(10, 10, 5)}, [], info)
    assert "### Streams" in text and "### Targets (SPEC §13)" in text
    assert "| 0 | 32 | 600.0 |" in text and "| 300 |" in text


def test_litellm_is_configured_for_one_deployment_at_the_fakes_route():
    config = litellm_config("openai/gpt-4o-mini", "http://127.0.0.1:9/openrouter/api/v1", "k", "m")
    (deployment,) = config["model_list"]
    assert deployment["model_name"] == "openai/gpt-4o-mini"
    assert deployment["litellm_params"]["model"] == "openai/openai/gpt-4o-mini"
    assert deployment["litellm_params"]["api_base"].endswith("/openrouter/api/v1")
    assert config["general_settings"]["master_key"] == "m"


def test_the_comparison_report_puts_the_peer_beside_this_project():
    args = parse_args(["--peer", "litellm", "--no-write"])
    rows = [
        {
            "target": "v1/chat/completions",
            "delay": 0,
            "concurrency": 32,
            "current": cell(700, 40, 120, rss=300 * 2**20),
            "litellm": cell(240, 130, 160, rss=1000 * 2**20),
            "direct": cell(9000, 3, 5),
        },
        {"target": "health/", "delay": 0, "concurrency": 32, "current": cell(1500, 18, 90)},
    ]
    info = {
        "command": "make bench PEER=litellm",
        "current": "abc",
        "current_serve": "gunicorn …",
        "requests": "current `POST /api/llm/v1/chat/completions`.",
        "cpu": "cpu",
        "memory": "1 GiB",
        "os": "Linux",
        "python": "CPython",
        "peer_name": "litellm",
        "peer_version": "1.108.7",
        "peer_serve": "litellm --num_workers 2",
        "peer_setup": "its own virtualenv.",
    }
    waves = {"current": streams(10, 10, 5), "litellm": streams(9, 10, 900)}
    text = comparison_report(args, rows, waves, ["current", "litellm", "direct"], info)
    assert text.startswith("## Comparison\n")
    assert "beside LiteLLM 1.108.7" in text
    assert "| v1/chat/completions | 0 | 32 | litellm | 240.0 | 2.7 |" in text
    assert "| health/ | 0 | 32 | current | 1500.0 | - |" in text
    assert "No delay, 32 concurrent: ≥ 2.5 times LiteLLM's req/s: 700.0 vs 240.0" in text
    assert "- LiteLLM: `litellm --num_workers 2`" in text


def test_streams_start_over_one_streams_length_unless_told():
    from bench.client import stream_ramp

    assert stream_ramp(parse_args([])) == 10  # 100 events 100 ms apart
    assert stream_ramp(parse_args(["--stream-tokens", "10"])) == 2  # at least 2 s
    assert stream_ramp(parse_args(["--stream-ramp", "0.5"])) == 0.5


def test_the_hostile_line_says_met_only_with_a_fast_probe_and_a_completed_generation():
    from bench.hostile import HostileResult, hostile_line

    sizes = {"slowloris": 400, "slow_bodies": 400, "idle": 1500}
    fast = HostileResult(400, 400, 1500, probes=[0.002] * 99 + [0.15], generation_status=200)
    fast.generation_seconds = 0.02
    assert fast.probe_pct(99) == pytest.approx(2.0)
    assert "**MET**" in hostile_line(fast, **sizes)
    assert "the generation answered 200 in 20 ms" in hostile_line(fast, **sizes)

    stalled = HostileResult(400, 400, 1500, probes=[0.002], probe_failures=5)
    assert stalled.probe_pct(99) == float("inf")  # a failed probe counts as the slowest
    line = hostile_line(stalled, **sizes)
    assert "**MISSED**" in line and "5 failed" in line and "no answer" in line

    slow = HostileResult(400, 400, 1500, probes=[0.5] * 10, generation_status=200)
    assert "**MISSED**" in hostile_line(slow, **sizes)
    assert "not measured" in hostile_line(None, **sizes)
