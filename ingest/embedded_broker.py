"""An MQTT broker inside the process, for a one-machine trial with no server to install.

amqtt (pure Python, asyncio) runs on its own thread and event loop, bound to a free
loopback port. It speaks MQTT 3.1.1 only, so ingest and the simulated devices talk
3.1.1 to it (no shared subscriptions: one ingest worker). Everything else is the
same code path as with Mosquitto: the devices publish at QoS 1, ingest subscribes
with a persistent session and acknowledges after the durable write.

It is the embedded default for trials; a deployment uses Mosquitto (`--broker`).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
from types import TracebackType

#: The protocol the embedded broker speaks (ingest and publishers must match it).
EMBEDDED_PROTOCOL = "3.1.1"


def free_loopback_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class EmbeddedBroker:
    """`with EmbeddedBroker() as broker:` … `broker.url` … (stopped on leaving)."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_loopback_port()
        self.url = f"mqtt://127.0.0.1:{self.port}"
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="mqtt-broker")
        self._broker = None

    def start(self, timeout_s: float = 15.0) -> None:
        from amqtt.broker import Broker

        # amqtt logs every client connecting and leaving at INFO: keep the trial's output clean
        logging.getLogger("amqtt").setLevel(logging.WARNING)
        config = {
            "listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{self.port}"}},
            "plugins": {
                "amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}
            },
        }
        self._thread.start()

        async def boot() -> None:
            self._broker = Broker(config, loop=self._loop)
            await self._broker.start()

        asyncio.run_coroutine_threadsafe(boot(), self._loop).result(timeout_s)

    def stop(self, timeout_s: float = 15.0) -> None:
        if self._broker is not None:
            future = asyncio.run_coroutine_threadsafe(self._broker.shutdown(), self._loop)
            try:
                future.result(timeout_s)
            except Exception:
                logging.getLogger(__name__).warning("embedded broker did not stop cleanly")
            self._broker = None
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout_s)

    def __enter__(self) -> EmbeddedBroker:
        self.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
