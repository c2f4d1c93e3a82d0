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


def _all_pages(client, headers, limit: int = 7, **params) -> list[dict]:
    seen, cursor = [], None
    while True:
        query = dict(params, limit=limit) | ({"cursor": cursor} if cursor else {})
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
    # newest first unless asked otherwise: what the task force reads first is the latest
    seen = _all_pages(client, _as(tokens, "viewer"))
    assert len(seen) == total and len({e["id"] for e in seen}) == total
    keys = [(e["event_ms"], e["device_id"], e["kind"], e["seq"]) for e in seen]
    assert keys == sorted(keys, reverse=True)
    oldest = _all_pages(client, _as(tokens, "viewer"), order="oldest")
    assert [e["id"] for e in oldest] == [e["id"] for e in reversed(seen)]
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
    breach = _all_pages(client, _as(tokens, "viewer"), kind="breach", order="oldest")[0]
    detail = client.get(f"/events/{breach['id']}", headers=_as(tokens, "viewer")).json()
    assert detail["event"] == breach
    times = [f["fix_ms"] for f in detail["fixes"]]
    assert min(times) >= breach["event_ms"] - 60_000 and max(times) <= breach["event_ms"] + 60_000
    # fixes every 10 s from T0: every one within the minute either side is there
    first = max(T0, breach["event_ms"] - 60_000)
    assert times == list(range(first, breach["event_ms"] + 60_001, 10_000))
    assert detail["hops"] == {"device_to_ingest_ms": 120, "decision_ms": 3, "alert_publish_ms": 2}
    assert detail["alert_published_ms"] == breach["event_ms"] + 125
    assert detail["track"] is None  # the console keeps no drawing of site KGX or ECM1


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
        ({"order": "sideways"}, "'newest' or 'oldest'"),
        ({"order": ""}, "'newest' or 'oldest'"),
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


# ------------------------------------------- a trial's store, browsed: order and drill-down

#: A site as a trial run keeps it (loading.site_files.site_from_geojson's format): a worksite,
#: a danger zone written as an exclusion that says so, a plain exclusion, and a closed
#: track (drawn only). Its id is shaped like a supplier's configured fence.
SITE_ID = "acme--ecm1-kings-cross"
WALK_LAT = 51.5570
#: A walk west across the worksite, the danger zone and out, a fix every 10 s.
WALK_LONS = [-0.1092 - 0.00008 * i for i in range(16)]


def _trial_site(shift_m: float = 0.0) -> dict:
    """The site; `shift_m` moves the worksite's west edge (a later version's fence)."""

    def box(lon0, lat0, lon1, lat1):
        return {"type": "Polygon", "coordinates": [[[lon0, lat0], [lon1, lat0], [lon1, lat1],
                                                    [lon0, lat1], [lon0, lat0]]]}  # fmt: skip

    west = -0.1100 - shift_m / 69_300  # about 69.3 km to a degree of longitude here
    return {
        "type": "FeatureCollection",
        "features": [
            {"type": "Feature", "properties": {"name": "possession"},
             "geometry": box(west, 51.5560, -0.1090, 51.5580)},
            {"type": "Feature", "properties": {"name": "danger zone of Up Fast",
                                               "kind": "exclusion", "danger_zone": True},
             "geometry": box(-0.10974, 51.5558, -0.10966, 51.5582)},
            {"type": "Feature", "properties": {"name": "spoil heap", "kind": "exclusion"},
             "geometry": box(-0.1093, 51.5575, -0.1091, 51.5578)},
            {"type": "Feature", "properties": {"name": "Up Fast", "kind": "track", "open": False},
             "geometry": {"type": "LineString",
                          "coordinates": [[-0.1097, 51.5555], [-0.1097, 51.5585]]}},
        ],
    }  # fmt: skip


