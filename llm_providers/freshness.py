"""Transitional alias of ``cache_version``: the API's token cache still imports ``current`` from
here. Remove this module with that import."""

from .cache_version import current

__all__ = ["current"]
