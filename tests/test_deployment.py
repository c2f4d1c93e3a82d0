"""docker-compose.yml agrees with the code, and the shipped broker ACL really fences suppliers."""

from __future__ import annotations

import tomllib
from pathlib import Path
from urllib.parse import urlparse

import paho.mqtt.client as mqtt
import pytest
import yaml
from paho.mqtt.enums import CallbackAPIVersion

from ingest.settings import _ENV, load_settings
from tests.conftest import ROOT
from tests.devices import wait_until
from tests.servers import AUTH_CONF, MAKE_CREDENTIALS, MOSQUITTO_CONF, Mosquitto, make_credentials

COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
INGESTS = {k: v for k, v in COMPOSE["services"].items() if k.startswith("ingest")}


def test_compose_has_the_broker_the_database_and_two_workers():
    assert {"mosquitto", "timescaledb"} <= set(COMPOSE["services"])
    assert len(INGESTS) >= 2


def test_workers_use_only_settings_the_code_reads_and_agree_with_the_servers():
    broker_port = next(
        int(line.split()[1])
        for line in MOSQUITTO_CONF.read_text().splitlines()
        if line.startswith("listener ")
    )
    db = COMPOSE["services"]["timescaledb"]["environment"]
    client_ids = set()
    for name, service in INGESTS.items():
        env = service["environment"]
        assert set(env) <= set(_ENV), f"{name} sets variables the code never reads"
        settings = load_settings(env=env)
        broker = urlparse(settings.broker)
        assert (broker.hostname, broker.port) == ("mosquitto", broker_port)
        database = urlparse(env["TRACKFENCE_DB"].replace("${POSTGRES_PASSWORD}", "pw"))
        assert database.hostname == "timescaledb" and database.path == f"/{db['POSTGRES_DB']}"
        assert database.username == db["POSTGRES_USER"]
        assert settings.group == "ingest" and settings.username == "ingest"
        client_ids.add(settings.client_id)
        config = service["command"][service["command"].index("--config") + 1]
        local = ROOT / config.removeprefix("/srv/trackfence/")
        for site in tomllib.loads(local.read_text())["site"]:
            assert (ROOT / site["file"].removeprefix("/srv/trackfence/")).exists()
    assert len(client_ids) == len(INGESTS)  # each worker its own persistent session


def test_every_file_the_broker_mounts_is_shipped_or_made_by_the_credentials_script():
    for mount in COMPOSE["services"]["mosquitto"]["volumes"]:
        source = mount.split(":")[0]
        if source.startswith("./"):
            path = ROOT / source
            assert path.exists() or path.name == "passwd"  # passwd: deploy/make-credentials.sh


def test_the_broker_is_built_with_the_plugin_its_auth_conf_loads():
    mosquitto = COMPOSE["services"]["mosquitto"]
    context = ROOT / mosquitto["build"]
    dockerfile = (context / "Dockerfile").read_text()
    auth = AUTH_CONF.read_text().splitlines()
    plugin = next(line.split()[1] for line in auth if line.startswith("plugin "))
    assert f"/build/{Path(plugin).name} {plugin}" in dockerfile  # COPY --from=build … there
    assert (context / "reserved_ids.c").exists()
    # the build context holds the password file: only the source may go to the builder
    ignore = (context / ".dockerignore").read_text().splitlines()
    assert [rule for rule in ignore if not rule.startswith("#")] == ["*", "!reserved_ids.c"]


def test_each_workers_client_id_is_reserved_to_the_ingest_user():
    options = {}
    for line in AUTH_CONF.read_text().splitlines():
        if line.startswith("plugin_opt_"):
            key, value = line.removeprefix("plugin_opt_").split()
            options.setdefault(key, []).append(value)
    assert options["reserved"] == ["trackfence-"]
    for service in INGESTS.values():
        env = service["environment"]
        client_id = env["TRACKFENCE_CLIENT_ID"]
        assert client_id.startswith(tuple(options["reserved"]))  # no supplier may use it
        assert client_id.startswith(tuple(options[f"owner_{env['TRACKFENCE_MQTT_USERNAME']}"]))
    assert load_settings(env={}).client_id.startswith(tuple(options["owner_ingest"]))
    assert "owner_console" in options


