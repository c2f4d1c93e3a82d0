"""The console page in a real headless Chromium: a breach published to the broker appears
on the page live, without a reload, and the page is drawn (a screenshot that is not blank)."""

from __future__ import annotations

import io
import json
import shutil
import threading
import time

import numpy as np
import pytest

from tests.devices import Publisher, native, now_ms, wait_until

CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")
INSIDE = (51.5570, -0.1097)  # lat, lon: the middle of the worksite below
OUTSIDE = (51.5570, -0.1110)  # about 70 m west of it


def _site() -> dict:
    ring = [[-0.1100, 51.5560], [-0.1094, 51.5560], [-0.1094, 51.5580], [-0.1100, 51.5580],
            [-0.1100, 51.5560]]  # fmt: skip
    return {
        "type": "FeatureCollection",
        "features": [
            {"type": "Feature", "properties": {"name": "possession"},
             "geometry": {"type": "Polygon", "coordinates": [ring]}},
            {"type": "Feature", "properties": {"name": "Down Fast", "kind": "track"},
             "geometry": {"type": "LineString",
                          "coordinates": [[-0.1097, 51.5555], [-0.1097, 51.5585]]}},
        ],
    }  # fmt: skip


@pytest.fixture
def console_server(timescaledb, mosquitto, tmp_path):
    import uvicorn

    from ingest.embedded_broker import free_loopback_port
    from ingest.service import IngestService
    from ingest.settings import IngestSettings
    from reporting.console.app import create_app
    from reporting.console.auth import issue_token
    from store.timescale import TimescaleStore

    url = timescaledb.fresh_database()
    name = url.rsplit("/", 1)[1]
    store = TimescaleStore(url)
    store.migrate()
    store.save_site_version("kgx", json.dumps(_site()), "test", "created")
    token = issue_token(store, "task force", "viewer")
    # ingest works the site as the console keeps it: its GeoJSON, named by its id
    (tmp_path / "kgx.geojson").write_text(json.dumps(_site()))
    settings = IngestSettings(broker=mosquitto.url, db=url, client_id=f"page-{name}",
                              spool=str(tmp_path / "spool"))  # fmt: skip
    settings.sites = [(str(tmp_path / "kgx.geojson"), ["*"])]
    ingest = IngestService(settings)
    ingest.start()
    assert ingest.subscribed.wait(15)
    port = free_loopback_port()
    app = create_app(store, broker=mosquitto.url)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    assert wait_until(lambda: server.started, 15)
    yield f"http://127.0.0.1:{port}", token, mosquitto
    server.should_exit = True
    thread.join(10)
    ingest.stop()
    store.close()


@pytest.mark.skipif(not (CHROMIUM and DRIVER), reason="needs Debian chromium and chromium-driver")
def test_a_breach_appears_live_on_the_page(console_server, tmp_path):
    from PIL import Image
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By

    base, token, broker = console_server
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1400,1000",
                 "--disable-dev-shm-usage"):  # fmt: skip
        options.add_argument(flag)
    browser = webdriver.Chrome(options=options, service=Service(DRIVER))
    publisher = Publisher(broker.port)
    try:
        browser.get(f"{base}/#token={token}")
        assert wait_until(lambda: browser.find_element(By.ID, "status").text == "live", 20), (
            browser.find_element(By.ID, "status").text
        )
        topic = "trackside/v1/acme/p1/fix"
        publisher.send(topic, native("p1", 1, now_ms(), *INSIDE))
        time.sleep(0.5)
        publisher.send(topic, native("p1", 2, now_ms(), *OUTSIDE))

        def breach_row():
            cells = browser.find_elements(By.CSS_SELECTOR, "#log tbody td.breach")
            return cells[0] if cells else None

        assert wait_until(lambda: breach_row() is not None, 20), browser.page_source[:2000]
        row = breach_row().find_element(By.XPATH, "..")
        assert "acme/p1" in row.text and "kgx" in row.text
        # the device is drawn and listed in breach, without the page being reloaded
        assert wait_until(lambda: "BREACH" in browser.find_element(By.ID, "devices").text, 10)
        import httpx

        drawn = httpx.get(f"{base}/sites/kgx/map", headers={"Authorization": f"Bearer {token}"})
        assert drawn.status_code == 200, drawn.text
        devices = drawn.json()["devices"]
        assert [(d["device_id"], d["state"]) for d in devices] == [("acme/p1", "BREACH")]
        assert devices[0]["x_m"] < -60  # drawn 70 m west of the worksite's middle
        row.click()
        assert wait_until(lambda: "decision" in browser.find_element(By.ID, "detail-hops").text, 10)
        print("DEBUG", browser.execute_script("return JSON.stringify(state.map.devices)"))
        print(
            "DEBUG",
            browser.execute_script("return document.getElementById('map').innerHTML.slice(-600)"),
        )
        shot = tmp_path / "console.png"
        browser.save_screenshot(str(shot))
        pixels = np.asarray(Image.open(io.BytesIO(shot.read_bytes())).convert("RGB"))
        assert pixels.shape[0] > 500 and pixels.std() > 10  # drawn, not a blank page
        colours = np.unique(pixels.reshape(-1, 3)[::97], axis=0)
        assert len(colours) > 20  # text, fences, device dots: many colours, not one
        assert (pixels[..., 0] > 200).sum() > 50  # the red of a breach is on screen
    finally:
        publisher.close()
        browser.quit()


