"""A compliance report per model version (HTML + JSON): where its data came from, how it was
trained, how it tested, who certified, approved and released it, how it behaved in production
and which incidents it had, and whether the audit trail behind all that is intact."""

from __future__ import annotations

import html
import json
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select

from kennel.datasets.versioning import DatasetCatalog
from kennel.db import Database, aware
from kennel.db.audit import verify
from kennel.db.schema import AlertRow, ApprovalRow, AuditRow, CertificationRow, MonitorRunRow
from kennel.pipeline.lineage import model_lineage
from kennel.registry.store import ModelRegistry
from kennel.serve.runtime import METADATA
from kennel.train.tracking import RunTracker


def _within(at: datetime, period: dict[str, Any]) -> bool:
    return bool(period["from"] <= at and (period["until"] is None or at < period["until"]))


def compliance(
    ref: str,
    *,
    db: Database,
    registry: ModelRegistry,
    tracker: RunTracker,
    catalog: DatasetCatalog,
) -> dict[str, Any]:
    model = registry.resolve(ref)
    meta = registry.read_json(model, METADATA)
    lineage = model_lineage(
        model.ref, registry=registry, tracker=tracker, catalog=catalog, files_limit=10
    )
    history = registry.alias_history(model.name)
    live: list[dict[str, Any]] = []  # periods this version was behind an alias
    for i, event in enumerate(history):
        if event.to_version != model.version:
            continue
        end = next((e.at for e in history[i + 1 :] if e.alias == event.alias), None)
        live.append({"alias": event.alias, "from": aware(event.at), "until": end and aware(end)})
    with db.session() as s:
        certs = s.scalars(
            select(CertificationRow)
            .where(CertificationRow.model == model.name, CertificationRow.version == model.version)
            .order_by(CertificationRow.id)
        ).all()
        approvals = s.scalars(
            select(ApprovalRow)
            .where(ApprovalRow.model == model.name, ApprovalRow.version == model.version)
            .order_by(ApprovalRow.id)
        ).all()
        runs = s.scalars(
            select(MonitorRunRow)
            .where(MonitorRunRow.model == model.name, MonitorRunRow.version == model.version)
            .order_by(MonitorRunRow.at)
        ).all()
        alerts = s.scalars(select(AlertRow).order_by(AlertRow.id)).all()
        audit = s.scalars(
            select(AuditRow).where(AuditRow.subject.like(f"{model.name}%")).order_by(AuditRow.seq)
        ).all()
        chain = verify(s)
        environments = {r.environment for r in runs}
        incidents = [
            {"id": a.id, "rule": a.rule, "subject": a.subject, "severity": a.severity,
             "state": a.state, "message": a.message, "first_at": aware(a.first_at).isoformat(),
             "count": a.count, "actions": a.actions}
            for a in alerts
            if a.subject in environments
            and any(_within(aware(a.first_at), p) for p in live)
        ]  # fmt: skip
        report = {
            "model": model.as_dict(),
            "bundle": {
                "files": meta.get("files"),
                "git": meta.get("git"),
                "libraries": meta.get("libraries"),
            },
            "data": lineage.get("dataset"),
            "run": lineage.get("run"),
            "study": lineage.get("study"),
            "warm_start_from": lineage.get("warm_start_from"),
            "metrics": meta.get("metrics"),
            "gates": meta.get("gates"),
            "certifications": [
                {"environment": c.environment, "passed": c.passed, "reasons": c.reasons,
                 "at": aware(c.at).isoformat(), "summary": c.summary}
                for c in certs
            ],
            "approvals": [
                {"decision": a.decision, "actor": a.actor, "note": a.note,
                 "at": aware(a.at).isoformat()}
                for a in approvals
            ],
            "releases": [
                e.as_dict() for e in history if model.version in (e.to_version, e.from_version)
            ],
            "monitoring": [
                {"at": aware(r.at).isoformat(), "environment": r.environment, "metrics": {
                    k: r.metrics.get(k) for k in ("window.n", "drift.drifted",
                    "performance.accuracy", "performance.estimated_accuracy")}}
                for r in runs
            ],
            "incidents": incidents,
            "audit": {
                "chain_ok": chain.ok,
                "checked": chain.checked,
                "problem": chain.problem,
                "entries": [
                    {"seq": a.seq, "at": aware(a.at).isoformat(), "actor": a.actor,
                     "action": a.action, "subject": a.subject}
                    for a in audit
                ],
            },
        }  # fmt: skip
    return report


def render(report: dict[str, Any]) -> str:
    esc = html.escape
    m = report["model"]

    def section(title: str, value: Any) -> str:
        body = esc(json.dumps(value, indent=2, default=str))
        return f"<h2>{esc(title)}</h2><pre>{body}</pre>"

    audit = report["audit"]
    verdict = (
        f"intact ({audit['checked']} entries verified)"
        if audit["chain_ok"]
        else f"BROKEN: {audit['problem']}"
    )
    parts = [
        section("Data", report["data"]),
        section("Training run and parameters", {"run": report["run"], "study": report["study"],
                "warm_start_from": report["warm_start_from"]}),
        section("Test metrics", report["metrics"]),
        section("Quality gates", report["gates"]),
        section("Certifications", report["certifications"]),
        section("Approvals", report["approvals"]),
        section("Releases and rollbacks", report["releases"]),
        section("Production monitoring", report["monitoring"]),
        section("Incidents", report["incidents"]),
        section("Audit entries", audit["entries"]),
        section("Bundle", report["bundle"]),
    ]  # fmt: skip
    return f"""<!doctype html><html><head><meta charset="utf-8">
<title>Compliance report: {esc(m["ref"])}</title>
<style>body{{font-family:system-ui,sans-serif;margin:2em;max-width:1100px}}
pre{{background:#f6f6f6;padding:8px;overflow:auto}}</style></head><body>
<h1>Compliance report: {esc(m["ref"])}</h1>
<p>generated {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; audit trail {esc(verdict)};
gates {"passed" if m.get("gates_passed") else "failed"}</p>
{"".join(parts)}</body></html>"""
