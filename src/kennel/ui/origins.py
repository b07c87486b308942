"""Which ``Host`` names and ``Origin`` values the dashboard answers to.

On loopback it answers only to loopback names (``127.0.0.1``, ``localhost``, ``[::1]``): a page
elsewhere that rebinds its own name to a loopback address (DNS rebinding) gets a 400. Behind a
TLS proxy with a public name, ``kennel ui --public-origin https://kennel.example.com`` adds that
name to the allowed hosts and accepts that exact origin on forms (sign-in and actions), whether
the proxy passes the public ``Host`` on or rewrites it."""

from __future__ import annotations

import re
from collections.abc import Iterable

from kennel.errors import ConfigError

LOOPBACK = ("127.0.0.1", "localhost", "::1")
_ORIGIN = re.compile(
    r"^(?P<scheme>https?)://(?P<host>[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?|\[[0-9a-f:]+\])"
    r"(:(?P<port>[0-9]{1,5}))?$"
)


def public_origins(values: Iterable[str]) -> tuple[str, ...]:
    """``scheme://host[:port]`` values (repeated or comma-separated), lower-cased; anything
    else (a path, a query, credentials, another scheme) is a ConfigError naming it."""
    found: list[str] = []
    for value in values:
        for part in filter(None, (p.strip() for p in value.split(","))):
            origin = part.lower().rstrip("/")
            match = _ORIGIN.match(origin)
            if match is None or (match["port"] and not 0 < int(match["port"]) < 65536):
                raise ConfigError(
                    f"--public-origin {part!r} is not an origin like https://kennel.example.com "
                    "(scheme, host and optional port; no path)"
                )
            if origin not in found:
                found.append(origin)
    return tuple(found)


def host_of(origin: str) -> str:
    """The host part of an origin, as Starlette's Host parsing names it (IPv6 in brackets)."""
    match = _ORIGIN.match(origin)
    if match is None:
        raise ConfigError(f"{origin!r} is not an origin")
    return match["host"]


def allowed_hosts(bind: str, origins: Iterable[str] = ()) -> list[str] | None:
    """The Host names to answer to when listening on ``bind``: loopback names (and the public
    origins' hosts) on loopback; None (any) elsewhere, where the bind address is reachable by
    other names anyway."""
    if bind not in LOOPBACK:
        return None
    return ["127.0.0.1", "localhost", "[::1]", *(host_of(o) for o in origins)]
