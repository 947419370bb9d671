"""Request parsing: DRF's JSON parser, with a body nested too deeply for Python's JSON decoder
(``[[[[…]]]]``) refused as a parse error (400) instead of escaping as a RecursionError (500),
and a UTF-8 body decoded in one call rather than through a ``codecs`` stream reader."""

import codecs
import io

from rest_framework import parsers
from rest_framework.exceptions import ParseError
from rest_framework.utils import json


class JSONParser(parsers.JSONParser):
    def parse(self, stream, media_type=None, parser_context=None):
        try:
            if isinstance(stream, io.BytesIO) and self._is_utf8(parser_context):
                return self._parse_utf8(stream.getvalue())
            return super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise ParseError("JSON parse error - the document is nested too deeply.") from None

    def _parse_utf8(self, body: bytes):
        """DRF's ``parse`` for a UTF-8 body already in memory (DRF hands JSON parsers the body
        as a ``BytesIO``): the same text, read without a ``codecs`` stream reader around it.
        That reader decodes non-finally (``final=False``): an incomplete sequence at the very
        end is dropped, not an error, and so it is here; any other bad byte is the same
        UnicodeDecodeError, with the same message."""
        try:
            text, _ = codecs.utf_8_decode(body, "strict", False)
            parse_constant = json.strict_constant if self.strict else None
            return json.loads(text, parse_constant=parse_constant)
        except ValueError as exc:
            raise ParseError(f"JSON parse error - {exc}") from None

    @staticmethod
    def _is_utf8(parser_context) -> bool:
        # get_encoding refuses a charset that is no text encoding (ParseError), as DRF's parse.
        encoding = parsers.get_encoding(parser_context or {})
        return codecs.lookup(encoding).name == "utf-8"
