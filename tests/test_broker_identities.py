"""Reserved client ids on a real broker with the shipped auth (issue 14, item 4).

A supplier that connected with an ingest worker's client id used to take the worker's
place and its persistent session: the two knocked each other off about once a second,
and the QoS 1 fixes of other suppliers that the broker routed to the supplier's copy of
the session were dropped by the ACL, lost for good. deploy/mosquitto/reserved_ids.c
refuses such a login before any session is touched.
"""

from __future__ import annotations

import json
import threading
import time

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from tests.servers import Mosquitto, make_credentials

SHARED_FIXES = "$share/ingest/trackside/v1/+/+/fix"  # as ingest subscribes in a group
NOT_AUTHORIZED = {"v5": 135, "v311": 135}  # paho reports v3.1.1's code 5 as 135


@pytest.fixture(scope="module")
def guarded():
    """A broker with the shipped auth.conf, ACL, plugin and generated password file."""
    broker = Mosquitto()
    passwords = make_credentials(broker.folder / "deploy", ["acme", "gnssco"])
    broker.start(auth_folder=broker.use_shipped_auth(broker.folder / "deploy/mosquitto/passwd"))
    yield broker, passwords
    broker.close()


class Session:
    """One MQTT connection, recording its CONNACK, its disconnections and its messages."""

    def __init__(
        self,
        port: int,
        user: str | None,
        password: str | None,
        client_id: str,
        protocol: str = "v5",
    ) -> None:
        self.port = port
        self.v5 = protocol == "v5"
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=mqtt.MQTTv5 if self.v5 else mqtt.MQTTv311,
            clean_session=None if self.v5 else False,
        )
        if user is not None:
            self.client.username_pw_set(user, password)
        self.connack = threading.Event()
        self.reason: int | None = None
        self.session_present: bool | None = None
        self.disconnects = 0
        self.received: list[bytes] = []
        self.subscribed = threading.Event()
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = lambda *a: setattr(self, "disconnects", self.disconnects + 1)
        self.client.on_message = lambda c, u, m: self.received.append(m.payload)
        self.client.on_subscribe = lambda *a: self.subscribed.set()

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        self.reason = reason_code.value
        self.session_present = flags.session_present
        self.connack.set()

    def connect(self, timeout_s: float = 5.0) -> int:
        """Connect as a persistent session (a day, like `-c -x 86400`); the CONNACK code."""
        if self.v5:
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = 86400
            self.client.connect("127.0.0.1", self.port, clean_start=False, properties=props)
        else:
            self.client.connect("127.0.0.1", self.port)
        self.client.loop_start()
        assert self.connack.wait(timeout_s), "no CONNACK"
        return self.reason

    def attempt(self, timeout_s: float = 5.0) -> int:
        """Connect without a network thread, take the CONNACK, leave: the CONNACK code."""
        if self.v5:
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = 86400
            self.client.connect("127.0.0.1", self.port, clean_start=False, properties=props)
        else:
            self.client.connect("127.0.0.1", self.port)
        deadline = time.monotonic() + timeout_s
        while not self.connack.is_set() and time.monotonic() < deadline:
            self.client.loop(0.01)
        assert self.connack.is_set(), "no CONNACK"
        if self.reason == 0:
            self.client.disconnect()
        else:
            self.client.socket() and self.client.socket().close()
        return self.reason

    def subscribe(self, topic: str) -> None:
        self.subscribed.clear()
        self.client.subscribe(topic, qos=1)
        assert self.subscribed.wait(5)

    def close(self, keep_session: bool = False) -> None:
        """Leave; the persistent session ends too unless `keep_session` (a restart)."""
        props = None
        if self.v5 and not keep_session:
            props = Properties(PacketTypes.DISCONNECT)
            props.SessionExpiryInterval = 0
        self.client.disconnect(properties=props)
        self.client.loop_stop()


