"""Structured JSON: check a caller's schema, and parse and validate a model's reply against it."""

import json
import re
from typing import Any

from jsonschema import exceptions as jsonschema_exceptions
from jsonschema.validators import validator_for

from .exceptions import InvalidRequest

# A reply wrapped in a Markdown code fence: ```json\n{...}\n``` (the language tag is optional).
_FENCE = re.compile(r"^\s*```[A-Za-z0-9_-]*\s*\n?(?P<body>.*?)\n?\s*```\s*$", re.DOTALL)


class SchemaMismatch(ValueError):
    """The reply is not JSON, or not JSON that the schema accepts."""


def check_schema(schema: Any) -> None:
    """Refuse a schema that is not a JSON object or not a valid JSON Schema (caller error)."""
    if not isinstance(schema, dict):
        raise InvalidRequest("The JSON schema must be a JSON object.", field="json_schema")
    try:
        validator_for(schema).check_schema(schema)
    except jsonschema_exceptions.SchemaError as exc:
        raise InvalidRequest(
            f"The JSON schema is not valid: {exc.message}", field="json_schema"
        ) from None


def parse_reply(text: str, schema: dict) -> Any:
    """Return the object in ``text`` if it is JSON valid against ``schema``; else SchemaMismatch."""
    match = _FENCE.match(text)
    body = match.group("body") if match else text
    try:
        data = json.loads(body)
    except (json.JSONDecodeError, TypeError) as exc:
        raise SchemaMismatch(f"the reply is not JSON ({exc})") from None
    validator = validator_for(schema)(schema)
    errors = sorted(validator.iter_errors(data), key=lambda e: list(e.absolute_path))
    if errors:
        details = "; ".join(
            f"{'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}" for e in errors[:5]
        )
        raise SchemaMismatch(f"the reply does not match the schema ({details})")
    return data