def test_metrics_show_the_fix_rate_and_each_workers_health(console_server):
    import httpx

    base, token, broker = console_server
    publisher = Publisher(broker.port)
    try:
        topic = "trackside/v1/acme/m1/fix"
        for seq in range(5):
            publisher.send(topic, native("m1", seq, now_ms(), *INSIDE))
        publisher.send("trackside/v1/acme/m1/fix", b"{not json")
        auth = {"Authorization": f"Bearer {token}"}

        def scrape() -> str:
            return httpx.get(f"{base}/metrics", headers=auth).text

        assert wait_until(lambda: 'trackfence_dead_letters{reason="json"} 1' in scrape(), 15), (
            scrape()
        )
        text = scrape()
        samples = dict(line.rsplit(" ", 1) for line in text.splitlines() if line[:1] != "#")
        assert float(samples["trackfence_fixes_per_second"]) == round(5 / 60, 3)
        assert 'trackfence_decision_latency_ms{quantile="0.5"}' in text
        assert 'trackfence_devices{state="SAFE"} 1' in text
        # the worker's own word, over MQTT: online, nothing spooled, no alarm
        assert wait_until(lambda: "trackfence_ingest_spool_depth{worker=" in scrape(), 15)
        assert 'trackfence_ingest_up{worker="page-' in scrape()
        assert "trackfence_ingest_alarm{" not in scrape()
    finally:
        publisher.close()


# ------------------------------------------------ browsing a trial's store after the fact

TRIAL_SITE = "acme--ecm1-kings-cross"  # a supplier's configured fence, as a trial run names it
DAY = 1_780_272_000_000  # 2026-06-01T00:00:00Z, the simulated trial's first day
WALK_LONS = [-0.1092 - 0.00008 * i for i in range(16)]  # west across the site, every 10 s


