"""Same-run baselines: Kafka's own perf tools, a bare confluent-kafka loop, the plain processor."""
from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
import uuid

from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

from ..dev import local_broker
from ..kafka.producer import produce_when_room, producer_config
from .env import REPO, BenchEnv, children_cpu


def _client_props(env: BenchEnv) -> list[str]:
    """The confluent settings (bootstrap + security pass-through) as Java client properties."""
    config = env.settings.confluent_config()
    return [f"{k}={v}" for k, v in config.items()]


def _java(env: BenchEnv, main: str, *args: str, timeout: float = 300) -> tuple[str, float, float]:
    libs = local_broker.ensure_jars(env.base_settings.home)
    java = local_broker.find_java()
    before = children_cpu()
    started = time.monotonic()
    done = subprocess.run([java, "-Xmx512m", "-cp", f"{libs}/*", main, *args], capture_output=True, text=True,
                          timeout=timeout)
    wall = time.monotonic() - started
    if done.returncode != 0:
        raise RuntimeError(f"{main} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return done.stdout, wall, children_cpu() - before


def producer_perf(env: BenchEnv, topic: str, count: int, record_size: int) -> dict:
    """`org.apache.kafka.tools.ProducerPerformance` with the BankClient's producer settings."""
    env.create_topic(topic)
    props = _client_props(env) + ["acks=all", "linger.ms=5", "compression.type=lz4", "enable.idempotence=true"]
    out, wall, cpu = _java(env, "org.apache.kafka.tools.ProducerPerformance", "--topic", topic,
                           "--num-records", str(count), "--record-size", str(record_size), "--throughput", "-1",
                           "--producer-props", *props)
    final = [line for line in out.splitlines() if "records sent" in line][-1]
    m = re.search(r"(\d+) records sent, ([\d.]+) records/sec \(([\d.]+) MB/sec\), ([\d.]+) ms avg latency, "
                  r"([\d.]+) ms max latency, (\d+) ms 50th, (\d+) ms 95th, (\d+) ms 99th", final)
    return {"system": "kafka ProducerPerformance", "records": int(m.group(1)),
            "throughput_per_s": float(m.group(2)), "mb_per_s": float(m.group(3)), "record_size": record_size,
            "latency": {"p50_ms": float(m.group(6)), "p95_ms": float(m.group(7)), "p99_ms": float(m.group(8))},
            "process_cpu_s": round(cpu, 3), "wall_s_with_jvm_start": round(wall, 3), "line": final.strip()}


def consumer_perf(env: BenchEnv, topic: str, count: int) -> dict:
    """`org.apache.kafka.tools.ConsumerPerformance` reading `count` records of `topic` from the start."""
    out, wall, cpu = _java(env, "org.apache.kafka.tools.ConsumerPerformance", "--bootstrap-server",
                           env.settings.bootstrap_servers, "--topic", topic, "--messages", str(count),
                           "--timeout", "60000", "--group", f"bench-perf-{uuid.uuid4()}")
    lines = [line for line in out.splitlines() if line.strip()]
    header = [h.strip() for h in lines[-2].split(",")]
    values = [v.strip() for v in lines[-1].split(",")]
    row = dict(zip(header, values))
    return {"system": "kafka ConsumerPerformance", "records": int(float(row["data.consumed.in.nMsg"])),
            "throughput_per_s": float(row["fetch.nMsg.sec"]), "throughput_incl_rebalance_per_s":
            float(row["nMsg.sec"]), "mb_per_s": float(row["fetch.MB.sec"]), "process_cpu_s": round(cpu, 3),
            "wall_s_with_jvm_start": round(wall, 3)}


def bare_loop(env: BenchEnv, topic: str, records: list[tuple[bytes, bytes]]) -> dict:
    """confluent-kafka: produce `records` (the workload's real keys and encoded commands) with the
    BankClient's settings while a consumer in a thread reads them back; end to end = first produce to
    last record consumed."""
    env.create_topic(topic)
    settings = env.settings
    consumer = Consumer(settings.consumer_config(**{"group.id": f"bench-bare-{uuid.uuid4()}",
                                                     "enable.auto.commit": False, "fetch.wait.max.ms": 10}))
    partitions = consumer.list_topics(topic, timeout=30).topics[topic].partitions
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
    consumer.consume(1, timeout=0.5)  # join the fetch loop before the clock starts
    seen = {"count": 0, "last": 0.0}
    done = threading.Event()

    def consume():
        while seen["count"] < len(records) and not done.is_set():
            batch = consumer.consume(2000, timeout=0.1)
            seen["count"] += sum(1 for m in batch if m.error() is None)
            if batch:
                seen["last"] = time.time()

    thread = threading.Thread(target=consume, daemon=True)
    producer = Producer(producer_config(settings))
    thread.start()
    started = time.time()
    for key, value in records:
        produce_when_room(producer, topic, key=key, value=value)
        producer.poll(0)
    producer.flush(60)
    produced = time.time()
    thread.join(120)
    done.set()
    consumer.close()
    n = len(records)
    return {"system": "bare confluent-kafka loop", "records": n, "consumed": seen["count"],
            "produce_per_s": round(n / max(produced - started, 1e-9), 1),
            "throughput_per_s": round(n / max(seen["last"] - started, 1e-9), 1)}


def start_plain(env: BenchEnv) -> subprocess.Popen:
    """The plain confluent-kafka deposit processor (streams.bench.plain) as its own process."""
    log = env.settings.home / "logs" / "plain.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    environment = {**os.environ, "BANK_HOME": str(env.settings.home),
                   "KAFKA_BOOTSTRAP_SERVERS": env.settings.bootstrap_servers,
                   "BANK_PARTITIONS": str(env.settings.partitions)}
    with open(log, "ab") as out:
        return subprocess.Popen([sys.executable, "-m", "streams.bench.plain"], stdout=out,
                                stderr=subprocess.STDOUT, env=environment, cwd=REPO, start_new_session=True)


