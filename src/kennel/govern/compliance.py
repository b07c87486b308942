"""A compliance report per model version (HTML + JSON): where its data came from, how it was
trained, how it tested, who certified, approved and released it, how it behaved in production
and which incidents it had, and whether the audit trail behind all that is intact."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from kennel import pages
from kennel.datasets.versioning import DatasetCatalog
from kennel.db import Database, aware
from kennel.db.alerts import Alert, AlertRecords
from kennel.db.audit import AuditLog
from kennel.db.deployments import DeploymentStore
from kennel.db.monitoring import MonitorRunStore
from kennel.pipeline.lineage import model_lineage
from kennel.registry.store import ModelRegistry
from kennel.serve.runtime import METADATA
from kennel.train.tracking import RunTracker


def _raised_on(runs: MonitorRunStore, alert: Alert, held: set[str]) -> bool:
    """Whether ``alert`` was raised by one of the monitoring runs ``held`` (those whose window
    held predictions of a version): an incident of that version (a version that only held an
    alias, such as staging or champion, while another served has none)."""
    if alert.run_id:  # the run recorded on the alert (0013)
        return alert.run_id in held
    # opened before 0013: the run stored just before it opened, which a concurrent run of the
    # same environment may have overtaken
    run = runs.raised_at(alert.subject, alert.first_at)
    return run is not None and run.id in held


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
    deployments = DeploymentStore(db)
    certs = deployments.certifications(model.name, model.version)
    approvals = deployments.approvals(model.name, model.version)
    monitoring = MonitorRunStore(db)
    runs = monitoring.for_model(model.name, model.version)
    alerts = AlertRecords(db).list(limit=None)[::-1]  # oldest first
    audit_log = AuditLog(db)
    audit = audit_log.about(model.name)
    chain = audit_log.verify()
    environments = {r.environment for r in runs}
    held = {r.id for r in runs}
    incidents = [
        {"id": a.id, "rule": a.rule, "subject": a.subject, "severity": a.severity,
         "state": a.state, "message": a.message, "first_at": aware(a.first_at).isoformat(),
         "count": a.count, "actions": a.actions}
        for a in alerts
        if a.subject in environments and _raised_on(monitoring, a, held)
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
            {"environment": c.environment, "passed": c.passed,
             "reasons": {"reasons": c.reasons},
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
            {"at": aware(r.at).isoformat(), "environment": r.environment,
             "versions": r.versions, "metrics": {
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


def _when(value: Any) -> str:
    return str(value)[:19].replace("T", " ") if value else "-"


def render(report: dict[str, Any]) -> str:
    """The report as one HTML page of tables and a monitoring chart (templates/compliance)."""
    data = report["data"] or {}
    version = data.get("version") or {}
    run = report["run"] or {}
    study = report["study"] or {}
    gates = report["gates"] or {}
    monitoring = report["monitoring"]

    def fmt(value: Any) -> str:
        return f"{value:.4f}" if isinstance(value, float) else "-" if value is None else str(value)

    return pages.render(
        "compliance.html",
        m=report["model"],
        generated=f"{datetime.now(UTC):%Y-%m-%d %H:%M}",
        audit=report["audit"],
        ancestry_rows=[
            [a["ref"], a["id"][:12], a["rows"], a.get("source") or "-"]
            for a in data.get("ancestry", [])
        ],
        count_rows=[
            [label, split, n]
            for label, splits in sorted((version.get("counts") or {}).items())
            for split, n in sorted(splits.items())
        ],
        training_files=data.get("training_files"),
        run_rows=[
            [run["id"], run.get("status", "-"), _when(run.get("started_at")),
             _when(run.get("finished_at")), fmt(run.get("duration_s"))]
        ] if run else [],
        param_rows=sorted((k, str(v)) for k, v in (run.get("params") or {}).items()),
        study_id=study.get("id"),
        trial_rows=[
            [t["trial"], t["status"], fmt(t.get("val_accuracy")),
             ", ".join(f"{k}={fmt(v)}" for k, v in sorted((t.get("params") or {}).items()))]
            for t in study.get("trials", [])
        ],
        warm_start_from=report["warm_start_from"],
        metrics=report["metrics"],
        metrics_rows=[
            [k, fmt(v)] for k, v in sorted((report["metrics"] or {}).items())
            if isinstance(v, int | float)
        ],
        gates=gates,
        gate_rows=[
            [c["check"], fmt(c["value"]), c["op"], fmt(c["limit"]),
             "passed" if c["passed"] else "FAILED"]
            for c in gates.get("checks", [])
        ],
        cert_rows=[
            [_when(c["at"]), c["environment"], "passed" if c["passed"] else "FAILED",
             c["summary"].get("images", "-"), fmt(c["summary"].get("p99_ms")),
             "; ".join(c["reasons"].get("reasons", [])) or "-"]
            for c in report["certifications"]
        ],
        approval_rows=[
            [_when(a["at"]), a["decision"], a["actor"], a["note"] or "-"]
            for a in report["approvals"]
        ],
        release_rows=[
            [_when(e["at"]), e["alias"], e.get("kind", "-"), fmt(e["from_version"]),
             fmt(e["to_version"]), e["actor"], e["reason"]]
            for e in report["releases"]
        ],
        accuracy_series={
            "measured": [
                (datetime.fromisoformat(r["at"]), r["metrics"].get("performance.accuracy"))
                for r in monitoring
            ],
            "estimated (no labels)": [
                (datetime.fromisoformat(r["at"]),
                 r["metrics"].get("performance.estimated_accuracy"))
                for r in monitoring
            ],
        },
        monitoring_rows=[
            [_when(r["at"]), r["environment"], int(r["metrics"].get("window.n") or 0),
             {None: "-", 0.0: "no"}.get(r["metrics"].get("drift.drifted"), "yes"),
             fmt(r["metrics"].get("performance.accuracy")),
             fmt(r["metrics"].get("performance.estimated_accuracy"))]
            for r in monitoring
        ],
        incident_rows=[
            [_when(i["first_at"]), i["rule"], i["severity"], i["state"], i["count"], i["message"]]
            for i in report["incidents"]
        ],
        audit_rows=[
            [a["seq"], _when(a["at"]), a["actor"], a["action"], a["subject"]]
            for a in report["audit"]["entries"]
        ],
        bundle=report["bundle"],
        bundle_rows=sorted((report["bundle"].get("files") or {}).items()),
    )  # fmt: skip
