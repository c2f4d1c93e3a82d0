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
