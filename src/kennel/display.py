"""What kennel shows of text it did not write itself (URLs, file names, library messages):
a URL's password as ``***`` and control characters escaped, so that neither a secret nor a
terminal escape sequence hidden in a file name reaches a terminal, a log or an audit entry."""

from __future__ import annotations

import contextlib
import re

SQL_SCHEMES = ("sqlite:", "postgresql", "mysql", "mariadb", "mssql", "oracle")

# user:PASSWORD@ (a user may hold "@", an e-mail login, and a password "/" or "@", which URLs
# should escape and people do not: the password runs to the last "@"), and a token alone
# before the "@" of a web URL (https://TOKEN@host; elsewhere it is a user's name, as in
# postgresql://USER@HOST)
_USERINFO = re.compile(r"(://[^/:\s]*:)[^\s]*@")
_TOKEN_USERINFO = re.compile(r"(?i)(\bhttps?://)[^/@:\s]+@")

# A query parameter is a secret when a word of its name is one of these (libpq, psycopg,
# fsspec, signed S3, GCS and Azure URLs, OAuth): access_token, X-Amz-Signature, sig, ...
_SECRET_PARAM = re.compile(r"(?<=[?&;])([^=&;#\s]+)=([^&;#\s]*)")
_SECRET_WORDS = frozenset(
    {"password", "passwd", "pwd", "pass", "secret", "token", "key", "apikey", "accesskey",
     "secretkey", "sslpassword", "signature", "sig", "credential", "credentials", "auth", "pw"}
)  # fmt: skip


# a name holding one of these anywhere is a secret's (clientSecret, xaccesstoken, ...)
_SECRET_PARTS = ("password", "passwd", "secret", "token", "signature", "credential", "apikey")


def _param(found: re.Match[str]) -> str:
    name = found.group(1)
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name).lower()  # accessToken: access, token
    words = set(re.split(r"[-_.]", spaced)) | {name.lower()}
    secret = words & _SECRET_WORDS or any(part in name.lower() for part in _SECRET_PARTS)
    return f"{name}=***" if secret else found.group()


# C0 controls, DEL and C1 controls (ESC starts a terminal's escape sequences, CSI is 0x9b),
# the line and paragraph separators (a line break to str.splitlines and to some terminals), and
# every invisible format character (Unicode's Cf: the bidirectional overrides, isolates and
# marks that make a name read differently from its bytes, zero-width spaces, word joiners,
# the byte-order mark, the soft hyphen, tag characters that smuggle ASCII unseen), save the
# zero-width joiner and non-joiner, which scripts and emoji sequences need. Cf as of Unicode
# 14 (``tests/test_display.py`` checks the running Python's table against it).
_CONTROL = re.compile(
    "[\x00-\x1f\x7f-\x9f\u2028\u2029"
    "\u00ad\u0600-\u0605\u061c\u06dd\u070f\u0890-\u0891\u08e2\u180e\u200b\u200e-\u200f"
    "\u202a-\u202e\u2060-\u2064\u2066-\u206f\ufeff\ufff9-\ufffb\U000110bd\U000110cd"
    "\U00013430-\U00013438\U0001bca0-\U0001bca3\U0001d173-\U0001d17a\U000e0001"
    "\U000e0020-\U000e007f]"
)


def redact(text: str) -> str:
    """``text`` with every URL's password shown as ``***``: what is stored, audited and
    printed. ``text`` may be a URL or a message that names URLs anywhere in it."""
    if text.lower().startswith(SQL_SCHEMES) and "://" in text:
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError

        # a URL SQLAlchemy cannot parse still gets the generic rules below
        with contextlib.suppress(ArgumentError, ValueError):
            text = make_url(text).render_as_string(hide_password=True)
    text = _USERINFO.sub(r"\1***@", text)
    text = _TOKEN_USERINFO.sub(r"\1***@", text)
    return _SECRET_PARAM.sub(_param, text)  # ?password=..., &access_token=..., ...


def _escaped(found: re.Match[str]) -> str:
    code = ord(found.group())
    if code <= 0xFF:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


def printable(text: str, keep: str = "") -> str:
    """``text`` with control characters written as ``\\x1b``-style escapes (those in ``keep``,
    such as a message's own newlines, left as they are)."""
    if keep:
        return _CONTROL.sub(lambda m: m.group() if m.group() in keep else _escaped(m), text)
    return _CONTROL.sub(_escaped, text)


def shown(text: str, keep: str = "") -> str:
    """``text`` as kennel prints it: passwords redacted, control characters escaped."""
    return printable(redact(text), keep)


def text_problem(text: str, *, limit: int, lines: bool = False) -> str | None:
    """Why ``text`` (a note, a reason, a camera's name someone typed) may not be stored: longer
    than ``limit`` characters, or holding a control character (tabs and line breaks allowed
    with ``lines``); None when it may."""
    if len(text) > limit:
        return f"{len(text):,} characters long; at most {limit:,}"
    if lines:  # a line break is \n or \r\n (a browser's textarea); a lone \r rewrites a line
        text = text.replace("\r\n", "\n")
    allowed = "\t\n" if lines else ""
    bad = [c for c in _CONTROL.findall(text) if c not in allowed]
    if bad:
        what = "NUL, escape ..." if lines else "NUL, escape, line breaks ..."
        return f"control characters ({what}) are not allowed: U+{ord(bad[0]):04X}"
    return None
