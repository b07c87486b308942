"""Every failure kennel reports on purpose derives from one root.

    KennelError                 root: a one-line message, a code, a CLI exit code, an HTTP status
    ├── ConfigError             kennel.yaml missing or invalid; the message names the key
    ├── NotFoundError           a dataset, version, blob or run that does not exist
    ├── AlreadyExistsError      an id that must be unique is taken
    ├── AmbiguousRefError       a short version id matches more than one version
    ├── SourceError             a data source cannot be opened or read
    ├── StorageError            the artifact store failed
    │   ├── IntegrityError      bytes read back do not match their content hash
    │   └── UnsafePathError     a key or path would escape its root
    ├── MetadataError           the metadata database failed (wraps SQLAlchemy errors)
    │   └── RowsRefusedError    some rows of a batch cannot be stored; the others were
    ├── TrainingError           training or tuning could not produce a model
    ├── PackagingError          export failed or ONNX Runtime disagrees with PyTorch (parity)
    ├── ReleaseRefusedError     a release rule forbids this move (gate, certification, approval)
    ├── UnloadableModelError    a verified bundle that ONNX Runtime cannot load (old one serves)
    ├── StateError              a change a thing's state does not allow (a resolved alert)
    │   └── HeadMovedError      a dataset gained a version while another was built on its head
    ├── AuthError               no token, an unknown token, or a role that may not do this
    ├── ServiceError            a prediction service could not be started or reached
    └── EngineError             a distributed engine (a Ray cluster) cannot be reached or failed

HTTP status: 4xx where the caller can fix the request (404 unknown, 409 conflict or refused,
422 rows whose values cannot be stored),
503 with Retry-After only where trying again later can succeed (the database or a service is
unreachable), 500 for what the operator must fix (configuration, corrupt artifacts).

Third-party exceptions are re-raised as one of these ``from`` the original, so callers catch
``KennelError`` and the CLI and HTTP layers map ``code`` through ``STATUS`` in one place.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass


class KennelError(Exception):
    """Root of kennel's errors; ``str(err)`` is a complete one-line explanation."""

    code = "kennel_error"


class ConfigError(KennelError):
    code = "config_error"


class NotFoundError(KennelError):
    code = "not_found"


class AlreadyExistsError(KennelError):
    code = "already_exists"


class AmbiguousRefError(KennelError):
    code = "ambiguous_ref"


class SourceError(KennelError):
    code = "source_error"


class StorageError(KennelError):
    code = "storage_error"


class IntegrityError(StorageError):
    code = "integrity_error"


class UnsafePathError(StorageError):
    code = "unsafe_path"


class MetadataError(KennelError):
    code = "metadata_error"


class RowsRefusedError(MetadataError):
    """Rows of a batch that could not be stored (malformed, or refused by the database), each
    with its reason in ``refused``; the batch's other ``stored`` rows were stored."""

    code = "rows_refused"

    def __init__(self, what: str, *, stored: int, refused: Sequence[tuple[object, str]]) -> None:
        self.stored = stored
        self.refused = tuple(refused)  # (the row, why it was refused)
        first = self.refused[0][1] if self.refused else "no reason given"
        more = f" (and {len(self.refused) - 1} more)" if len(self.refused) > 1 else ""
        super().__init__(f"stored {stored} {what}; refused {len(self.refused)}: {first}{more}")


class TrainingError(KennelError):
    code = "training_error"


class PackagingError(KennelError):
    code = "packaging_error"


class ReleaseRefusedError(KennelError):
    code = "release_refused"


class UnloadableModelError(KennelError):
    code = "model_unloadable"


class StateError(KennelError):
    code = "invalid_state"


class HeadMovedError(StateError):
    """A dataset gained a version after another was built on its newest one: ``head`` is the
    newest now (build on it and commit again)."""

    def __init__(self, message: str, head: str | None = None) -> None:
        super().__init__(message)
        self.head = head


class AuthError(KennelError):
    code = "unauthorized"


class ServiceError(KennelError):
    code = "service_error"


class EngineError(KennelError):
    code = "engine_error"


@dataclass(frozen=True)
class Status:
    exit_code: int
    http_status: int


# One table from error code to CLI exit code and HTTP status.
STATUS: dict[str, Status] = {
    KennelError.code: Status(1, 500),
    ConfigError.code: Status(2, 500),
    NotFoundError.code: Status(3, 404),
    AlreadyExistsError.code: Status(4, 409),
    AmbiguousRefError.code: Status(5, 400),
    SourceError.code: Status(6, 400),
    StorageError.code: Status(7, 500),
    IntegrityError.code: Status(8, 500),
    UnsafePathError.code: Status(9, 400),
    MetadataError.code: Status(10, 503),
    TrainingError.code: Status(11, 500),
    PackagingError.code: Status(12, 500),
    ReleaseRefusedError.code: Status(13, 409),
    AuthError.code: Status(14, 403),
    ServiceError.code: Status(15, 503),
    UnloadableModelError.code: Status(16, 409),
    StateError.code: Status(17, 409),
    EngineError.code: Status(18, 503),
    RowsRefusedError.code: Status(19, 422),
}


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """``"; did you mean 'x'?"`` for the closest of ``choices``, or ``""`` when none is close."""
    close = difflib.get_close_matches(word, [str(c) for c in choices], n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def status_of(error: KennelError) -> Status:
    return STATUS.get(error.code, STATUS[KennelError.code])
