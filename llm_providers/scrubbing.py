"""Masking keys in text that leaves the server: error messages, ledger rows, log lines.

An upstream may echo a key whole, cut short (all but its last character), or masked its own way
(``sk-or-v1-abc****wxyz``), so the exact key is not enough: every run of at least
``KEY_FRAGMENT_LENGTH`` characters that is part of a key is replaced by ``[key]``.

Shorter pieces are left: the last four characters are what a key's mask (``sk-or-…wxyz``) shows
anyway, and hiding every short run that occurs in a key would hide words and numbers of every
message. So a masked echo such as ``sk-or-v1-abc****wxyz`` becomes ``[key]****wxyz``: its
prefix (public ``sk-or-v1-`` and three secret characters) is hidden, its last four stay.
"""

from __future__ import annotations

from collections.abc import Iterable

import re2

KEY_FRAGMENT_LENGTH = 8
MASK = "[key]"

_OPTIONS = re2.Options()
_OPTIONS.log_errors = False
_OPTIONS.never_capture = True


class Scrubber:
    """A callable that masks every piece of ``secrets`` of ``KEY_FRAGMENT_LENGTH`` characters or
    more in a text (a secret shorter than that is masked only whole).

    Build it once per set of secrets: it holds the secrets' fragments and one RE2 automaton that
    finds any of them in a single linear pass, so scrubbing a text costs about one search.
    """

    def __init__(self, secrets: Iterable[str]):
        n = KEY_FRAGMENT_LENGTH
        secrets = {s for s in secrets if s}
        self._short = sorted((s for s in secrets if len(s) < n), key=len, reverse=True)
        self._pieces = frozenset(s[i : i + n] for s in secrets for i in range(len(s) - n + 1))
        self._finder = (
            re2.compile("|".join(map(re2.escape, sorted(self._pieces))), options=_OPTIONS)
            if self._pieces
            else None
        )

    def __bool__(self) -> bool:
        return bool(self._pieces or self._short)

    def __call__(self, text: str) -> str:
        if not text or not self:
            return text
        if self._finder is not None:
            text = self._masked(text, self._spans(text))
        for secret in self._short:
            text = text.replace(secret, MASK)
        return text

    def _spans(self, text: str) -> list[list[int]]:
        """The maximal runs of ``text`` covered by fragments of a secret, as [start, end)."""
        n, pieces, spans = KEY_FRAGMENT_LENGTH, self._pieces, []
        at = 0
        while (match := self._finder.search(text, at)) is not None:
            start = match.start()
            end = start + n
            # Grow the run one character at a time while the next window is a fragment too.
            while end < len(text) and text[end - n + 1 : end + 1] in pieces:
                end += 1
            if spans and start <= spans[-1][1]:
                spans[-1][1] = max(spans[-1][1], end)
            else:
                spans.append([start, end])
            # A fragment may begin inside this run without continuing it window by window.
            at = end - n + 1
        return spans

    @staticmethod
    def _masked(text: str, spans: list[list[int]]) -> str:
        if not spans:
            return text
        out, at = [], 0
        for start, end in spans:
            out += [text[at:start], MASK]
            at = end
        out.append(text[at:])
        return "".join(out)


def without_secrets(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every piece of ``secrets`` masked (see ``Scrubber``; build one instead to
    scrub many texts)."""
    return Scrubber(secrets)(text)
