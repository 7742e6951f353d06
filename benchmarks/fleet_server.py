"""A throwaway ``redis-server`` for the fleet benchmarks: a free loopback port, a temp directory.

Self-contained (the tests have a fuller one in ``tests/redis_servers.py``): no persistence, no
daemon, stopped (and its directory removed) by ``stop()`` or at the latest when the interpreter
exits.
"""

from __future__ import annotations

import atexit
import contextlib
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Self

import redis

__all__ = ["HOST", "RedisServer"]

HOST = "127.0.0.1"
#: Seconds the server has to answer PING.
STARTUP_TIMEOUT = 10.0

_live: set[subprocess.Popen[bytes]] = set()


@atexit.register
def _kill_leftovers() -> None:
    for process in list(_live):
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        process.wait()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


class RedisServer:
    """One ``redis-server`` on 127.0.0.1, started by ``start()``, gone after ``stop()``."""

    def __init__(self, program: str) -> None:
        self.program = program
        self.port = _free_port()
        self.directory = Path(tempfile.mkdtemp(prefix="bench-redis-"))
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://{HOST}:{self.port}/0"

    def start(self) -> Self:
        command = [
            self.program,
            "--port", str(self.port),
            "--bind", HOST,
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self.directory),
            "--daemonize", "no",
            "--logfile", str(self.directory / "redis.log"),
        ]  # fmt: skip
        self._process = subprocess.Popen(
            command,
            cwd=self.directory,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        _live.add(self._process)
        try:
            self._wait_until_up()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_until_up(self) -> None:
        probe = redis.Redis(host=HOST, port=self.port, socket_connect_timeout=0.2)
        deadline = time.monotonic() + STARTUP_TIMEOUT
        try:
            while True:
                assert self._process is not None
                if self._process.poll() is not None:
                    msg = f"redis-server exited with status {self._process.returncode}"
                    raise RuntimeError(f"{msg}: {self._log_tail()}")
                with contextlib.suppress(redis.ConnectionError, redis.TimeoutError):
                    if probe.ping():
                        return
                if time.monotonic() > deadline:
                    msg = f"redis-server did not answer PING on port {self.port} within"
                    raise RuntimeError(f"{msg} {STARTUP_TIMEOUT:g} s: {self._log_tail()}")
                time.sleep(0.02)
        finally:
            probe.close()

    def _log_tail(self) -> str:
        try:
            return "\n".join(
                (self.directory / "redis.log").read_text(errors="replace").splitlines()[-10:]
            )
        except OSError as error:
            return f"(no log: {error})"

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None:
            process.terminate()
            try:
                process.wait(5.0)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            _live.discard(process)
        shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