def _walk(device: str, t0: int, site_id: str = SITE_ID, placed: bool = True) -> list[Fix]:
    """The device's fixes on the walk, decided as ingest would on the site's first version
    (or, with `placed` False, kept with positions in some other frame)."""
    import numpy as np

    from loading.site_files import site_from_geojson

    site = site_from_geojson(site_id, _trial_site())
    lat = np.full(len(WALK_LONS), WALK_LAT)
    x, y = site.locate(lat, np.array(WALK_LONS))
    distance = site.evaluate(x, y).distance_m
    shift = 0.0 if placed else 250.0
    return [
        _fix(device, i, t0 + i * 10_000, lat=WALK_LAT, lon=lon, site=site_id,
             x_m=float(x[i]) + shift, y_m=float(y[i]), distance_m=float(distance[i]),
             state="BREACH" if distance[i] < 0 else "SAFE")
        for i, lon in enumerate(WALK_LONS)
    ]  # fmt: skip


@pytest.fixture(scope="module", params=["sqlite", "timescaledb"])
def trial(request, tmp_path_factory):
    """A store as a simulated trial leaves it: many events, several at the very same
    millisecond (ties the keyset breaks by device, kind and seq), a site kept as versions,
    and walks whose fixes ingest placed on it."""
    import json

    from store.sqlite import SqliteStore

    if request.param == "timescaledb":
        store = TimescaleStore(request.getfixturevalue("timescaledb").fresh_database())
    else:
        store = SqliteStore(str(tmp_path_factory.mktemp("trial") / "trial.db"))
    store.migrate()
    events = []
    for n in range(40):
        t = T0 + (n // 4) * 1000  # four events share each millisecond
        for device in ("acme/a", "acme/b", "gnss/c"):
            kind = ("breach", "clear", "warning", "safe")[n % 4]
            events.append(Event(device, kind, t, n, "elsewhere", "f", -0.5))
    walked = _walk("acme/w", T0 + 3_600_000)
    crossing = next(f for f in walked if f.distance_m < 0)
    events.append(Event("acme/w", "breach", crossing.fix_ms, crossing.seq, SITE_ID, "f",
                        crossing.distance_m))  # fmt: skip
    drifted = _walk("gnss/x", T0 + 7_200_000, placed=False)
    crossed = next(f for f in drifted if f.distance_m < 0)
    events.append(Event("gnss/x", "breach", crossed.fix_ms, crossed.seq, SITE_ID, "f",
                        crossed.distance_m))  # fmt: skip
    store.write(Batch(fixes=walked + drifted, events=events))
    store.save_site_version(SITE_ID, json.dumps(_trial_site()), "trial run", "shift 1")
    tokens = {
        role: issue_token(store, f"{role} user", role, "acme" if role == "supplier" else None)
        for role in ("viewer", "operator", "supplier")
    }
    yield TestClient(create_app(store)), tokens, store, events
    store.close()


@pytest.fixture(params=["sqlite", "timescaledb"])
def fresh(request, tmp_path):
    """An empty store of each kind, for a test that writes what others must not see."""
    from store.sqlite import SqliteStore

    if request.param == "timescaledb":
        store = TimescaleStore(request.getfixturevalue("timescaledb").fresh_database())
    else:
        store = SqliteStore(str(tmp_path / "fresh.db"))
    store.migrate()
    tokens = {"viewer": issue_token(store, "viewer user", "viewer")}
    yield TestClient(create_app(store)), tokens, store
    store.close()


def _key(e: dict | Event) -> tuple:
    if isinstance(e, dict):
        return (e["event_ms"], e["device_id"], e["kind"], e["seq"])
    return (e.event_ms, e.device_id, e.kind, e.seq)


@pytest.mark.parametrize("limit", [1, 3, 4, 7, 1000])
def test_cursor_pages_see_every_event_once_in_both_orders(trial, limit):
    client, tokens, _, events = trial
    viewer = _as(tokens, "viewer")
    newest = _all_pages(client, viewer, limit=limit)
    oldest = _all_pages(client, viewer, limit=limit, order="oldest")
    assert len(newest) == len(events) == len({e["id"] for e in newest})
    assert [_key(e) for e in oldest] == [_key(e) for e in reversed(newest)]
    assert {_key(e) for e in oldest} == {_key(e) for e in events}
    assert [e["event_ms"] for e in oldest] == sorted(e["event_ms"] for e in oldest)
    # filtered: several kinds, one supplier, a time window; both orders, every one once
    params = {"kind": ["breach", "warning"], "supplier": "acme", "since": dt_iso(T0 + 2000),
              "until": dt_iso(T0 + 7000)}  # fmt: skip
    expect = {_key(e) for e in events if e.kind in ("breach", "warning")
              and e.device_id.startswith("acme/")
              and T0 + 2000 <= e.event_ms < T0 + 7000}  # fmt: skip
    assert len(expect) == 20
    for order in ("newest", "oldest"):
        page = _all_pages(client, viewer, limit=limit, order=order, **params)
        assert len(page) == len(expect) and {_key(e) for e in page} == expect, order
        times = [e["event_ms"] for e in page]
        assert times == sorted(times, reverse=order == "newest"), order


def test_the_default_page_is_the_newest_events(trial):
    client, tokens, _, events = trial
    first = client.get("/events", params={"limit": 2}, headers=_as(tokens, "viewer")).json()
    assert first["events"][0]["event_ms"] == max(e.event_ms for e in events)
    assert first["events"][0]["device_id"] == "gnss/x"  # the latest walk's breach


def test_exports_page_in_both_orders(trial):
    client, tokens, _, events = trial
    for order, fmt in (("newest", "csv"), ("oldest", "csv"), ("newest", "geojson"),
                       ("oldest", "geojson")):  # fmt: skip
        seen, cursor = [], None
        while True:
            params = {"format": fmt, "order": order, "limit": 9} | ({"cursor": cursor} if cursor
                                                                    else {})  # fmt: skip
            reply = client.get("/events", params=params, headers=_as(tokens, "viewer"))
            assert reply.status_code == 200, reply.text
            if fmt == "csv":
                rows = list(csv.DictReader(io.StringIO(reply.text)))
            else:
                rows = [f["properties"] for f in reply.json()["features"]]
            seen += [(int(r["event_ms"]), r["device_id"], r["kind"], int(r["seq"])) for r in rows]
            cursor = reply.headers.get("x-next-cursor")
            if cursor is None:
                break
        assert len(seen) == len(events) == len(set(seen)), (order, fmt)
        times = [k[0] for k in seen]
        assert times == sorted(times, reverse=order == "newest"), (order, fmt)


def test_an_events_track_is_drawn_on_its_sites_drawing_as_decided(trial):
    client, tokens, *_ = trial
    viewer = _as(tokens, "viewer")
    event = _all_pages(client, viewer, device="acme/w")[0]
    detail = client.get(f"/events/{event['id']}", headers=viewer).json()
    track = detail["track"]
    assert track["site_id"] == SITE_ID and track["version"] == 1
    assert track["placed"] == "as decided"
    # every fix of the walk within the minute either side, where ingest placed it
    around = detail["fixes"]
    assert len(track["points"]) == len(around) == 13  # 6 before, the event's, 6 after
    assert [(p["x_m"], p["y_m"]) for p in track["points"]] == [
        (round(f["x_m"], 3), round(f["y_m"], 3)) for f in around
    ]
    hit = [p for p in track["points"] if p["event"]]
    assert len(hit) == 1 and (hit[0]["fix_ms"], hit[0]["seq"]) == (event["event_ms"], event["seq"])
    assert hit[0]["state"] == "BREACH"
    # the map draws it: same site, same version, so the same frame
    drawn = client.get(f"/sites/{SITE_ID}/map", params={"version": 1}, headers=viewer).json()
    assert drawn["version"] == 1
    west = min(x for a in drawn["areas"] if a["kind"] == "safe_zone" for r in a["rings"]
               for x, _ in r)  # fmt: skip
    assert min(p["x_m"] for p in track["points"]) < west  # the walk leaves the worksite


def test_a_track_is_drawn_on_the_version_that_decided_it(fresh):
    import json

    client, tokens, store = fresh
    viewer = _as(tokens, "viewer")
    walked = _walk("acme/v", T0)
    crossing = next(f for f in walked if f.distance_m < 0)
    store.write(Batch(fixes=walked, events=[Event("acme/v", "breach", crossing.fix_ms,
                                                  crossing.seq, SITE_ID, "f", -0.1)]))  # fmt: skip
    store.save_site_version(SITE_ID, json.dumps(_trial_site()), "trial run", "shift 1")
    event = _all_pages(client, viewer)[0]
    before = client.get(f"/events/{event['id']}", headers=viewer).json()["track"]
    assert before["version"] == 1 and before["placed"] == "as decided"
    # the fence is moved 30 m west afterwards: a new version, with another frame centre
    store.save_site_version(SITE_ID, json.dumps(_trial_site(shift_m=30)), "op", "moved")
    after = client.get(f"/events/{event['id']}", headers=viewer).json()["track"]
    assert after == before  # still version 1: the fences the decisions were made on
    newest = client.get(f"/sites/{SITE_ID}/map", headers=viewer).json()
    assert newest["version"] == 2
    first = client.get(f"/sites/{SITE_ID}/map", params={"version": 1}, headers=viewer)
    assert first.json()["version"] == 1 and first.json()["areas"] != newest["areas"]


def test_a_track_is_found_under_the_name_its_site_was_decided_on(fresh):
    """A TOML site is decided on under its [site].name, and a trial run keeps its GeoJSON
    (with that name as a member) under its file's id: the drill-down finds it either way."""
    import json

    client, tokens, store = fresh
    viewer = _as(tokens, "viewer")
    name = "ECM1 Finsbury Park, 2m 0000y to 2m 0880y"
    walked = _walk("acme/n", T0, site_id=name)
    crossing = next(f for f in walked if f.distance_m < 0)
    store.write(Batch(fixes=walked, events=[Event("acme/n", "breach", crossing.fix_ms,
                                                  crossing.seq, name, "f", -0.1)]))  # fmt: skip
    other = _trial_site() | {"name": "somewhere else"}
    store.save_site_version("ecm1-elsewhere", json.dumps(other), "trial run", "shift 0")
    store.save_site_version("ecm1-kings-cross", json.dumps(_trial_site() | {"name": name}),
                            "trial run", "shift 1")  # fmt: skip
    event = _all_pages(client, viewer)[0]
    track = client.get(f"/events/{event['id']}", headers=viewer).json()["track"]
    assert (track["site_id"], track["version"]) == ("ecm1-kings-cross", 1)
    assert track["placed"] == "as decided" and len(track["points"]) == 13


def test_a_track_no_version_reproduces_is_placed_from_reported_positions(trial):
    client, tokens, *_ = trial
    viewer = _as(tokens, "viewer")
    event = _all_pages(client, viewer, device="gnss/x")[0]
    detail = client.get(f"/events/{event['id']}", headers=viewer).json()
    track = detail["track"]
    assert track["placed"] == "from reported position" and len(track["points"]) == 13
    # placed by the site's frame from lat/lon, not at the (250 m off) kept positions
    kept = {f["fix_ms"]: f["x_m"] for f in detail["fixes"]}
    for p in track["points"]:
        assert abs(p["x_m"] - (kept[p["fix_ms"]] - 250)) < 0.01


def test_the_map_draws_a_danger_zone_kept_as_an_exclusion_as_a_danger_zone(trial):
    client, tokens, *_ = trial
    drawn = client.get(f"/sites/{SITE_ID}/map", headers=_as(tokens, "viewer")).json()
    kinds = {a["name"]: a["kind"] for a in drawn["areas"]}
    assert kinds == {"possession": "safe_zone", "danger zone of Up Fast": "danger_zone",
                     "spoil heap": "exclusion"}  # fmt: skip
    assert [(line["name"], line["open"]) for line in drawn["lines"]] == [("Up Fast", False)]


def test_site_ids_shaped_like_site_files_are_accepted(trial):
    client, tokens, *_ = trial
    op = _as(tokens, "operator")
    for site_id in ("ecm1-kings-cross", f"gnss--ecm1-kings-cross-{uuid.uuid4().hex[:6]}",
                    "a" * 64):  # fmt: skip
        made = client.post("/sites", json={"site_id": site_id, "note": "shift",
                           "geojson": _trial_site()}, headers=op)  # fmt: skip
        assert made.status_code in (201, 409), (site_id, made.text)
        assert client.get(f"/sites/{site_id}/map", headers=op).status_code == 200, site_id
    for site_id in ("ECM1-Kings-Cross", "-leading-dash", "a" * 65, "kings cross", "a.b"):
        made = client.post("/sites", json={"site_id": site_id, "note": "shift",
                           "geojson": _trial_site()}, headers=op)  # fmt: skip
        assert made.status_code == 422, (site_id, made.text)
    assert client.get(f"/sites/{'a' * 65}/map", headers=op).status_code == 422


def test_new_parameters_out_of_range_are_a_clear_4xx(trial):
    client, tokens, *_ = trial
    viewer, supplier = _as(tokens, "viewer"), _as(tokens, "supplier")
    for version, status, words in (("0", 422, "greater than or equal to 1"),
                                   (str(2**31), 422, "less than or equal to 2147483647"),
                                   ("1.5", 422, "integer"), ("NaN", 422, "integer"),
                                   ("99", 404, "has no version 99")):  # fmt: skip
        reply = client.get(f"/sites/{SITE_ID}/map", params={"version": version}, headers=viewer)
        assert reply.status_code == status and words in reply.text, (version, reply.text)
    stream = "/events/stream"
    cases = [
        (viewer, {"since": "2026-06-02T00:00:00Z", "until": "2026-06-01T00:00:00Z"}, 422,
         "after since"),
        (viewer, {"since": "2026-06-01T00:00:00"}, 422, "time zone"),
        (viewer, {"until": "1969-12-31T23:59:59Z"}, 422, "until must be from 1970"),
        (viewer, {"device": "a/" + "x" * 300}, 422, "at most 200"),
        (supplier, {"device": "gnss/c"}, 403, "its own devices"),
        (supplier, {"supplier": "gnss"}, 403, "its own events"),
    ]  # fmt: skip
    for who, params, status, words in cases:
        reply = client.get(stream, params=params | {"duration_s": 0.1}, headers=who)
        assert reply.status_code == status and words in reply.text, (params, reply.text)


def _streamed(client, headers, **params) -> list[dict]:
    import json

    reply = client.get("/events/stream", params=params | {"duration_s": 1.0}, headers=headers)
    assert reply.status_code == 200, reply.text
    return [json.loads(line[6:]) for line in reply.text.splitlines() if line.startswith("data: ")]


def test_the_live_stream_follows_the_logs_filters(fresh):
    import time

    client, tokens, store = fresh
    now = time.time_ns() // 1_000_000
    live = [Event(d, k, now - 5_000 + i, i, s, "f", -0.2) for i, (d, k, s) in enumerate([
        ("acme/live1", "breach", SITE_ID), ("acme/live1", "clear", SITE_ID),
        ("acme/live2", "breach", SITE_ID), ("gnss/live3", "breach", "elsewhere")])]  # fmt: skip
    store.write(Batch(events=live))
    viewer = _as(tokens, "viewer")
    got = _streamed(client, viewer, device="acme/live1", kind=["breach"])
    assert [(e["device_id"], e["kind"]) for e in got] == [("acme/live1", "breach")]
    got = _streamed(client, viewer, site=SITE_ID, supplier="acme")
    assert {e["device_id"] for e in got} == {"acme/live1", "acme/live2"} and len(got) == 3
    since = dt_iso(now - 4_998)
    got = _streamed(client, viewer, since=since, supplier="acme")
    assert [e["device_id"] for e in got] == ["acme/live2"]
    # a range that has ended: the stream says so at once and ends, with nothing
    began = time.monotonic()
    reply = client.get("/events/stream", params={"until": dt_iso(now - 120_000)}, headers=viewer)
    assert reply.status_code == 200 and "data:" not in reply.text
    assert time.monotonic() - began < 5


def dt_iso(ms: int) -> str:
    import datetime as dt

    at = dt.datetime.fromtimestamp(ms // 1000, dt.UTC) + dt.timedelta(milliseconds=ms % 1000)
    return at.isoformat(timespec="milliseconds")
