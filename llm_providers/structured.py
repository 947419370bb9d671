"""Structured JSON: check a caller's schema, and parse and validate a model's reply against it."""

import json
import re
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
    after the upstream call, otherwise)."""
    if not isinstance(schema, dict):
        raise InvalidRequest("The JSON schema must be a JSON object.", field="json_schema")
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
