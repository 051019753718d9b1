"""Run a real Schema Registry on this machine: Apicurio Registry 2.4.2 with its Confluent-compatible API.

The application is built from Maven Central through ``registry/pom.xml`` (Quarkus augments the published
``apicurio-registry-app`` jar) once per machine, and cached under ``$BANK_REGISTRY_APP`` (default
``home/registry/app``) with a marker naming the pom's hash: a changed pom builds again. The registry is a
detached ``java -jar quarkus-run.jar`` that outlives the Python process that started it.

Layout under ``home`` (the caller passes ``$BANK_HOME``)::

    home/registry/app/               the built application (quarkus-app/), + .registry-build marker
    home/registry/data/registry.*    its H2 database, in a file: schemas and their ids survive restarts
    home/registry/registry.json      the port it was started on
    home/registry/registry.log       its log
    home/registry/pid

The Confluent-compatible API is at ``http://127.0.0.1:<port>/apis/ccompat/v7`` (port 8081 by default);
``start`` returns once ``/subjects`` answers there, and sets the global compatibility to BACKWARD
(Apicurio's default is NONE).
"""
from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import logging
import os
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

from . import local_broker
from ..contract.schema_registry import CCOMPAT_PATH, COMPATIBILITY, RegistryClient, RegistryError

log = logging.getLogger(__name__)

DEFAULT_PORT = 8081
APP_ENV = "BANK_REGISTRY_APP"
MARKER = ".registry-build"
JAR = "quarkus-run.jar"
#: A small heap and the C1 compiler only: the registry's work here is a few hundred requests.
JVM_OPTS = ("-Xms32m", "-Xmx160m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-Djava.awt.headless=true")
BUILD_TIMEOUT = 1800


class RegistryLocalError(RuntimeError):
    """Something prevents the local registry from being built, started or stopped."""


@dataclasses.dataclass(frozen=True)
class RegistryStatus:
    running: bool
    pid: int | None
    port: int
    url: str  # the Confluent-compatible API (BANK_SCHEMA_REGISTRY_URL takes this, or the bare address)
    data_dir: Path
    answering: bool = False

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["data_dir"] = str(self.data_dir)
        return d


def registry_dir(home: Path) -> Path:
    return Path(home).resolve() / "registry"


def _pid_file(home: Path) -> Path:
    return registry_dir(home) / "pid"


def log_file(home: Path) -> Path:
    return registry_dir(home) / "registry.log"


def _info_file(home: Path) -> Path:
    return registry_dir(home) / "registry.json"


def api_url(port: int) -> str:
    return f"http://127.0.0.1:{port}{CCOMPAT_PATH}"


