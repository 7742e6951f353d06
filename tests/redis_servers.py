"""Real Redis servers for tests: one ``redis-server`` process, or a real three-node Redis Cluster.

Each server runs from Debian's ``redis-server`` on a free loopback port, in a directory of its
own, configured on its command line (no persistence, no daemon). Tests can kill it, start it
again on the same port, pause it (SIGSTOP) and resume it, to see what a client sees when Redis
goes away, comes back, or hangs. Nothing is mocked.

Without ``redis-server`` (or ``redis-cli``, for a cluster) the tests are skipped, unless the run
needs them (``HYSTRIX_REDIS_REQUIRED=1`` or ``CI``, as ``.ci/run`` sets): then they fail. Every
process started here is stopped by ``stop()`` and, as a last resort, when the interpreter exits.
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.parse
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self

import redis
import redis.cluster
from redis.backoff import NoBackoff
from redis.retry import Retry
from tools import Requirement

REDIS = Requirement(
    tests="Redis tests",
    variable="HYSTRIX_REDIS_REQUIRED",
    install=(
        "apt-get install redis-server (Debian's package; it brings /usr/bin/redis-server,"
        " and redis-cli through redis-tools)"
    ),
)

HOST = "127.0.0.1"
#: How long a server has to answer PING, or a cluster to report ``cluster_state:ok``.
STARTUP_TIMEOUT = 10.0
#: How long a server has to exit after SIGTERM before it gets SIGKILL.
STOP_TIMEOUT = 5.0
#: The lines of a server's log quoted when it does not come up.
LOG_TAIL = 20

#: The configuration of a cluster node, beyond a lone server's (``nodes.conf`` in its directory).
CLUSTER_NODE_ARGS = (
    "--cluster-enabled", "yes",
    "--cluster-config-file", "nodes.conf",
    "--cluster-node-timeout", "2000",
)  # fmt: skip

#: Every server process still running, killed at exit if a test run ends without stopping it.
_live: set[subprocess.Popen[bytes]] = set()


@atexit.register
def _kill_leftovers() -> None:
    for process in list(_live):
        _kill(process)


def _kill(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        process.kill()  # also ends a stopped (paused) process
    process.wait()
    _live.discard(process)


def redis_server_path() -> str:
    """The ``redis-server`` program; fails or skips the test when there is none."""
    return REDIS.program("redis-server")


def redis_cli_path() -> str:
    """The ``redis-cli`` program; fails or skips the test when there is none."""
    return REDIS.program("redis-cli")


def free_ports(count: int) -> list[int]:
    """``count`` different TCP ports on 127.0.0.1 that nothing listens on (as of now)."""
    with contextlib.ExitStack() as stack:
        probes = [stack.enter_context(socket.socket()) for _ in range(count)]
        for probe in probes:  # all bound at once, so no port is handed out twice
            probe.bind((HOST, 0))
        return [int(probe.getsockname()[1]) for probe in probes]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (as of now)."""
    return free_ports(1)[0]


def no_retry() -> Retry:
    """For ``retry=``: one attempt, so a failure shows at once. redis-py 8's default retries
    ten times with backoff: about 4 s before a refused connection reaches the caller."""
    return Retry(NoBackoff(), retries=0)


class RedisServerError(RuntimeError):
    """A Redis server (or cluster) the tests asked for did not come up."""


def _wait_for(
    ready: Callable[[], bool], what: str, failed: Callable[[], str | None] = lambda: None
) -> None:
    """Poll ``ready`` until it holds; raise, saying ``what``, after ``STARTUP_TIMEOUT`` or as
    soon as ``failed`` returns a reason."""
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while True:
        reason = failed()
        if reason is not None:
            raise RedisServerError(f"{what}: {reason}")
        if ready():
            return
        if time.monotonic() > deadline:
            raise RedisServerError(f"{what}: not within {STARTUP_TIMEOUT:g}s")
        time.sleep(0.02)


