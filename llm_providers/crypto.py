"""Encryption of stored provider keys (Fernet; MultiFernet for rotation).

``LLM_ENCRYPTION_KEYS`` is a list of Fernet keys: the first encrypts, all decrypt. When it is
empty a key derived from ``SECRET_KEY`` is used (a system check warns about that outside DEBUG).
The derived key is always kept as the last decryption key, so a deployment that started without
``LLM_ENCRYPTION_KEYS`` can set one and run ``manage.py rotate_llm_keys`` without losing keys.
"""

import base64
import hashlib
import threading

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.signals import setting_changed

from .conf import llm_settings
from .exceptions import KeyDecryptionError

_lock = threading.Lock()
_fernet: MultiFernet | None = None


def derived_key() -> bytes:
    """A Fernet key derived from SECRET_KEY (stable for as long as SECRET_KEY is)."""
    digest = hashlib.sha256(b"llm_providers.apikey:" + settings.SECRET_KEY.encode()).digest()
    return base64.urlsafe_b64encode(digest)


def configured_keys() -> list[bytes]:
    """The ``LLM_ENCRYPTION_KEYS`` values, newest first (a comma-separated string works too)."""
    value = llm_settings.LLM_ENCRYPTION_KEYS or []
    if isinstance(value, str):
        value = value.split(",")
    return [k.strip().encode() for k in value if k.strip()]


def fernet() -> MultiFernet:
    global _fernet
    if _fernet is None:
        with _lock:
            if _fernet is None:
                try:
                    keys = [Fernet(k) for k in configured_keys()]
                except ValueError:
                    raise KeyDecryptionError(
                        "LLM_ENCRYPTION_KEYS holds a value that is not a Fernet key (32 url-safe "
                        'base64-encoded bytes). Generate one with: python -c "from '
                        'cryptography.fernet import Fernet; print(Fernet.generate_key().decode())"'
                    ) from None
                keys.append(Fernet(derived_key()))
                _fernet = MultiFernet(keys)
    return _fernet


def encrypt(plaintext: str) -> str:
    return fernet().encrypt(plaintext.encode()).decode()


def decrypt(token: str, *, what: str = "a stored key") -> str:
    try:
        return fernet().decrypt(token.encode()).decode()
    except InvalidToken:
        raise KeyDecryptionError(
            f"{what} cannot be decrypted with LLM_ENCRYPTION_KEYS (or the SECRET_KEY-derived "
            "key). Was the encryption key or SECRET_KEY changed without keeping the old one in "
            "LLM_ENCRYPTION_KEYS? Add the old key after the new one, or enter the key again."
        ) from None


def rotate(token: str) -> str:
    """Re-encrypt a token with the first (newest) key."""
    try:
        return fernet().rotate(token.encode()).decode()
    except InvalidToken:
        raise KeyDecryptionError("a stored key cannot be decrypted for rotation") from None


def _reset(*, setting: str, **kwargs) -> None:
    global _fernet
    if setting in ("LLM_ENCRYPTION_KEYS", "SECRET_KEY"):
        _fernet = None


setting_changed.connect(_reset)
