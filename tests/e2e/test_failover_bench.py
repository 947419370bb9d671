"""End to end: the 16 scenarios of the public "Failover Bench" (SPEC §5, §5.1, §7).

Each scenario runs on two paths: ``generate/`` streamed (``data: {"delta"}`` events, then
``event: done`` or ``event: error``) and ``v1/chat/completions`` streamed through the official
``openai`` SDK. The answer is the fake's 60 words, streamed in chunks of five; the primary is
OpenRouter and the fallback Gemini, named by the request (``fallback_models`` / ``models``).
"Pass" means the caller gets exactly the fake's whole answer (never a truncated success) and the
gateway behaved: the attempt counts and timings the fake recorded, the elapsed time, the ledger.

The servers are this module's own (``make serve``), so circuits are on (LLM_CIRCUIT_FAILURES=3)
and live in a cache directory of their own, emptied before and after every test. They share the
session's database and are in ``RUNNING``, so ``e2e_invariants`` checks them after every test
as it checks ``main``: alive, nothing bad logged, a plain generation works, every upstream
request in the ledger, usage equal to the ledger.

Two stands:

- ``scaled`` (always): the benchmark's settings and every duration times ``SCALE`` (0.1) — the
  timeouts, the faults' delays, stalls and outage, the request interval, the cooldown, the
  retry delays and the bounds asserted (plus ``SLACK`` seconds for what does not scale).
  Retry-After uses the fake's fractional ``retry_after``. Every requirement is asserted.
- ``defaults`` (only with ``LLM_TEST_FAILOVER_DEFAULTS=1``): the published settings unscaled;
  only that no scenario *fails*: no wait past 100 s, no truncated success.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from decimal import Decimal

import pytest

from tests.conftest import FAKE_KEYS
from tests.e2e.conftest import server_env, start_server, stop_server
from tests.e2e.failover_support import (
    FALLBACK,
    FALLBACK_MODEL,
    PATHS,
    PRIMARY,
    PRIMARY_MODEL,
    Bench,
    Outcome,
    expected_answer,
    generation_requests,
    has_prefill,
    reset_cache,
    run_stream,
    within,
)
from tests.e2e.harness import Client, Server, ledger_mark, rows_since

pytestmark = pytest.mark.e2e

SCALE = 0.1
SLACK = 0.6  # seconds: HTTP, Django and a ledger write per attempt do not scale
STANDS = {
    "scaled": Bench(scale=SCALE, slack=SLACK),
    "defaults": Bench(scale=1.0, slack=2.0),
}
DEFAULTS_FLAG = "LLM_TEST_FAILOVER_DEFAULTS"
HANG_LIMIT = 100  # seconds of the benchmark: past this a request "hangs"
# How the SDK path names the model that answered (``public_model``).
PUBLIC_MODEL = {PRIMARY: PRIMARY_MODEL, FALLBACK: f"{FALLBACK}/{FALLBACK_MODEL}"}


# --- The stands --------------------------------------------------------------------------------


@pytest.fixture(scope="module", params=list(STANDS))
def bench_server(request, make_command, upstream, database, e2e_dir):
    """``make serve`` with the benchmark's settings at the stand's scale: OpenRouter primary
    (GPT_PROVIDER), Gemini the fallback, circuits on, its own cache directory."""
    name = request.param
    if name == "defaults" and os.environ.get(DEFAULTS_FLAG) != "1":
        pytest.skip(f"the unscaled benchmark runs with {DEFAULTS_FLAG}=1 (minutes)")
    bench = STANDS[name]
    cache_dir = e2e_dir / f"failover-{name}-cache"
    cache_dir.mkdir(exist_ok=True)
    env = server_env(
        upstream,
        database,
        e2e_dir,
        GPT_PROVIDER=PRIMARY,
        OPENROUTER_API_KEY=FAKE_KEYS["openrouter"],
        GEMINI_API_KEY=FAKE_KEYS["gemini"],
        CACHE_DIR=str(cache_dir),
        **bench.settings(),
    )
    server = start_server(make_command, f"failover-{name}", env, e2e_dir)
    yield name, bench, server, cache_dir
    stop_server(server)


@dataclass
class Stand:
    """One scenario's view of a stand: its server and user, the fake, and the checks."""

    name: str
    bench: Bench
    server: Server
    token: str
    fake: object
    forever: bool = False  # a fault scripted "forever": what is left is dropped afterwards
    outcomes: list[Outcome] = field(default_factory=list)

    @property
    def strict(self) -> bool:
        return self.name == "scaled"

    @property
    def api(self) -> Client:
        return self.server.client(self.token)

    def script(self, provider: str, faults: list, *, forever: bool = False) -> None:
        self.forever = self.forever or forever
        self.fake.script(provider, faults)

    def outage(self, provider: str, fault: dict | str) -> None:
        """``fault`` on every request to ``provider`` for the rest of the test."""
        item = {"fault": fault} if isinstance(fault, str) else dict(fault)
        self.script(provider, [{**item, "for_seconds": 3600}], forever=True)

    def run(self, path: str, prompt: str) -> Outcome:
        """One streamed generation; on the defaults stand, also the only check it gets."""
        outcome = run_stream(
            path, self.server, self.token, prompt, timeout=self.bench.bound(HANG_LIMIT)
        )
        self.outcomes.append(outcome)
        assert_not_failed(self.bench, outcome, prompt)
        return outcome

    def requests(self, provider: str) -> list[dict]:
        return generation_requests(self.fake, provider)