def _trial_site() -> dict:
    """A site as `trackfence trial run` keeps it: a worksite, a danger zone written as an
    exclusion that says so, a plain exclusion, and a closed track (drawn only)."""

    def box(lon0, lat0, lon1, lat1):
        return {"type": "Polygon", "coordinates": [[[lon0, lat0], [lon1, lat0], [lon1, lat1],
                                                    [lon0, lat1], [lon0, lat0]]]}  # fmt: skip

    return {
        "type": "FeatureCollection",
        "features": [
            {"type": "Feature", "properties": {"name": "possession"},
             "geometry": box(-0.1100, 51.5560, -0.1090, 51.5580)},
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


def _trial_store(path):
    """A trial's SQLite store: three days of events from two suppliers at kgx, and one walk
    across the trial site whose fixes ingest placed on it (its breach is the newest event)."""
    from loading.site_files import site_from_geojson
    from store import Batch, Event, Fix
    from store.sqlite import SqliteStore

    store = SqliteStore(str(path))
    store.migrate()
    store.save_site_version("kgx", json.dumps(_site()), "trial run", "shift 1")
    store.save_site_version(TRIAL_SITE, json.dumps(_trial_site()), "trial run", "shift 1")
    events = []
    for n in range(72):  # every hour for three days, round the devices and kinds
        device = ("acme/a1", "acme/a2", "gnssco/g1")[n % 3]
        kind = ("breach", "clear", "warning", "exit")[n % 4]
        events.append(Event(device, kind, DAY + n * 3_600_000, n, "kgx", "possession", -0.3))
    site = site_from_geojson(TRIAL_SITE, _trial_site())
    lat = np.full(len(WALK_LONS), 51.5570)
    x, y = site.locate(lat, np.array(WALK_LONS))
    distance = site.evaluate(x, y).distance_m
    start = DAY + 3 * 86_400_000
    walk = [
        Fix("acme/w1", "acme", i, start + i * 10_000, start + i * 10_000 + 90,
            start + i * 10_000 + 92, None, 51.5570, lon, 0.4, "RTK fixed", 20, 0.8, 90.0,
            "2.4.1", "native", TRIAL_SITE, float(x[i]), float(y[i]), "possession",
            float(distance[i]), "BREACH" if distance[i] < 0 else "SAFE", True)
        for i, lon in enumerate(WALK_LONS)
    ]  # fmt: skip
    crossing = next(f for f in walk if f.distance_m < 0)
    events.append(Event("acme/w1", "breach", crossing.fix_ms, crossing.seq, TRIAL_SITE,
                        "possession", crossing.distance_m))  # fmt: skip
    store.write(Batch(fixes=walk, events=events))
    return store, events


@pytest.fixture
def trial_page(tmp_path):
    import uvicorn

    from ingest.embedded_broker import free_loopback_port
    from reporting.console.app import create_app
    from reporting.console.auth import issue_token

    store, events = _trial_store(tmp_path / "trial.db")
    token = issue_token(store, "task force", "viewer")
    port = free_loopback_port()
    server = uvicorn.Server(uvicorn.Config(create_app(store), host="127.0.0.1", port=port,
                                           log_level="warning"))  # fmt: skip
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    assert wait_until(lambda: server.started, 15)
    yield f"http://127.0.0.1:{port}", token, store, events
    server.should_exit = True
    thread.join(10)
    store.close()


@pytest.fixture
def browser():
    if not (CHROMIUM and DRIVER):
        pytest.skip("needs Debian chromium and chromium-driver")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1400,1000",
                 "--disable-dev-shm-usage"):  # fmt: skip
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(DRIVER))
    yield driver
    driver.quit()


def _rows(browser) -> list[dict]:
    """The breach log as shown, top to bottom."""
    return browser.execute_script(
        "return [...document.querySelectorAll('#log tbody tr')].map((tr) => ({id: tr.dataset.id,"
        " ms: Number(tr.dataset.ms), cells: [...tr.cells].map((td) => td.textContent)}))"
    )


def _settled(browser, check, timeout_s: float = 10) -> list[dict]:
    """The log once `check` holds for its rows (and it has rows)."""
    seen: list[list[dict]] = []

    def ready() -> bool:
        seen.append(_rows(browser))
        return bool(seen[-1]) and check(seen[-1])

    assert wait_until(ready, timeout_s), seen[-1] if seen else None
    return seen[-1]


def _open(browser, base: str, token: str) -> None:
    from selenium.webdriver.common.by import By

    browser.get(f"{base}/#token={token}")
    assert wait_until(lambda: browser.find_element(By.ID, "status").text == "live", 20), (
        browser.find_element(By.ID, "status").text
    )


def _newest_first(rows: list[dict]) -> bool:
    return [r["ms"] for r in rows] == sorted((r["ms"] for r in rows), reverse=True)


