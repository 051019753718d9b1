"""Run a real Apache Kafka broker (KRaft mode, no ZooKeeper) on this machine.

The broker jars come from Maven Central through ``kafka/pom.xml`` and are cached
under ``$BANK_HOME/kafka/libs``; each broker is a detached ``java kafka.Kafka``
process that outlives the Python process that started it.

Layout under ``home`` (the caller passes ``$BANK_HOME``)::

    home/kafka/libs/                    cached jars (+ .kafka-version marker)
    home/kafka/cluster.json             cluster id, broker count, ports, version
    home/kafka/broker-<i>/server.properties
    home/kafka/broker-<i>/log4j2.properties
    home/kafka/broker-<i>/broker.log
    home/kafka/broker-<i>/pid
    home/kafka/broker-<i>/data/         log.dirs (and the KRaft metadata log)

Brokers are numbered from 1 (``node.id`` = i).  Broker i listens on
``base_port + i - 1`` and its controller on ``base_port + 10000 + i - 1``
(9092 / 19092 for a single node; 9092-9094 / 19092-19094 for three).

Nothing is read from the environment at import time.  ``ensure_jars`` honours
``BANK_KAFKA_LIBS`` and ``find_java`` honours ``JAVA_HOME`` when they are called.
"""
from __future__ import annotations

import base64
import contextlib
import dataclasses
import fcntl
import json
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

__all__ = [
    "DEFAULT_BASE_PORT",
    "KAFKA_VERSION",
    "BrokerStatus",
    "KafkaLocalError",
    "broker_dir",
    "ensure_jars",
    "find_java",
    "kafka_dir",
    "kill",
    "logs",
    "reset",
    "start",
    "start_one",
    "status",
    "stop",
]

log = logging.getLogger(__name__)

KAFKA_VERSION = "4.0.0"  # fallback when kafka/pom.xml cannot be read
DEFAULT_BASE_PORT = 9092
CONTROLLER_PORT_OFFSET = 10000
MIN_JAVA = 17
LIBS_ENV = "BANK_KAFKA_LIBS"
VERSION_MARKER = ".kafka-version"
JVM_OPTS = ("-Xms256m", "-Xmx1g", "-XX:+UseG1GC", "-Djava.awt.headless=true")
LOG_TAIL_ON_ERROR = 30


class KafkaLocalError(RuntimeError):
    """Something prevents the local broker from being fetched, started or stopped."""


@dataclasses.dataclass(frozen=True)
class BrokerStatus:
    running: bool  # every configured broker process is alive
    pids: list[int]  # pids of the live broker processes, by broker index
    bootstrap_servers: str  # e.g. "127.0.0.1:9092" or "127.0.0.1:9092,127.0.0.1:9093,..."
    data_dir: Path  # home/kafka
    version: str  # Kafka version of the cluster (or of the cached jars)
    brokers: int = 0  # configured broker count (0: no cluster yet)
    base_port: int = DEFAULT_BASE_PORT
    nodes: dict[int, int | None] = dataclasses.field(default_factory=dict)  # index -> pid|None
    cluster_id: str | None = None

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["data_dir"] = str(self.data_dir)
        d["nodes"] = {str(k): v for k, v in self.nodes.items()}
        return d


# --------------------------------------------------------------------------- paths


def default_repo_root() -> Path:
    """The directory that contains ``kafka/pom.xml`` (the repository root)."""
    return Path(__file__).resolve().parents[2]


def kafka_dir(home: Path) -> Path:
    return Path(home).resolve() / "kafka"


def broker_dir(home: Path, index: int) -> Path:
    return kafka_dir(home) / f"broker-{index}"


def _cluster_file(home: Path) -> Path:
    return kafka_dir(home) / "cluster.json"


def _pid_file(home: Path, index: int) -> Path:
    return broker_dir(home, index) / "pid"


def _log_file(home: Path, index: int) -> Path:
    return broker_dir(home, index) / "broker.log"


def _props_file(home: Path, index: int) -> Path:
    return broker_dir(home, index) / "server.properties"


def broker_port(base_port: int, index: int) -> int:
    return base_port + index - 1


def controller_port(base_port: int, index: int) -> int:
    return base_port + CONTROLLER_PORT_OFFSET + index - 1


def _bootstrap(base_port: int, brokers: int) -> str:
    return ",".join(f"127.0.0.1:{broker_port(base_port, i)}" for i in range(1, max(brokers, 1) + 1))


