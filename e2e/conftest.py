"""Harness that drives our Go server with the unchanged Prefect 3.9.1 client.

One server process per backend (SQLite file, fresh PostgreSQL database) serves the
whole session; every test points the client at it through temporary settings and
owns its data by using unique names.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

# The client reads profiles, prefect.toml and PREFECT_* variables of whoever runs the
# tests; pin it to a private home before prefect is imported anywhere so a developer's
# own profile (or an API key for Prefect Cloud) can never leak into a run.
_CLIENT_HOME = Path(tempfile.mkdtemp(prefix="prefect-e2e-client-"))
for _name in [n for n in os.environ if n.startswith("PREFECT_")]:
    if _name != "PREFECT_SERVER_BIN" and not _name.startswith("PREFECT_TEST_"):
        del os.environ[_name]
os.environ["PREFECT_HOME"] = str(_CLIENT_HOME)
os.environ["PREFECT_PROFILES_PATH"] = str(_CLIENT_HOME / "profiles.toml")
# Without an API URL the client would silently start Python's own ephemeral server
# and every test would pass against the wrong implementation.
os.environ["PREFECT_SERVER_ALLOW_EPHEMERAL_MODE"] = "false"
os.environ["PREFECT_API_REQUEST_TIMEOUT"] = "30"

import httpx  # noqa: E402
import pytest  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_PG_DSN = "postgres://postgres:postgres@127.0.0.1:5432/postgres"
# Migrations on a cold PostgreSQL can take a while on a loaded 2-core machine.
STARTUP_DEADLINE_S = 90.0
SHUTDOWN_DEADLINE_S = 30.0

CAPABILITY_MARKERS = {
    "flows": "flow CRUD, filters, sorting and counting through the client",
    "api_errors": "FastAPI-shaped error bodies and status codes",
    "meta": "health, version and CSRF endpoints",
    "flow_runs": "running a real @flow against the server",
}


def pytest_configure(config: pytest.Config) -> None:
    for name, description in CAPABILITY_MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {description}")


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


@dataclass
class ServerProcess:
    backend: str
    api_url: str
    log_path: Path
    home: Path

    def log_tail(self, max_chars: int = 20000) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError as exc:
            return f"<cannot read server log {self.log_path}: {exc}>"
        if len(text) > max_chars:
            text = "...\n" + text[-max_chars:]
        return text


@pytest.fixture(scope="session")
def server_binary() -> Path:
    override = os.environ.get("PREFECT_SERVER_BIN")
    if override:
        path = Path(override).resolve()
        if not os.access(path, os.X_OK):
            pytest.fail(f"PREFECT_SERVER_BIN={override} is not an executable file")
        return path
    go = shutil.which("go")
    if go is None:
        pytest.fail("go is not on PATH and PREFECT_SERVER_BIN is not set")
    out = REPO_ROOT / "bin" / "prefect-server"
    build = subprocess.run(
        [go, "build", "-o", str(out), "./cmd/prefect-server"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    if build.returncode != 0:
        pytest.fail(
            "go build ./cmd/prefect-server failed:\n" + build.stdout + build.stderr
        )
    return out


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _pg_dsn() -> str:
    return os.environ.get("PREFECT_TEST_POSTGRES_DSN") or DEFAULT_PG_DSN


def _server_database_url(dsn: str, database: str) -> str:
    # libpq query options such as sslmode mean nothing to an asyncpg-style URL.
    parts = urlsplit(dsn)
    return urlunsplit(("postgresql+asyncpg", parts.netloc, "/" + database, "", ""))


def _pg_admin(statement: str) -> None:
    """Run one statement on the maintenance connection (CREATE/DROP DATABASE)."""
    import asyncio

    import asyncpg

    async def run() -> None:
        conn = await asyncpg.connect(_pg_dsn(), timeout=5)
        try:
            await conn.execute(statement)
        finally:
            await conn.close()

    asyncio.run(run())


def _redacted(dsn: str) -> str:
    parts = urlsplit(dsn)
    if parts.password is None:
        return dsn
    netloc = parts.netloc.replace(":" + parts.password + "@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def _create_pg_database() -> str:
    name = "prefect_e2e_" + uuid.uuid4().hex[:12]
    try:
        _pg_admin(f'CREATE DATABASE "{name}"')
    except Exception as exc:  # any connect/auth failure means "no PostgreSQL here"
        message = f"PostgreSQL at {_redacted(_pg_dsn())} is not usable: {exc!r}"
        if _in_ci():
            pytest.fail(message)
        pytest.skip(message)
    return name


def _drop_pg_database(name: str) -> None:
    # FORCE ends connections a dying server may still hold.
    _pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class _PortTaken(Exception):
    """Another process bound the free port between our probe and the server's bind."""


