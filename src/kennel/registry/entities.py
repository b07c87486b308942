"""Plain, frozen views of registry rows (ORM rows never leave the store); defined beside their
store in ``kennel.db.registry`` and re-exported here."""

from __future__ import annotations

from kennel.db.registry import AliasEvent as AliasEvent
from kennel.db.registry import ModelVersion as ModelVersion
