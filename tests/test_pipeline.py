"""The ingest pipeline without a broker: decisions, events and alerts per message."""

from __future__ import annotations

from geofence.breach import BreachConfig
from ingest.deployment import Deployment
from ingest.pipeline import Inbound, Pipeline
from tests.devices import native, site_latlon

DAY_MS = 86_400_000
T0 = 1_780_000_000_000


def test_a_device_back_after_a_day_in_breach_is_alerted_again(example_site):
    # a device left in breach at the end of one shift and switched on outside the safe
    # zone the next day: the wearer gets a new tap on the shoulder, and the breach log
    # shows the lapse (LOST at lost_after_s after the last fix) and the recovery
    pipeline = Pipeline(Deployment({example_site.name: example_site}, [("*", example_site.name)]),
                        BreachConfig())  # fmt: skip
    lat, lon = site_latlon(example_site, 1250.0, -3.0)  # 40 m past the worksite's limit
    topic = "trackside/v1/acme/ac-0101/fix"
    first = pipeline.decide([Inbound(topic, native("ac-0101", 1, T0, lat, lon), T0)], lambda: T0)
    assert [a.kind for a in first.alerts] == ["breach"]
    later = T0 + DAY_MS
    again = pipeline.decide(
        [Inbound(topic, native("ac-0101", 2, later, lat, lon), later)], lambda: later
    )
    kinds = [e.kind for e in again.batch.events]
    assert kinds[:3] == ["lost", "recovered", "breach"], kinds
    assert again.batch.events[0].event_ms == T0 + 10_000
    assert [a.kind for a in again.alerts if a.kind == "breach"] == ["breach"]