@pytest.fixture
def stand(bench_server, e2e_invariants, fake, accounts):
    """Per test: the fake set to a 60-word streamed answer, the stand's circuits closed;
    afterwards its "forever" faults dropped and circuits closed again, before the session's
    invariants (which this fixture runs inside of) check everything."""
    name, bench, server, cache_dir = bench_server
    fake.configure(**bench.fake_config())
    reset_cache(cache_dir)
    stand = Stand(name, bench, server, accounts["user"], fake)
    yield stand
    if stand.forever:
        fake.clear_scripts()  # the records stay: the session's checks need them
    reset_cache(cache_dir)


# --- Checks ----------------------------------------------------------------------------------


def assert_not_failed(bench: Bench, outcome: Outcome, prompt: str) -> None:
    """What no scenario may do on any stand: wait past 100 s (scaled), end without either an
    answer or a clean error, or end as a success with a truncated answer."""
    assert outcome.elapsed < bench.bound(HANG_LIMIT), f"hung: {outcome.describe()}"
    assert outcome.done is not None or outcome.error is not None, (
        f"neither an answer nor a clean error: {outcome.describe()} {outcome.raw[-3:]!r}"
    )
    if outcome.done is not None and outcome.error is None:
        assert outcome.text == expected_answer(prompt), (
            f"a success with a wrong or truncated answer: {outcome.describe()}"
        )


def assert_complete(outcome: Outcome, prompt: str, provider: str) -> None:
    """The whole answer, from ``provider``, and no error."""
    assert outcome.error is None, f"an error instead of the answer: {outcome.describe()}"
    assert outcome.done is not None, f"no end of stream: {outcome.describe()}"
    assert outcome.text == expected_answer(prompt), outcome.describe()
    assert answered_by(outcome) == provider, outcome.describe()


def answered_by(outcome: Outcome) -> str:
    if outcome.path == "generate":
        return outcome.done["provider"]
    by_model = {model: provider for provider, model in PUBLIC_MODEL.items()}
    return by_model.get(outcome.done["model"], outcome.done["model"])


def assert_ledger(stand: Stand, mark: int, outcome: Outcome, *, resumed: bool = False) -> list:
    """The request's rows: finished (none in flight), one success — the answering provider's —
    and, for a continued stream, that success marked ``resumed``."""
    rows = rows_since(stand.api, mark)
    assert rows, "no ledger rows"
    assert all(r["status"] in ("success", "error") for r in rows), rows
    successes = [r for r in rows if r["status"] == "success"]
    assert [r["provider"] for r in successes] == [answered_by(outcome)], rows
    if outcome.path == "generate":
        assert {r["request_id"] for r in rows} == {outcome.done["id"]}, rows
    if resumed:
        if outcome.path == "generate":
            assert outcome.done.get("resumed") is True, outcome.done
        assert successes[0].get("resumed") is True, f"calls/ row without resumed: {rows}"
    return rows


def usage_counts(client: Client) -> dict[str, int]:
    reply = client.get("usage/")
    assert reply.status == 200, reply
    usage = reply.json()
    return {"total": usage["total"]["calls"]} | {
        name: figures["calls"] for name, figures in usage["providers"].items()
    }


def circuit_of(client: Client, provider: str) -> str:
    reply = client.get("providers/")
    assert reply.status == 200, reply
    [entry] = [p for p in reply.json() if p["name"] == provider]
    return entry["circuit"]


def prompt_for(scenario: str, path: str) -> str:
    return f"{scenario} on {path}: tell me about failover please"


# --- The scenarios -------------------------------------------------------------------------------