def stop_plain(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


PEER = REPO / "bench" / "peers" / "kstreams"
#: The two Kafka Streams peers, one Maven module: the simple one (DepositPeer: one processor, at-least-once,
#: the plain loop's effects) and the fair one (PipelinePeer: streambank's own topology, exactly_once_v2).
KSTREAMS_SIMPLE = "streambank.peer.DepositPeer"
KSTREAMS_FULL = "streambank.peer.PipelinePeer"
QUIX_PEER = REPO / "bench" / "peers" / "quix"


def build_kstreams_peer(log=print) -> bool:
    """Builds the Kafka Streams peers with Maven once (target/ is the cache); False when it cannot."""
    import shutil
    classes = PEER / "target" / "classes" / "streambank" / "peer"
    sources = sorted((PEER / "src").rglob("*.java")) + [PEER / "pom.xml"]
    built = [classes / f"{main.rsplit('.', 1)[1]}.class" for main in (KSTREAMS_SIMPLE, KSTREAMS_FULL)]
    if all(c.exists() for c in built) and (PEER / "target" / "dependency").is_dir() and \
            min(c.stat().st_mtime for c in built) >= max(s.stat().st_mtime for s in sources):
        return True
    mvn = shutil.which("mvn")
    if mvn is None:
        log("  kstreams peers: mvn not on PATH, skipped")
        return False
    log("  kstreams peers: building with Maven (once)")
    started = time.monotonic()
    done = subprocess.run([mvn, "-q", "-B", "-f", str(PEER / "pom.xml"), "package"], capture_output=True, text=True,
                          timeout=900)
    if done.returncode != 0:
        log(f"  kstreams peers: build failed, skipped:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
        return False
    log(f"  kstreams peers: built in {time.monotonic() - started:.0f} s")
    return True


def start_kstreams(env: BenchEnv, main: str = KSTREAMS_SIMPLE) -> subprocess.Popen:
    """A Kafka Streams peer (bench/peers/kstreams, `main` its class) as its own JVM, with fresh state."""
    env.phase += 1
    name = main.rsplit(".", 1)[1]
    state = env.settings.home / f"phase-{env.phase}" / name
    state.mkdir(parents=True, exist_ok=True)
    log = env.settings.home / "logs" / f"kstreams-{name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    classpath = f"{PEER / 'target' / 'classes'}:{PEER / 'target' / 'dependency'}/*"
    with open(log, "ab") as out:
        return subprocess.Popen([local_broker.find_java(), "-Xmx512m", "-cp", classpath, main,
                                 env.settings.bootstrap_servers, str(REPO / "schemas"), str(state)],
                                stdout=out, stderr=subprocess.STDOUT, cwd=REPO, start_new_session=True)


def quix_python() -> Path:
    return QUIX_PEER / ".venv" / "bin" / "python"


def ensure_quix_venv(log=print) -> bool:
    """The Quix Streams peer's own venv (bench/peers/quix/.venv), made once from its requirements.txt.

    quixstreams 3.28 pins confluent-kafka<2.13 and streambank pins 2.16.1: they cannot share a venv.
    Remade when requirements.txt changes; False (peer skipped) when it cannot be made."""
    import hashlib
    requirements = QUIX_PEER / "requirements.txt"
    venv = QUIX_PEER / ".venv"
    stamp = venv / f".installed-{hashlib.sha256(requirements.read_bytes()).hexdigest()[:12]}"
    if stamp.exists() and quix_python().exists():
        return True
    log(f"  quix peer: making its venv {venv} (once)")
    started = time.monotonic()
    import shutil
    shutil.rmtree(venv, ignore_errors=True)
    for step in ([sys.executable, "-m", "venv", str(venv)],
                 [str(quix_python()), "-m", "pip", "install", "--quiet", "-r", str(requirements)]):
        done = subprocess.run(step, capture_output=True, text=True, timeout=900)
        if done.returncode != 0:
            log(f"  quix peer: venv failed, skipped:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
            return False
    stamp.touch()
    log(f"  quix peer: venv made in {time.monotonic() - started:.0f} s")
    return True


def start_quix(env: BenchEnv) -> subprocess.Popen:
    """The Quix Streams peer (bench/peers/quix/deposit_peer.py) in its venv, with fresh state."""
    env.phase += 1
    state = env.settings.home / f"phase-{env.phase}" / "quix"
    state.mkdir(parents=True, exist_ok=True)
    log = env.settings.home / "logs" / "quix.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    environment = {**os.environ, "PYTHONPATH": str(REPO)}
    with open(log, "ab") as out:
        return subprocess.Popen([str(quix_python()), str(QUIX_PEER / "deposit_peer.py"), env.settings.bootstrap_servers,
                                 str(state)], stdout=out, stderr=subprocess.STDOUT, env=environment, cwd=REPO,
                                start_new_session=True)
