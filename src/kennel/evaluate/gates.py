"""Quality gates from kennel.yaml, applied to an evaluation: pass or fail with reasons."""

from __future__ import annotations

from dataclasses import dataclass

from kennel.config import GatesConfig
from kennel.evaluate.metrics import Bias, Classification


@dataclass(frozen=True)
class GateCheck:
    check: str  # what was measured: accuracy, precision[cat], recall_gap, ...
    value: float
    op: str  # ">=", "<=" or ">"
    limit: float
    passed: bool
    note: str | None = None  # why the limit is what it is, where that is not obvious

    @property
    def reason(self) -> str:
        """The failure, for people: ``recall[cat] 0.7000 is not >= 0.8000``."""
        return f"{self.check} {self.value:.4f} is not {self.op} {self.limit:.4f}" + (
            f" ({self.note})" if self.note is not None else ""
        )

    def as_dict(self) -> dict[str, object]:
        note = {} if self.note is None else {"note": self.note}
        return {
            "check": self.check,
            **note,
            "value": self.value,
            "op": self.op,
            "limit": self.limit,
            "passed": self.passed,
        }


@dataclass(frozen=True)
class GateResult:
    passed: bool
    reasons: tuple[str, ...]  # every failed check, human-readable
    checks: tuple[GateCheck, ...]

    def as_dict(self) -> dict[str, object]:
        return {
            "passed": self.passed,
            "reasons": list(self.reasons),
            "checks": [c.as_dict() for c in self.checks],
        }


def _per_class(threshold: float | dict[str, float], name: str) -> float:
    return threshold.get(name, 0.0) if isinstance(threshold, dict) else threshold


def _check(name: str, value: float, op: str, limit: float) -> GateCheck:
    ok = value >= limit if op == ">=" else value <= limit
    return GateCheck(name, value, op, limit, ok)


def apply(gates: GatesConfig, metrics: Classification, bias: Bias) -> GateResult:
    checks = [_check("accuracy", metrics.accuracy, ">=", gates.min_accuracy)]
    if gates.beat_majority:
        # a model that is no better than always answering the commonest class is no model:
        # it may not pass, whatever the other thresholds say
        supports = [m.support for m in metrics.per_class.values()]
        majority = max(supports) / sum(supports) if sum(supports) else 1.0
        checks.append(
            GateCheck(
                check="accuracy",
                note="the majority-class rate: always answering the commonest class",
                value=metrics.accuracy,
                op=">",
                limit=majority,
                passed=metrics.accuracy > majority,
            )
        )
    for cls, m in metrics.per_class.items():
        checks.append(
            _check(f"precision[{cls}]", m.precision, ">=", _per_class(gates.min_precision, cls))
        )
        checks.append(_check(f"recall[{cls}]", m.recall, ">=", _per_class(gates.min_recall, cls)))
    checks.append(_check("recall_gap", bias.recall_gap, "<=", gates.max_recall_gap))
    reasons = tuple(c.reason for c in checks if not c.passed)
    return GateResult(passed=not reasons, reasons=reasons, checks=tuple(checks))