@contextlib.contextmanager
def _locked(home: Path):
    d = registry_dir(home)
    d.mkdir(parents=True, exist_ok=True)
    with open(d / ".lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


# --------------------------------------------------------------------------- the build


def _pom(repo_root: Path | None) -> Path:
    return Path(repo_root or local_broker.default_repo_root()).resolve() / "registry" / "pom.xml"


def build_id(repo_root: Path | None = None) -> str:
    """What the cached build was made from: the hash of the pom and the Maven settings."""
    pom = _pom(repo_root)
    digest = hashlib.sha256()
    for path in (pom, pom.with_name("settings.xml")):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def _app_ok(app: Path, wanted: str) -> bool:
    try:
        return (app / MARKER).read_text().strip() == wanted and (app / JAR).is_file()
    except OSError:
        return False


def ensure_app(home: Path, repo_root: Path | None = None, app_dir: Path | None = None) -> Path:
    """A directory holding the built registry (``quarkus-run.jar`` and its libs), building it once.

    The directory is ``app_dir`` if given, else ``$BANK_REGISTRY_APP``, else ``home/registry/app``.
    """
    pom = _pom(repo_root)
    if not pom.is_file():
        raise RegistryLocalError(f"cannot build the schema registry: {pom} not found")
    wanted = build_id(repo_root)
    if app_dir is None:
        env = os.environ.get(APP_ENV)
        app_dir = Path(env) if env else registry_dir(home) / "app"
    app = Path(app_dir).expanduser().resolve()
    if _app_ok(app, wanted):
        return app
    app.parent.mkdir(parents=True, exist_ok=True)
    with open(app.parent / f".{app.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another process may be building right now
        if _app_ok(app, wanted):
            return app
        mvn = shutil.which("mvn")
        if mvn is None:
            raise RegistryLocalError("Maven ('mvn') is not on PATH; it is needed once to build the schema registry "
                                     f"from Maven Central (e.g. `apt-get install maven`), or point {APP_ENV} at a "
                                     "directory that holds a build")
        scratch = app.parent / f".{app.name}.build-{os.getpid()}"
        shutil.rmtree(scratch, ignore_errors=True)
        log.info("building the schema registry (Apicurio 2.4.2) with Maven into %s (one-time, about a minute)", app)
        started = time.monotonic()
        cmd = [mvn, "-B", "-q", "-s", str(pom.with_name("settings.xml")), "-f", str(pom), "-DskipTests",
               # the app's own application.properties asks for another package type in the prod profile
               "-D%prod.quarkus.package.type=fast-jar", f"-Dregistry.build.dir={scratch}", "package"]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL,
                                  timeout=BUILD_TIMEOUT)
        except subprocess.TimeoutExpired:
            shutil.rmtree(scratch, ignore_errors=True)
            raise RegistryLocalError(f"the schema registry build took more than {BUILD_TIMEOUT} s") from None
        built = scratch / "quarkus-app"
        if proc.returncode != 0 or not (built / JAR).is_file():
            shutil.rmtree(scratch, ignore_errors=True)
            out = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-30:])
            raise RegistryLocalError(f"the schema registry build failed (exit {proc.returncode}):\n{out}")
        (built / MARKER).write_text(wanted + "\n")
        if app.exists():
            shutil.rmtree(app)
        built.rename(app)
        shutil.rmtree(scratch, ignore_errors=True)
        log.info("built the schema registry in %.0f s", time.monotonic() - started)
    return app


# --------------------------------------------------------------------------- the process


def _alive(pid: int, home: Path) -> bool:
    local_broker._reap(pid)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    try:
        if local_broker._pid_gone(pid):
            return False
        args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return not Path("/proc").exists()
    return _home_flag(home).encode() in args  # not a pid reused by something else, nor another home's registry


def _home_flag(home: Path) -> str:
    return f"-Dbank.registry.home={registry_dir(home)}"


def _read_pid(home: Path) -> int | None:
    pf = _pid_file(home)
    try:
        pid = int(pf.read_text().strip())
    except (OSError, ValueError):
        pf.unlink(missing_ok=True)
        return None
    if _alive(pid, home):
        return pid
    pf.unlink(missing_ok=True)
    return None


def _read_info(home: Path) -> dict:
    try:
        return json.loads(_info_file(home).read_text())
    except (OSError, ValueError):
        return {}


