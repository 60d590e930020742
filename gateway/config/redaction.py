"""Which configuration keys hold secrets: their values are never shown, whatever their type.

A YAML `token: 12345678` is an int, so a redaction by type (`SecretStr`) misses it in the very error
that refuses it. The rule goes by the key's name instead: a key whose last word (words separated by
`_`, `-` or `.`) is one of `SECRET_WORDS` holds a secret (`token`, `password`, `api_key`,
`password_credential`), unless its first word is `public` (`public_key`). Keys naming where a secret
is (`token_file`, `key_id`) are not secrets themselves. Validation errors, reload results, the
status API and the logs show `<redacted>` (or nothing) in place of such a value.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

SECRET_WORDS = frozenset(
    {
        "apikey",
        "authorization",
        "credential",
        "credentials",
        "key",
        "passphrase",
        "passwd",
        "password",
        "secret",
        "token",
    }
)
PUBLIC_WORDS = frozenset({"public"})
REDACTED = "<redacted>"

_WORD_SPLIT = re.compile(r"[^a-z0-9]+")


def is_secret_key(name: str) -> bool:
    """True when a key of this name holds a secret (see the module doc)."""
    words = [w for w in _WORD_SPLIT.split(name.lower()) if w]
    return bool(words) and words[-1] in SECRET_WORDS and words[0] not in PUBLIC_WORDS


DICT_KEY = "[key]"  # pydantic's part of a location for a mapping's key itself (not a key named "key")


def secret_location(loc: Iterable[object]) -> bool:
    """True when a value at this location (keys and list indices, outermost first) is, or is inside, a secret."""
    return any(isinstance(part, str) and part != DICT_KEY and is_secret_key(part) for part in loc)


_URL_CREDENTIALS = re.compile(r"(\w+://)[^/@\s:]+(?::[^/@\s]*)?@")
_KEY_VALUE_SECRET = re.compile(r"(?i)\b(" + "|".join(sorted(SECRET_WORDS)) + r")(\s*[=:]\s*)\S+")


def redact_text(text: str) -> str:
    """Remove credentials from free text such as a server's error message: `user:password@` in URLs and
    `<secret word>=value` / `<secret word>: value` for every word of `SECRET_WORDS`."""
    text = _URL_CREDENTIALS.sub(r"\1***@", text)
    return _KEY_VALUE_SECRET.sub(r"\1\2***", text)
