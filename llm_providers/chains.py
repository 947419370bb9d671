"""The chain of a request (SPEC §5.1): its first model, then the models it may fall back to.

``plan`` builds and checks the whole chain before the first upstream request: the first entry is
the named (or primary) provider with the asked (or default) model; the rest come from the
request (``fallback_models`` on ``generate/``, ``models`` on ``v1``), else from
``LLM_FALLBACKS["<provider>/<model>"]``, else the other available providers with their default
models in priority order. ``Chain`` walks it at run time, skipping providers whose circuit is
open and stopping at the request's deadline.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from . import circuits, registry
from .conf import llm_settings
from .exceptions import InvalidRequest, LLMError, ModelNotFound, ProviderUnavailable
from .keys import ResolvedKey
from .providers.base import Provider


@dataclass(frozen=True)
class Step:
    """One entry of the chain: the provider, the model and the key it will be called with."""

    provider: type[Provider]
    model: str
    key: ResolvedKey
    is_fallback: bool

    @property
    def name(self) -> str:
        return self.provider.name

    @property
    def label(self) -> str:
        return f"{self.provider.name}/{self.model}"


def route(model: str | None) -> tuple[str | None, str | None]:
    """(provider, model id) for a model in routing form; (None, None) for the default.

    ``<provider>/<model>``, where the provider is any name or alias of the registry (custom
    ones included, so a custom ``mistralai`` wins over OpenRouter's vendor of that name), sends
    the rest of the id upstream; any other ``<vendor>/<name>`` is an OpenRouter model."""
    if not model or model == "auto":
        return None, None
    prefix, _, rest = model.partition("/")
    if rest:
        name = registry.canonical_name(prefix)
        if name is not None:
            return name, rest
    return "openrouter", model  # vendor/name, validated as an OpenRouter id by the provider


def plan(
    provider: str | None,
    model: str | None,
    *,
    fallback: bool,
    keys: Mapping[str, ResolvedKey],
    fallback_models: Sequence[str] | None = None,
    field: str = "fallback_models",
) -> list[Step]:
    """The checked chain of a request. A named provider without a key is a configuration
    error; a malformed first model is ``ModelNotFound``; a bad later entry (no key, malformed
    model id) is a 400 naming it and where it came from, raised before any upstream request."""
    if provider is not None:
        first = registry.provider_class(provider).name
    else:
        first = registry.primary_provider(keys, registry.provider_classes())
        if first is None:
            raise registry.no_provider_error()
    if first not in keys:
        raise registry.missing_key_error(first)
    first_cls = registry.provider_class(first)
    first_model = model or first_cls.default_model()
    first_cls.check_model(first_model)
    chain = [Step(first_cls, first_model, keys[first], is_fallback=False)]
    if not fallback:
        return chain
    if fallback_models is not None:
        entries = [_requested_entry(text, keys, field) for text in fallback_models]
    else:
        entries = _configured_entries(first, first_model, keys)
    seen = {(first, first_model)}
    for step in entries:
        if (step.name, step.model) not in seen:
            seen.add((step.name, step.model))
            chain.append(step)
    return chain


def _requested_entry(text: object, keys: Mapping[str, ResolvedKey], field: str) -> Step:
    if not isinstance(text, str) or not text.strip():
        raise InvalidRequest(f"{field}: each entry is a model id such as gemini/gemini-2.5-flash.")
    name, model = route(text.strip())
    if name is None or model is None:
        raise InvalidRequest(f"{field}: {text!r} names no model.", field=field)
    return _checked_step(name, model, keys, where=f"{field} entry {text!r}", field=field)


def _configured_entries(first: str, first_model: str, keys: Mapping[str, ResolvedKey]) -> list:
    configured = _configured_chain(first, first_model)
    if configured is not None:
        # The operator's chain may list providers this deployment has no key for (yet): those
        # are left out, the malformed ones are reported.
        return [
            _checked_step(name, model, keys, where=f"LLM_FALLBACKS entry {name}/{model}")
            for name, model in configured
            if name in keys
        ]
    return [
        _checked_step(cls.name, cls.default_model(), keys, where=cls.model_setting)
        for cls in registry.provider_classes()
        if cls.name != first and cls.name in keys
    ]


def _configured_chain(first: str, first_model: str) -> list[tuple[str, str]] | None:
    """``LLM_FALLBACKS``' chain after (first, first_model), as (provider, model) pairs."""
    table = llm_settings.LLM_FALLBACKS or {}
    if not isinstance(table, Mapping):
        raise InvalidRequest(
            "LLM_FALLBACKS must be a JSON object of lists; ask an admin to fix it."
        )
    for head, entries in table.items():
        if route(head) == (first, first_model) or head == f"{first}/{first_model}":
            if not isinstance(entries, list | tuple):
                raise InvalidRequest(
                    f"LLM_FALLBACKS[{head!r}] must be a list of models; ask an admin to fix it."
                )
            pairs = [route(str(entry)) for entry in entries]
            return [(name, model) for name, model in pairs if name and model]
    return None


def _checked_step(
    name: str,
    model: str,
    keys: Mapping[str, ResolvedKey],
    *,
    where: str,
    field: str | None = None,
) -> Step:
    cls = registry.provider_class(name)
    if cls.name not in keys:
        raise InvalidRequest(
            f"{where}: {registry.missing_key_error(cls.name).message}", field=field
        )
    try:
        cls.check_model(model)
    except ModelNotFound as exc:
        raise InvalidRequest(f"{where}: {exc.message}", field=field) from None
    return Step(cls, model, keys[cls.name], is_fallback=True)


class Chain:
    """Walks a request's chain: each ``next()`` is the next entry whose circuit lets it through,
    or None when the chain (or the request's time) is spent. Entries skipped for an open circuit
    are remembered for the final error. A chain whose every entry is open tries its first one
    anyway (SPEC §5.1): refusing every request would never let a circuit be probed."""

    def __init__(self, steps: Sequence[Step], deadline: float):
        self.steps = list(steps)
        self.deadline = deadline
        self.skipped: list[tuple[Step, LLMError]] = []
        self._position = -1
        self._tried = 0
        self._out_of_time = False

    def next(self) -> Step | None:
        while self._position + 1 < len(self.steps):
            if time.monotonic() >= self.deadline:
                self._expired(self.steps[self._position + 1 :])
                return None
            self._position += 1
            step = self.steps[self._position]
            if circuits.allow(step.name):
                self._tried += 1
                return step
            self.skipped.append((step, _circuit_open(step)))
        if not self._tried and self.skipped and not self._out_of_time:
            self.skipped.clear()
            self._tried = 1
            return self.steps[0]
        return None

    def again(self, step: Step) -> Step | None:
        """``step`` once more (a continuation asked another way), unless the time is up."""
        if time.monotonic() >= self.deadline:
            self._expired([step])
            return None
        return step

    def _expired(self, steps: Iterable[Step]) -> None:
        seconds = float(llm_settings.LLM_REQUEST_DEADLINE)
        for step in steps:
            error = ProviderUnavailable(
                f"not tried: the request's deadline (LLM_REQUEST_DEADLINE={seconds:g}s) passed",
                provider=step.name,
            )
            self.skipped.append((step, error))
        self._position = len(self.steps) - 1
        self._out_of_time = True


def _circuit_open(step: Step) -> LLMError:
    return ProviderUnavailable(
        f"{step.provider.label} was skipped: its circuit is open after repeated failures "
        f"(retried after LLM_CIRCUIT_COOLDOWN={float(llm_settings.LLM_CIRCUIT_COOLDOWN):g}s)",
        provider=step.name,
    )