def test_the_log_is_newest_first_and_every_filter_reloads_it(trial_page, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import Select

    base, token, _, events = trial_page
    _open(browser, base, token)
    newest = sorted(events, key=lambda e: e.event_ms, reverse=True)
    rows = _settled(browser, lambda r: len(r) == 50)
    assert _newest_first(rows) and rows[0]["ms"] == newest[0].event_ms
    assert [r["ms"] for r in rows] == [e.event_ms for e in newest[:50]]
    # older pages follow on, newest first, each event once
    browser.find_element(By.ID, "older").click()
    rows = _settled(browser, lambda r: len(r) == len(events))
    assert _newest_first(rows) and len({r["id"] for r in rows}) == len(events)
    assert not browser.find_element(By.ID, "older").is_displayed()

    def only(check):
        return lambda r: all(check(row["cells"]) for row in r)

    supplier = browser.find_element(By.ID, "f-supplier")
    supplier.send_keys("gnssco", Keys.ENTER)
    rows = _settled(browser, only(lambda c: c[1].startswith("gnssco/")))
    assert len(rows) == 24 and _newest_first(rows)
    supplier.clear()
    supplier.send_keys(Keys.ENTER)
    device = browser.find_element(By.ID, "f-device")
    device.send_keys("acme/a2", Keys.ENTER)
    rows = _settled(browser, only(lambda c: c[1] == "acme/a2"))
    assert len(rows) == 24
    for kind in ("breach", "warning"):  # several kinds at once
        browser.find_element(By.CSS_SELECTOR, f'#f-kinds input[value="{kind}"]').click()
    rows = _settled(browser, only(lambda c: c[1] == "acme/a2" and c[2] in ("BREACH", "WARNING")))
    expect = [e for e in events if e.device_id == "acme/a2" and e.kind in ("breach", "warning")]
    assert len(rows) == len(expect) == 12 and _newest_first(rows)
    device.clear()
    device.send_keys(Keys.ENTER)
    # a day, in UTC: 2026-06-02
    browser.execute_script(
        "for (const [id, v] of [['f-since', '2026-06-02T00:00:00'],"
        " ['f-until', '2026-06-03T00:00:00']]) {"
        " const input = document.getElementById(id); input.value = v;"
        " input.dispatchEvent(new Event('change')); }"
    )
    day = [e for e in events if e.kind in ("breach", "warning")
           and DAY + 86_400_000 <= e.event_ms < DAY + 2 * 86_400_000]  # fmt: skip
    rows = _settled(browser, lambda r: len(r) == len(day))
    assert [r["ms"] for r in rows] == sorted((e.event_ms for e in day), reverse=True)
    # until before from: said, marked, and the log is left as it was
    browser.execute_script(
        "const input = document.getElementById('f-until'); input.value = '2026-06-01T12:00:00';"
        " input.dispatchEvent(new Event('change'));"
    )
    error = browser.find_element(By.ID, "filter-error")
    assert wait_until(lambda: "Until must be after From" in error.text, 5)
    assert browser.find_element(By.ID, "f-until").get_attribute("aria-invalid") == "true"
    assert len(_rows(browser)) == len(day)
    browser.find_element(By.ID, "f-clear").click()
    rows = _settled(browser, lambda r: len(r) == 50)
    assert error.text == "" and rows[0]["ms"] == newest[0].event_ms
    # the site filter: the log holds only that site, and the map draws it
    Select(browser.find_element(By.ID, "site")).select_by_value(TRIAL_SITE)
    rows = _settled(browser, lambda r: len(r) == 1)
    assert rows[0]["cells"][3] == TRIAL_SITE
    assert browser.find_element(By.ID, "map-site").get_attribute("value") == TRIAL_SITE


def test_every_control_is_labelled_and_bounded(trial_page, browser):
    base, token, *_ = trial_page
    _open(browser, base, token)
    unlabelled = browser.execute_script(
        "return [...document.querySelectorAll('input, select, button')].filter((c) =>"
        " !(c.labels && c.labels.length) && !c.getAttribute('aria-label')"
        " && !(c.tagName === 'BUTTON' && c.textContent.trim())).map((c) => c.outerHTML)"
    )
    assert unlabelled == []
    unbounded = browser.execute_script(
        "return [...document.querySelectorAll('input')].filter((c) =>"
        " ['text', 'password', 'search'].includes(c.type) ? c.maxLength < 1"
        " : c.type === 'datetime-local' ? !(c.min && c.max) : false).map((c) => c.outerHTML)"
    )
    assert unbounded == []
    kinds = browser.execute_script(
        "return [...document.querySelectorAll('#f-kinds input')].map((c) => c.value)"
    )
    assert sorted(kinds) == sorted(
        ["enter", "exit", "warning", "safe", "breach", "clear", "lost", "recovered"]
    )


def test_an_event_opens_with_its_track_drawn_on_its_site(trial_page, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import Select

    base, token, *_ = trial_page
    _open(browser, base, token)
    Select(browser.find_element(By.ID, "map-site")).select_by_value("kgx")
    assert wait_until(lambda: "kgx" in browser.find_element(By.ID, "map").get_attribute(
        "aria-label"), 10)  # fmt: skip
    rows = _settled(browser, lambda r: len(r) == 50)
    assert rows[0]["cells"][1] == "acme/w1"  # the walk's breach is the newest event
    browser.find_element(By.CSS_SELECTOR, "#log tbody tr").click()

    def svg(selector: str) -> list:
        return browser.find_elements(By.CSS_SELECTOR, f"#map {selector}")

    # the map switches to the event's site and draws the walk: 6 fixes either side of it
    assert wait_until(lambda: len(svg("polyline.track-path")) == 1, 10), browser.find_element(
        By.ID, "detail-track").text  # fmt: skip
    assert browser.find_element(By.ID, "map-site").get_attribute("value") == TRIAL_SITE
    points = svg("polyline.track-path")[0].get_attribute("points").split()
    assert len(points) == 13 and len(svg("circle.track-fix")) == 13
    ringed = svg("circle.track-event")
    assert len(ringed) == 1 and f"{ringed[0].get_attribute('cx')},{ringed[0].get_attribute('cy')}" \
        == points[6]  # fmt: skip
    detail = browser.find_element(By.ID, "detail-track").text
    assert "13 fixes drawn on acme--ecm1-kings-cross version 1" in detail
    assert "where ingest placed them" in detail
    # beneath the track: the safe zone, the plain exclusion, and the danger zone kept as
    # an exclusion drawn as a danger zone
    kinds = browser.execute_script(
        "return [...document.querySelectorAll('#map polygon')].map((p) =>"
        " [p.dataset.kind, p.getAttribute('stroke'), p.querySelector('title').textContent])"
    )
    by_name = {title.split(" (")[0]: (kind, stroke) for kind, stroke, title in kinds}
    assert by_name["danger zone of Up Fast"] == ("danger_zone", "#ff4d4d")
    assert by_name["spoil heap"] == ("exclusion", "#b8b8b8")
    assert by_name["possession"] == ("safe_zone", "#3ddc84")
    order = browser.execute_script(
        "const all = [...document.querySelectorAll('#map polygon, #map .track-path')];"
        " return all.map((n) => n.classList.contains('track-path') ? 'track' : n.dataset.kind)"
    )
    assert order[-1] == "track" and order.index("safe_zone") < order.index("danger_zone")
    assert len(svg("polyline.rail")) == 1  # the closed track, drawn
    # an event with no fixes to draw (from the keyboard): its track goes, and it says why
    second = browser.find_elements(By.CSS_SELECTOR, "#log tbody tr")[1]
    second.send_keys(Keys.ENTER)
    assert wait_until(lambda: "cannot be drawn" in browser.find_element(
        By.ID, "detail-track").text, 10)  # fmt: skip
    assert svg("polyline.track-path") == [] and svg("circle.track-fix") == []


def test_the_live_log_follows_the_filters(trial_page, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    from store import Batch, Event

    base, token, store, _ = trial_page
    _open(browser, base, token)
    browser.find_element(By.ID, "f-supplier").send_keys("acme", Keys.ENTER)
    browser.find_element(By.CSS_SELECTOR, '#f-kinds input[value="breach"]').click()
    _settled(browser, lambda r: all(row["cells"][1].startswith("acme/")
                                    and row["cells"][2] == "BREACH" for row in r))  # fmt: skip
    assert wait_until(lambda: browser.find_element(By.ID, "status").text == "live", 10)
    now = now_ms()
    store.write(Batch(events=[
        Event("gnssco/g1", "breach", now - 3, 1, "kgx", "possession", -0.2),
        Event("acme/a1", "clear", now - 2, 2, "kgx", "possession", 0.4),
        Event("acme/a1", "breach", now - 1, 3, "kgx", "possession", -0.1),
    ]))  # fmt: skip
    rows = _settled(browser, lambda r: r[0]["ms"] == now - 1, 10)
    assert rows[0]["cells"][1:3] == ["acme/a1", "BREACH"]
    time.sleep(1.0)  # the stream polls four times a second: the others would be here by now
    shown = {r["ms"] for r in _rows(browser)}
    assert now - 2 not in shown and now - 3 not in shown
