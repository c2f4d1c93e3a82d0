"""Real servers for the integration tests: Mosquitto and TimescaleDB on loopback.

Each runs on a free 127.0.0.1 port with its own configuration and data folder,
and stops when the test session ends. scripts/provision-services.sh installs
them (the README's test command runs it); if they are missing the tests fail
and say so, rather than skipping.
"""

from __future__ import annotations

import atexit
import functools
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import closing, suppress
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MOSQUITTO_CONF = ROOT / "deploy" / "mosquitto" / "mosquitto.conf"
AUTH_CONF = ROOT / "deploy" / "mosquitto" / "conf.d" / "auth.conf"
ACL = ROOT / "deploy" / "mosquitto" / "acl"
RESERVED_IDS_SOURCE = ROOT / "deploy" / "mosquitto" / "reserved_ids.c"
MAKE_CREDENTIALS = ROOT / "deploy" / "make-credentials.sh"
TSDB_ROOT = Path(os.environ.get("TRACKFENCE_TSDB_ROOT", "/var/cache/trackfence/trixie-timescaledb"))
PG_BIN = "/usr/lib/postgresql/17/bin"


class ServerMissing(RuntimeError):  # noqa: N818 - reads as a sentence in test output
    pass


def free_port() -> int:
    with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(
    port: int, timeout_s: float = 15.0, process: subprocess.Popen | None = None
) -> None:
    """Wait until 127.0.0.1:`port` accepts; with `process`, give up as soon as it exits."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        if process is not None and process.poll() is not None:
            raise TimeoutError(f"the server exited ({process.returncode}) before listening")
        time.sleep(0.05)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port} after {timeout_s} s")


def mosquitto_user() -> pwd.struct_passwd | None:
    """The user a root-started Mosquitto drops to (Debian's package makes it), if any."""
    try:
        return pwd.getpwnam("mosquitto")
    except KeyError:
        return None


@functools.cache
def reserved_ids_plugin() -> Path:
    """deploy/mosquitto/reserved_ids.c built for the installed Mosquitto (once a session).

    Mosquitto loads plugins after dropping to its own user, so the folder is readable.
    """
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        raise ServerMissing("no C compiler to build deploy/mosquitto/reserved_ids.c (gcc)")
    folder = Path(tempfile.mkdtemp(prefix="tf-mosquitto-plugin-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    folder.chmod(0o755)
    plugin = folder / "trackfence_reserved_ids.so"
    done = subprocess.run(
        [compiler, "-std=c99", "-O2", "-Wall", "-Wextra", "-Werror", "-fPIC", "-shared",
         "-o", str(plugin), str(RESERVED_IDS_SOURCE)],
        capture_output=True, text=True,
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"building {RESERVED_IDS_SOURCE.name} failed:\n{done.stderr}")
    return plugin


def make_credentials(out: Path, suppliers: list[str], owner: str | None = None) -> dict[str, str]:
    """Run deploy/make-credentials.sh into `out`; the MQTT password of each user.

    `owner` defaults to the user the test broker reads files as: user mosquitto when
    the tests run as root (Mosquitto drops to it), else the user running the tests.
    """
    if owner is None:
        user = mosquitto_user()
        if os.geteuid() == 0 and user is not None:
            owner = f"{user.pw_uid}:{user.pw_gid}"
        else:
            owner = f"{os.getuid()}:{os.getgid()}"
    subprocess.run(
        [str(MAKE_CREDENTIALS), "--owner", owner, "--out", str(out), *suppliers],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    lines = (out / ".env").read_text().splitlines()
    made = [line.partition("=")[2] for line in lines if line.startswith("MQTT_PASSWORD_")]
    return dict(zip(["ingest", "console", *suppliers], made, strict=True))  # in that order


class Mosquitto:
    """A broker using the shipped config, with only its listener and data folder moved."""

    def __init__(self) -> None:
        self.binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        if not Path(self.binary).exists():
            raise ServerMissing("mosquitto is not installed: run scripts/provision-services.sh")
        self.folder = Path(tempfile.mkdtemp(prefix="tf-mosquitto-"))
        if os.geteuid() == 0:
            # started as root, Mosquitto drops to its own user: let it write its data
            with suppress(KeyError):
                os.chown(self.folder, pwd.getpwnam("mosquitto").pw_uid, -1)
        self.port = free_port()
        self.tls_port: int | None = None  # a second, TLS listener (enable_tls)
        self.process: subprocess.Popen | None = None

    def config_text(self, auth_folder: Path | None = None) -> str:
        """The shipped config with only its paths and listener moved.

        Without `auth_folder` the broker admits anonymous clients (the shipped auth.conf
        is left out); with it, that folder plays the role of conf.d.
        """
        lines = []
        for line in MOSQUITTO_CONF.read_text().splitlines():
            key = line.split(" ", 1)[0]
            if key == "persistence_location":
                line = f"persistence_location {self.folder}/"
            elif key == "listener":
                line = f"listener {self.port} 127.0.0.1"
            elif key == "log_dest":
                line = f"log_dest file {self.folder}/mosquitto.log"
            elif key == "include_dir":
                line = f"include_dir {auth_folder}" if auth_folder else "allow_anonymous true"
            lines.append(line)
        if self.tls_port is not None:  # as deploy/mosquitto/tls.conf, on a free port
            certs = self.folder / "certs"
            lines += [
                f"listener {self.tls_port} 127.0.0.1",
                f"cafile {certs / 'ca.crt'}",
                f"certfile {certs / 'server.crt'}",
                f"keyfile {certs / 'server.key'}",
                "tls_version tlsv1.2",
            ]
        return "\n".join(lines) + "\n"

    def use_shipped_auth(self, password_file: Path) -> Path:
        """The shipped conf.d/auth.conf, for start(auth_folder=...): its conf.d folder.

        Its paths are moved into this broker's folder: the ACL is copied there, the
        password file is `password_file` (as made, e.g. by make_credentials: not
        chmod'ed here) and the reserved-ids plugin is built from its source.
        """
        conf_d = self.folder / "conf.d"
        conf_d.mkdir(exist_ok=True)
        shutil.copy(ACL, self.folder / "acl")
        lines = []
        for line in AUTH_CONF.read_text().splitlines():
            key = line.split(" ", 1)[0]
            if key == "password_file":
                line = f"password_file {password_file}"
            elif key == "acl_file":
                line = f"acl_file {self.folder / 'acl'}"
            elif key == "plugin":
                line = f"plugin {reserved_ids_plugin()}"
            lines.append(line)
        (conf_d / "auth.conf").write_text("\n".join(lines) + "\n")
        return conf_d

    @property
    def log(self) -> str:
        """What the broker has logged so far."""
        path = self.folder / "mosquitto.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def enable_tls(self, certs: Path) -> None:
        """Also listen with TLS, using ca.crt, server.crt and server.key from `certs`."""
        mine = self.folder / "certs"
        mine.mkdir(exist_ok=True)
        for name in ("ca.crt", "server.crt", "server.key"):
            shutil.copy(certs / name, mine / name)
            (mine / name).chmod(0o644)  # read by the broker's own user, in a test folder
        self.tls_port = free_port()

    def start(self, auth_folder: Path | None = None) -> Mosquitto:
        self.auth_folder = (
            auth_folder if auth_folder is not None else getattr(self, "auth_folder", None)
        )
        conf = self.folder / "mosquitto.conf"
        conf.write_text(self.config_text(self.auth_folder))
        self.process = subprocess.Popen(
            [self.binary, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        try:
            wait_for_port(self.port, process=self.process)
            if self.tls_port is not None:
                wait_for_port(self.tls_port, process=self.process)
        except TimeoutError:
            self.process.kill()
            _, err = self.process.communicate(timeout=5)
            self.process = None
            said = err.decode(errors="replace")[-2000:] + self.log[-2000:]
            raise RuntimeError(f"Mosquitto did not start: {said}") from None
        return self

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(sig)
            self.process.wait(timeout=10)
        if self.process and self.process.stderr:
            self.process.stderr.close()
        self.process = None

    def restart(self) -> None:
        """Stop (saving the persistence file) and start again on the same port and data."""
        self.stop()
        self.start()

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"


class TimescaleDB:
    """PostgreSQL 17 with TimescaleDB from the cached trixie root, run as its postgres user."""

    def __init__(self) -> None:
        if not (TSDB_ROOT / ".ready").exists():
            raise ServerMissing(
                f"no TimescaleDB root at {TSDB_ROOT}: run scripts/provision-services.sh (as root)"
            )
        if os.geteuid() != 0:
            raise ServerMissing("starting TimescaleDB from its root needs root (chroot)")
        self.inside = f"/tmp/tf-pg-{uuid.uuid4().hex[:10]}"
        self.folder = TSDB_ROOT / self.inside.lstrip("/")
        self.port = free_port()
        self._mounted_proc = False

    def _chroot(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["chroot", "--userspec=postgres:postgres", str(TSDB_ROOT), *args],
            capture_output=True,
            text=True,
            check=check,
        )

    def start(self) -> TimescaleDB:
        proc = TSDB_ROOT / "proc"
        if not os.path.ismount(proc):
            subprocess.run(["mount", "-t", "proc", "proc", str(proc)], check=True)
            self._mounted_proc = True
        self.folder.mkdir(parents=True)
        uid = _uid_in_root("postgres")
        os.chown(self.folder, uid, -1)
        self._chroot(
            f"{PG_BIN}/initdb", "-D", self.inside, "-A", "trust", "-U", "postgres", "--no-sync"
        )
        self._pg_ctl_start()
        self._chroot(
            f"{PG_BIN}/psql",
            "-h",
            "127.0.0.1",
            "-p",
            str(self.port),
            "-U",
            "postgres",
            "-c",
            "CREATE DATABASE trackfence",
        )
        return self

    def _pg_ctl_start(self) -> None:
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={self.inside}"
            " -c shared_preload_libraries=timescaledb -c timescaledb.telemetry_level=off"
            " -c max_connections=200 -c timescaledb.max_background_workers=4"
        )
        done = self._chroot(
            f"{PG_BIN}/pg_ctl",
            "-D",
            self.inside,
            "-l",
            f"{self.inside}/log",
            "-w",
            "-t",
            "60",
            "-o",
            options,
            "start",
            check=False,
        )
        if done.returncode != 0:
            log = (self.folder / "log").read_text() if (self.folder / "log").exists() else ""
            raise RuntimeError(f"TimescaleDB did not start: {done.stderr}\n{log[-2000:]}")

    def stop(self, mode: str = "fast") -> None:
        self._chroot(f"{PG_BIN}/pg_ctl", "-D", self.inside, "-w", "-m", mode, "stop", check=False)

    def restart(self) -> None:
        self._pg_ctl_start()

    def close(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.folder, ignore_errors=True)
        if self._mounted_proc:
            subprocess.run(["umount", str(TSDB_ROOT / "proc")], check=False)

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/trackfence"

    def fresh_database(self) -> str:
        """A new, empty database on this server: a test that uses one sees no other's rows."""
        import psycopg

        name = f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.url, autocommit=True) as admin:
            admin.execute(f"CREATE DATABASE {name}")
        return self.url.rsplit("/", 1)[0] + f"/{name}"


def _uid_in_root(user: str) -> int:
    for line in (TSDB_ROOT / "etc" / "passwd").read_text().splitlines():
        parts = line.split(":")
        if parts[0] == user:
            return int(parts[2])
    return pwd.getpwnam(user).pw_uid  # pragma: no cover


class IngestWorker:
    """`trackfence ingest --config FILE` as its own process, so that it can be killed.

    Its output goes to `log` (a file beside the config). `started_ms` is when it was last
    started: a status it publishes after that says it has subscribed (ingest.service).
    """

    def __init__(self, config: Path) -> None:
        self.config = config
        self.log = config.with_suffix(".log")
        self.process: subprocess.Popen | None = None
        self.started_ms = 0

    def start(self) -> IngestWorker:
        self.started_ms = time.time_ns() // 1_000_000
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "trackfence.cli", "ingest", "-v", "--config",
                 str(self.config)],
                env=dict(os.environ, PYTHONPATH=str(ROOT)), cwd=ROOT, stdout=out, stderr=out,
            )  # fmt: skip
        return self

    def kill(self) -> None:
        """SIGKILL: no goodbye, mid-batch; the broker keeps its session."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def stop(self, timeout_s: float = 60) -> None:
        """SIGTERM: it finishes the batch in hand, acknowledges what it kept, and leaves."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)

    def cpu_s(self) -> float:
        """CPU seconds (user + system) the process has used so far (Linux /proc)."""
        assert self.process is not None
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
