"""Schemathesis against the console's own OpenAPI schema: generated requests (valid and
not) to every operation, as an admin, a viewer and a supplier, on a real TimescaleDB and on
SQLite; no answer is a server error.

Besides what schemathesis makes of the schema, every parameter is now and then swapped
for something hostile: numbers at and past the 64-bit edges, negative ones, NaN and
Infinity, and keyset cursors and event ids that are well-formed base64url JSON holding
them (an outside probe found such a cursor made SQLite overflow into a 500).
"""

from __future__ import annotations

import base64
import dataclasses
import json
from urllib.parse import quote

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reporting.console.app import create_app
from reporting.console.auth import issue_token
from store import Alert, Batch, Event, Fix
from store.sqlite import SqliteStore
from store.timescale import TimescaleStore

#: The live stream never ends by itself: it has its own tests.
SKIP = {"GET /events/stream"}
T0 = 1_795_000_000_000
KINDS = ["enter", "exit", "warning", "safe", "breach", "clear", "lost", "recovered"]

#: Whole numbers at the edges: of SQLite's and PostgreSQL's 64-bit integers, of a double,
#: of a datetime, and just inside them where a minute added or taken would cross them.
EDGE_INTEGERS = [2**63 - 1, 2**63, -(2**63), -(2**63) - 1, 2**64, 10**30, -(10**30), -1, -2,
                 2**63 - 1 - 60_000, 2**63 - 60_001, 2**53 + 1, 2**31, 253_402_300_800_000,
                 -62_135_596_800_000]  # fmt: skip
#: Other numbers: doubles at their edges, halves, a negative zero.
EDGE_FLOATS = [1e308, -1e308, 5e-324, 0.5, -0.0, 1795000050000.0]
#: Things that look like numbers, or are not: as JSON values in a cursor...
ODD_VALUES = ["NaN", "nan", "Infinity", "-Infinity", "1e999", "0x10", "", "١٢", True, False,
              None, [], {}, [1], {"ms": 1}]  # fmt: skip
#: ...and as raw query and path text.
HOSTILE_TEXT = ["NaN", "nan", "-nan", "Infinity", "-Infinity", "inf", "1e999", "-1e999",
                "1e20", "9" * 40, "-" + "9" * 40, str(2**63 - 1), str(2**63), str(-(2**63)),
                str(-(2**63) - 1), "-1", "0", "0x7fffffffffffffff", "1_000", " 1", "1.5",
                "true", "null", "[]", "%00", "0001-01-01T00:00:00+14:00",
                "9999-12-31T23:59:59-14:00", "99999-01-01T00:00:00Z", "-62135596800",
                "2026-11-19T00:00:00Z", "2026-11-19T00:00:00"]  # fmt: skip
#: Raw JSON text that Python's json reads as NaN, Infinity or a giant, or cannot read.
RAW_KEYS = ['[1e999, "acme/0", "breach", 5]', '[-1e999, "acme/0", "breach", 5]',
            '[NaN, "acme/0", "breach", 5]', '[1795000050000, "acme/0", "breach", NaN]',
            '[1795000050000, "acme/0", "breach", 1e400]', "[" * 200 + "]" * 200,
            '[1795000050000, "acme/0", "breach", ' + "9" * 400 + "]",
            '[1795000050000, "acme/0", "breach", 5, 6]', '{"__proto__": 1}', "[1, 2, 3",
            b"\xff\xfe[1]", b'[1, "\xc3(/a", "breach", 1]']  # fmt: skip


def _b64(raw: str | bytes) -> str:
    data = raw if isinstance(raw, bytes) else raw.encode("utf-8", "surrogatepass")
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def hostile_keys() -> st.SearchStrategy[str]:
    """Cursors and event ids. Mostly well-formed [event_ms, device_id, kind, seq] with one
    field or more hostile (so each gets past the others' checks), then other JSON, raw
    JSON text, truncated keys and plain junk."""
    odd = st.sampled_from(ODD_VALUES)
    edge = st.sampled_from(EDGE_INTEGERS)
    anything = st.one_of(edge, st.integers(), st.floats(), st.sampled_from(EDGE_FLOATS), odd)
    ms = st.one_of(edge, edge, anything, st.sampled_from([T0 + 50_000, T0, 0]))
    seq = st.one_of(edge, edge, anything, st.sampled_from([5, 0, -1]))
    device = st.one_of(
        st.sampled_from(["acme/0", "gnssco/1", "phones/pixel7", "phones-uk/pixel7"]),
        st.sampled_from(["a/" + "x" * 300, "acme", "\x00/a", "acme/\x00", "\ud800/a",
                         "acme/\udfff", "/", "acme/%", ""]),
        st.text(max_size=20), anything,
    )  # fmt: skip
    kind = st.one_of(st.sampled_from(KINDS), st.sampled_from(KINDS), st.text(max_size=10), anything)
    fields = st.tuples(ms, device, kind, seq).map(json.dumps)
    other = st.one_of(st.lists(anything, max_size=6), anything, st.text()).map(json.dumps)
    encoded = st.one_of(fields, fields, fields, other, st.sampled_from(RAW_KEYS)).map(_b64)
    return st.one_of(encoded, encoded, encoded.map(lambda k: k[:-1]), st.sampled_from(HOSTILE_TEXT))