def wait_until(condition, timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


def test_a_supplier_cannot_take_over_an_ingest_workers_session(guarded):
    broker, pw = guarded
    worker = Session(broker.port, "ingest", pw["ingest"], "trackfence-ingest-1")
    assert worker.connect() == 0
    worker.subscribe(SHARED_FIXES)
    device = Session(broker.port, "gnssco", pw["gnssco"], "gn-0101")
    assert device.connect() == 0

    # acme keeps trying to be the worker (the mosquitto_sub, in both protocols)
    # while gnssco publishes its fixes
    attempts: list[tuple[str, int]] = []
    stop = threading.Event()

    def impostor() -> None:
        while not stop.is_set():
            for protocol in ("v5", "v311"):
                acme = Session(broker.port, "acme", pw["acme"], "trackfence-ingest-1", protocol)
                attempts.append((protocol, acme.attempt()))
            time.sleep(0.02)

    thread = threading.Thread(target=impostor, daemon=True)
    thread.start()
    sent = [json.dumps({"device": "gn-0101", "seq": seq}).encode() for seq in range(1, 31)]
    try:
        for payload in sent:
            device.client.publish("trackside/v1/gnssco/gn-0101/fix", payload, qos=1)
            time.sleep(0.05)
        wait_until(lambda: len(worker.received) >= len(sent), 5)
    finally:
        stop.set()
        thread.join(10)
    time.sleep(0.2)  # nothing more, and nothing twice

    got = [json.loads(p)["seq"] for p in worker.received]
    admitted = [a for a in attempts if a[1] == 0]
    assert len(attempts) >= 10, attempts
    assert not admitted, f"acme got in {len(admitted)} times; the worker received seq {got}"
    assert all(code == NOT_AUTHORIZED[protocol] for protocol, code in attempts), attempts
    assert worker.disconnects == 0 and worker.client.is_connected()
    assert worker.received == sent, f"received seq {got}"  # every fix once, in order
    assert "refused client id trackfence-ingest-1 to user acme" in broker.log
    worker.close()
    device.close()


@pytest.mark.parametrize("supplier", ["acme", "gnssco"])
@pytest.mark.parametrize(
    "client_id",
    ["trackfence-ingest-1", "trackfence-ingest-2", "trackfence-ingest", "trackfence-console",
     "trackfence-anything"],
)  # fmt: skip
def test_a_supplier_is_refused_every_id_of_the_platform(guarded, supplier, client_id):
    broker, pw = guarded
    assert Session(broker.port, supplier, pw[supplier], client_id).attempt() == NOT_AUTHORIZED["v5"]


def test_the_console_keeps_its_connection_while_a_supplier_tries_its_id(guarded):
    broker, pw = guarded
    console = Session(broker.port, "console", pw["console"], "trackfence-console")
    assert console.connect() == 0
    console.subscribe("trackfence/v1/ingest/+/status")
    acme = Session(broker.port, "acme", pw["acme"], "trackfence-console")
    assert acme.attempt() == NOT_AUTHORIZED["v5"]
    time.sleep(0.2)
    assert console.disconnects == 0 and console.client.is_connected()
    console.close()


def test_the_platform_users_connect_with_their_own_ids_and_nothing_more(guarded):
    broker, pw = guarded
    allowed = [
        ("ingest", "trackfence-ingest-2"),
        ("ingest", "trackfence-ingest"),  # ingest's default client_id
        ("console", "trackfence-console"),
        ("console", ""),  # the console today: an id the broker assigns
    ]
    for user, client_id in allowed:
        assert Session(broker.port, user, pw[user], client_id).attempt() == 0, (user, client_id)
    # owning an id grants no login, and a user owns only its own ids
    refused = [
        ("ingest", "wrong-password", "trackfence-ingest-1"),
        ("console", pw["console"], "trackfence-ingest-1"),
        ("ingest", pw["ingest"], "trackfence-console"),
        (None, None, "trackfence-ingest-1"),
    ]
    for user, password, client_id in refused:
        code = Session(broker.port, user, password, client_id).attempt()
        assert code == NOT_AUTHORIZED["v5"], (user, client_id)


def test_a_workers_own_reconnection_resumes_its_session(guarded):
    broker, pw = guarded
    worker = Session(broker.port, "ingest", pw["ingest"], "trackfence-ingest-7")
    worker.connect()
    worker.subscribe("trackside/v1/acme/ac-0007/fix")
    worker.close(keep_session=True)  # a restart: its session and subscription stay
    device = Session(broker.port, "acme", pw["acme"], "ac-0007")
    device.connect()
    device.client.publish("trackside/v1/acme/ac-0007/fix", b"while-away", qos=1).wait_for_publish(5)
    again = Session(broker.port, "ingest", pw["ingest"], "trackfence-ingest-7")
    assert again.connect() == 0 and again.session_present
    assert wait_until(lambda: again.received == [b"while-away"], 5)
    again.close()
    device.close()


def test_devices_of_one_supplier_stay_connected_together_each_with_its_own_id(guarded):
    broker, pw = guarded
    worker = Session(broker.port, "ingest", pw["ingest"], "trackfence-ingest-3")
    worker.connect()
    worker.subscribe("trackside/v1/acme/+/fix")
    ids = ["ac-0001", "ac-0002", "acme-trackfence-3", "TRACKFENCE-ingest-1", "a4", ""]
    devices = [Session(broker.port, "acme", pw["acme"], client_id) for client_id in ids]
    for d in devices:
        assert d.connect() == 0
    for n, d in enumerate(devices):
        d.client.publish(f"trackside/v1/acme/d{n}/fix", f"d{n}".encode(), qos=1).wait_for_publish(5)
    assert wait_until(lambda: len(worker.received) == len(devices), 5)
    assert sorted(worker.received) == sorted(f"d{n}".encode() for n in range(len(devices)))
    assert all(d.disconnects == 0 and d.client.is_connected() for d in devices)
    for d in (*devices, worker):
        d.close()


@pytest.mark.parametrize(
    ("options", "complaint"),
    [
        ("plugin_opt_owner_ingest ingest-", "lies outside every reserved prefix"),
        ("plugin_opt_reservd trackfence-", "unknown option plugin_opt_reservd"),
    ],
)
def test_a_mistake_in_the_plugins_options_stops_the_broker(options, complaint):
    broker = Mosquitto()
    try:
        passwd = broker.folder / "passwd"
        passwd.touch()
        conf_d = broker.use_shipped_auth(passwd)
        auth = conf_d / "auth.conf"
        auth.write_text(auth.read_text() + options + "\n")
        with pytest.raises(RuntimeError, match="did not start") as refused:
            broker.start(auth_folder=conf_d)
        assert complaint in str(refused.value)
    finally:
        broker.close()