def _answers(port: int, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(api_url(port) + "/subjects", timeout=timeout) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


def status(home: Path) -> RegistryStatus:
    home = Path(home).resolve()
    pid = _read_pid(home)
    port = int(_read_info(home).get("port", DEFAULT_PORT))
    return RegistryStatus(running=pid is not None, pid=pid, port=port, url=api_url(port),
                          data_dir=registry_dir(home) / "data", answering=pid is not None and _answers(port))


def start(home: Path, port: int = DEFAULT_PORT, timeout: float = 120, repo_root: Path | None = None,
          app_dir: Path | None = None) -> RegistryStatus:
    """Builds (once) and starts the registry; returns when its Confluent API answers. Idempotent."""
    home = Path(home).resolve()
    app = ensure_app(home, repo_root, app_dir)  # outside the lock: a build may take a minute
    try:
        java = local_broker.find_java()
    except local_broker.KafkaLocalError as exc:
        raise RegistryLocalError(str(exc).replace("Kafka", "the schema registry")) from None
    with _locked(home):
        pid = _read_pid(home)
        if pid is not None:
            running_port = int(_read_info(home).get("port", DEFAULT_PORT))
            if running_port != port:
                raise RegistryLocalError(f"the registry of {home} already runs on port {running_port} (pid {pid}); "
                                         "stop it first to move it")
            _wait_ready(home, pid, port, timeout)
            return status(home)
        if not local_broker._port_free(port):
            raise RegistryLocalError(f"port {port} is taken{local_broker._port_owner(port)}: is another schema "
                                     "registry running? (`bank registry start --port N` picks another)")
        data = registry_dir(home) / "data"
        data.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "HTTP_PORT": str(port),
               # H2 in a file (Apicurio's default is in memory): a lost schema id makes its records unreadable.
               "REGISTRY_DATASOURCE_URL": f"jdbc:h2:file:{data / 'registry'}",
               # Never its canonical-hash mode: Apicurio 2.4.2 then stores the schemas with their fields
               # sorted by name, which changes the Avro binary layout (readers decode garbage).
               "ENABLE_CCOMPAT_CANONICAL_HASH_MODE": "false"}
        cmd = [java, *JVM_OPTS, _home_flag(home), "-Dquarkus.http.host=127.0.0.1", "-jar", str(app / JAR)]
        with open(log_file(home), "ab") as out:
            out.write(f"\n===== {time.strftime('%Y-%m-%d %H:%M:%S')} starting the registry on port {port}\n".encode())
            out.flush()
            proc = subprocess.Popen(cmd, cwd=registry_dir(home), env=env, stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=out, start_new_session=True, close_fds=True)
        local_broker._CHILDREN[proc.pid] = proc
        _pid_file(home).write_text(f"{proc.pid}\n")
        _info_file(home).write_text(json.dumps({"port": port}) + "\n")
        log.info("launched the schema registry (pid %d) on port %d, log %s", proc.pid, port, log_file(home))
        _wait_ready(home, proc.pid, port, timeout)
    client = RegistryClient(api_url(port))
    try:
        if client.compatibility() != COMPATIBILITY:
            client.set_compatibility(COMPATIBILITY)
    except RegistryError as exc:
        raise RegistryLocalError(f"the registry answers but refused its compatibility setting: {exc}") from None
    return status(home)


def _wait_ready(home: Path, pid: int, port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    child = local_broker._CHILDREN.get(pid)
    while time.monotonic() < deadline:
        # Our own child: its exit status is the answer. /proc alone answered "gone" for a JVM that was
        # starting (threads coming and going) and then listened on its port.
        if (child.poll() is not None) if child is not None else not _alive(pid, home):
            raise RegistryLocalError(f"the schema registry (pid {pid}) exited while starting; the end of "
                                     f"{log_file(home)}:\n{local_broker._tail(log_file(home), 30)}")
        if _answers(port, timeout=1.0):
            return
        time.sleep(0.1)
    raise RegistryLocalError(f"the schema registry (pid {pid}) did not answer on port {port} within {timeout:.0f} s; "
                             f"see {log_file(home)}")


def stop(home: Path, timeout: float = 30) -> int | None:
    """SIGTERM, then SIGKILL after ``timeout`` s. Returns the pid stopped (None: it was not running)."""
    home = Path(home).resolve()
    with _locked(home):
        pid = _read_pid(home)
        if pid is None:
            return None
        log.info("stopping the schema registry (pid %d)", pid)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        if local_broker._wait_exit({0: pid}, timeout):
            log.warning("the schema registry (pid %d) did not exit within %.0f s; sending SIGKILL", pid, timeout)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            if local_broker._wait_exit({0: pid}, 10):
                raise RegistryLocalError(f"the schema registry (pid {pid}) survived SIGKILL")
        _pid_file(home).unlink(missing_ok=True)
        return pid


def logs(home: Path, lines: int = 100) -> str:
    return local_broker._tail(log_file(home), lines)
