"""The console API against a real TimescaleDB: the breach log, devices, sites with versions,
roles (each sees exactly what it should), and bad input answered with a clear 4xx."""

from __future__ import annotations

import csv
import io
import uuid

import pytest
from fastapi.testclient import TestClient

from reporting.console.app import create_app
from reporting.console.auth import issue_token
from store import Alert, Batch, Event, Fix
from store.timescale import TimescaleStore

T0 = 1_795_000_000_000  # November 2026, UTC ms


def _fix(device: str, seq: int, t_ms: int, **changes) -> Fix:
    values = dict(
        device_id=device, supplier=device.split("/")[0], seq=seq, fix_ms=t_ms,
        received_ms=t_ms + 120, decided_ms=t_ms + 123, alert_ms=None, lat=51.5577,
        lon=-0.1088, accuracy_m=0.4, fix_type="RTK fixed", satellites=20, hdop=0.8,
        battery_pct=90.0, firmware="2.4.1", source_format="native", site="ECM1",
        x_m=1.0, y_m=2.0, fence="possession", distance_m=1.5, state="SAFE", accepted=True,
    )  # fmt: skip
    values.update(changes)
    return Fix(**values)


def _polygon(lon0: float, lat0: float, dlon: float = 0.0006, dlat: float = 0.0020) -> dict:
    ring = [
        [lon0, lat0],
        [lon0 + dlon, lat0],
        [lon0 + dlon, lat0 + dlat],
        [lon0, lat0 + dlat],
        [lon0, lat0],
    ]
    return {
        "type": "FeatureCollection",
        "features": [
            {
                "type": "Feature",
                "properties": {"name": "possession"},
                "geometry": {"type": "Polygon", "coordinates": [ring]},
            }
        ],
    }


@pytest.fixture(scope="module")
def console(timescaledb, tmp_path_factory):
    store = TimescaleStore(timescaledb.fresh_database())
    store.migrate()
    fixes, events, alerts = [], [], []
    for supplier in ("acme", "gnssco"):
        for d in range(2):
            device = f"{supplier}/{d}"
            for i in range(30):
                t = T0 + i * 10_000
                breach = i % 10 == 5
                fixes.append(
                    _fix(device, i, t, state="BREACH" if breach else "SAFE",
                         alert_ms=t + 125 if breach else None, lat=51.5577 + i * 1e-5)
                )  # fmt: skip
                if breach:
                    events.append(Event(device, "breach", t, i, "ECM1" if d else "KGX", "f", -0.4))
                    alerts.append(Alert(device, "breach", t, i, t + 125, "topic", "{}"))
                if i % 10 == 8:
                    events.append(Event(device, "clear", t, i, "ECM1" if d else "KGX", "f", 1.2))
    store.write(Batch(fixes=fixes, events=events, alerts=alerts))
    reports = tmp_path_factory.mktemp("reports")
    (reports / "plots").mkdir()
    for file in ("summary.html", "acme.html", "gnssco.pdf", "plots/acme-error-cdf.png",
                 "plots/summary-error-cdf.png"):  # fmt: skip
        (reports / file).write_text("report")
    (reports.parent / "manifest.json").write_text("{}")  # beside the folder: never served
    tokens = {
        role: issue_token(store, f"{role} user", role, "acme" if role == "supplier" else None)
        for role in ("viewer", "operator", "supplier", "admin")
    }
    client = TestClient(create_app(store, reports_dir=reports, lost_after_s=10))
    yield client, tokens, store, len(events)
    store.close()


def _as(tokens, role):
    return {"Authorization": f"Bearer {tokens[role]}"}


def _all_pages(client, headers, **params) -> list[dict]:
    seen, cursor = [], None
    while True:
        query = dict(params, limit=7) | ({"cursor": cursor} if cursor else {})
        page = client.get("/events", params=query, headers=headers)
        assert page.status_code == 200, page.text
        body = page.json()
        seen += body["events"]
        cursor = body["next_cursor"]
        if cursor is None:
            return seen


def test_health_answers_without_a_token(console):
    client, *_ = console
    reply = client.get("/health")
    assert reply.status_code == 200 and reply.json() == {
        "database": "ok",
        "broker": "not configured",
    }


