"""Governance: alert rules and their actions (notify, roll back, retrain), prediction lineage
and compliance reports."""
