"""Structured JSON: check a caller's schema, and parse and validate a model's reply against it.

The caller writes the schema and the model (which the caller's prompt steers) writes the reply,
so both are hostile input. jsonschema evaluates ``pattern`` and ``patternProperties`` with
Python's backtracking ``re``, where a pattern such as ``^a(x+x+)+y$`` takes seconds of CPU that
double with each character of the reply. Here they are evaluated by RE2, whose time is linear
in the text; a pattern RE2 cannot compile (backreferences, lookaround) is refused when the
schema is checked, and is never run by ``re``.
"""

import functools
import json
import re
import threading
from typing import Any

import re2
from jsonschema import exceptions as jsonschema_exceptions
from jsonschema import validators as jsonschema_validators
from jsonschema.exceptions import ValidationError
from jsonschema.validators import validator_for
from jsonschema_specifications import REGISTRY as SPECIFICATIONS
from referencing import Resource
from referencing.exceptions import Unresolvable
from referencing.jsonschema import DRAFT202012

from .exceptions import InvalidRequest

# A reply wrapped in a Markdown code fence: ```json\n{...}\n``` (the language tag is optional).
_FENCE = re.compile(r"^\s*```[A-Za-z0-9_-]*\s*\n?(?P<body>.*?)\n?\s*```\s*$", re.DOTALL)


class SchemaMismatch(ValueError):
    """The reply is not JSON, or not JSON that the schema accepts."""


def check_schema(schema: Any) -> None:
    """Refuse a schema that is not a JSON object or not a valid JSON Schema (caller error),
    including one with a ``$ref`` that cannot be resolved (found only when validating a reply,
    after the upstream call, otherwise).

    Checking a schema against its metaschema takes milliseconds, and callers send the same
    few schemas again and again (the API checks each request's schema twice: the serializer,
    then the router), so schemas found valid are remembered by their JSON text.
    """
    if not isinstance(schema, dict):
        raise InvalidRequest("The JSON schema must be a JSON object.", field="json_schema")
    key = _cache_key(schema)
    if key is not None and key in _valid_schemas:
        return
    _check_schema(schema)
    if key is not None:
        with _valid_schemas_lock:
            _valid_schemas[key] = None
            while len(_valid_schemas) > _VALID_SCHEMAS_MAX:
                _valid_schemas.pop(next(iter(_valid_schemas)))  # the oldest


# At most this many schemas of at most this many characters each are remembered (16 MiB).
_VALID_SCHEMAS_MAX = 512
_VALID_SCHEMA_MAX_CHARS = 32 * 1024
_valid_schemas: dict[str, None] = {}  # insertion-ordered: the oldest first
_valid_schemas_lock = threading.Lock()


def _cache_key(schema: dict) -> str | None:
    """The schema's canonical JSON text, or None when that text does not stand for exactly this
    schema (tuples, non-string keys, NaN, objects JSON cannot hold), or the schema is too big
    to keep: such a schema is checked every time."""
    try:
        text = json.dumps(schema, sort_keys=True, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError, RecursionError):
        return None
    if len(text) > _VALID_SCHEMA_MAX_CHARS:
        return None
    try:
        same = json.loads(text) == schema and _only_json_types(schema)
    except RecursionError:
        return None
    return text if same else None


def _only_json_types(value: Any) -> bool:
    # == alone would take True for 1 and a tuple for a list; the metaschema would not.
    if isinstance(value, dict):
        return all(_only_json_types(v) for v in value.values())
    if isinstance(value, list):
        return all(_only_json_types(v) for v in value)
    return value is None or type(value) in (str, int, float, bool)


def _check_schema(schema: dict) -> None:
    if not isinstance(schema.get("$schema", ""), str):
        raise InvalidRequest("The JSON schema's $schema must be a string.", field="json_schema")
    try:
        validator_for(schema).check_schema(schema)
        _check_subschemas(schema)
    except jsonschema_exceptions.SchemaError as exc:
        raise InvalidRequest(
            f"The JSON schema is not valid: {exc.message}", field="json_schema"
        ) from None
    except Unresolvable as exc:
        raise InvalidRequest(
            f"The JSON schema has a $ref that cannot be resolved: {_short(exc)}",
            field="json_schema",
        ) from None
    except RecursionError:
        raise InvalidRequest("The JSON schema is nested too deeply.", field="json_schema") from None


def _check_subschemas(schema: dict) -> None:
    """Check each subschema of ``schema`` for what the metaschema cannot see: every ``$ref``
    resolves as jsonschema would resolve it (local pointers, anchors, ``$id`` scopes, the known
    metaschemas; nothing is fetched), else Unresolvable; every ``pattern`` and
    ``patternProperties`` key compiles with RE2, else InvalidRequest."""
    resource = Resource.from_contents(schema, default_specification=DRAFT202012)
    keywords: set[str] = set()

    def walk(resolver, resource) -> None:
        contents = resource.contents if isinstance(resource.contents, dict) else {}
        keywords.update(contents)
        for keyword in ("$ref", "$dynamicRef"):
            if isinstance(contents.get(keyword), str):
                resolver.lookup(contents[keyword])
        _check_patterns(contents)
        for sub in resource.subresources():
            walk(resolver.in_subresource(sub), sub)

    walk(SPECIFICATIONS.resolver_with_root(resource), resource)
    if {"unevaluatedProperties", "patternProperties"} <= keywords:
        # jsonschema finds the properties patternProperties evaluated for unevaluatedProperties
        # with re, deep in its internals, where RE2 cannot take its place.
        raise InvalidRequest(
            "The JSON schema uses patternProperties together with unevaluatedProperties, "
            "which this server does not evaluate; use additionalProperties instead.",
            field="json_schema",
        )