@pytest.mark.parametrize("path", PATHS)
def test_baseline_healthy_primary(stand, path):
    """No fault: the primary's whole answer in one request (and the expected text is right)."""
    prompt = prompt_for("S00", path)
    mark = ledger_mark(stand.api)
    out = stand.run(path, prompt)
    assert_complete(out, prompt, PRIMARY)
    assert len(stand.requests(PRIMARY)) == 1 and not stand.requests(FALLBACK)
    assert_ledger(stand, mark, out)


@pytest.mark.parametrize("path", PATHS)
def test_s01_429_with_retry_after_then_healthy(stand, path):
    b = stand.bench
    stand.script(PRIMARY, [{"status": 429, "retry_after": b.s(2)}])
    prompt = prompt_for("S01", path)
    out = stand.run(path, prompt)
    if not stand.strict:
        return
    assert_complete(out, prompt, PRIMARY)
    first, second = stand.requests(PRIMARY)
    assert (first["status"], second["status"]) == (429, 200)
    assert second["time"] - first["time"] >= b.s(1.8), "Retry-After not honoured"
    assert len(within(stand.requests(PRIMARY), first["time"], b.s(1.5))) <= 2


@pytest.mark.parametrize("path", PATHS)
def test_s02_429_forever_without_retry_after(stand, path):
    b = stand.bench
    stand.outage(PRIMARY, {"status": 429})
    prompt = prompt_for("S02", path)
    out = stand.run(path, prompt)
    if not stand.strict:
        return
    assert_complete(out, prompt, FALLBACK)
    tried = stand.requests(PRIMARY)
    assert 1 <= len(tried) <= 6, f"{len(tried)} requests to a rate-limited provider"
    assert len(within(tried, tried[0]["time"], b.s(3))) <= 4, "no backoff"
    assert len(stand.requests(FALLBACK)) == 1


@pytest.mark.parametrize("path", PATHS)
def test_s03_500_once_then_healthy(stand, path):
    stand.script(PRIMARY, [{"status": 500}])
    prompt = prompt_for("S03", path)
    out = stand.run(path, prompt)
    if not stand.strict:
        return
    assert_complete(out, prompt, PRIMARY)
    assert [r["status"] for r in stand.requests(PRIMARY)] == [500, 200]
    assert not stand.requests(FALLBACK)


@pytest.mark.parametrize("path", PATHS)
def test_s04_503_forever(stand, path):
    stand.outage(PRIMARY, {"status": 503})
    prompt = prompt_for("S04", path)
    mark = ledger_mark(stand.api)
    out = stand.run(path, prompt)
    if not stand.strict:
        return
    assert_complete(out, prompt, FALLBACK)
    assert 1 <= len(stand.requests(PRIMARY)) <= 6
    assert len(stand.requests(FALLBACK)) == 1
    assert_ledger(stand, mark, out)


@pytest.mark.parametrize("path", PATHS)
def test_s05_connection_reset_before_any_byte(stand, path):
    stand.script(PRIMARY, ["reset"])
    prompt = prompt_for("S05", path)
    mark = ledger_mark(stand.api)
    out = stand.run(path, prompt)
    if not stand.strict:
        return
    assert out.error is None and out.done is not None, out.describe()
    assert_complete(out, prompt, answered_by(out))  # retried (primary) or failed over
    assert stand.requests(PRIMARY)[0]["status"] is None  # the reset
    assert_ledger(stand, mark, out)


@pytest.mark.parametrize("path", PATHS)
def test_s06_accepts_and_never_answers(stand, path):
    """A silent route is not retried: one request, the timeout, then the fallback."""
    b = stand.bench
    stand.script(PRIMARY, ["hang"])  # hang_seconds: 120 s (scaled), then the connection drops
    prompt = prompt_for("S06", path)
    out = stand.run(path, prompt)
    if not stand.strict:
        return
    assert_complete(out, prompt, FALLBACK)
    assert len(stand.requests(PRIMARY)) == 1, "a silent route was retried"
    # After the first timeout (LLM_TIMEOUT 30 s at most): "well inside 100 s".
    assert out.elapsed < b.bound(30 + 5), out.describe()


@pytest.mark.parametrize("path", PATHS)
def test_s07_first_token_after_20s(stand, path):
    """Headers at once, keep-alive comments every 2 s (which are no text), the first token
    only after 20 s: the first-token limit (10 s) moves to the fallback."""
    b = stand.bench
    stand.script(
        PRIMARY,
        [{"fault": "first_token_delay", "delay_ms": b.ms(20), "comment_every_ms": b.ms(2)}],
    )
    prompt = prompt_for("S07", path)
    out = stand.run(path, prompt)
    if not stand.strict:
        return
    assert_complete(out, prompt, FALLBACK)
    assert len(stand.requests(PRIMARY)) == 1
    assert out.elapsed < b.bound(15), out.describe()


