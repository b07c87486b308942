"""Every kennel error reaches an HTTP client with the status its kind deserves, from the one
table in kennel.errors: 4xx for what the caller can fix, 503 + Retry-After only for "try again"."""

from __future__ import annotations

import json

import pytest

from kennel import errors
from kennel.db.audit import AnchorConflict, AnchorTaken
from kennel.pipeline.steps.prepare import NothingToBalance
from kennel.serve.app import error_response
from kennel.serve.holder import LoadFailed
from kennel.stream.subscriber import Refused

EXPECTED = {
    errors.KennelError: 500,
    errors.ConfigError: 500,
    errors.NotFoundError: 404,
    errors.AlreadyExistsError: 409,
    errors.AmbiguousRefError: 400,
    errors.SourceError: 400,
    errors.StorageError: 500,
    errors.IntegrityError: 500,
    AnchorConflict: 500,  # the audit anchor's store, as any storage failure
    AnchorTaken: 500,
    errors.UnsafePathError: 400,
    errors.MetadataError: 503,  # the database is unreachable: try again
    errors.RowsRefusedError: 422,  # rows whose values cannot be stored: fix them, not retry
    errors.TrainingError: 500,
    errors.PackagingError: 500,
    errors.ReleaseRefusedError: 409,
    errors.UnloadableModelError: 409,
    errors.StateError: 409,
    errors.HeadMovedError: 409,
    errors.AuthError: 403,
    errors.ServiceError: 503,
    errors.EngineError: 503,  # the Ray cluster is unreachable: try again
    LoadFailed: 409,
    Refused: 409,
    NothingToBalance: 500,  # a TrainingError, said while the build is planned
}


def _every_error_class() -> set[type[errors.KennelError]]:
    found, todo = set(), [errors.KennelError]
    while todo:
        cls = todo.pop()
        found.add(cls)
        todo += cls.__subclasses__()
    return {c for c in found if c.__module__.startswith("kennel.")}


def test_the_table_covers_every_error_class() -> None:
    assert _every_error_class() <= set(EXPECTED), "a new error class needs its HTTP status here"


@pytest.mark.parametrize("cls", sorted(EXPECTED, key=lambda c: c.__name__))
def test_each_error_has_its_status(cls: type[errors.KennelError]) -> None:
    if cls is errors.RowsRefusedError:  # says what was stored and why each row was not
        exc: errors.KennelError = cls("readings", stored=2, refused=[({}, "a\n  bad   row")])
        detail = "stored 2 readings; refused 1: a bad row"
    else:
        exc, detail = cls("something\n  went   wrong"), "something went wrong"
    response = error_response(exc)
    assert response.status_code == EXPECTED[cls]
    assert json.loads(response.body) == {"error": cls.code, "detail": detail}
    assert ("retry-after" in response.headers) == (EXPECTED[cls] == 503)
