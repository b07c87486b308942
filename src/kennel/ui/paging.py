"""Links and page counts shared by the listing pages."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

from fastapi.responses import Response

from kennel.errors import NotFoundError

Endpoint = Callable[..., Response]
Register = Callable[[str], Callable[[Endpoint], Endpoint]]  # GET route at a path, as a decorator


def linker(path: str, params: dict[str, Any]) -> Callable[..., str]:
    """``href(**changes)``: this page's URL with some parameters changed (empty ones left out)."""

    def href(**changes: Any) -> str:
        merged = {k: v for k, v in {**params, **changes}.items() if v not in ("", None)}
        return path + ("?" + urlencode(merged) if merged else "")

    return href


def pages_of(total: int, per_page: int, page: int, what: str) -> int:
    """How many pages ``total`` items fill; a page past the last is not found."""
    pages = max(1, math.ceil(total / per_page))
    if page > pages:
        raise NotFoundError(f"page {page} of {what}: there are {pages}")
    return pages