def test_no_token_or_an_unknown_one_is_refused(console):
    client, *_ = console
    assert client.get("/events").status_code == 401
    reply = client.get("/events", headers={"Authorization": "Bearer tf_not-a-token"})
    assert reply.status_code == 401 and reply.headers["www-authenticate"] == "Bearer"


def test_the_breach_log_pages_through_every_event_once_in_time_order(console):
    client, tokens, _, total = console
    seen = _all_pages(client, _as(tokens, "viewer"))
    assert len(seen) == total and len({e["id"] for e in seen}) == total
    keys = [(e["event_ms"], e["device_id"], e["kind"], e["seq"]) for e in seen]
    assert keys == sorted(keys)
    breaches = _all_pages(client, _as(tokens, "viewer"), kind="breach", site="ECM1")
    assert breaches and all(e["kind"] == "breach" and e["site"] == "ECM1" for e in breaches)
    import datetime as dt

    def iso(ms: int) -> str:
        return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).isoformat()

    window = _all_pages(
        client, _as(tokens, "viewer"), since=iso(T0 + 50_000), until=iso(T0 + 90_000)
    )
    # breaches at 50 s (i = 5), clears at 80 s (i = 8): both in, for all four devices
    assert sorted({e["event_ms"] - T0 for e in window}) == [50_000, 80_000]
    assert len(window) == 8


def test_the_breach_log_exports_csv_and_geojson(console):
    client, tokens, *_ = console
    reply = client.get(
        "/events", params={"format": "csv", "limit": 5}, headers=_as(tokens, "viewer")
    )
    assert reply.status_code == 200 and reply.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(reply.text)))
    assert len(rows) == 5 and rows[0]["kind"] in ("breach", "clear")
    assert reply.headers["x-next-cursor"]
    geo = client.get("/events", params={"format": "geojson"}, headers=_as(tokens, "viewer"))
    assert geo.headers["content-type"].startswith("application/geo+json")
    features = geo.json()["features"]
    assert features and all(f["geometry"]["type"] == "Point" for f in features)
    lon, lat = features[0]["geometry"]["coordinates"]
    assert -0.11 < lon < -0.10 and 51.55 < lat < 51.56


def test_an_event_in_detail_has_the_fixes_around_it_and_its_hops(console):
    client, tokens, *_ = console
    breach = _all_pages(client, _as(tokens, "viewer"), kind="breach")[0]
    detail = client.get(f"/events/{breach['id']}", headers=_as(tokens, "viewer")).json()
    assert detail["event"] == breach
    times = [f["fix_ms"] for f in detail["fixes"]]
    assert min(times) >= breach["event_ms"] - 60_000 and max(times) <= breach["event_ms"] + 60_000
    # fixes every 10 s from T0: every one within the minute either side is there
    first = max(T0, breach["event_ms"] - 60_000)
    assert times == list(range(first, breach["event_ms"] + 60_001, 10_000))
    assert detail["hops"] == {"device_to_ingest_ms": 120, "decision_ms": 3, "alert_publish_ms": 2}
    assert detail["alert_published_ms"] == breach["event_ms"] + 125


def test_devices_show_state_position_and_lost_protection(console):
    client, tokens, *_ = console
    devices = client.get("/devices", headers=_as(tokens, "viewer")).json()
    assert {d["device_id"] for d in devices} == {"acme/0", "acme/1", "gnssco/0", "gnssco/1"}
    # the fixture's fixes are from November 2026's past: every device is silent, so LOST
    assert all(d["state"] == "LOST" and d["seconds_since_fix"] > 10 for d in devices)
    assert all(d["last_fix_ms"] == T0 + 29 * 10_000 for d in devices)


