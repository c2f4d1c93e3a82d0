"""deploy/make-credentials.sh writes a password file the broker can read, and only it
(issue 14, item 5).

Mosquitto started as root (Debian's service; the eclipse-mosquitto image) drops to its
own user before it opens the password file. A file only root may read then stops it:
"Unable to open pwfile". Nothing here changes the generated file's owner or mode.
"""

from __future__ import annotations

import os
import pwd
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.servers import MAKE_CREDENTIALS, Mosquitto, make_credentials, mosquitto_user
from tests.test_broker_identities import Session

as_root_dropping_to_mosquitto = pytest.mark.skipif(
    os.geteuid() != 0 or mosquitto_user() is None,
    reason="Mosquitto drops to its own user only when started as root, with a mosquitto user",
)


def uid_of_broker(broker: Mosquitto) -> int:
    for line in Path(f"/proc/{broker.process.pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[2])  # effective
    raise AssertionError("no Uid line")


@as_root_dropping_to_mosquitto
def test_a_broker_started_as_root_reads_the_generated_password_file():
    broker = Mosquitto()
    try:
        out = broker.folder / "deploy"
        passwords = make_credentials(out, ["acme", "gnssco"], owner="mosquitto:mosquitto")
        passwd = out / "mosquitto" / "passwd"
        user = mosquitto_user()
        info = passwd.stat()
        assert (info.st_uid, info.st_gid) == (user.pw_uid, user.pw_gid)
        assert stat.S_IMODE(info.st_mode) == 0o640  # the broker's user and group, no one else
        assert stat.S_IMODE((out / ".env").stat().st_mode) == 0o600
        broker.start(auth_folder=broker.use_shipped_auth(passwd))
        assert uid_of_broker(broker) == user.pw_uid  # it really dropped root
        for name in ("ingest", "console", "acme", "gnssco"):
            assert Session(broker.port, name, passwords[name], f"{name}-x").attempt() == 0, name
        assert Session(broker.port, "acme", "not-the-password", "ac-1").attempt() == 135
    finally:
        broker.close()


@as_root_dropping_to_mosquitto
def test_a_password_file_only_root_may_read_stops_a_broker_started_as_root():
    """The control: what the script used to write (root's, 0600) fails the same start."""
    broker = Mosquitto()
    try:
        out = broker.folder / "deploy"
        make_credentials(out, ["acme"], owner="mosquitto:mosquitto")
        passwd = out / "mosquitto" / "passwd"
        os.chown(passwd, 0, 0)
        passwd.chmod(0o600)
        with pytest.raises(RuntimeError, match="Unable to open pwfile"):
            broker.start(auth_folder=broker.use_shipped_auth(passwd))
    finally:
        broker.close()


@pytest.fixture
def out():
    folder = Path(tempfile.mkdtemp(prefix="tf-credentials-"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def run_script(*args: str, env: dict | None = None, user: pwd.struct_passwd | None = None):
    command = [str(MAKE_CREDENTIALS), *args]
    if user is not None:
        ids = [f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--clear-groups"]
        command = ["setpriv", *ids, *command]
    return subprocess.run(
        command, capture_output=True, text=True, env={**os.environ, **(env or {})}
    )


@pytest.mark.parametrize("name", ["ingest", "console", "a/b", "+", "#", "acme gnssco", "-x"])
def test_the_script_refuses_names_the_platform_uses_or_a_topic_cannot_hold(out, name):
    done = run_script("--owner", f"{os.getuid()}:{os.getgid()}", "--out", str(out), "--", name)
    assert done.returncode == 2, done.stderr
    assert not (out / ".env").exists() and not (out / "mosquitto" / "passwd").exists()


@pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("setpriv") is None, reason="needs root and setpriv"
)
def test_without_root_the_script_writes_nothing_the_broker_could_not_read(out):
    nobody = pwd.getpwnam("nobody")
    os.chown(out, nobody.pw_uid, nobody.pw_gid)  # a folder nobody may write, as its own
    done = run_script("--out", str(out), "acme", user=nobody)
    assert done.returncode == 1
    assert "sudo" in done.stderr
    assert not (out / ".env").exists() and not (out / "mosquitto" / "passwd").exists()
    assert list((out / "mosquitto").iterdir()) == []  # no half-made file left behind


@pytest.mark.skipif(os.geteuid() != 0, reason="chown to another user needs root")
def test_under_sudo_the_env_file_is_left_to_the_user_who_ran_sudo(out):
    done = run_script("--out", str(out), "acme", env={"SUDO_UID": "4242", "SUDO_GID": "4343"})
    assert done.returncode == 0, done.stderr
    env = (out / ".env").stat()
    assert (env.st_uid, env.st_gid, stat.S_IMODE(env.st_mode)) == (4242, 4343, 0o600)
    passwd = (out / "mosquitto" / "passwd").stat()
    # the default owner: the eclipse-mosquitto image's user, as docker-compose.yml runs it
    assert (passwd.st_uid, passwd.st_gid, stat.S_IMODE(passwd.st_mode)) == (1883, 1883, 0o640)
