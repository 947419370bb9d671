"""Structured JSON: check a caller's schema, and parse and validate a model's reply against it."""

import json
import re
import threading
from typing import Any

from jsonschema import exceptions as jsonschema_exceptions
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
        _check_refs(schema)
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


def _check_refs(schema: dict) -> None:
    """Resolve every ``$ref`` of ``schema`` as jsonschema would (local pointers, anchors,
    ``$id`` scopes, the known metaschemas; nothing is fetched); raise Unresolvable if one fails."""
    resource = Resource.from_contents(schema, default_specification=DRAFT202012)

    def walk(resolver, resource) -> None:
        contents = resource.contents if isinstance(resource.contents, dict) else {}
        for keyword in ("$ref", "$dynamicRef"):
            if isinstance(contents.get(keyword), str):
                resolver.lookup(contents[keyword])
        for sub in resource.subresources():
            walk(resolver.in_subresource(sub), sub)

    walk(SPECIFICATIONS.resolver_with_root(resource), resource)


def _short(exc: Exception, limit: int = 200) -> str:
    text = str(exc)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def parse_reply(text: str, schema: dict) -> Any:
    """Return the object in ``text`` if it is JSON valid against ``schema``; else SchemaMismatch."""
    match = _FENCE.match(text)
    body = match.group("body") if match else text
    try:
        data = json.loads(body)
    except (json.JSONDecodeError, TypeError, RecursionError) as exc:
        raise SchemaMismatch(f"the reply is not JSON ({exc})") from None
    validator = validator_for(schema)(schema)
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
