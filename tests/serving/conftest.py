"""Real servers for the serving tests: a Redis server (Debian's redis-server) and two `rasa run
--enable-api` processes on 127.0.0.1 serving the trained example bot, sharing Redis as tracker
store and lock store. Started once per session, stopped at its end."""
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Dict, Iterator, List

import pytest
import requests
import yaml

from tests.conftest import EXAMPLE_BOT, RASA

TOKEN = "serving-tests-token"  # as in test_serving.py
START_TIMEOUT = 420  # seconds for a server to load the model


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class Server:
    """One `rasa run` process; `url` is its base address."""

    def __init__(self, model: Path, workdir: Path, endpoints: Dict) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / "endpoints.yml").write_text(yaml.safe_dump(endpoints))
        self.log = workdir / "rasa.log"
        self.process = subprocess.Popen(
            [RASA, "run", "--model", str(model), "--enable-api", "--auth-token", TOKEN,
             "--interface", "127.0.0.1", "--port", str(self.port),
             "--credentials", str(EXAMPLE_BOT / "credentials.yml"), "--endpoints",
             str(workdir / "endpoints.yml")],
            cwd=workdir, stdout=self.log.open("w"), stderr=subprocess.STDOUT,
            env={**os.environ, "RASA_TELEMETRY_ENABLED": "false"})

    def wait_ready(self, deadline: float) -> None:
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"rasa run exited with {self.process.returncode}:\n"
                                   + self.log.read_text()[-3000:])
            try:
                status = requests.get(f"{self.url}/status", params={"token": TOKEN}, timeout=5)
                if status.status_code == 200 and status.json().get("model_id"):
                    return
            except requests.RequestException:
                pass
            time.sleep(1)
        raise RuntimeError(f"rasa run not ready after {START_TIMEOUT} s:\n"
                           + self.log.read_text()[-3000:])


@pytest.fixture(scope="session")
def redis_port(tmp_path_factory) -> Iterator[int]:
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail("redis-server not found: install Debian's package (`apt-get install "
                    "redis-server`); .ci/run does so when it is missing.")
    port = free_port()
    workdir = tmp_path_factory.mktemp("redis")
    process = subprocess.Popen([binary, "--bind", "127.0.0.1", "--port", str(port), "--save", "",
                                "--appendonly", "no", "--dir", str(workdir)],
                               stdout=(workdir / "redis.log").open("w"), stderr=subprocess.STDOUT)
    import redis

    client = redis.Redis(host="127.0.0.1", port=port)
    for _ in range(100):
        try:
            client.ping()
            break
        except redis.ConnectionError:
            time.sleep(0.1)
    yield port
    stop(process)


@pytest.fixture(scope="session")
def servers(example_model, redis_port, tmp_path_factory) -> Iterator[List[Server]]:
    """Two servers of the example bot sharing one Redis tracker store and lock store."""
    endpoints = {
        "tracker_store": {"type": "redis", "url": "127.0.0.1", "port": redis_port, "db": 0},
        "lock_store": {"type": "redis", "url": "127.0.0.1", "port": redis_port, "db": 1},
    }
    root = tmp_path_factory.mktemp("servers")
    started = [Server(example_model, root / name, endpoints) for name in ("a", "b")]
    try:
        deadline = time.monotonic() + START_TIMEOUT
        for server in started:
            server.wait_ready(deadline)
        yield started
    finally:
        for server in started:
            stop(server.process)

