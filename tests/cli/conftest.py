"""The `accrete` console script run as a user runs it — a subprocess, with ACCRETE_URL pointing at
pytest-django's live server and ACCRETE_TOKEN holding a real token made by the tokens service. Tasks the
server queues are recorded (fake_tasks), uploads land in a per-test VAR_DIR."""

import os
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

ACCRETE = Path(__file__).resolve().parents[2] / ".venv" / "bin" / "accrete"


@dataclass(frozen=True)
class Ran:
    code: int
    out: str
    err: str


@pytest.fixture(autouse=True)
def _server_side(fake_tasks, var_dir):
    """No worker and no real broker; uploads under a per-test folder."""


@pytest.fixture
def token_of(people):
    """token_of("bob") -> a fresh personal API token of bob's (the secret, acc_…)."""
    from tokens.services import token_create

    def make(name: str) -> str:
        user = people[name]
        return token_create(user=user, name=f"{name}'s CLI token", actor=user).secret

    return make


def _env(live_server, token: str | None) -> dict:
    env = {**os.environ, "ACCRETE_URL": live_server.url, "COLUMNS": "200", "NO_COLOR": "1"}
    env.pop("ACCRETE_TOKEN", None)
    if token is not None:
        env["ACCRETE_TOKEN"] = token
    return env


@pytest.fixture
def accrete(live_server, token_of):
    """accrete(*args, user="alice", token=None) -> Ran(code, out, err): the console script run to its end as
    `user` (or with the literal `token`, "" for none)."""
    def run(*args: str, user: str = "alice", token: str | None = None, timeout: float = 30) -> Ran:
        secret = token_of(user) if token is None else (token or None)
        done = subprocess.run([str(ACCRETE), *args], env=_env(live_server, secret), capture_output=True, text=True,
                              timeout=timeout)
        return Ran(done.returncode, done.stdout, done.stderr)

    return run


@pytest.fixture
def accrete_started(live_server, token_of):
    """accrete_started(*args, user="alice") -> a running `accrete` (subprocess.Popen, text pipes), for a
    command that waits while the test changes the world."""
    started = []

    def start(*args: str, user: str = "alice") -> subprocess.Popen:
        process = subprocess.Popen([str(ACCRETE), *args], env=_env(live_server, token_of(user)), text=True,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        started.append(process)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait()


class ServerLog:
    """The paths the live server was asked for, in order, and `paused`: a lock the server holds while it
    answers a request, so that `with log.paused:` a test writes while no request is being answered. (With
    SQLite in memory the server thread and the test share one connection, which two threads must not use
    at once.)"""

    def __init__(self):
        self.paths: list[str] = []
        self.paused = threading.Lock()

    def wait_for(self, path: str, times: int, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while self.paths.count(path) < times:
            assert time.monotonic() < deadline, f"{path} asked {self.paths.count(path)} time(s), not {times}"
            time.sleep(0.05)


@pytest.fixture
def server_log(live_server, monkeypatch):
    httpd = live_server.thread.httpd
    app, log = httpd.get_app(), ServerLog()

    def logged(environ, start_response):
        with log.paused:
            log.paths.append(environ["PATH_INFO"])
            return app(environ, start_response)

    monkeypatch.setattr(httpd, "application", logged)
    return log
