"""The docker-compose deployment, run as plain processes on 127.0.0.1 for the tests.

PostgreSQL from the Debian packages (initdb into a temporary directory, run as the
``postgres`` system user when the tests run as root), then the three Dagster processes of
docker-compose.yml: the gRPC code server of this project, dagster-webserver and
dagster-daemon. The instance is ``deploy/dagster.yaml`` itself, copied unchanged into a
temporary DAGSTER_HOME and pointed at the server through the same environment variables
compose sets; the workspace is ``deploy/workspace.yaml``.

One deployment serves the browser test and the deployment test (``shared_deployment``), so the
servers start once; the deployment test's module stops them when it is done. Every process runs
in its own process group; ``Deployment.stop`` terminates each group (SIGTERM, then SIGKILL),
checks that nothing of it is left, stops PostgreSQL with ``pg_ctl stop`` and removes the
temporary directories, also when a step fails or is interrupted. It runs from the fixtures'
finalizers (so also when a test fails), on SIGTERM (turned into KeyboardInterrupt) and from
``atexit`` as a last resort.
"""

from __future__ import annotations

import atexit
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"


def _pg_bin() -> Path:
    """The newest Debian PostgreSQL server (/usr/lib/postgresql/<major>/bin), or STAFFML_PG_BIN."""
    if os.environ.get("STAFFML_PG_BIN"):
        return Path(os.environ["STAFFML_PG_BIN"])
    found = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/postgres"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    return found[-1].parent if found else Path("/usr/lib/postgresql/15/bin")


PG_BIN = _pg_bin()
VENV_BIN = Path(sys.executable).parent
LOCATION = "staffml_dagster"
REPOSITORY = "__repository__"
# how long to wait for a server to come up; a guard against hanging, not an assertion
STARTUP_TIMEOUT = 120.0

# Variables that must never reach the servers started by the tests.
_SCRUBBED = (
    "ANTHROPIC_API_KEY",
    "DAGSTER_HOME",
    "STAFFML_DATA_DIR",
    "STAFFML_SPECS_DIR",
    "STAFFML_GENERATOR",
    "STAFFML_EMBEDDER",
)


def postgres_missing_reason() -> str | None:
    """Why the PostgreSQL server cannot be run here, or None when it can."""
    for tool in ("initdb", "pg_ctl", "postgres"):
        if not (PG_BIN / tool).exists():
            return f"PostgreSQL server binaries not found ({PG_BIN / tool} is missing; apt-get install postgresql)"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root and there is no `postgres` system user to run the PostgreSQL server as"
    return None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


# --------------------------------------------------------------------------- PostgreSQL


