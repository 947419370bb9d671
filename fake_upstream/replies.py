"""What the fake upstream answers: deterministic text, JSON for a schema, token counts, prices.

Everything here is pure and cheap (no I/O, no randomness in the text), so the same request gets
the same words back and a test can predict token counts and OpenRouter's reported cost.
"""

from __future__ import annotations

import json
import random
import re
import string
import time
from decimal import Decimal
from typing import Any

# Filler that pads a reply to the configured number of words; plain ASCII so that a word count
# is a token count for every reader (the fake's "tokenizer" is str.split()).
FILLER_TEXT = (
    "lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor "
    "incididunt ut labore et dolore magna aliqua"
)
FILLER = tuple(FILLER_TEXT.split())
# How many words of the prompt the reply echoes back after "Echo:".
ECHO_WORDS = 8
# The text a request with the ``invalid_json`` fault gets instead of JSON: prose, so it fails
# JSON parsing whatever the schema allows.
NOT_JSON = "Sure! Here is what you asked for, described in words rather than as JSON."

# OpenRouter prices, USD per token (shared/PROVIDERS.md §4). A model not listed costs 0, as do
# ``:free`` variants. Extension point: add rows here to price more models.
PRICES: dict[str, tuple[Decimal, Decimal, int]] = {
    # id: (prompt, completion, context_length)
    "openai/gpt-4-turbo": (Decimal("0.00001"), Decimal("0.00003"), 128000),
    "openai/gpt-4o": (Decimal("0.0000025"), Decimal("0.00001"), 128000),
    "openai/gpt-4o-mini": (Decimal("0.00000015"), Decimal("0.0000006"), 128000),
    "openai/gpt-3.5-turbo": (Decimal("0.0000005"), Decimal("0.0000015"), 16385),
    "anthropic/claude-3-opus": (Decimal("0.000015"), Decimal("0.000075"), 200000),
    "anthropic/claude-3.5-sonnet": (Decimal("0.000003"), Decimal("0.000015"), 200000),
    "mistralai/mixtral-8x7b-instruct": (Decimal("0.00000024"), Decimal("0.00000024"), 32768),
    "meta-llama/llama-3-70b-instruct": (Decimal("0.00000059"), Decimal("0.00000079"), 8192),
    "google/gemini-2.5-flash": (Decimal("0.0000003"), Decimal("0.0000025"), 1048576),
    "google/gemini-2.5-pro": (Decimal("0.00000125"), Decimal("0.00001"), 1048576),
}


def count_words(text: str) -> int:
    return len(text.split())


