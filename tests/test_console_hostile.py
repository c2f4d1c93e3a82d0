"""Issue 14, the console's part: what an outside probe found, each as a regression test,
on SQLite and on a real TimescaleDB.

6. a keyset cursor or an event id holding a 64-bit overflow answered 500;
7. a supplier's token listed and fetched another supplier's report files when that
   supplier's key started with its own (`phones` read `phones-uk.*`);
8. `/docs` and `/openapi.json` answered without a token.
"""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from reporting.console import admin
from reporting.console.app import create_app
from reporting.console.auth import issue_token
from reporting.console.events import MAX_MS, MAX_SEQ, MIN_MS, MIN_SEQ
from store import Batch, Event, Fix
from store.sqlite import SqliteStore
from store.timescale import TimescaleStore

ROOT = Path(__file__).resolve().parent.parent
T0 = 1_795_000_000_000
DEVICES = ("phones/pixel7", "phones-uk/pixel7", "acme/0")


def _key(*fields) -> str:
    return base64.urlsafe_b64encode(json.dumps(list(fields)).encode()).decode().rstrip("=")


def _raw_key(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def _fix(device: str, seq: int, t_ms: int) -> Fix:
    return Fix(device, device.split("/")[0], seq, t_ms, t_ms + 120, t_ms + 123, None, 51.5577,
               -0.1088, 0.4, "RTK fixed", 20, 0.8, 90.0, "2.4.1", "native", "ECM1", 1.0, 2.0,
               "possession", 1.5, "SAFE", True)  # fmt: skip


def _report_folder(folder: Path) -> Path:
    """A trial's reports as reporting/write.py lays them out, for `phones`, for `phones-uk`
    (whose key starts with `phones`) and the comparative summary; and a link leading out."""
    reports = folder / "report"
    (reports / "plots").mkdir(parents=True)
    for name in ("summary", "phones", "phones-uk"):
        for ext in admin.REPORT_FORMATS:
            (reports / f"{name}.{ext}").write_text(f"{name} report")
        for kind in admin.PLOT_KINDS:
            (reports / "plots" / f"{name}-{kind}.png").write_text(f"{name} plot")
    (folder / "elsewhere.md").write_text("not a report")
    (reports / "elsewhere.md").symlink_to(folder / "elsewhere.md")
    return reports


@pytest.fixture(scope="module", params=["sqlite", "timescaledb"])
def console(request, tmp_path_factory):
    folder = tmp_path_factory.mktemp(f"hostile-{request.param}")
    if request.param == "timescaledb":
        store = TimescaleStore(request.getfixturevalue("timescaledb").fresh_database())
    else:
        store = SqliteStore(str(folder / "console.db"))
    store.migrate()
    store.write(
        Batch(
            fixes=[_fix(d, i, T0 + i * 10_000) for d in DEVICES for i in range(10)],
            events=[Event(d, "breach", T0 + 50_000, 5, "ECM1", "f", -0.4) for d in DEVICES],
        )
    )
    tokens = {
        "viewer": issue_token(store, "task force", "viewer"),
        "admin": issue_token(store, "admin", "admin"),
        "supplier": issue_token(store, "phones", "supplier", "phones"),
        "supplier-uk": issue_token(store, "phones uk", "supplier", "phones-uk"),
    }
    reports = _report_folder(folder)
    yield TestClient(create_app(store, reports_dir=reports)), tokens, store
    store.close()


def _as(tokens, who: str) -> dict:
    return {"Authorization": f"Bearer {tokens[who]}"}


# --------------------------------------------------- 6. overflows and malformed input


@pytest.mark.parametrize("who", ["viewer", "supplier"])
@pytest.mark.parametrize(
    ("cursor", "words"),
    [
        (_key(10**30, "phones/pixel7", "breach", 1), "event_ms"),  # the probe's own cursor
        (_key(2**63 - 1, "phones/pixel7", "breach", 1), "event_ms"),
        (_key(2**63, "phones/pixel7", "breach", 1), "event_ms"),
        (_key(-(2**63) - 1, "phones/pixel7", "breach", 1), "event_ms"),
        (_key(-1, "phones/pixel7", "breach", 1), "event_ms"),
        (_key(MAX_MS + 1, "phones/pixel7", "breach", 1), "event_ms"),
        (_key(T0, "phones/pixel7", "breach", 10**30), "seq"),
        (_key(T0, "phones/pixel7", "breach", 2**63), "seq"),
        (_key(T0, "phones/pixel7", "breach", -2), "seq"),
        (_raw_key('[NaN, "phones/pixel7", "breach", 1]'), "event_ms"),
        (_raw_key('[1e999, "phones/pixel7", "breach", 1]'), "event_ms"),
        (_raw_key('[1795000050000, "phones/pixel7", "breach", Infinity]'), "seq"),
        (_key("NaN", "phones/pixel7", "breach", 1), "event_ms"),
        (_key(True, "phones/pixel7", "breach", 1), "event_ms"),
        (_key(T0 + 0.5, "phones/pixel7", "breach", 1), "event_ms"),
        (_key(T0, "phones/\x00", "breach", 1), "device_id"),
        (_raw_key('[1795000050000, "phones/\\ud800", "breach", 1]'), "device_id"),
        (_key(T0, ["phones/pixel7"], "breach", 1), "device_id"),
        (_key(T0, "phones", "breach", 1), "device_id"),
        (_key(T0, "phones/" + "x" * 300, "breach", 1), "device_id"),
        (_key(T0, "phones/pixel7", ["breach"], 1), "kind"),
        (_key(T0, "phones/pixel7", "exploded", 1), "kind"),
        (_key(T0, "phones/pixel7", "breach"), "list"),
        (_key(T0, "phones/pixel7", "breach", 1, 2), "list"),
        (_key({"ms": T0}), "list"),
        (_raw_key("[" * 150 + "]" * 150), "list"),
        ("NaN", "base64url"),
        ("%%%", "base64url"),
        (_raw_key("[1, 2"), "base64url"),
    ],
)
def test_a_hostile_cursor_is_a_422_that_says_why(console, who, cursor, words):
    client, tokens, _ = console
    reply = client.get("/events", params={"cursor": cursor}, headers=_as(tokens, who))
    assert reply.status_code == 422, reply.text
    assert "not a valid cursor" in reply.json()["detail"] and words in reply.json()["detail"]


@pytest.mark.parametrize("who", ["viewer", "supplier"])
@pytest.mark.parametrize(
    ("ms", "seq", "words"),
    [
        (2**63 - 1, 5, "event_ms"),  # the probe's own id
        (2**63 - 1 - 60_000, 5, "event_ms"),  # a minute either side of it would overflow
        (-(2**63), 5, "event_ms"),
        (10**30, 5, "event_ms"),
        (-1, 5, "event_ms"),
        (T0 + 50_000, 2**63, "seq"),
        (T0 + 50_000, -(10**30), "seq"),
    ],
)
def test_an_event_id_out_of_range_is_a_422_that_says_why(console, who, ms, seq, words):
    client, tokens, _ = console
    reply = client.get(f"/events/{_key(ms, 'phones/pixel7', 'breach', seq)}",
                       headers=_as(tokens, who))  # fmt: skip
    assert reply.status_code == 422, reply.text
    assert "not a valid event id" in reply.json()["detail"] and words in reply.json()["detail"]


def test_event_ids_at_the_edges_of_the_range_are_merely_not_found(console):
    client, tokens, _ = console
    for ms, seq in ((0, -1), (MAX_MS, 2**63 - 1), (0, 2**63 - 1), (MAX_MS, -1)):
        reply = client.get(f"/events/{_key(ms, 'phones/pixel7', 'breach', seq)}",
                           headers=_as(tokens, "viewer"))  # fmt: skip
        assert reply.status_code == 404, (ms, seq, reply.text)
    # and a cursor at the very end of time, oldest first, or at its very start, newest
    # first, is the empty last page; the other way round it is the whole log
    ends = [("oldest", MAX_MS, MAX_SEQ, 0), ("newest", MIN_MS, MIN_SEQ, 0),
            ("newest", MAX_MS, MAX_SEQ, 3), ("oldest", MIN_MS, MIN_SEQ, 3)]  # fmt: skip
    for order, ms, seq, seen in ends:
        page = client.get("/events", params={"cursor": _key(ms, "phones/pixel7", "breach", seq),
                          "order": order}, headers=_as(tokens, "viewer"))  # fmt: skip
        assert page.status_code == 200, (order, page.text)
        assert len(page.json()["events"]) == seen and page.json()["next_cursor"] is None, order


@pytest.mark.parametrize("order", ["newest", "oldest"])
def test_real_cursors_and_ids_still_work(console, order):
    client, tokens, _ = console
    for who, expect in (("viewer", set(DEVICES)), ("supplier", {"phones/pixel7"})):
        first = client.get("/events", params={"limit": 1, "order": order},
                           headers=_as(tokens, who)).json()  # fmt: skip
        rest = client.get("/events", params={"cursor": first["next_cursor"], "order": order},
                          headers=_as(tokens, who)).json()  # fmt: skip
        seen = first["events"] + rest["events"]
        assert {e["device_id"] for e in seen} == expect and len(seen) == len(expect)
        for e in seen:
            reply = client.get(f"/events/{e['id']}", headers=_as(tokens, who))
            assert reply.status_code == 200 and reply.json()["event"] == e


@pytest.mark.parametrize(
    ("params", "words"),
    [
        ({"since": "0001-01-01T00:00:00+01:00"}, "since must be from 1970"),
        ({"until": "9999-12-31T23:59:59-01:00"}, "until must be from 1970"),
        ({"since": "1969-12-31T23:59:59Z"}, "since must be from 1970"),
        ({"since": "1e20"}, "datetime"),
        ({"since": "NaN"}, "datetime"),
        ({"until": "99999-01-01T00:00:00Z"}, "datetime"),
        ({"limit": str(2**63 - 1)}, "less than or equal to 1000"),
        ({"limit": str(10**30)}, "less than or equal to 1000"),
        ({"limit": "-1"}, "greater than or equal to 1"),
        ({"limit": "NaN"}, "integer"),
        ({"limit": "1e3"}, "integer"),
        ({"order": "NEWEST"}, "'newest' or 'oldest'"),
        ({"order": "desc"}, "'newest' or 'oldest'"),
        ({"order": "newest\u200b"}, "'newest' or 'oldest'"),
    ],
)
def test_times_and_limits_out_of_range_are_a_422_that_says_why(console, params, words):
    client, tokens, _ = console
    for who in ("viewer", "supplier"):
        reply = client.get("/events", params=params, headers=_as(tokens, who))
        assert reply.status_code == 422, (who, reply.text)
        assert words in reply.text, (who, reply.text)


@pytest.mark.parametrize("duration", ["NaN", "Infinity", "-1", "0", "1e999", str(2**63)])
def test_the_live_streams_duration_out_of_range_is_a_422(console, duration):
    client, tokens, _ = console
    reply = client.get("/events/stream", params={"duration_s": duration},
                       headers=_as(tokens, "supplier"))  # fmt: skip
    assert reply.status_code == 422, reply.text


@pytest.mark.parametrize(
    "number",
    ["9" * 400, "-" + "9" * 400, "1e999", "NaN", "Infinity", "-Infinity", "1e16", str(2**63)],
)
def test_a_site_document_with_a_number_out_of_range_is_a_422(console, number):
    # line_speed_mph as a 400-digit integer made the geometry code raise a TypeError (500)
    client, tokens, store = console
    track = {"name": "Down Fast", "kind": "track", "open": True, "line_speed_mph": 0}
    feature = {"type": "Feature", "properties": track, "geometry": {"type": "LineString",
               "coordinates": [[-0.1097, 51.5555], [-0.1097, 51.5585]]}}  # fmt: skip
    body = {"site_id": "huge", "note": "n",
            "geojson": {"type": "FeatureCollection", "features": [feature]}}  # fmt: skip
    site = json.dumps(body).replace('"line_speed_mph": 0', f'"line_speed_mph": {number}')
    headers = _as(tokens, "admin") | {"Content-Type": "application/json"}
    reply = client.post("/sites", content=site, headers=headers)
    assert reply.status_code == 422, reply.text
    assert "numbers are finite and at most" in reply.json()["detail"]
    assert store.site_versions("huge") == []


def test_a_store_gone_mid_request_is_a_503_not_a_500(console):
    from store import StoreUnavailableError

    _, tokens, store = console

    class Gone:
        def __getattr__(self, name):
            if name in ("token", "ping"):
                return getattr(store, name)

            def fail(*args, **kwargs):
                raise StoreUnavailableError("connection refused")

            return fail

    client = TestClient(create_app(Gone()), raise_server_exceptions=False)
    for path in ("/events", "/devices", "/sites", f"/events/{_key(T0, 'acme/0', 'breach', 5)}"):
        reply = client.get(path, headers=_as(tokens, "viewer"))
        assert reply.status_code == 503, (path, reply.text)
        assert reply.json() == {"detail": "the store is unreachable"}


# ------------------------------------------------------- 7. supplier report files


def _listed(client, tokens, who) -> set[str]:
    reply = client.get("/trials/reports", headers=_as(tokens, who))
    assert reply.status_code == 200, reply.text
    return {r["name"] for r in reply.json()}


def _own(supplier: str) -> set[str]:
    return {f"{supplier}.{ext}" for ext in admin.REPORT_FORMATS} | {
        f"{supplier}-{kind}.png" for kind in admin.PLOT_KINDS
    }


def test_a_supplier_lists_exactly_its_own_report_files(console):
    client, tokens, _ = console
    assert _listed(client, tokens, "supplier") == _own("phones")
    assert _listed(client, tokens, "supplier-uk") == _own("phones-uk")
    # the task force sees every report, and still nothing a link leads out to
    assert _listed(client, tokens, "viewer") == _own("summary") | _own("phones") | _own("phones-uk")


def test_a_supplier_cannot_fetch_another_suppliers_or_the_summarys_files(console):
    client, tokens, _ = console
    for who, mine, theirs in (("supplier", "phones", "phones-uk"),
                              ("supplier-uk", "phones-uk", "phones")):  # fmt: skip
        for name in sorted(_own(mine)):
            reply = client.get(f"/trials/reports/{name}", headers=_as(tokens, who))
            assert reply.status_code == 200 and reply.text.startswith(mine + " "), name
        for name in [*sorted(_own(theirs) | _own("summary")), "elsewhere.md"]:
            reply = client.get(f"/trials/reports/{name}", headers=_as(tokens, who))
            assert reply.status_code == 404, (who, name, reply.text)
    assert client.get("/trials/reports/elsewhere.md", headers=_as(tokens, "viewer")).status_code \
        == 404  # fmt: skip


def test_the_plot_kinds_are_those_the_report_writer_draws():
    source = (ROOT / "reporting" / "plots.py").read_text()
    drawn = re.findall(r'f"\{prefix\}([a-z-]+)\.png"', source)
    assert sorted(drawn) == sorted(admin.PLOT_KINDS)
    writer = (ROOT / "reporting" / "write.py").read_text()
    assert 'FORMATS = ("html", "pdf", "json", "md")' in writer
    assert set(admin.REPORT_FORMATS) == {"html", "pdf", "json", "md"}


# --------------------------------------------------------- 8. the docs need a token


def test_the_docs_and_the_schema_need_a_token_by_default(console):
    client, tokens, _ = console
    for path in ("/docs", "/openapi.json"):
        assert client.get(path).status_code == 401, path
        reply = client.get(path, headers={"Authorization": "Bearer tf_not-a-token"})
        assert reply.status_code == 401, path
        for who in ("viewer", "supplier"):
            assert client.get(path, headers=_as(tokens, who)).status_code == 200, (path, who)
    # the docs page carries the schema itself: it needs no second, tokenless request
    page = client.get("/docs", headers=_as(tokens, "viewer")).text
    assert '"spec"' in page and "/events/{event_id}" in page and "url: ''" in page
    for path in ("/redoc", "/docs/oauth2-redirect"):  # no other docs, public or not
        assert client.get(path, headers=_as(tokens, "viewer")).status_code == 404, path


def test_the_docs_are_public_only_when_asked(console):
    *_, store = console
    public = TestClient(create_app(store, public_docs=True))
    assert public.get("/docs").status_code == 200
    spec = public.get("/openapi.json")
    assert spec.status_code == 200 and "/events" in spec.json()["paths"]
    assert public.get("/events").status_code == 401  # the data still needs a token
    assert public.get("/trials/reports").status_code == 401


def test_every_route_but_health_the_page_and_its_files_needs_a_token(console):
    client, *_ = console
    operations = [(method.upper(), path) for path, methods in client.app.openapi()["paths"].items()
                  for method in methods] + [("GET", "/docs"), ("GET", "/openapi.json")]  # fmt: skip
    for method, route in operations:
        path = re.sub(r"\{[^}]+\}", "x", route)
        if route == "/events/stream":
            path += "?duration_s=0.1"  # should it ever answer, it ends
        reply = client.request(method, path, json={} if method in ("POST", "PUT") else None)
        expected = (200, 503) if route == "/health" else (401,)
        assert reply.status_code in expected, (method, route, reply.status_code, reply.text)
    assert len(operations) >= 18, operations
    # the page and its files hold no data: they load, then ask for a token
    assert client.get("/").status_code == 200
    script = client.get("/static/console.js")
    assert script.status_code == 200 and "openapi" not in script.text  # it never reads it


def test_serve_has_a_public_docs_flag_off_by_default():
    from trackfence.cli import _parser

    assert _parser().parse_args(["serve", "--db", "sqlite:///x.db"]).public_docs is False
    assert _parser().parse_args(["serve", "--public-docs"]).public_docs is True
