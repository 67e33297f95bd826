"""The oracle's funnel (pure Python over the workload's event lines), on events whose answer is worked out by hand."""

from datetime import date
from decimal import Decimal

from pipelines.workload.oracle import daily_funnel


def _event(n, event_type, session, ts):
    return {"eventId": f"00000000-0000-0000-0000-{n:012d}", "eventType": event_type, "sessionId": session,
            "timestamp": ts}


def test_sessions_count_on_their_first_view_day_and_duplicates_once():
    events = [
        _event(1, "product.viewed", "s1", "2026-11-01T23:58:00.000Z"),
        _event(2, "cart.item_added", "s1", "2026-11-02T00:01:00.000Z"),
        _event(3, "order.created", "s1", "2026-11-02T00:02:00.000Z"),
        _event(3, "order.created", "s1", "2026-11-02T00:02:00.000Z"),  # the same event in a second object
        _event(4, "product.viewed", "s2", "2026-11-01T10:00:00.000Z"),
        _event(5, "product.viewed", "s2", "2026-11-01T10:01:00.000Z"),
        _event(6, "product.viewed", "s3", "2026-11-01T11:00:00.000Z"),
        _event(7, "cart.item_added", "s3", "2026-11-01T11:01:00.000Z"),
        _event(8, "payment.processed", "s3", "2026-11-01T11:02:00.000Z"),
        _event(9, "product.viewed", None, "2026-11-01T12:00:00.000Z"),
        _event(10, "product.viewed", "s4", "2026-11-02T09:00:00.000+02:00"),  # 07:00 UTC
    ]
    assert daily_funnel(events) == [
        (date(2026, 11, 1), 3, 2, 1, 4, 2, 1, Decimal("0.6667"), Decimal("0.5000"), Decimal("0.3333")),
        (date(2026, 11, 2), 1, 0, 0, 1, 0, 0, Decimal("0.0000"), None, Decimal("0.0000")),
    ]