def test_the_password_file_is_made_for_the_user_the_compose_broker_runs_as():
    script = MAKE_CREDENTIALS.read_text()
    default_owner = next(
        line.split('"')[1] for line in script.splitlines() if line.startswith("owner=")
    )
    assert COMPOSE["services"]["mosquitto"]["user"] == default_owner == "1883:1883"
    mounts = COMPOSE["services"]["mosquitto"]["volumes"]
    assert "./deploy/mosquitto/passwd:/mosquitto/config/passwd:ro" in mounts


# ---------------------------------------------------------------- the ACL, on a real broker
@pytest.fixture(scope="module")
def secured_broker():
    """The shipped auth with a password file made by deploy/make-credentials.sh, as is."""
    broker = Mosquitto()
    broker.passwords = make_credentials(broker.folder / "deploy", ["acme", "gnssco"])
    broker.start(auth_folder=broker.use_shipped_auth(broker.folder / "deploy/mosquitto/passwd"))
    yield broker
    broker.close()


def client(broker: Mosquitto, user: str | None, received: list | None = None) -> mqtt.Client:
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="", protocol=mqtt.MQTTv5)
    if user:
        c.username_pw_set(user, broker.passwords[user])
    if received is not None:
        c.on_message = lambda cl, u, m: received.append(m.topic)
    c.connect("127.0.0.1", broker.port)
    c.loop_start()
    return c


def test_anonymous_clients_are_refused(secured_broker):
    refused = []
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="", protocol=mqtt.MQTTv5)
    c.on_connect = lambda cl, u, f, reason, p: refused.append(reason.is_failure)
    c.connect("127.0.0.1", secured_broker.port)
    c.loop_start()
    assert wait_until(lambda: refused, 5) and refused == [True]
    c.loop_stop()


def test_a_supplier_publishes_and_reads_only_under_its_own_prefix(secured_broker):
    seen_by_ingest: list[str] = []
    ingest = client(secured_broker, "ingest", seen_by_ingest)
    ingest.subscribe("trackside/v1/+/+/fix", qos=1)
    acme_alerts: list[str] = []
    acme = client(secured_broker, "acme", acme_alerts)
    acme.subscribe("trackside/v1/acme/+/alert", qos=1)
    acme.subscribe("trackside/v1/gnssco/+/alert", qos=1)  # not its own: refused
    assert wait_until(lambda: ingest.is_connected() and acme.is_connected(), 5)
    import time

    time.sleep(0.3)
    acme.publish("trackside/v1/acme/ac-1/fix", b"{}", qos=1).wait_for_publish(5)
    acme.publish("trackside/v1/gnssco/gn-1/fix", b"{}", qos=1).wait_for_publish(5)  # spoofing
    ingest.publish("trackside/v1/acme/ac-1/alert", b"{}", qos=1).wait_for_publish(5)
    ingest.publish("trackside/v1/gnssco/gn-1/alert", b"{}", qos=1).wait_for_publish(5)
    time.sleep(0.5)
    assert seen_by_ingest == ["trackside/v1/acme/ac-1/fix"]
    assert acme_alerts == ["trackside/v1/acme/ac-1/alert"]
    for c in (ingest, acme):
        c.disconnect()
        c.loop_stop()


def test_the_console_reads_the_same_database_and_follows_the_broker():
    console = COMPOSE["services"]["console"]
    env = console["environment"]
    workers = next(iter(INGESTS.values()))["environment"]
    assert env["TRACKFENCE_DB"] == workers["TRACKFENCE_DB"]
    assert env["TRACKFENCE_BROKER"] == workers["TRACKFENCE_BROKER"]
    assert env["TRACKFENCE_MQTT_USERNAME"] == "console"
    # the console user may read the workers' health in the shipped ACL
    acl = (ROOT / "deploy" / "mosquitto" / "acl").read_text().split("user console", 1)[1]
    assert "topic read trackfence/v1/ingest/+/status" in acl
    assert console["command"][0] == "serve"