class LocalPostgres:
    """A throw-away PostgreSQL cluster on 127.0.0.1 with password (SCRAM) authentication."""

    def __init__(self, user: str = "dagster", db_name: str = "dagster"):
        self.user, self.db_name = user, db_name
        self.password = secrets.token_urlsafe(18)  # random per run, never printed
        self.port = free_port()
        self.base = Path(tempfile.mkdtemp(prefix="staffml-pg-"))
        self.data = self.base / "data"
        self.log = self.base / "postgres.log"
        self.started = False
        self._as_postgres: list[str] = []
        if os.geteuid() == 0:  # postgres refuses to run as root: the cluster belongs to `postgres`
            pw = pwd.getpwnam("postgres")
            os.chown(self.base, pw.pw_uid, pw.pw_gid)
            self._as_postgres = ["runuser", "-u", "postgres", "--"]
            self._uid, self._gid = pw.pw_uid, pw.pw_gid
        else:
            self._uid, self._gid = os.getuid(), os.getgid()

    def _run(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [*self._as_postgres, *args], capture_output=True, text=True, timeout=STARTUP_TIMEOUT, cwd=self.base
        )

    def start(self) -> None:
        pwfile = self.base / "pwfile"
        pwfile.write_text(self.password + "\n")
        os.chown(pwfile, self._uid, self._gid)
        pwfile.chmod(0o600)
        try:
            out = self._run(
                str(PG_BIN / "initdb"),
                "-D",
                str(self.data),
                "-U",
                self.user,
                f"--pwfile={pwfile}",
                "--auth-host=scram-sha-256",
                "--auth-local=scram-sha-256",
                "-E",
                "UTF8",
                "--locale=C",
            )
        finally:
            pwfile.unlink(missing_ok=True)
        if out.returncode:
            raise RuntimeError(f"initdb failed:\n{out.stdout}\n{out.stderr}")
        # test-only settings: no fsync (the cluster is thrown away), sockets in our own directory
        options = (
            f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.base} "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        )
        out = self._run(
            str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "-t", "60", "start"
        )
        self.started = out.returncode == 0
        if not self.started:
            raise RuntimeError(f"pg_ctl start failed:\n{out.stdout}\n{out.stderr}\n{_tail(self.log)}")
        import psycopg2

        con = psycopg2.connect(
            host="127.0.0.1", port=self.port, user=self.user, password=self.password, dbname="postgres"
        )
        try:
            con.autocommit = True
            with con.cursor() as cur:
                cur.execute(f'CREATE DATABASE "{self.db_name}"')
        finally:
            con.close()

    def postmaster_pid(self) -> int | None:
        try:
            pid = int((self.data / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None
        return pid if _running(pid) else None

    def stop(self) -> None:
        """``pg_ctl stop -m fast``; if that fails or is interrupted, SIGQUIT (immediate shutdown)."""
        try:
            if self.postmaster_pid():
                self._run(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "-t", "60", "stop")
        finally:
            pid = self.postmaster_pid()
            if pid:
                os.kill(pid, signal.SIGQUIT)
                deadline = time.monotonic() + 10
                while _running(pid) and time.monotonic() < deadline:
                    time.sleep(0.1)
            self.started = False
            shutil.rmtree(self.base, ignore_errors=True)


def _running(pid: int) -> bool:
    """True while the process exists and is not a zombie waiting to be reaped."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


# --------------------------------------------------------------------------- processes


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass


@dataclass
class ManagedProcess:
    """A server in its own process group, so stopping it also stops what it spawned."""

    name: str
    args: list[str]
    env: dict[str, str] = field(repr=False)  # holds the database password: never printed
    log: Path
    cwd: Path
    proc: subprocess.Popen | None = None
    stopped: bool = False

    def start(self) -> None:
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(
                self.args,
                env=self.env,
                cwd=self.cwd,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def group_alive(self) -> bool:
        if self.proc is None:
            return False
        try:
            os.killpg(self.proc.pid, 0)
            return True
        except ProcessLookupError:
            return False
        except PermissionError:
            return True

    def stop(self, grace: float = 20.0) -> None:
        """SIGTERM to the whole group, SIGKILL to whatever is left after ``grace`` seconds (or at
        once if the wait is interrupted)."""
        if self.proc is None or self.stopped:
            return
        pgid = self.proc.pid
        try:
            _signal_group(pgid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                pass
            # children of the leader (run workers, the code server's API process) get the same grace
            deadline = time.monotonic() + grace
            while self.group_alive() and time.monotonic() < deadline:
                time.sleep(0.2)
        finally:
            if self.group_alive():
                _signal_group(pgid, signal.SIGKILL)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
            deadline = time.monotonic() + 10
            while self.group_alive() and time.monotonic() < deadline:
                time.sleep(0.1)
            self.stopped = True

    def describe(self) -> str:
        return f"--- {self.name} (exit {self.proc.poll() if self.proc else 'not started'}) ---\n{_tail(self.log)}"


# --------------------------------------------------------------------------- the deployment


def _specs_with_cron(target: Path, cron: str) -> Path:
    """A copy of specs/ whose capacity schedule has ``cron`` (everything else unchanged)."""
    shutil.copytree(ROOT / "specs", target)
    path = target / "generation.yaml"
    text, n = re.subn(r'(?m)^(\s+schedule:\s*)"[^"]*"', lambda m: f'{m.group(1)}"{cron}"', path.read_text())
    if n != 1:
        raise RuntimeError(f"expected one capacity schedule line in {path}, found {n}")
    path.write_text(text)
    return target


@dataclass
class Deployment:
    root: Path
    postgres: LocalPostgres | None
    home: Path
    data_dir: Path
    env: dict[str, str] = field(repr=False)  # holds the database password: never printed
    webserver_url: str = ""
    code_server_port: int = 0
    processes: list[ManagedProcess] = field(default_factory=list)
    stopped: bool = False

    @property
    def warehouse(self) -> Path:
        return self.data_dir / "warehouse"

    @property
    def reports(self) -> Path:
        return self.data_dir / "reports"

    def logs(self) -> str:
        parts = [p.describe() for p in self.processes]
        if self.postgres:
            parts.append(f"--- postgres ---\n{_tail(self.postgres.log)}")
        return "\n".join(parts)

    def graphql(self, query: str, variables: dict | None = None) -> dict:
        r = requests.post(
            f"{self.webserver_url}/graphql", json={"query": query, "variables": variables or {}}, timeout=60
        )
        if r.status_code != 200:
            raise AssertionError(f"GraphQL HTTP {r.status_code}: {r.text[:2000]}")
        body = r.json()
        if body.get("errors"):
            raise AssertionError(f"GraphQL errors: {body['errors']}")
        return body["data"]

    def instance(self):
        """The Dagster instance the servers use, opened in this process (env set by the caller)."""
        import dagster as dg
        from dagster._core.instance.ref import InstanceRef

        return dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(self.home)))

    def stop(self) -> list[str]:
        """Stop everything, even if one step fails or is interrupted; returns the names of
        process groups that would not die. Safe to call again."""
        if self.stopped:
            return []
        errors: list[BaseException] = []
        for p in reversed(self.processes):  # daemon and webserver before the code server
            try:
                p.stop()
            except BaseException as exc:  # go on stopping the others, then re-raise
                errors.append(exc)
        leftovers = [p.name for p in self.processes if p.group_alive()]
        if self.postgres:
            try:
                self.postgres.stop()
            except BaseException as exc:
                errors.append(exc)
        shutil.rmtree(self.root, ignore_errors=True)
        self.stopped = not errors
        if errors:
            raise errors[0]
        return leftovers


def _wait(what: str, ready, deployment: Deployment, timeout: float = STARTUP_TIMEOUT, interval: float = 0.5):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        for p in deployment.processes:
            if not p.alive():
                raise RuntimeError(f"{p.name} exited while waiting for {what}\n{deployment.logs()}")
        try:
            value = ready()
            if value:
                return value
        except Exception as exc:  # not up yet
            last = exc
        time.sleep(interval)
    raise RuntimeError(f"gave up waiting for {what} after {timeout:.0f} s (last error: {last!r})\n{deployment.logs()}")


LOCATION_QUERY = """
query {
  workspaceOrError {
    __typename
    ... on Workspace {
      locationEntries { name loadStatus locationOrLoadError { __typename ... on PythonError { message } } }
    }
  }
}"""

DAEMON_QUERY = """
query { instance { daemonHealth { allDaemonStatuses { daemonType required healthy } } } }"""

REQUIRED_DAEMONS = {"SCHEDULER", "QUEUED_RUN_COORDINATOR", "BACKFILL"}


def start_deployment(with_postgres: bool = True, schedule_cron: str = "* * * * *") -> Deployment:
    """PostgreSQL (optional), code server, webserver and daemon, all on 127.0.0.1."""
    root = Path(tempfile.mkdtemp(prefix="staffml-deploy-"))
    home, data = root / "dagster_home", root / "data"
    home.mkdir()
    data.mkdir()
    postgres = LocalPostgres() if with_postgres else None
    dep = Deployment(root=root, postgres=postgres, home=home, data_dir=data, env={})
    try:
        if postgres:
            postgres.start()
            shutil.copyfile(DEPLOY / "dagster.yaml", home / "dagster.yaml")  # the very same file
        else:  # the same settings on SQLite, for machines without the PostgreSQL server
            text = (DEPLOY / "dagster.yaml").read_text()
            sqlite = f"storage:\n  sqlite:\n    base_dir: {home / 'storage'}\n"
            (home / "dagster.yaml").write_text(re.sub(r"(?ms)^storage:\n.*?(?=^\S)", sqlite, text))
        specs = _specs_with_cron(root / "specs", schedule_cron)
        code_port, web_port = free_port(), free_port()
        env = {k: v for k, v in os.environ.items() if k not in _SCRUBBED and not k.startswith("DAGSTER_")}
        env.update(
            {
                "PATH": f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}",
                "DAGSTER_HOME": str(home),
                "DAGSTER_ARTIFACTS_DIR": str(data / "dagster"),
                "DAGSTER_COMPUTE_LOGS_DIR": str(data / "dagster" / "logs"),
                "DAGSTER_CODE_SERVER_HOST": "127.0.0.1",
                "DAGSTER_CODE_SERVER_PORT": str(code_port),
                "STAFFML_DATA_DIR": str(data),
                "STAFFML_SPECS_DIR": str(specs),
                "STAFFML_GENERATOR": "item-models",
                "STAFFML_EMBEDDER": "tfidf",  # the hashed TF-IDF embedder: no model to load
                "HF_HUB_OFFLINE": "1",
                "TRANSFORMERS_OFFLINE": "1",
                "PYTHONUNBUFFERED": "1",
                "PYTHONPATH": str(ROOT),  # the code of this checkout, not whichever one the venv installed
            }
        )
        if postgres:
            env.update(
                {
                    "DAGSTER_PG_USERNAME": postgres.user,
                    "DAGSTER_PG_PASSWORD": postgres.password,
                    "DAGSTER_PG_HOST": "127.0.0.1",
                    "DAGSTER_PG_PORT": str(postgres.port),
                    "DAGSTER_PG_DB": postgres.db_name,
                }
            )
        dep.env = env
        dep.code_server_port = code_port
        dep.webserver_url = f"http://127.0.0.1:{web_port}"
        workspace = str(DEPLOY / "workspace.yaml")
        logs = root / "logs"
        logs.mkdir()

        code_server = ManagedProcess(
            "code-server",
            [
                str(VENV_BIN / "dagster"),
                "code-server",
                "start",
                "-h",
                "127.0.0.1",
                "-p",
                str(code_port),
                "-m",
                "staffml_dagster.definitions",
                "--location-name",
                LOCATION,
            ],
            env,
            logs / "code-server.log",
            root,
        )
        dep.processes.append(code_server)
        code_server.start()
        health = [str(VENV_BIN / "dagster"), "api", "grpc-health-check", "-h", "127.0.0.1", "-p", str(code_port)]
        _wait(
            "the code server",
            lambda: subprocess.run(health, env=env, capture_output=True, timeout=30).returncode == 0,
            dep,
            interval=1.0,
        )

        webserver = ManagedProcess(
            "webserver",
            [str(VENV_BIN / "dagster-webserver"), "-h", "127.0.0.1", "-p", str(web_port), "-w", workspace],
            env,
            logs / "webserver.log",
            root,
        )
        daemon = ManagedProcess(
            "daemon", [str(VENV_BIN / "dagster-daemon"), "run", "-w", workspace], env, logs / "daemon.log", root
        )
        dep.processes += [webserver, daemon]
        webserver.start()
        daemon.start()

        def location_loaded():
            entries = dep.graphql(LOCATION_QUERY)["workspaceOrError"]["locationEntries"]
            entry = next(e for e in entries if e["name"] == LOCATION)
            kind = (entry["locationOrLoadError"] or {}).get("__typename")
            if kind == "PythonError":
                raise RuntimeError(entry["locationOrLoadError"]["message"])
            return kind == "RepositoryLocation"

        _wait("the webserver to load the code location over gRPC", location_loaded, dep)

        def daemons_healthy():
            statuses = dep.graphql(DAEMON_QUERY)["instance"]["daemonHealth"]["allDaemonStatuses"]
            healthy = {s["daemonType"] for s in statuses if s["healthy"]}
            return REQUIRED_DAEMONS <= healthy

        _wait("the daemon's scheduler, run queue and backfill daemons", daemons_healthy, dep, interval=1.0)
        return dep
    except BaseException:
        dep.stop()
        raise


_SHARED: dict[str, Deployment] = {}


def _terminate_as_interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def shared_deployment(request) -> Deployment:
    """The running deployment, started on first use. It is stopped by
    ``release_shared_deployment`` (the deployment test's module does it once it is done, so
    the rest of the suite runs without the servers), else when the session ends."""
    if "dep" not in _SHARED:
        if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
            # a terminated pytest (a CI timeout) unwinds like Ctrl-C, so the clean-up still runs
            signal.signal(signal.SIGTERM, _terminate_as_interrupt)
        missing = postgres_missing_reason()
        dep = start_deployment(with_postgres=missing is None)
        _SHARED["dep"] = dep
        atexit.register(dep.stop)

        def finish():
            leftovers = dep.stop()  # a no-op when already released
            assert not leftovers, f"processes still running after stop: {leftovers}"

        request.session.addfinalizer(finish)
    return _SHARED["dep"]


def release_shared_deployment() -> None:
    """Stop the running deployment now (a later ``shared_deployment`` starts a new one)."""
    dep = _SHARED.pop("dep", None)
    if dep is not None:
        leftovers = dep.stop()
        assert not leftovers, f"processes still running after stop: {leftovers}"