def test_a_supplier_sees_only_its_own_devices_events_and_report(console):
    client, tokens, *_ = console
    mine = _as(tokens, "supplier")
    events = _all_pages(client, mine)
    assert events and all(e["supplier"] == "acme" for e in events)
    assert client.get("/events", params={"supplier": "gnssco"}, headers=mine).status_code == 403
    assert client.get("/events", params={"device": "gnssco/0"}, headers=mine).status_code == 403
    theirs = _all_pages(client, _as(tokens, "viewer"), supplier="gnssco")[0]
    assert client.get(f"/events/{theirs['id']}", headers=mine).status_code == 404
    assert {d["supplier"] for d in client.get("/devices", headers=mine).json()} == {"acme"}
    names = [r["name"] for r in client.get("/trials/reports", headers=mine).json()]
    assert sorted(names) == ["acme-error-cdf.png", "acme.html"]
    assert client.get("/trials/reports/summary.html", headers=mine).status_code == 404
    assert client.get("/trials/reports/acme.html", headers=mine).text == "report"
    everything = [
        r["name"] for r in client.get("/trials/reports", headers=_as(tokens, "viewer")).json()
    ]
    assert len(everything) == 5


def test_roles_decide_who_may_change_sites_and_issue_tokens(console):
    client, tokens, *_ = console
    body = {"site_id": f"roles-{uuid.uuid4().hex[:6]}", "note": "new",
            "geojson": _polygon(-0.1100, 51.5560)}  # fmt: skip
    for role in ("viewer", "supplier"):
        assert client.post("/sites", json=body, headers=_as(tokens, role)).status_code == 403
    assert client.post("/sites", json=body, headers=_as(tokens, "operator")).status_code == 201
    new = {"name": "laptop", "role": "viewer"}
    assert client.post("/tokens", json=new, headers=_as(tokens, "operator")).status_code == 403
    issued = client.post("/tokens", json=new, headers=_as(tokens, "admin"))
    assert issued.status_code == 201
    fresh = {"Authorization": f"Bearer {issued.json()['token']}"}
    assert client.get("/devices", headers=fresh).status_code == 200
    bad = {"name": "x", "role": "supplier"}  # a supplier token must name its supplier
    assert client.post("/tokens", json=bad, headers=_as(tokens, "admin")).status_code == 422


def test_a_site_change_is_a_new_version_never_an_overwrite(console):
    client, tokens, *_ = console
    op = _as(tokens, "operator")
    site_id = f"kgx-{uuid.uuid4().hex[:6]}"
    first = {"site_id": site_id, "note": "survey v1", "geojson": _polygon(-0.1100, 51.5560)}
    made = client.post("/sites", json=first, headers=op)
    assert made.status_code == 201 and made.json()["version"] == 1
    assert made.json()["author"] == "operator user"
    moved = client.put(f"/sites/{site_id}", json={"note": "limit board moved 18 m",
                       "geojson": _polygon(-0.1100, 51.5560, dlat=0.0022)}, headers=op)  # fmt: skip
    assert moved.status_code == 200 and moved.json()["version"] == 2
    retired = client.delete(f"/sites/{site_id}", params={"note": "possession given up"}, headers=op)
    assert retired.status_code == 200 and retired.json()["retired"] is True
    history = client.get(f"/sites/{site_id}/versions", headers=_as(tokens, "viewer")).json()
    assert [(v["version"], v["note"]) for v in history] == [
        (1, "survey v1"),
        (2, "limit board moved 18 m"),
        (3, "possession given up"),
    ]
    assert history[0]["geojson"] != history[1]["geojson"]  # version 1 is kept as it was
    again = client.put(f"/sites/{site_id}", json={"note": "x", "geojson": _polygon(-0.11, 51.556)},
                       headers=op)  # fmt: skip
    assert again.status_code == 409
    listed = {s["site_id"] for s in client.get("/sites", headers=op).json()}
    assert site_id not in listed
    listed = client.get("/sites", params={"include_retired": True}, headers=op).json()
    assert site_id in {s["site_id"] for s in listed}