@contextlib.contextmanager
def _locked(home: Path) -> Iterator[None]:
    """Serialise start/stop/reset of one home across processes."""
    d = kafka_dir(home)
    d.mkdir(parents=True, exist_ok=True)
    with open(d / ".lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


# --------------------------------------------------------------------------- jars


def pom_kafka_version(repo_root: Path | None = None) -> str:
    pom = Path(repo_root or default_repo_root()) / "kafka" / "pom.xml"
    try:
        m = re.search(r"<kafka\.version>\s*([^<\s]+)\s*</kafka\.version>", pom.read_text())
    except OSError:
        return KAFKA_VERSION
    return m.group(1) if m else KAFKA_VERSION


def _libs_ok(libs: Path, version: str) -> bool:
    marker = libs / VERSION_MARKER
    try:
        cached = marker.read_text().strip()
    except OSError:
        return False
    return cached == version and any(libs.glob(f"kafka_2.13-{version}.jar"))


def ensure_jars(home: Path, repo_root: Path | None = None, libs_dir: Path | None = None) -> Path:
    """Return a directory holding the Kafka broker jars, fetching them with Maven once.

    The directory is ``libs_dir`` if given, else ``$BANK_KAFKA_LIBS`` if set, else
    ``home/kafka/libs``.  A marker file names the Kafka version from ``kafka/pom.xml``;
    when it differs (or is missing) the jars are fetched again.
    """
    repo_root = Path(repo_root or default_repo_root()).resolve()
    pom = repo_root / "kafka" / "pom.xml"
    version = pom_kafka_version(repo_root)
    if libs_dir is None:
        env = os.environ.get(LIBS_ENV)
        libs_dir = Path(env) if env else kafka_dir(home) / "libs"
    libs = Path(libs_dir).expanduser().resolve()
    if _libs_ok(libs, version):
        return libs
    if not pom.is_file():
        raise KafkaLocalError(f"cannot fetch the Kafka jars: {pom} not found")
    libs.parent.mkdir(parents=True, exist_ok=True)
    with open(libs.parent / f".{libs.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another process may be fetching right now
        if _libs_ok(libs, version):
            return libs
        mvn = shutil.which("mvn")
        if mvn is None:
            raise KafkaLocalError(
                "Maven ('mvn') is not on PATH; it is needed once to download the Kafka "
                f"{version} jars from Maven Central (e.g. `apt-get install maven`), "
                f"or point {LIBS_ENV} at a directory that already holds them"
            )
        tmp = libs.parent / f".{libs.name}.tmp-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        log.info("fetching Kafka %s jars with Maven into %s (one-time)", version, libs)
        cmd = [mvn, "-B", "-q", "-f", str(pom), "dependency:copy-dependencies",
               f"-DoutputDirectory={tmp}", "-DincludeScope=runtime"]
        proc = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL)
        if proc.returncode != 0 or not any(tmp.glob(f"kafka_2.13-{version}.jar")):
            shutil.rmtree(tmp, ignore_errors=True)
            out = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-30:])
            raise KafkaLocalError(
                f"maven could not fetch the Kafka {version} jars (exit {proc.returncode}):\n{out}"
            )
        (tmp / VERSION_MARKER).write_text(version + "\n")
        if libs.exists():
            shutil.rmtree(libs)
        tmp.rename(libs)
    return libs


# --------------------------------------------------------------------------- java


def find_java() -> str:
    """Resolve ``java`` from ``$JAVA_HOME/bin`` first, else ``PATH``; check it is >= 17."""
    java = None
    java_home = os.environ.get("JAVA_HOME")
    if java_home:
        cand = Path(java_home) / "bin" / "java"
        if cand.is_file() and os.access(cand, os.X_OK):
            java = str(cand)
        else:
            log.warning("JAVA_HOME=%s has no bin/java; falling back to PATH", java_home)
    if java is None:
        java = shutil.which("java")
    if java is None:
        raise KafkaLocalError(
            f"java not found (set JAVA_HOME or put java on PATH); Kafka needs Java {MIN_JAVA}+, "
            "e.g. `apt-get install openjdk-17-jre-headless`"
        )
    try:
        proc = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise KafkaLocalError(f"cannot run {java} -version: {exc}") from exc
    out = proc.stderr + proc.stdout
    m = re.search(r'version "(\d+)(?:\.(\d+))?', out)
    if not m:
        raise KafkaLocalError(f"cannot tell the Java version of {java}: {out.strip()[:200]}")
    major = int(m.group(1))
    if major == 1 and m.group(2):  # "1.8.0_292" style
        major = int(m.group(2))
    if major < MIN_JAVA:
        raise KafkaLocalError(
            f"{java} is Java {major}; Kafka {KAFKA_VERSION} needs Java {MIN_JAVA} or newer "
            "(set JAVA_HOME to a newer JDK)"
        )
    return java


