"""Strings that can be stored: no lone surrogates, no NUL characters.

JSON may escape a lone UTF-16 surrogate (``"\\ud800"``): it is valid JSON
(RFC 8259, section 8.2, leaves its meaning to the receiver) and a valid
JavaScript string, so the hub protocol passes it along (one client may relay
what another sent). It is not Unicode text, though: UTF-8 cannot encode it, and
neither SQLite nor PostgreSQL can store it. A NUL character (``"\\u0000"``) is
text, but PostgreSQL's ``text`` cannot hold it, and what one store keeps the
other must keep too. So what may be stored is checked first, with a clear
error: a hub method's ``str`` arguments (``hubs.binder``) and REST bodies
(``server.routes``).
"""

from __future__ import annotations

import re
from typing import Any

# In JSON, a lone surrogate or a NUL can only come from a \u escape: raw
# control characters are not JSON, and bytes that encode a surrogate are not
# UTF-8 (both fail to decode before this is asked).
_ESCAPED_UNSTORABLE = re.compile(rb"\\u(?:[dD][89a-fA-F]|0000)")

UNSTORABLE = "holds a NUL character or a lone UTF-16 surrogate, which cannot be stored"


def is_storable(value: str) -> bool:
    """False if ``value`` holds a NUL or a lone surrogate."""
    if "\x00" in value:
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def json_is_storable(document: bytes, value: Any) -> bool:
    """False if any string (key or value) in ``value``, decoded from the JSON
    ``document``, is not storable. Cheap when the text has no escape that
    could make one, which is nearly always."""
    if _ESCAPED_UNSTORABLE.search(document) is None:
        return True
    pending = [value]
    while pending:  # a stack, not recursion: the decoder bounded the depth anyway
        item = pending.pop()
        if isinstance(item, str):
            if not is_storable(item):
                return False
        elif isinstance(item, dict):
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
    return True