@pytest.mark.parametrize(
    ("geojson", "words"),
    [
        ({"type": "FeatureCollection", "features": [{"type": "Feature", "properties": {},
          "geometry": {"type": "Polygon", "coordinates": [[[-0.11, 51.556], [-0.1094, 51.558],
          [-0.1094, 51.556], [-0.11, 51.558], [-0.11, 51.556]]]}}]}, "valid polygon"),
        ({"type": "FeatureCollection", "features": [{"type": "Feature", "properties": {},
          "geometry": {"type": "Point", "coordinates": [-0.11, 51.556]}}]}, "not an area"),
        ({"type": "FeatureCollection", "features": []}, "worksite"),
        ({"type": "FeatureCollection", "features": [{"type": "Feature", "properties": {},
          "geometry": {"type": "Polygon", "coordinates": [[[500, 51], [501, 51], [501, 52],
          [500, 51]]]}}]}, ""),
    ],
)  # fmt: skip
def test_a_bad_site_is_refused_whole_and_nothing_is_kept(console, geojson, words):
    client, tokens, store, _ = console
    site_id = f"bad-{uuid.uuid4().hex[:6]}"
    reply = client.post(
        "/sites", json={"site_id": site_id, "note": "x", "geojson": geojson},
        headers=_as(tokens, "operator"),
    )  # fmt: skip
    assert reply.status_code == 422, reply.text
    assert words in reply.json()["detail"]
    assert store.site_versions(site_id) == []


def test_bad_requests_get_a_clear_4xx(console):
    client, tokens, *_ = console
    viewer = _as(tokens, "viewer")
    cases = [
        ({"since": "2026-06-02T00:00:00Z", "until": "2026-06-01T00:00:00Z"}, "after since"),
        ({"since": "2026-06-01T00:00:00"}, "time zone"),
        ({"limit": 5000}, "less than or equal to 1000"),
        ({"cursor": "not-a-cursor"}, "cursor"),
        ({"kind": "exploded"}, "breach"),
    ]
    for params, words in cases:
        reply = client.get("/events", params=params, headers=viewer)
        assert reply.status_code == 422, (params, reply.text)
        assert words in reply.text, (params, reply.text)
    assert client.get("/events/not-an-id", headers=viewer).status_code == 422
    assert client.get("/sites/no-such-site", headers=viewer).status_code == 404
    bad_id = {"site_id": "Not Valid!", "note": "x", "geojson": _polygon(-0.11, 51.556)}
    assert client.post("/sites", json=bad_id, headers=_as(tokens, "operator")).status_code == 422


def test_injection_and_traversal_attempts_find_nothing(console):
    client, tokens, *_ = console
    viewer = _as(tokens, "viewer")
    for params in ({"site": "x' OR '1'='1"}, {"supplier": "%"}, {"supplier": "_cme"},
                   {"device": "acme/0' --"}):  # fmt: skip
        reply = client.get("/events", params=params, headers=viewer)
        assert reply.status_code == 200 and reply.json()["events"] == [], params
    for name in ("..%2Fmanifest.json", "%2E%2E%2Fmanifest.json", "plots%2Facme-error-cdf.png"):
        assert client.get(f"/trials/reports/{name}", headers=viewer).status_code == 404


def test_every_parameter_and_field_is_described_in_the_openapi_schema(console):
    client, tokens, *_ = console
    spec = client.get("/openapi.json", headers=_as(tokens, "viewer")).json()
    for path, methods in spec["paths"].items():
        for method, op in methods.items():
            assert op.get("summary"), (path, method)
            for parameter in op.get("parameters", []):
                assert parameter.get("description"), (path, method, parameter["name"])
    for name, schema in spec["components"]["schemas"].items():
        if name.startswith(("HTTPValidationError", "ValidationError")):
            continue
        for field, info in schema.get("properties", {}).items():
            assert info.get("description"), (name, field)


def test_nul_characters_are_refused_not_a_server_error(console):
    # found by schemathesis: PostgreSQL refuses NUL in text, which was a 500
    client, tokens, *_ = console
    viewer = _as(tokens, "viewer")
    assert client.get("/events", params={"device": "\x00"}, headers=viewer).status_code == 422
    assert client.get("/sites/a%00b", headers=viewer).status_code == 422
    body = {"site_id": "nul", "note": "a\x00b", "geojson": _polygon(-0.11, 51.556)}
    assert client.post("/sites", json=body, headers=_as(tokens, "operator")).status_code == 422
