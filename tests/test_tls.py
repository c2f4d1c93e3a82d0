"""TLS with a locally generated CA (deploy/make-ca.sh): MQTT over TLS to a real Mosquitto,
ingest on mqtts://, and the console over HTTPS. Clients that do not trust the CA, or
that speak plain text to a TLS port, get nowhere."""

from __future__ import annotations

import ssl
import subprocess
import threading
import uuid

import httpx
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from tests.conftest import ROOT
from tests.devices import native, now_ms, wait_until
from tests.servers import Mosquitto


def _make_ca(folder, *hosts):
    subprocess.run([str(ROOT / "deploy" / "make-ca.sh"), str(folder), *hosts], check=True,
                   capture_output=True)  # fmt: skip
    return folder


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    return _make_ca(tmp_path_factory.mktemp("ca"), "localhost", "127.0.0.1")


@pytest.fixture(scope="module")
def other_ca(tmp_path_factory):
    return _make_ca(tmp_path_factory.mktemp("other-ca"), "localhost", "127.0.0.1")


@pytest.fixture(scope="module")
def tls_broker(certs):
    broker = Mosquitto()
    broker.enable_tls(certs)
    broker.start()
    yield broker
    broker.close()


def _client(ca=None) -> mqtt.Client:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="", protocol=mqtt.MQTTv5)
    if ca is not None:
        client.tls_set(ca_certs=str(ca))
    return client


def test_mqtt_over_tls_reaches_ingest_and_is_stored(tls_broker, certs, example_site, tmp_path):
    from ingest.service import IngestService
    from ingest.settings import IngestSettings
    from store import open_store
    from tests.devices import site_latlon

    settings = IngestSettings(
        broker=f"mqtts://localhost:{tls_broker.tls_port}",
        db=f"sqlite:///{tmp_path / 'tls.sqlite'}",
        client_id=f"tls-{uuid.uuid4().hex[:6]}",
        spool=str(tmp_path / "spool"),
        tls_ca=str(certs / "ca.crt"),
    )
    settings.sites = [(str(ROOT / "examples" / "sites" / "ecm1-kings-cross.toml"), ["*"])]
    service = IngestService(settings)
    service.start()
    try:
        assert service.subscribed.wait(15), service.alarms
        device = _client(certs / "ca.crt")
        device.connect("localhost", tls_broker.tls_port)
        device.loop_start()
        lat, lon = site_latlon(example_site, 500, -3.0)
        device.publish("trackside/v1/acme/tls1/fix", native("tls1", 1, now_ms(), lat, lon), qos=1)
        store = open_store(settings.db)
        assert wait_until(lambda: store.counts()["fixes"] == 1, 15)
        store.close()
        device.disconnect()
        device.loop_stop()
    finally:
        service.stop()


def test_a_client_that_does_not_trust_the_ca_is_refused(tls_broker, other_ca):
    with pytest.raises(ssl.SSLError):
        _client(other_ca / "ca.crt").connect("localhost", tls_broker.tls_port)


def test_plain_text_to_the_tls_port_gets_no_session(tls_broker):
    connected = threading.Event()
    client = _client()
    client.on_connect = lambda c, u, f, rc, p: connected.set() if not rc.is_failure else None
    try:
        client.connect("127.0.0.1", tls_broker.tls_port)
        client.loop_start()
        assert not connected.wait(3)
    except OSError:
        pass  # refused at once: just as good
    finally:
        client.loop_stop()


def test_the_console_over_https(certs, other_ca, tmp_path):
    import uvicorn

    from ingest.embedded_broker import free_loopback_port
    from reporting.console.app import create_app
    from store import open_store

    store = open_store(f"sqlite:///{tmp_path / 'c.sqlite'}")
    store.migrate()
    port = free_loopback_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(store), host="127.0.0.1", port=port, log_level="warning",
                       ssl_certfile=str(certs / "server.crt"),
                       ssl_keyfile=str(certs / "server.key"))
    )  # fmt: skip
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        assert wait_until(lambda: server.started, 15)
        url = f"https://localhost:{port}/health"
        reply = httpx.get(url, verify=ssl.create_default_context(cafile=str(certs / "ca.crt")))
        assert reply.status_code == 200 and reply.json()["database"] == "ok"
        with pytest.raises(httpx.ConnectError):  # a CA it does not know: no connection
            httpx.get(url, verify=ssl.create_default_context(cafile=str(other_ca / "ca.crt")))
        with pytest.raises(httpx.HTTPError):  # and no plain HTTP on the HTTPS port
            httpx.get(f"http://localhost:{port}/health")
    finally:
        server.should_exit = True
        thread.join(10)
        store.close()