# --------------------------------------------------------------------------- processes

_CHILDREN: dict[int, subprocess.Popen] = {}  # brokers launched by this process (for reaping)


def _reap(pid: int) -> None:
    proc = _CHILDREN.get(pid)
    if proc is not None:
        if proc.poll() is not None:
            _CHILDREN.pop(pid, None)
        return
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def _pid_alive(pid: int, props: Path | None = None) -> bool:
    """True if ``pid`` is a live (non-zombie) Kafka broker (for ``props`` if given)."""
    _reap(pid)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    proc = Path(f"/proc/{pid}")
    if not proc.exists():
        return True  # no procfs: trust kill(0)
    try:
        if _pid_gone(pid):
            return False
        cmdline = (proc / "cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    args = [a.decode(errors="replace") for a in cmdline]
    if "kafka.Kafka" not in args:
        return False  # pid reused by something else
    return props is None or str(props) in args


def _pid_gone(pid: int) -> bool:
    """True once every thread of ``pid`` has exited (its sockets and files are released).

    Stricter than "not a live kafka": while a JVM dies, /proc/<pid>/cmdline empties and the
    leader turns zombie before the other threads (holding the listening sockets) are gone.
    """
    _reap(pid)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    tasks = Path(f"/proc/{pid}/task")
    try:
        return all(_state(t) in ("Z", "X", "") for t in tasks.iterdir())
    except OSError:
        return not Path(f"/proc/{pid}").exists()


def _state(proc_dir: Path) -> str:
    try:
        return (proc_dir / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return ""


def _read_pid(home: Path, index: int) -> int | None:
    """Pid of broker ``index`` if it is running; removes a stale pid file."""
    pf = _pid_file(home, index)
    try:
        pid = int(pf.read_text().strip())
    except (OSError, ValueError):
        if pf.exists():
            pf.unlink(missing_ok=True)
        return None
    if _pid_alive(pid, _props_file(home, index)):
        return pid
    pf.unlink(missing_ok=True)
    return None


def _tail(path: Path, lines: int) -> str:
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            block, data = 8192, b""
            while size > 0 and data.count(b"\n") <= lines:
                step = min(block, size)
                size -= step
                fh.seek(size)
                data = fh.read(step) + data
    except OSError:
        return ""
    text = data.decode("utf-8", errors="replace").splitlines()
    return "\n".join(text[-lines:]) if lines > 0 else ""


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the JVM does
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _port_owner(port: int) -> str:
    """Best effort: which process listens on ``port`` (Linux procfs)."""
    try:
        inodes = set()
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            with contextlib.suppress(OSError):
                for line in Path(table).read_text().splitlines()[1:]:
                    f = line.split()
                    if int(f[1].rsplit(":", 1)[1], 16) == port and f[3] == "0A":
                        inodes.add(f[9])
        if not inodes:
            return ""
        for p in Path("/proc").iterdir():
            if not p.name.isdigit():
                continue
            with contextlib.suppress(OSError):
                for fd in (p / "fd").iterdir():
                    link = os.readlink(fd)
                    if link.startswith("socket:[") and link[8:-1] in inodes:
                        cmd = (p / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                        return f" by pid {p.name} ({cmd.strip()[:120]})"
    except OSError:
        pass
    return ""


# --------------------------------------------------------------------------- config


def _read_cluster(home: Path) -> dict | None:
    try:
        return json.loads(_cluster_file(home).read_text())
    except (OSError, ValueError):
        return None


def _write_cluster(home: Path, info: dict) -> None:
    f = _cluster_file(home)
    tmp = f.with_suffix(".tmp")
    tmp.write_text(json.dumps(info, indent=2) + "\n")
    tmp.replace(f)


def _formatted_brokers(home: Path) -> list[int]:
    out = []
    for d in kafka_dir(home).glob("broker-*"):
        m = re.fullmatch(r"broker-(\d+)", d.name)
        if m and (d / "data" / "meta.properties").exists():
            out.append(int(m.group(1)))
    return sorted(out)


def _server_properties(home: Path, index: int, brokers: int, base_port: int) -> str:
    rf = 3 if brokers >= 3 else 1
    isr = 2 if brokers >= 3 else 1
    voters = ",".join(f"{i}@127.0.0.1:{controller_port(base_port, i)}" for i in range(1, brokers + 1))
    bport, cport = broker_port(base_port, index), controller_port(base_port, index)
    data = broker_dir(home, index) / "data"
    props = {
        "process.roles": "broker,controller",
        "node.id": index,
        "controller.quorum.voters": voters,
        "listeners": f"PLAINTEXT://127.0.0.1:{bport},CONTROLLER://127.0.0.1:{cport}",
        "advertised.listeners": f"PLAINTEXT://127.0.0.1:{bport}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "log.dirs": data,
        "num.partitions": 4,
        "default.replication.factor": rf,
        "min.insync.replicas": isr,
        "offsets.topic.replication.factor": rf,
        "transaction.state.log.replication.factor": rf,
        "transaction.state.log.min.isr": isr,
        "share.coordinator.state.topic.replication.factor": rf,
        "share.coordinator.state.topic.min.isr": isr,
        "auto.create.topics.enable": "false",
        "group.initial.rebalance.delay.ms": 0,
        "unclean.leader.election.enable": "false",
    }
    head = f"# written by streams/dev/local_broker.py - broker {index} of {brokers}; edits are overwritten\n"
    return head + "".join(f"{k}={v}\n" for k, v in props.items())


LOG4J2 = """\
# written by streams/dev/local_broker.py
status = warn
name = streambank-kafka-broker-{index}
appender.file.type = File
appender.file.name = FILE
appender.file.fileName = {log}
appender.file.append = true
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRefs = file
rootLogger.appenderRef.file.ref = FILE
logger.kafka.name = kafka
logger.kafka.level = INFO
logger.apachekafka.name = org.apache.kafka
logger.apachekafka.level = INFO
logger.clients.name = org.apache.kafka.clients
logger.clients.level = WARN
logger.config.name = org.apache.kafka.common.config
logger.config.level = WARN
logger.utils.name = org.apache.kafka.common.utils
logger.utils.level = WARN
logger.metrics.name = org.apache.kafka.common.metrics
logger.metrics.level = WARN
logger.storage.name = org.apache.kafka.storage.internals
logger.storage.level = WARN
logger.logcleaner.name = kafka.log.LogCleaner
logger.logcleaner.level = WARN
logger.request.name = kafka.request.logger
logger.request.level = WARN
logger.requestchannel.name = kafka.network.RequestChannel$
logger.requestchannel.level = WARN
logger.statechange.name = state.change.logger
logger.statechange.level = WARN
logger.authorizer.name = kafka.authorizer.logger
logger.authorizer.level = WARN
logger.jetty.name = org.eclipse.jetty
logger.jetty.level = WARN
logger.reflections.name = org.reflections
logger.reflections.level = WARN
"""


def _write_configs(home: Path, index: int, brokers: int, base_port: int) -> None:
    d = broker_dir(home, index)
    (d / "data").mkdir(parents=True, exist_ok=True)
    _props_file(home, index).write_text(_server_properties(home, index, brokers, base_port))
    (d / "log4j2.properties").write_text(LOG4J2.format(index=index, log=_log_file(home, index)))


def _java_cmd(java: str, libs: Path, home: Path, index: int, main: str, *args: str) -> list[str]:
    d = broker_dir(home, index)
    return [
        java, *JVM_OPTS,
        f"-Dlog4j2.configurationFile={d / 'log4j2.properties'}",
        f"-Dkafka.logs.dir={d}",
        "-cp", f"{libs}/*",
        main, *args,
    ]


def _format(java: str, libs: Path, home: Path, indexes: list[int], cluster_id: str) -> None:
    procs = []
    for i in indexes:
        cmd = _java_cmd(java, libs, home, i, "kafka.tools.StorageTool",
                        "format", "-t", cluster_id, "-c", str(_props_file(home, i)), "--ignore-formatted")
        cmd = [c for c in cmd if c not in ("-Xms256m",)]
        log.info("formatting broker %d storage (cluster %s)", i, cluster_id)
        procs.append((i, subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                          stdin=subprocess.DEVNULL, text=True)))
    for i, p in procs:
        out, _ = p.communicate()
        if p.returncode != 0 or not (broker_dir(home, i) / "data" / "meta.properties").exists():
            tail = "\n".join(out.strip().splitlines()[-LOG_TAIL_ON_ERROR:])
            raise KafkaLocalError(f"formatting broker {i} storage failed (exit {p.returncode}):\n{tail}")


def _launch(java: str, libs: Path, home: Path, index: int) -> int:
    d = broker_dir(home, index)
    cmd = _java_cmd(java, libs, home, index, "kafka.Kafka", str(_props_file(home, index)))
    with open(_log_file(home, index), "ab") as out:
        out.write(f"\n===== {time.strftime('%Y-%m-%d %H:%M:%S')} starting broker {index}: "
                  f"{' '.join(cmd)}\n".encode())
        out.flush()
        proc = subprocess.Popen(cmd, cwd=d, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                start_new_session=True, close_fds=True)
    _CHILDREN[proc.pid] = proc
    _pid_file(home, index).write_text(f"{proc.pid}\n")
    log.info("launched broker %d (pid %d), log %s", index, proc.pid, _log_file(home, index))
    return proc.pid


# --------------------------------------------------------------------------- readiness


def _metadata_brokers(bootstrap: str, timeout: float) -> set[int] | None:
    """Ids of the brokers in the cluster metadata, or None if nobody answers."""
    # Imported here, not at the top: confluent-kafka's admin client takes ~0.15 s to import, and every
    # `bank` command loads this module (through the `bank kafka` group) when it starts.
    from ..kafka.admin import metadata_brokers
    return metadata_brokers(bootstrap, timeout)


def _check_ports(home: Path, indexes: list[int], base_port: int) -> None:
    for i in indexes:
        for kind, port in (("broker", broker_port(base_port, i)), ("controller", controller_port(base_port, i))):
            deadline = time.monotonic() + 5  # a just-killed broker's sockets may linger briefly
            while not _port_free(port) and time.monotonic() < deadline:
                time.sleep(0.2)
            if not _port_free(port):
                raise KafkaLocalError(
                    f"port {port} (broker {i} {kind} listener) is already in use{_port_owner(port)}; "
                    "stop whatever listens there (another Kafka?) and retry"
                )


def _wait_ready(home: Path, info: dict, waiting: dict[int, int], timeout: float,
                need: set[int] | None = None) -> None:
    """Poll until every broker in ``need`` shows up in the metadata; fail fast on JVM exit."""
    base_port, brokers = info["base_port"], info["brokers"]
    need = set(range(1, brokers + 1)) if need is None else need
    deadline = time.monotonic() + timeout
    # Each awaited broker must answer a metadata request itself (a fresh client bootstrapped
    # on its port alone), and list itself: right after a SIGKILL the controller still lists a
    # dead broker until its session times out, so "in someone's metadata" proves nothing.
    # A KRaft broker opens its client port only after it has been unfenced.
    pending = set(need)
    seen: set[int] | None = None
    while True:
        for i, pid in waiting.items():
            if _pid_gone(pid):
                _pid_file(home, i).unlink(missing_ok=True)
                tail = _tail(_log_file(home, i), LOG_TAIL_ON_ERROR)
                raise KafkaLocalError(
                    f"kafka broker {i} (pid {pid}) exited during startup; last lines of "
                    f"{_log_file(home, i)}:\n{tail}"
                )
        left = deadline - time.monotonic()
        if left <= 0:
            break
        for i in sorted(pending):
            seen = _metadata_brokers(f"127.0.0.1:{broker_port(base_port, i)}",
                                     timeout=min(2.0, max(deadline - time.monotonic(), 0.1)))
            if seen is not None and i in seen and need <= seen:
                pending.discard(i)
        if not pending:
            return
        time.sleep(min(0.5, max(deadline - time.monotonic(), 0)))
    bootstrap = _bootstrap(base_port, brokers)
    got = "no metadata answer" if seen is None else f"metadata lists brokers {sorted(seen)}"
    tails = "\n".join(
        f"--- broker {i} ({_log_file(home, i)}):\n{_tail(_log_file(home, i), 10)}" for i in sorted(pending)
    )
    raise KafkaLocalError(
        f"kafka did not become ready on {bootstrap} within {timeout:.0f}s ({got}; "
        f"waiting for brokers {sorted(pending)}); the processes are left running - "
        f"see the logs or `bank kafka stop`:\n{tails}"
    )


# --------------------------------------------------------------------------- public API


def status(home: Path, base_port: int | None = None) -> BrokerStatus:
    """Process-level status of the local cluster in ``home`` (cheap: no network)."""
    info = _read_cluster(home)
    version = pom_kafka_version()
    if info is None:
        bp = base_port or DEFAULT_BASE_PORT
        return BrokerStatus(False, [], _bootstrap(bp, 1), kafka_dir(home), version, 0, bp, {}, None)
    brokers, bp = int(info["brokers"]), int(info["base_port"])
    nodes = {i: _read_pid(home, i) for i in range(1, brokers + 1)}
    pids = [p for p in nodes.values() if p is not None]
    return BrokerStatus(
        running=len(pids) == brokers,
        pids=pids,
        bootstrap_servers=_bootstrap(bp, brokers),
        data_dir=kafka_dir(home),
        version=info.get("version", version),
        brokers=brokers,
        base_port=bp,
        nodes=nodes,
        cluster_id=info.get("cluster_id"),
    )


def start(
    home: Path,
    brokers: int = 1,
    timeout: float = 90,
    base_port: int = DEFAULT_BASE_PORT,
    *,
    libs_dir: Path | None = None,
    repo_root: Path | None = None,
) -> BrokerStatus:
    """Start (or adopt) a local KRaft cluster of ``brokers`` combined broker+controller nodes.

    Idempotent: brokers that are already running are not launched again.  Returns once
    every broker is listed in a metadata response.  Raises ``KafkaLocalError``.
    """
    if brokers not in (1, 3):
        raise KafkaLocalError(f"brokers must be 1 or 3, not {brokers}")
    home = Path(home).resolve()
    with _locked(home):
        info = _read_cluster(home)
        formatted = _formatted_brokers(home)
        if info is not None:
            if int(info["brokers"]) != brokers or int(info["base_port"]) != base_port:
                raise KafkaLocalError(
                    f"{kafka_dir(home)} holds a {info['brokers']}-broker cluster on port "
                    f"{info['base_port']}, not the requested {brokers} on {base_port}; run "
                    f"`bank kafka stop` and `bank kafka reset` (or delete {kafka_dir(home)}, "
                    "keeping libs/) to start over"
                )
        elif formatted and formatted != list(range(1, brokers + 1)):
            raise KafkaLocalError(
                f"{kafka_dir(home)} holds formatted data for brokers {formatted}, not a "
                f"{brokers}-broker cluster; run `bank kafka stop` and `bank kafka reset` "
                f"(or delete {kafka_dir(home)}, keeping libs/)"
            )
        return _start_locked(home, brokers, timeout, base_port, info, libs_dir, repo_root,
                             only=None)


def _start_locked(home: Path, brokers: int, timeout: float, base_port: int, info: dict | None,
                  libs_dir: Path | None, repo_root: Path | None, only: int | None) -> BrokerStatus:
    indexes = list(range(1, brokers + 1))
    running = {i: _read_pid(home, i) for i in indexes}
    targets = [i for i in indexes if running[i] is None and (only is None or i == only)]
    if info is not None and not targets:
        # every wanted broker process is alive: make sure it answers, then report
        need = set(indexes) if only is None else {only}
        _wait_ready(home, info, {i: p for i, p in running.items() if p}, timeout, need)
        return status(home)

    _check_ports(home, targets, base_port)
    java = find_java()
    libs = ensure_jars(home, repo_root, libs_dir)
    version = (libs / VERSION_MARKER).read_text().strip()
    if info is None:
        info = {"cluster_id": None, "brokers": brokers, "base_port": base_port, "version": version}
    if not info.get("cluster_id"):
        meta = broker_dir(home, 1) / "data" / "meta.properties"
        m = re.search(r"^cluster\.id=(\S+)", meta.read_text(), re.M) if meta.exists() else None
        info["cluster_id"] = m.group(1) if m else _random_cluster_id()
    info["version"] = version
    _write_cluster(home, info)

    for i in targets:
        _write_configs(home, i, brokers, base_port)
    unformatted = [i for i in targets if not (broker_dir(home, i) / "data" / "meta.properties").exists()]
    if unformatted:
        _format(java, libs, home, unformatted, info["cluster_id"])

    waiting = {i: p for i, p in running.items() if p}
    for i in targets:
        waiting[i] = _launch(java, libs, home, i)
    need = set(indexes) if only is None else {only}
    _wait_ready(home, info, waiting, timeout, need)
    st = status(home)
    log.info("kafka %s ready on %s", st.version, st.bootstrap_servers)
    return st


def _random_cluster_id() -> str:
    """Same format as ``kafka-storage random-uuid``: 16 random bytes, url-safe base64, no padding."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        # One id in 64 starts with "-", which kafka-storage's argument parser takes for an option
        # (seen here: "argument --cluster-id/-t: expected one argument").
        if not cluster_id.startswith("-"):
            return cluster_id


def start_one(home: Path, broker_index: int, timeout: float = 90, *,
              libs_dir: Path | None = None, repo_root: Path | None = None) -> BrokerStatus:
    """(Re)start broker ``broker_index`` of an existing cluster; waits until it is back in the metadata."""
    home = Path(home).resolve()
    with _locked(home):
        info = _read_cluster(home)
        if info is None:
            raise KafkaLocalError(f"no kafka cluster in {kafka_dir(home)}; run `bank kafka start` first")
        brokers = int(info["brokers"])
        if not 1 <= broker_index <= brokers:
            raise KafkaLocalError(f"broker index must be 1..{brokers}, not {broker_index}")
        return _start_locked(home, brokers, timeout, int(info["base_port"]), info, libs_dir,
                             repo_root, only=broker_index)


def _wait_exit(pids: dict[int, int], timeout: float) -> dict[int, int]:
    deadline = time.monotonic() + timeout
    left = dict(pids)
    while left and time.monotonic() < deadline:
        left = {i: p for i, p in left.items() if not _pid_gone(p)}
        if left:
            time.sleep(0.2)
    return left


def stop(home: Path, timeout: float = 30) -> list[int]:
    """SIGTERM every broker, wait up to ``timeout`` s, SIGKILL stragglers. Returns the pids stopped."""
    home = Path(home).resolve()
    with _locked(home):
        info = _read_cluster(home)
        indexes = set(range(1, int(info["brokers"]) + 1)) if info else set()
        indexes |= {
            int(d.name.split("-", 1)[1]) for d in kafka_dir(home).glob("broker-*")
            if d.name.split("-", 1)[1].isdigit()
        }
        pids = {i: p for i in sorted(indexes) if (p := _read_pid(home, i)) is not None}
        for i, pid in pids.items():
            log.info("stopping broker %d (pid %d)", i, pid)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        left = _wait_exit(pids, timeout)
        for i, pid in left.items():
            log.warning("broker %d (pid %d) did not exit within %.0fs of SIGTERM; sending SIGKILL",
                        i, pid, timeout)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if _wait_exit(left, 10):
            raise KafkaLocalError(f"broker processes {sorted(left.values())} survived SIGKILL")
        for i in pids:
            _pid_file(home, i).unlink(missing_ok=True)
        return list(pids.values())


def kill(home: Path, broker_index: int) -> int | None:
    """SIGKILL one broker (fault injection). Returns its pid, or None if it was not running."""
    home = Path(home).resolve()
    pid = _read_pid(home, broker_index)
    if pid is None:
        return None
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    if _wait_exit({broker_index: pid}, 10):
        raise KafkaLocalError(f"broker {broker_index} (pid {pid}) survived SIGKILL")
    _pid_file(home, broker_index).unlink(missing_ok=True)
    return pid


def logs(home: Path, lines: int = 100, broker: int = 1) -> str:
    """The last ``lines`` lines of broker ``broker``'s log ('' if there is none)."""
    return _tail(_log_file(home, broker), lines)


def reset(home: Path, timeout: float = 30) -> list[int]:
    """Stop the brokers and delete all cluster data under ``home/kafka``, keeping ``libs/``."""
    stopped = stop(home, timeout)
    kd = kafka_dir(home)
    with _locked(home):
        if kd.exists():
            for child in kd.iterdir():
                if child.name in ("libs", ".lock", ".libs.lock"):
                    continue
                if child.is_dir() and not child.is_symlink():
                    shutil.rmtree(child)
                else:
                    child.unlink(missing_ok=True)
    return stopped
