"""Drift reports: each window's verdict with the windows compared and interests gained and lost."""

from __future__ import annotations

import json
import time
from typing import Any

from service.core.records import DriftReport, WindowInfo
from service.store.connection import Database


class DriftReportTable(Database):
    def save_drift_report(self, report: DriftReport) -> None:
        window_index = report.current_window.index if report.current_window else -1
        with self.transaction() as conn:
            self.engine.lock_users(conn, [report.user_id])
            conn.execute(
                "INSERT INTO drift_reports"
                " (user_id, window_index, score, threshold, detected, report, created_at)"
                " SELECT ?, ?, ?, ?, ?, ?, ?"
                " WHERE EXISTS (SELECT 1 FROM events WHERE user_id = ?)"  # see save_profile
                " ON CONFLICT (user_id, window_index) DO UPDATE SET score = excluded.score,"
                " threshold = excluded.threshold, detected = excluded.detected,"
                " report = excluded.report, created_at = excluded.created_at",
                (
                    report.user_id,
                    window_index,
                    report.score,
                    report.threshold,
                    int(report.drift_detected),
                    json.dumps(_drift_to_json(report)),
                    time.time(),
                    report.user_id,
                ),
            )

    def drift_reports(self, user_id: str) -> list[dict[str, Any]]:
        rows = self._query(
            "SELECT report FROM drift_reports WHERE user_id = ? ORDER BY window_index", (user_id,)
        )
        return [json.loads(row[0]) for row in rows]


def _window_to_json(window: WindowInfo | None) -> dict[str, Any] | None:
    if window is None:
        return None
    return {
        "index": window.index,
        "start": window.start,
        "end": window.end,
        "events": window.events,
        "closed": window.closed,
    }


def _drift_to_json(report: DriftReport) -> dict[str, Any]:
    return {
        "user_id": report.user_id,
        "drift_detected": report.drift_detected,
        "score": report.score,
        "threshold": report.threshold,
        "current_window": _window_to_json(report.current_window),
        "reference_window": [_window_to_json(w) for w in report.reference_window],
        "gained": report.gained,
        "lost": report.lost,
        "detected_window": _window_to_json(report.detected_window),
    }
