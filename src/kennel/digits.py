"""Whole numbers written by someone else (an HTTP header, a port, a camera index, a declared
length), read strictly: ASCII digits only. Python's ``int`` also takes '٣', '+3', ' 3 ' and
'3_0', and ``str.isdigit`` is true for '²', which ``int`` refuses."""

from __future__ import annotations


def ascii_number(text: str | bytes | None) -> int | None:
    """``text`` as a non-negative integer when it is one or more ASCII digits, else None."""
    if not text or not text.isascii() or not text.isdigit():
        return None
    return int(text)


def declared_over(declared: str | bytes | None, limit: int) -> bool:
    """Whether a declared length (``Content-Length``) is a number above ``limit``; a missing
    or malformed one is not (the body is then bounded as it arrives)."""
    size = ascii_number(declared)
    return size is not None and size > limit
