"""When an ingest has nothing to version: a source that lists no image file, or one whose every
file was quarantined on a first ingest. Each is a SourceError (exit code 6), never a version:
an empty or mistyped source into a dataset that has versions already fails the same way, before
any run is recorded, instead of reporting the dataset "unchanged"."""

from __future__ import annotations

from collections.abc import Mapping

from kennel.errors import SourceError
from kennel.ingest.sources import Listing, Source


def nothing_found(source: Source, listing: Listing) -> SourceError:
    """A listing without entries, with why that may be a mistake (a mistyped prefix lists
    nothing on an object store) and what else it left out."""
    others = f"; {listing.ignored} other files ignored" if listing.ignored else ""
    return _no_valid_images(source, listing, f"nothing found: no image files{others}")


def all_quarantined(
    source: Source, listing: Listing, count: int, quarantined: Mapping[str, int]
) -> SourceError:
    return _no_valid_images(source, listing, f"{count} quarantined: {dict(quarantined) or 'none'}")


def _no_valid_images(source: Source, listing: Listing, found: str) -> SourceError:
    never_read = f"; skipped {listing.skipped}" if listing.skipped else ""
    note = f"; {listing.note}" if listing.note else ""
    return SourceError(f"no valid images in {source.describe()} ({found}{never_read}){note}")