def _wait_healthy(proc: subprocess.Popen, server: ServerProcess) -> None:
    deadline = time.monotonic() + STARTUP_DEADLINE_S
    last_error: object = None
    with httpx.Client(timeout=2.0) as http:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                if "address already in use" in server.log_tail().lower():
                    raise _PortTaken()
                pytest.fail(
                    f"prefect-server ({server.backend}) exited with {proc.returncode} "
                    f"before becoming healthy; its log:\n{server.log_tail()}"
                )
            try:
                response = http.get(server.api_url + "/health")
                if response.status_code == 200 and response.json() is True:
                    return
                last_error = f"{response.status_code} {response.text[:200]}"
            except (httpx.HTTPError, ValueError) as exc:
                last_error = exc
            # Poll interval, not a wait for a condition: the deadline bounds the loop.
            time.sleep(0.1)
    proc.kill()
    proc.wait()
    pytest.fail(
        f"prefect-server ({server.backend}) not healthy after {STARTUP_DEADLINE_S}s "
        f"(last: {last_error}); its log:\n{server.log_tail()}"
    )


# Shutdown problems are collected and reported at the end of the session instead of
# raised from fixture teardown: pytest finalizes a parametrized session fixture while
# setting up the next backend's first test, so raising there would hide that backend.
_SHUTDOWN_FAILURES: list[str] = []


def _stop(proc: subprocess.Popen, server: ServerProcess) -> None:
    if proc.poll() is not None:
        _SHUTDOWN_FAILURES.append(
            f"prefect-server ({server.backend}) died during the session with "
            f"{proc.returncode}; its log:\n{server.log_tail()}"
        )
        return
    proc.send_signal(signal.SIGTERM)
    try:
        code = proc.wait(timeout=SHUTDOWN_DEADLINE_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        _SHUTDOWN_FAILURES.append(
            f"prefect-server ({server.backend}) ignored SIGTERM for "
            f"{SHUTDOWN_DEADLINE_S}s; its log:\n{server.log_tail()}"
        )
        return
    if code != 0:
        _SHUTDOWN_FAILURES.append(
            f"prefect-server ({server.backend}) exited with {code} on SIGTERM "
            f"(want 0); its log:\n{server.log_tail()}"
        )


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    shutil.rmtree(_CLIENT_HOME, ignore_errors=True)
    if _SHUTDOWN_FAILURES and exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter) -> None:
    for failure in _SHUTDOWN_FAILURES:
        terminalreporter.section("prefect-server shutdown FAILED", sep="=", red=True)
        terminalreporter.write_line(failure)


@pytest.fixture(scope="session", params=["sqlite", "postgres"])
def prefect_server(request: pytest.FixtureRequest, server_binary: Path, tmp_path_factory):
    backend = request.param
    home = tmp_path_factory.mktemp(f"server-{backend}")
    pg_database = None
    if backend == "sqlite":
        db_url = f"sqlite+aiosqlite:///{home / 'prefect.db'}"
    else:
        pg_database = _create_pg_database()
        db_url = _server_database_url(_pg_dsn(), pg_database)

    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(
        PREFECT_HOME=str(home),
        PREFECT_SERVER_API_HOST="127.0.0.1",
        PREFECT_SERVER_DATABASE_CONNECTION_URL=db_url,
        PREFECT_SERVER_LOGGING_LEVEL="DEBUG",
    )
    proc = None
    try:
        for attempt in range(3):
            port = _free_port()
            env["PREFECT_SERVER_API_PORT"] = str(port)
            server = ServerProcess(
                backend=backend,
                api_url=f"http://127.0.0.1:{port}/api",
                log_path=home / f"server-{attempt}.log",
                home=home,
            )
            with open(server.log_path, "wb") as log:
                proc = subprocess.Popen(
                    [str(server_binary), "start"],
                    cwd=home,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            try:
                _wait_healthy(proc, server)
                break
            except _PortTaken:
                continue
        else:
            pytest.fail(f"prefect-server ({backend}): no free port after 3 attempts")
        yield server
        _stop(proc, server)
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
        if pg_database is not None:
            _drop_pg_database(pg_database)


@pytest.fixture
def api_url(prefect_server: ServerProcess):
    """Point the in-process Prefect client at the server for one test."""
    from prefect.settings import temporary_settings

    with temporary_settings(
        updates={"api.url": prefect_server.api_url, "api.request_timeout": 30.0}
    ):
        yield prefect_server.api_url


@pytest.fixture
def http(prefect_server: ServerProcess):
    """A raw HTTP client for checks the Prefect client would hide (status codes, bodies)."""
    with httpx.Client(base_url=prefect_server.api_url + "/", timeout=30.0) as client:
        yield client


@pytest.fixture
def sync_client(api_url):
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        yield client


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call):
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        server = getattr(item, "funcargs", {}).get("prefect_server")
        if isinstance(server, ServerProcess):
            report.sections.append(
                (f"prefect-server ({server.backend}) log", server.log_tail())
            )