@pytest.mark.parametrize("path", PATHS)
def test_s08_stream_dies_after_40_words(stand, path):
    """The connection dies after 40 of 60 words: the fallback continues the delivered text
    (a prefill) and the caller gets the whole answer, marked resumed."""
    stand.script(PRIMARY, [{"fault": "cut", "after_words": 40}])
    prompt = prompt_for("S08", path)
    mark = ledger_mark(stand.api)
    out = stand.run(path, prompt)
    if not stand.strict:
        return
    assert_complete(out, prompt, FALLBACK)
    [continued] = stand.requests(FALLBACK)
    assert has_prefill(continued), "the fallback was not given the delivered text"
    assert len(stand.requests(PRIMARY)) == 1
    assert_ledger(stand, mark, out, resumed=True)


@pytest.mark.parametrize("path", PATHS)
def test_s09_stall_after_20_words(stand, path):
    """After 20 words, 30 s of silence: the idle limit (10 s) notices, the fallback continues
    within 45 s, and the gateway stays healthy (the session's checks after the test)."""
    b = stand.bench
    stand.script(PRIMARY, [{"fault": "stall", "after_words": 20, "stall_ms": b.ms(30)}])
    prompt = prompt_for("S09", path)
    mark = ledger_mark(stand.api)
    out = stand.run(path, prompt)
    if not stand.strict:
        return
    assert_complete(out, prompt, FALLBACK)
    assert out.elapsed < b.bound(45), out.describe()
    [continued] = stand.requests(FALLBACK)
    assert has_prefill(continued)
    assert circuit_of(stand.api, PRIMARY) == "closed"  # one stall does not open it
    assert_ledger(stand, mark, out, resumed=True)


@pytest.mark.parametrize("path", PATHS)
def test_s10_one_invalid_json_event(stand, path):
    stand.script(PRIMARY, [{"fault": "bad_event", "after_words": 20}])
    prompt = prompt_for("S10", path)
    mark = ledger_mark(stand.api)
    out = stand.run(path, prompt)
    if not stand.strict:
        return
    assert_complete(out, prompt, PRIMARY)
    assert len(stand.requests(PRIMARY)) == 1 and not stand.requests(FALLBACK)
    assert_ledger(stand, mark, out)
    assert circuit_of(stand.api, PRIMARY) == "closed"
    if path == "generate":
        assert not out.done.get("resumed") and out.done["attempts"] == 1


@pytest.mark.parametrize("path", PATHS)
def test_s11_complete_stream_without_done(stand, path):
    """A whole stream without ``data: [DONE]``: it ends at once (not after the idle limit),
    and its usage is reported."""
    b = stand.bench
    stand.script(PRIMARY, ["no_done"])
    prompt = prompt_for("S11", path)
    out = stand.run(path, prompt)
    if not stand.strict:
        return
    assert_complete(out, prompt, PRIMARY)
    assert out.elapsed < b.s(10), f"waited for the idle limit: {out.describe()}"
    usage = out.done.get("usage")
    assert usage and usage["completion_tokens"] == 60 and usage["total_tokens"] > 60, out.done


@pytest.mark.parametrize("path", PATHS)
def test_s12_context_length_every_time(stand, path):
    stand.outage(PRIMARY, "context_length")
    prompt = prompt_for("S12", path)
    out = stand.run(path, prompt)
    if not stand.strict:
        return
    assert_complete(out, prompt, FALLBACK)
    assert len(stand.requests(PRIMARY)) == 1, "a context-length error was retried"
    assert len(stand.requests(FALLBACK)) == 1


@pytest.mark.parametrize("path", PATHS)
def test_s13_content_policy_every_time(stand, path):
    """A refusal stops the chain at once, with the provider's reason."""
    stand.outage(PRIMARY, "content_policy")
    prompt = prompt_for("S13", path)
    out = stand.run(path, prompt)
    if not stand.strict:
        return
    assert out.done is None and out.error is not None, out.describe()
    assert out.error["status"] == 400, out.error
    assert out.error["code"] == "content_policy_violation", out.error
    assert "safety system" in out.error["message"], "the provider's reason is lost"
    if path == "sdk":
        assert out.error["type"] == "BadRequestError", out.error
    assert len(stand.requests(PRIMARY)) == 1 and not stand.requests(FALLBACK)