def echo_text(prompt: str, words: int) -> str:
    """``Echo: <first words of the prompt>`` padded with filler to exactly ``words`` words."""
    words = max(words, 1)
    head = ["Echo:", *prompt.split()[:ECHO_WORDS]]
    if words <= len(head):
        return " ".join(head[:words])
    need = words - len(head)
    filler = list((FILLER * (need // len(FILLER) + 1))[:need])
    return " ".join(head + filler)


def continuation(full: str, prefill: str | None) -> str:
    """What a model answers after ``prefill`` (a trailing assistant message) when its whole
    reply would be ``full``: the rest of ``full`` if it starts with ``prefill`` (so that
    ``prefill + continuation == full``), else all of ``full``."""
    if prefill and full.startswith(prefill):
        return full[len(prefill) :]
    return full


_FIRST_WORDS = re.compile(r"\s*\S+")


def first_words(text: str, words: int) -> str:
    """The start of ``text`` up to the end of its ``words``-th word (leading space kept)."""
    end = 0
    for _, match in zip(range(words), _FIRST_WORDS.finditer(text), strict=False):
        end = match.end()
    return text[:end]


def split_for_stream(text: str, words_per_piece: int) -> list[str]:
    """Pieces whose concatenation is exactly ``text``, ``words_per_piece`` words each."""
    words = text.split(" ")
    step = max(words_per_piece, 1)
    pieces = [" ".join(words[i : i + step]) for i in range(0, len(words), step)]
    return [pieces[0], *(" " + p for p in pieces[1:])] if pieces else [""]


def cost(model: str, prompt_tokens: int, completion_tokens: int) -> tuple[Decimal, Decimal]:
    """(prompt cost, completion cost) in USD, exact, as OpenRouter bills them."""
    base, _, variant = model.partition(":")
    price = PRICES.get(base.lower())
    if price is None or variant == "free":
        return Decimal(0), Decimal(0)
    return price[0] * prompt_tokens, price[1] * completion_tokens


def decimal_str(value: Decimal) -> str:
    """A Decimal as a bare JSON number with its digits (``0.00000735``, never ``7.35e-06``)."""
    text = format(value, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text or "0"


_ALNUM = string.ascii_letters + string.digits
_B64 = _ALNUM + "-_"


def openrouter_id(created: int) -> str:
    return f"gen-{created}-{''.join(random.choices(_ALNUM, k=20))}"


def gemini_response_id() -> str:
    return "".join(random.choices(_B64, k=23))


def chatcmpl_id() -> str:
    return f"chatcmpl-{random.getrandbits(64):016x}"


def now() -> int:
    return int(time.time())


# --- JSON for a schema -----------------------------------------------------------------------

_MAX_DEPTH = 12
_FORMATS = {
    "date": "2026-01-01",
    "date-time": "2026-01-01T00:00:00Z",
    "time": "00:00:00Z",
    "email": "echo@example.com",
    "uri": "https://example.com/",
    "url": "https://example.com/",
    "uuid": "00000000-0000-4000-8000-000000000000",
}


def example_for_schema(schema: Any) -> Any:
    """A value valid for ``schema`` (the subset models are asked for; not a full generator).

    Objects get all listed and all required properties; arrays one item (or ``minItems``);
    ``enum`` its first value; ``const`` itself; ``anyOf``/``oneOf`` their first non-null branch;
    ``allOf`` the merge of its branches; local ``$ref`` (``#/$defs/...``) is followed. Numbers
    and string lengths respect ``minimum``/``maximum``/``minLength``/``maxLength``.
    Upper-case types (Gemini's ``responseSchema``: ``OBJECT``, ``STRING``) are accepted.
    """
    return _example(schema, schema if isinstance(schema, dict) else {}, "value", 0)


def _example(schema: Any, root: dict, name: str, depth: int) -> Any:
    if not isinstance(schema, dict) or depth > _MAX_DEPTH:
        return f"{name} example"
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/"):
        target: Any = root
        for part in ref[2:].split("/"):
            target = target.get(part.replace("~1", "/").replace("~0", "~"), {})
        merged = {**target, **{k: v for k, v in schema.items() if k != "$ref"}}
        return _example(merged, root, name, depth + 1)
    if "const" in schema:
        return schema["const"]
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return schema["enum"][0]
    for key in ("anyOf", "oneOf"):
        branches = schema.get(key)
        if isinstance(branches, list) and branches:
            chosen = next((b for b in branches if _type_of(b) != "null"), branches[0])
            rest = {k: v for k, v in schema.items() if k != key}
            return _example({**rest, **chosen}, root, name, depth + 1)
    if isinstance(schema.get("allOf"), list):
        merged = {k: v for k, v in schema.items() if k != "allOf"}
        for branch in schema["allOf"]:
            if isinstance(branch, dict):
                props = {**merged.get("properties", {}), **branch.get("properties", {})}
                required = [*merged.get("required", []), *branch.get("required", [])]
                merged = {**merged, **branch, "properties": props, "required": required}
        return _example(merged, root, name, depth + 1)

    kind = _type_of(schema)
    if kind == "object":
        props = schema.get("properties") or {}
        value = {key: _example(sub, root, key, depth + 1) for key, sub in props.items()}
        for key in schema.get("required") or []:
            value.setdefault(key, f"{key} example")
        return value
    if kind == "array":
        items = schema.get("items")
        prefix = schema.get("prefixItems")
        if isinstance(prefix, list) and prefix:
            return [_example(s, root, name, depth + 1) for s in prefix]
        if schema.get("maxItems") == 0:
            return []
        count = max(1, int(schema.get("minItems") or 1))
        return [_example(items, root, name, depth + 1) for _ in range(count)]
    if kind == "integer":
        return int(_number(schema, 1, integer=True))
    if kind == "number":
        return _number(schema, 1.5, integer=False)
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    return _string(schema, name)


def _type_of(schema: Any) -> str:
    if not isinstance(schema, dict):
        return "string"
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if str(k).lower() != "null"), "null")
    if isinstance(kind, str) and kind:
        return kind.lower()
    if "properties" in schema or "required" in schema:
        return "object"
    if "items" in schema or "prefixItems" in schema:
        return "array"
    return "string"


def _number(schema: dict, default: float, *, integer: bool) -> float:
    value = default
    low = schema.get("minimum")
    if low is None and schema.get("exclusiveMinimum") is not None:
        low = schema["exclusiveMinimum"] + (1 if integer else 0.5)
    high = schema.get("maximum")
    if high is None and schema.get("exclusiveMaximum") is not None:
        high = schema["exclusiveMaximum"] - (1 if integer else 0.5)
    if low is not None and value < low:
        value = low
    if high is not None and value > high:
        value = high
    return value


def _string(schema: dict, name: str) -> str:
    value = _FORMATS.get(str(schema.get("format", "")), f"{name} example")
    low = int(schema.get("minLength") or 0)
    if len(value) < low:
        value += "x" * (low - len(value))
    high = schema.get("maxLength")
    if high is not None:
        value = value[: int(high)]
    return value


def json_reply(schema: Any) -> str:
    """The reply text for a JSON request: the example object as compact-ish JSON text."""
    if schema is None or schema is True:  # JSON mode without a schema
        return json.dumps({"echo": "structured reply", "ok": True})
    return json.dumps(example_for_schema(schema), ensure_ascii=False)