def hostile_parameters(operation) -> st.SearchStrategy[dict]:
    """Often, some of an operation's query and path parameters swapped for hostile values:
    a hostile key for the cursor or event id (in most such cases), edge numbers and odd
    text for the rest."""
    names = [(str(p.location.value), p.name) for p in operation.iter_parameters()
             if str(p.location.value) in ("query", "path")]  # fmt: skip
    if not names:
        return st.just({})
    keys = [n for n in names if n[1] in ("cursor", "event_id")]
    scalar = st.one_of(
        st.sampled_from(HOSTILE_TEXT), st.sampled_from(EDGE_INTEGERS + EDGE_FLOATS).map(str)
    )
    others = st.lists(st.sampled_from(names), unique=True, max_size=3).flatmap(
        lambda chosen: st.fixed_dictionaries(
            {n: hostile_keys() if n in keys else scalar for n in chosen}
        )
    )
    with_key = st.fixed_dictionaries({n: hostile_keys() for n in keys})
    if keys:
        return st.one_of(st.just({}), others, with_key, with_key)
    return st.one_of(st.just({}), others)


def _fix(device: str, seq: int, t_ms: int) -> Fix:
    return Fix(device, device.split("/")[0], seq, t_ms, t_ms + 120, t_ms + 123, None, 51.5577,
               -0.1088, 0.4, "RTK fixed", 20, 0.8, 90.0, "2.4.1", "native", "ECM1", 1.0, 2.0,
               "possession", 1.5, "SAFE", True)  # fmt: skip


#: A site kept as a trial run keeps it: a worksite and a danger zone kept as an exclusion.
#: acme/0 works there, so its event's detail draws a track (the other devices' site, ECM1,
#: has no drawing).
SITE = {"type": "FeatureCollection", "features": [
    {"type": "Feature", "properties": {"name": "possession"},
     "geometry": {"type": "Polygon", "coordinates": [[[-0.1100, 51.5560], [-0.1080, 51.5560],
                  [-0.1080, 51.5590], [-0.1100, 51.5590], [-0.1100, 51.5560]]]}},
    {"type": "Feature", "properties": {"name": "danger zone", "kind": "exclusion",
                                       "danger_zone": True},
     "geometry": {"type": "Polygon", "coordinates": [[[-0.1091, 51.5560], [-0.1090, 51.5560],
                  [-0.1090, 51.5590], [-0.1091, 51.5590], [-0.1091, 51.5560]]]}}]}  # fmt: skip


def _seeded(store) -> None:
    store.migrate()
    fixes, events, alerts = [], [], []
    for device in ("acme/0", "gnssco/1", "phones/pixel7", "phones-uk/pixel7"):
        site = "acme--ecm1-kings-cross" if device == "acme/0" else "ECM1"
        for i in range(10):
            fixes.append(dataclasses.replace(_fix(device, i, T0 + i * 10_000), site=site))
        events.append(Event(device, "breach", T0 + 50_000, 5, site, "f", -0.4))
        alerts.append(Alert(device, "breach", T0 + 50_000, 5, T0 + 50_125, "topic", "{}"))
    store.write(Batch(fixes=fixes, events=events, alerts=alerts))
    store.save_site_version("acme--ecm1-kings-cross", json.dumps(SITE), "trial run", "shift 1")


@pytest.fixture(scope="module", params=["timescaledb", "sqlite"])
def console(request, tmp_path_factory):
    folder = tmp_path_factory.mktemp(f"schema-{request.param}")
    if request.param == "timescaledb":
        store = TimescaleStore(request.getfixturevalue("timescaledb").fresh_database())
    else:
        store = SqliteStore(str(folder / "console.db"))
    _seeded(store)
    reports = folder / "report"
    (reports / "plots").mkdir(parents=True)
    for name in ("summary.html", "acme.html", "phones.json", "phones-uk.json",
                 "plots/phones-error-cdf.png", "plots/phones-uk-error-cdf.png"):  # fmt: skip
        (reports / name).write_text("report")
    tokens = {
        role: issue_token(store, f"fuzzer {role}", role, "phones" if role == "supplier" else None)
        for role in ("admin", "viewer", "supplier")
    }
    yield create_app(store, reports_dir=reports), tokens
    store.close()