@pytest.mark.parametrize("path", PATHS)
def test_s14_stream_dies_and_the_fallback_refuses_prefill(stand, path):
    """The fallback refuses a trailing assistant message: asked again without one, and only
    what extends the delivered text reaches the caller."""
    stand.script(PRIMARY, [{"fault": "cut", "after_words": 40}])
    stand.script(FALLBACK, ["refuse_prefill"])
    prompt = prompt_for("S14", path)
    mark = ledger_mark(stand.api)
    out = stand.run(path, prompt)
    if not stand.strict:
        return
    assert_complete(out, prompt, FALLBACK)
    refused, restarted = stand.requests(FALLBACK)
    assert has_prefill(refused) and refused["status"] == 400
    assert not has_prefill(restarted) and restarted["status"] == 200
    assert_ledger(stand, mark, out, resumed=True)


@pytest.mark.parametrize("path", PATHS)
def test_s15_outage_of_60s_with_a_request_every_4s(stand, path):
    """The primary answers 503 for 60 s from its first request, then recovers; a request
    every 4 s. All are answered (from the fallback during the outage); once its circuit is
    open the primary is not tried on every request; within 30 s of the recovery the answers
    come from the primary again."""
    b = stand.bench
    outage, interval = b.s(60), b.s(4)
    stand.script(PRIMARY, [{"status": 503, "for_seconds": outage}])
    outcomes: list[tuple[str, Outcome]] = []
    start = time.time()
    recovered_at = None
    for i in range(1000):  # bounded: until back on the primary, or past the bound
        due = start + i * interval
        time.sleep(max(0.0, due - time.time()))
        prompt = prompt_for(f"S15 #{i}", path)
        out = stand.run(path, prompt)
        outcomes.append((prompt, out))
        if out.done is not None and answered_by(out) == PRIMARY and i > 0:
            recovered_at = out.started
            break
        if time.time() > start + outage + b.bound(30) + interval:
            break
    if not stand.strict:
        return
    for prompt, out in outcomes:
        assert out.error is None and out.done is not None, out.describe()
        assert out.text == expected_answer(prompt), out.describe()
    window_end = stand.requests(PRIMARY)[0]["time"] + outage
    during = [out for _, out in outcomes if out.ended < window_end]
    assert during and all(answered_by(out) == FALLBACK for out in during)
    # The primary is tried by the calls that open its circuit and then by one probe per
    # cooldown, not by every request.
    touched = [
        out
        for out in during
        if any(out.started <= r["time"] <= out.ended for r in stand.requests(PRIMARY))
    ]
    probes = int(outage // b.s(30)) + 1
    assert len(touched) <= 3 + probes < len(during), (
        f"{len(touched)} of {len(during)} requests during the outage tried the primary"
    )
    assert recovered_at is not None, "never back on the primary"
    assert recovered_at - window_end <= b.bound(30), (
        f"back on the primary {recovered_at - window_end:.1f}s after its recovery"
    )


@pytest.mark.parametrize("path", PATHS)
def test_s16_billing_after_failover(stand, path):
    """The caller sees the fallback's model and usage; the failed attempts are error rows that
    count no successful call."""
    stand.outage(PRIMARY, {"status": 503})
    prompt = prompt_for("S16", path)
    before = usage_counts(stand.api)
    mark = ledger_mark(stand.api)
    out = stand.run(path, prompt)
    if not stand.strict:
        return
    assert_complete(out, prompt, FALLBACK)
    rows = assert_ledger(stand, mark, out)
    failed = [r for r in rows if r["provider"] == PRIMARY]
    [answered] = [r for r in rows if r["provider"] == FALLBACK]
    assert failed and all(r["status"] == "error" for r in failed), rows
    after = usage_counts(stand.api)
    assert after["total"] - before["total"] == 1
    assert (after[FALLBACK] - before[FALLBACK], after[PRIMARY] - before[PRIMARY]) == (1, 0)
    usage = out.done["usage"]
    assert usage == {
        "prompt_tokens": answered["prompt_tokens"],
        "completion_tokens": answered["completion_tokens"],
        "total_tokens": answered["total_tokens"],
    }, (usage, answered)
    assert usage["completion_tokens"] == 60
    if path == "generate":
        assert (out.done["provider"], out.done["model"]) == (FALLBACK, FALLBACK_MODEL)
        assert out.done["fallback_from"] == [PRIMARY]
        assert Decimal(out.done["cost"]) == Decimal(answered["cost"])
    else:
        assert out.done["model"] == PUBLIC_MODEL[FALLBACK]