def _check_patterns(contents: dict) -> None:
    patterns = []
    if isinstance(contents.get("pattern"), str):
        patterns.append(contents["pattern"])
    if isinstance(contents.get("patternProperties"), dict):
        patterns.extend(contents["patternProperties"])
    for pattern in patterns:
        try:
            _compiled(pattern)
        except UnsafePattern as exc:
            raise InvalidRequest(
                f"The JSON schema's pattern {_short_repr(pattern)} cannot be used: {exc}. "
                "Patterns are evaluated in linear time (RE2 syntax): backreferences and "
                "lookaround are not supported.",
                field="json_schema",
            ) from None


def _short_repr(text: str, limit: int = 100) -> str:
    return repr(text if len(text) <= limit else text[: limit - 1] + "…")


# --- Patterns in linear time ---------------------------------------------------------------------


class UnsafePattern(ValueError):
    """A pattern RE2 cannot compile: it would need backtracking (or it is not a pattern)."""


_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False  # RE2 would print every refused pattern to stderr
_RE2_OPTIONS.never_capture = True  # only whether it matches is asked


@functools.lru_cache(maxsize=1024)
def _compiled(pattern: str) -> Any:
    """``pattern`` compiled by RE2 (searching it takes time linear in the text), or
    UnsafePattern with RE2's reason."""
    try:
        return re2.compile(pattern, options=_RE2_OPTIONS)
    except re2.error as exc:
        reason = exc.args[0] if exc.args else exc
        if isinstance(reason, bytes):
            reason = reason.decode("utf-8", "replace")
        raise UnsafePattern(str(reason)) from None


def _search(pattern: str, text: str) -> bool:
    return _compiled(pattern).search(text) is not None


def _unsafe(pattern: str, exc: UnsafePattern) -> ValidationError:
    # Only for a schema that did not pass check_schema: it is refused, never run by re.
    return ValidationError(f"the pattern {_short_repr(pattern)} cannot be evaluated: {exc}")


def _pattern(validator, pattern, instance, schema):
    """``pattern`` (jsonschema's, with RE2)."""
    if not validator.is_type(instance, "string"):
        return
    try:
        matched = _search(pattern, instance)
    except UnsafePattern as exc:
        yield _unsafe(pattern, exc)
        return
    if not matched:
        yield ValidationError(f"{_short_repr(instance)} does not match {pattern!r}")


def _pattern_properties(validator, pattern_properties, instance, schema):
    """``patternProperties`` (jsonschema's, with RE2)."""
    if not validator.is_type(instance, "object"):
        return
    for pattern, subschema in pattern_properties.items():
        try:
            matching = [k for k in instance if _search(pattern, k)]
        except UnsafePattern as exc:
            yield _unsafe(pattern, exc)
            continue
        for k in matching:
            yield from validator.descend(instance[k], subschema, path=k, schema_path=pattern)


def _additional_properties(validator, additional, instance, schema):
    """``additionalProperties`` (jsonschema's), which matches property names against the
    ``patternProperties`` beside it: with RE2."""
    if not validator.is_type(instance, "object"):
        return
    properties = schema.get("properties", {})
    patterns = list(schema.get("patternProperties", {}))
    try:
        extras = [
            k for k in instance if k not in properties and not any(_search(p, k) for p in patterns)
        ]
    except UnsafePattern as exc:
        yield _unsafe("|".join(patterns), exc)
        return
    if validator.is_type(additional, "object"):
        for extra in extras:
            yield from validator.descend(instance[extra], additional, path=extra)
    elif not additional and extras:
        if patterns:
            verb = "does" if len(extras) == 1 else "do"
            listed = ", ".join(map(repr, sorted(extras)))
            yield ValidationError(
                f"{listed} {verb} not match any of the regexes: "
                + ", ".join(map(repr, sorted(patterns)))
            )
        else:
            verb = "was" if len(extras) == 1 else "were"
            listed = ", ".join(map(repr, sorted(extras, key=str)))
            yield ValidationError(
                f"Additional properties are not allowed ({listed} {verb} unexpected)"
            )


_LINEAR_KEYWORDS = {
    "pattern": _pattern,
    "patternProperties": _pattern_properties,
    "additionalProperties": _additional_properties,
}


@functools.cache
def _linear_validator(cls: type) -> type:
    """``cls`` (a jsonschema validator class, one per draft) with the keywords above: its format
    checker, type checker and other keywords are its own."""
    return jsonschema_validators.extend(cls, _LINEAR_KEYWORDS)


def _short(exc: Exception, limit: int = 200) -> str:
    text = str(exc)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def parse_reply(text: str, schema: dict) -> Any:
    """Return the object in ``text`` if it is JSON valid against ``schema``; else SchemaMismatch.

    ``schema`` is one ``check_schema`` accepted (it is checked again here, from its cache: a
    pattern RE2 cannot evaluate must never reach a validator)."""
    try:
        check_schema(schema)
    except InvalidRequest as exc:
        raise SchemaMismatch(f"the schema cannot be used ({exc.message})") from None
    match = _FENCE.match(text)
    body = match.group("body") if match else text
    try:
        data = json.loads(body)
    except (json.JSONDecodeError, TypeError, RecursionError) as exc:
        raise SchemaMismatch(f"the reply is not JSON ({exc})") from None
    validator = _linear_validator(validator_for(schema))(schema)
    try:
        errors = sorted(validator.iter_errors(data), key=lambda e: list(e.absolute_path))
    except Unresolvable as exc:  # a reference check_schema could not see statically
        raise SchemaMismatch(
            f"the schema has a $ref that cannot be resolved: {_short(exc)}"
        ) from None
    if errors:
        details = "; ".join(
            f"{'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}" for e in errors[:5]
        )
        raise SchemaMismatch(f"the reply does not match the schema ({details})")
    return data
