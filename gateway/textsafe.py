"""Text from outside (a command's reason, a DBC comment, a device's reply) made safe to print and to echo.

A terminal obeys control characters: a newline forges a line of `alarms history`, an ESC sequence
recolours or rewrites what the operator sees, a bidirectional override reorders it. `printable`
escapes every such character (`\\n`, `\\x1b`, `\\u202e`), so one record is one line that shows
what was received; `json_text` does the same to JSON already written (the value stays the same),
and `shorten` bounds what is echoed.
"""

from __future__ import annotations

import re
import unicodedata

# C0 and C1 controls, DEL, line and paragraph separators, bidirectional controls, zero-width characters
# that change how the text around them shows, and the byte order mark.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]")
_SHORT = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(m: re.Match[str]) -> str:
    ch = m.group()
    if ch in _SHORT:
        return _SHORT[ch]
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: object, limit: int | None = None) -> str:
    """`text` (str() of any object) with every control or display-changing character escaped, at most
    `limit` characters of it (the rest counted, see `shorten`); never raises."""
    s = text if isinstance(text, str) else _str(text)
    if limit is not None:
        s = shorten(s, limit)
    s = _UNSAFE.sub(_escape, s)
    if s.isascii():
        return s
    # Other unassigned or format characters (Cf, Cs, Co, Cn) are escaped too: what shows is what was sent.
    return "".join(_escape_other(c) for c in s)


def _escape_other(c: str) -> str:
    if c.isascii() or unicodedata.category(c) not in ("Cf", "Cs", "Co", "Cn"):
        return c
    code = ord(c)
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def _str(obj: object) -> str:
    try:
        return str(obj)
    except Exception:  # an object without a usable str(): name its type
        return f"<{type(obj).__name__}>"


def shorten(text: str, limit: int) -> str:
    """At most `limit` characters of `text`, and how many more there were: `abc…(+1234 chars)`."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}…(+{len(text) - limit} chars)"


_JSON_UNSAFE = re.compile("[\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]")


def json_text(text: str) -> str:
    """JSON text (from json.dumps, which escapes C0 controls already) with the other unsafe characters as
    `\\uXXXX` escapes: the same JSON value, safe on a terminal."""
    return _JSON_UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)
