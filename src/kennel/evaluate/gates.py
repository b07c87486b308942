"""Quality gates from kennel.yaml, applied to an evaluation: pass or fail with reasons."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kennel.config import GatesConfig


@dataclass(frozen=True)
class GateResult:
    passed: bool
    reasons: list[str]  # every failed check, human-readable
    checks: list[dict[str, Any]]

    def as_dict(self) -> dict[str, Any]:
        return {"passed": self.passed, "reasons": self.reasons, "checks": self.checks}


def _per_class(threshold: float | dict[str, float], name: str) -> float:
    return threshold.get(name, 0.0) if isinstance(threshold, dict) else threshold


def apply(gates: GatesConfig, evaluation: dict[str, Any]) -> GateResult:
    checks: list[dict[str, Any]] = []

    def check(name: str, value: float, op: str, limit: float) -> None:
        ok = value >= limit if op == ">=" else value <= limit
        checks.append({"check": name, "value": value, "op": op, "limit": limit, "passed": ok})

    check("accuracy", evaluation["accuracy"], ">=", gates.min_accuracy)
    if gates.beat_majority:
        # a model that is no better than always answering the commonest class is no model:
        # it may not pass, whatever the other thresholds say
        supports = [m["support"] for m in evaluation["per_class"].values()]
        majority = max(supports) / sum(supports) if sum(supports) else 1.0
        checks.append(
            {
                "check": "accuracy",
                "note": "the majority-class rate: always answering the commonest class",
                "value": evaluation["accuracy"],
                "op": ">",
                "limit": majority,
                "passed": evaluation["accuracy"] > majority,
            }
        )
    for cls, m in evaluation["per_class"].items():
        check(f"precision[{cls}]", m["precision"], ">=", _per_class(gates.min_precision, cls))
        check(f"recall[{cls}]", m["recall"], ">=", _per_class(gates.min_recall, cls))
    check("recall_gap", evaluation["bias"]["recall_gap"], "<=", gates.max_recall_gap)
    reasons = [
        f"{c['check']} {c['value']:.4f} is not {c['op']} {c['limit']:.4f}"
        + (f" ({c['note']})" if "note" in c else "")
        for c in checks
        if not c["passed"]
    ]
    return GateResult(passed=not reasons, reasons=reasons, checks=checks)