class RedisServer:
    """One ``redis-server`` on 127.0.0.1, controlled by the test.

    The port and the directory are chosen once (``port`` or a free one; ``directory`` or a new
    temporary one, removed by ``stop()``): ``start()`` after ``kill()`` brings the server back
    where it was, empty (nothing is saved). ``password`` is the default user's
    (``requirepass``); ``users`` adds ACL users, name to password, with every permission.
    ``args`` are more configuration options, passed on the command line as they are.
    """

    def __init__(
        self,
        *,
        port: int | None = None,
        directory: Path | None = None,
        password: str | None = None,
        users: Mapping[str, str] | None = None,
        args: Sequence[str] = (),
    ) -> None:
        self.password = password
        self.users = dict(users or {})
        self.args = tuple(args)
        self.port = free_port() if port is None else port
        self._program = redis_server_path()
        self._own_directory = directory is None
        self.directory = Path(tempfile.mkdtemp(prefix="redis-")) if directory is None else directory
        self.log_path = self.directory / "redis.log"
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._paused = False
        self._clients: list[redis.Redis] = []

    # -- what tests connect to -------------------------------------------------------------

    @property
    def url(self) -> str:
        """The URL of database 0, with the default user's password when there is one."""
        return self.url_for(None, self.password)

    def url_for(self, user: str | None, password: str | None) -> str:
        """The URL of database 0 as ``user`` (None: the default user) with ``password``."""
        if password is None and user is None:
            return f"redis://{HOST}:{self.port}/0"
        quote = urllib.parse.quote
        name = quote(user or "", safe="")
        return f"redis://{name}:{quote(password or '', safe='')}@{HOST}:{self.port}/0"

    @property
    def pid(self) -> int:
        """The running server's process id."""
        if self._process is None:
            raise RuntimeError(f"the Redis server on port {self.port} is not running")
        return self._process.pid

    @property
    def running(self) -> bool:
        """Whether the server process is alive (paused counts as alive)."""
        return self._process is not None and self._process.poll() is None

    def client(self, **options: Any) -> redis.Redis:
        """A client of database 0 as the default user, returning bytes; ``options`` go to
        ``redis.Redis`` (e.g. ``socket_timeout``). Closed by ``stop()``."""
        settings: dict[str, Any] = {
            "host": HOST,
            "port": self.port,
            "password": self.password,
            "decode_responses": False,
            "socket_connect_timeout": 2.0,
            "socket_timeout": 5.0,
        }
        client = redis.Redis(**(settings | options))
        self._clients.append(client)
        return client

    # -- its life --------------------------------------------------------------------------

    def start(self) -> Self:
        """Start the server, on the same port and in the same directory as before, and wait
        until it answers PING."""
        if self.running:
            raise RuntimeError(f"the Redis server on port {self.port} is already running")
        self.directory.mkdir(parents=True, exist_ok=True)
        self._close_log()
        self._log = self.log_path.open("ab")
        self._process = subprocess.Popen(
            self._command(),
            cwd=self.directory,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        _live.add(self._process)
        self._paused = False
        try:
            self._wait_until_up()
        except BaseException:
            self.kill()
            raise
        return self

    def restart(self) -> Self:
        """Stop the server if it runs (SIGTERM), then start it again on the same port."""
        self._terminate()
        return self.start()

    def kill(self) -> None:
        """SIGKILL the server and wait for it to exit: a crash, with no goodbye to clients."""
        if self._process is not None:
            _kill(self._process)
            self._process = None
        self._paused = False

    def pause(self) -> None:
        """SIGSTOP the server: it keeps its connections and port but answers nothing."""
        os.kill(self.pid, signal.SIGSTOP)
        self._paused = True

    def resume(self) -> None:
        """SIGCONT a paused server."""
        os.kill(self.pid, signal.SIGCONT)
        self._paused = False

    def stop(self) -> None:
        """Stop the server for good: close its clients, terminate it (resumed first if paused),
        kill it if it lingers, and remove its temporary directory. Safe to call again."""
        for client in self._clients:
            with contextlib.suppress(Exception):
                client.close()
        self._clients.clear()
        self._terminate()
        self._close_log()
        if self._own_directory:
            shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> Self:
        return self if self.running else self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "paused" if self._paused else "running" if self.running else "stopped"
        return f"<RedisServer {HOST}:{self.port} {state} in {self.directory}>"

    # -- inside ----------------------------------------------------------------------------

    def _command(self) -> list[str]:
        command = [
            self._program,
            "--port", str(self.port),
            "--bind", HOST,
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self.directory),
            "--daemonize", "no",
        ]  # fmt: skip
        if self.password is not None:
            command += ["--requirepass", self.password]
        for name, password in self.users.items():
            command += ["--user", name, "on", f">{password}", "~*", "&*", "+@all"]
        return command + list(self.args)

    def _wait_until_up(self) -> None:
        probe = redis.Redis(
            host=HOST,
            port=self.port,
            password=self.password,
            socket_connect_timeout=0.2,
            socket_timeout=0.5,
            retry=no_retry(),  # this loop is the retry
        )

        def answers() -> bool:
            try:
                return bool(probe.ping())
            except redis.AuthenticationError:
                raise  # up, but refuses us: waiting will not help
            except (redis.ConnectionError, redis.TimeoutError):  # not listening, or loading
                return False

        def exited() -> str | None:
            assert self._process is not None
            status = self._process.poll()
            return None if status is None else f"it exited with status {status}"

        try:
            _wait_for(answers, f"redis-server did not come up on port {self.port}", exited)
        except RedisServerError as error:
            tail = self.log_tail()
            raise RedisServerError(f"{error}. The end of {self.log_path}:\n{tail}") from None
        finally:
            probe.close()

    def log_tail(self, lines: int = LOG_TAIL) -> str:
        """The last ``lines`` lines the server wrote."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError as error:
            return f"(no log: {error})"
        return "\n".join(text.splitlines()[-lines:])

    def _terminate(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            if self._paused:
                os.kill(process.pid, signal.SIGCONT)  # a stopped process handles no SIGTERM
            process.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(STOP_TIMEOUT)
        _kill(process)  # reaps it; kills it first if SIGTERM was not enough
        self._paused = False

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class AuthRedisServer:
    """A server that wants a password (the default user's) and has one ACL user, and the URL
    that logs in as each."""

    server: RedisServer
    password: str
    user: str
    user_password: str

    @property
    def password_url(self) -> str:
        """Logs in as the default user, with its password (``requirepass``)."""
        return self.server.url_for(None, self.password)

    @property
    def user_url(self) -> str:
        """Logs in as the ACL user."""
        return self.server.url_for(self.user, self.user_password)


class RedisClusterServers:
    """A real Redis Cluster of three masters (no replicas) on 127.0.0.1, made by
    ``redis-cli --cluster create``; each node a ``RedisServer`` in its own directory."""

    SIZE = 3

    def __init__(self, *, directory: Path | None = None) -> None:
        self._cli = redis_cli_path()
        self._own_directory = directory is None
        self.directory = (
            Path(tempfile.mkdtemp(prefix="redis-cluster-")) if directory is None else directory
        )
        ports = free_ports(2 * self.SIZE)
        self.nodes = [
            RedisServer(
                port=ports[index],
                directory=self.directory / f"node-{index}",
                # The bus's own free port: the default, port + 10000, may be taken or > 65535.
                args=(*CLUSTER_NODE_ARGS, "--cluster-port", str(ports[self.SIZE + index])),
            )
            for index in range(self.SIZE)
        ]
        self._clients: list[redis.cluster.RedisCluster] = []

    @property
    def ports(self) -> list[int]:
        return [node.port for node in self.nodes]

    @property
    def url(self) -> str:
        """The URL of a startup node: a cluster client finds the others from it."""
        return self.nodes[0].url

    def client(self, **options: Any) -> redis.cluster.RedisCluster:
        """A cluster client returning bytes; ``options`` go to ``RedisCluster``."""
        settings: dict[str, Any] = {
            "host": HOST,
            "port": self.nodes[0].port,
            "decode_responses": False,
            "socket_connect_timeout": 2.0,
            "socket_timeout": 5.0,
        }
        client = redis.cluster.RedisCluster(**(settings | options))
        self._clients.append(client)
        return client

    def start(self) -> Self:
        """Start the nodes, join them into a cluster, and wait until every node says
        ``cluster_state:ok``."""
        try:
            for node in self.nodes:
                node.start()
            self._create()
            for node in self.nodes:
                self._wait_until_ok(node)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop every node and remove the temporary directory. Safe to call again."""
        for client in self._clients:
            with contextlib.suppress(Exception):
                client.close()
        self._clients.clear()
        for node in self.nodes:
            node.stop()
        if self._own_directory:
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

    def __iter__(self) -> Iterator[RedisServer]:
        return iter(self.nodes)

    def _create(self) -> None:
        addresses = [f"{HOST}:{port}" for port in self.ports]
        command = [self._cli, "--cluster", "create", *addresses]
        command += ["--cluster-replicas", "0", "--cluster-yes"]
        result = subprocess.run(
            command,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=30,
            check=False,
        )
        if result.returncode != 0:
            said = (result.stdout + result.stderr).decode(errors="replace")
            raise RedisServerError(
                f"{' '.join(command)} failed (exit status {result.returncode}):\n{said}"
            )

    def _wait_until_ok(self, node: RedisServer) -> None:
        probe = node.client(socket_timeout=0.5, retry=no_retry())

        def ok() -> bool:
            info = probe.cluster("info")  # redis-py parses it into a dict
            return bool(info.get("cluster_state") == "ok")

        try:
            _wait_for(ok, f"the Redis Cluster node on port {node.port} is not ok")
        finally:
            probe.close()