def _answering(auth: dict, label: str):
    def answer(case, swapped) -> None:
        for (where, name), value in swapped.items():
            if where == "query":
                case.query = {**(case.query or {}), name: value}
            else:
                case.path_parameters = {**(case.path_parameters or {}), name: quote(value, "")}
        response = case.call(headers=auth)
        assert response.status_code < 500, (label, case.path_parameters, case.query,
                                            response.status_code, response.text[:300])  # fmt: skip

    return answer


def _edge_keys() -> list[str]:
    """Every hostile key the strategy knows, each in a well-formed list where it can be."""
    return [_b64(raw) for raw in [
        *RAW_KEYS,
        *(json.dumps([n, "phones/pixel7", "breach", 1]) for n in EDGE_INTEGERS + EDGE_FLOATS),
        *(json.dumps([n, "phones/pixel7", "breach", 1]) for n in ODD_VALUES),
        *(json.dumps([T0, "phones/pixel7", "breach", n]) for n in EDGE_INTEGERS + EDGE_FLOATS),
        *(json.dumps([T0, "phones/pixel7", "breach", n]) for n in ODD_VALUES),
        *(json.dumps([T0, d, "breach", 1]) for d in ["\x00/a", "\ud800/a", "a/" + "x" * 300]),
        *(json.dumps([T0, "phones/pixel7", k, 1]) for k in ["", "BREACH", ["breach"], None]),
    ]] + HOSTILE_TEXT  # fmt: skip


def _edge_cases(operation) -> list[tuple[object, dict]]:
    """Each query and path parameter of an operation alone set to each edge value (the
    others as a plain request has them): the overflow cases, on every run, not by chance."""
    names = [(str(p.location.value), p.name) for p in operation.iter_parameters()
             if str(p.location.value) in ("query", "path")]  # fmt: skip
    plain = {name: "x" for where, name in names if where == "path"}
    scalars = HOSTILE_TEXT + [str(n) for n in EDGE_INTEGERS + EDGE_FLOATS]
    out = []
    for where_name in names:
        values = _edge_keys() if where_name[1] in ("cursor", "event_id") else scalars
        for value in values:
            out.append((operation.Case(path_parameters=dict(plain), query={}), {where_name: value}))
    return out


@pytest.mark.parametrize("role", ["admin", "viewer", "supplier"])
def test_no_generated_request_makes_a_server_error(console, role):
    app, tokens = console
    auth = {"Authorization": f"Bearer {tokens[role]}"}
    # the schema itself needs a token, as every route but /health does
    schema = schemathesis.openapi.from_asgi("/openapi.json", app, headers=auth)
    operations = [result.ok() for result in schema.get_all_operations()]
    checked, edges = [], 0
    for operation in operations:
        label = f"{operation.method.upper()} {operation.path}"
        if label in SKIP:
            continue
        answer = _answering(auth, label)
        for case, swapped in _edge_cases(operation):
            answer(case, swapped)
            edges += 1
        cases = operation.as_strategy()
        if any(str(p.location.value) != "header" for p in operation.iter_parameters()):
            cases = st.one_of(cases, operation.as_strategy(schemathesis.GenerationMode.NEGATIVE))
        run = settings(max_examples=40, deadline=None, database=None,
                       suppress_health_check=list(HealthCheck))(
            given(case=cases, swapped=hostile_parameters(operation))(answer)
        )  # fmt: skip
        run()
        checked.append(label)
    assert len(checked) >= 10, checked
    assert edges > 500, edges


@pytest.mark.parametrize("role", ["viewer", "supplier"])
def test_every_hostile_key_is_a_4xx_with_a_reason(console, role):
    """The cursor and the event id, through hostile keys alone (many more of them)."""
    from fastapi.testclient import TestClient

    app, tokens = console
    client = TestClient(app)
    auth = {"Authorization": f"Bearer {tokens[role]}"}

    def check(key: str) -> None:
        for path, params in ((f"/events/{quote(key, '')}", {}), ("/events", {"cursor": key})):
            reply = client.get(path, params=params, headers=auth)
            assert reply.status_code < 500, (path, params, reply.status_code, reply.text[:300])
            if reply.status_code >= 400:
                assert reply.json()["detail"], (path, params, reply.text)

    edges = [
        *RAW_KEYS,
        *(json.dumps([n, "phones/pixel7", "breach", 1]) for n in EDGE_INTEGERS),
        *(json.dumps([T0, "phones/pixel7", "breach", n]) for n in EDGE_INTEGERS),
    ]
    for raw in edges:  # every edge, every time, before the generated keys
        check(_b64(raw))
    generated = settings(
        max_examples=150, deadline=None, database=None, suppress_health_check=list(HealthCheck)
    )
    generated(given(key=hostile_keys())(check))()
