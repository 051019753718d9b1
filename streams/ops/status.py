"""`bank status`: the broker, the topics, the workers and who holds which partition, and the lag.

Everything comes from Kafka (confluent-kafka's AdminClient: metadata, end offsets, the `streambank`
consumer group's members, assignments and committed offsets), plus each worker's own `GET /health`,
found through the group: a worker's Kafka client id is `streambank-worker-<host>-<port>` (see
`streams.worker.app.create_app`), which names its HTTP address.
"""
from __future__ import annotations

import json
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

from ..dev import local_broker
from ..contract import topics
from ..config import Settings
from ..kafka.admin import AdminError, cluster_state

GROUP = topics.APP_ID  # Faust's consumer group is the app id
CLIENT_ID_PREFIX = "streambank-worker-"


class StatusUnavailable(RuntimeError):
    """Kafka did not answer."""


def worker_client_id(host: str, port: int) -> str:
    return f"{CLIENT_ID_PREFIX}{host}-{port}"


def worker_url(client_id: str) -> str | None:
    """The HTTP address a worker's client id names, or None for another client."""
    if not client_id.startswith(CLIENT_ID_PREFIX):
        return None
    host, _, port = client_id[len(CLIENT_ID_PREFIX):].rpartition("-")
    return f"http://{host}:{port}" if host and port.isdigit() else None


def _health(url: str, timeout: float) -> dict:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=timeout) as response:
            return {"reachable": True, **json.loads(response.read())}
    except urllib.error.HTTPError as exc:  # 503: starting, rebalancing or stalled; the body says which
        try:
            return {"reachable": True, **json.loads(exc.read())}
        except ValueError:
            return {"reachable": True, "status": f"HTTP {exc.code}"}
    except (OSError, ValueError) as exc:
        return {"reachable": False, "status": "unreachable", "error": str(getattr(exc, "reason", exc))}


def _local_version(settings: Settings, cluster_id: str | None) -> str | None:
    """The Kafka version when the cluster is the one `bank kafka start` runs here (same cluster id); else
    None: Kafka's protocol does not tell a client the broker's version cheaply."""
    try:
        local = local_broker.status(settings.home)
    except Exception:  # no local cluster, or an unreadable one: the version is simply unknown
        return None
    return local.version if local.running and cluster_id and local.cluster_id == cluster_id else None


def collect(settings: Settings, timeout: float = 10.0) -> dict:
    """The whole picture as one JSON-ready dict. Raises StatusUnavailable when Kafka does not answer."""
    try:
        cluster = cluster_state(settings, GROUP, timeout)
    except AdminError as exc:
        raise StatusUnavailable(str(exc)) from None
    metadata, ends, group, committed = cluster.metadata, cluster.ends, cluster.group, cluster.committed
    broker = {
        "bootstrap_servers": settings.bootstrap_servers, "reachable": True, "cluster_id": metadata.cluster_id,
        "controller_id": metadata.controller_id, "version": _local_version(settings, metadata.cluster_id),
        "brokers": [{"id": b.id, "host": b.host, "port": b.port} for b in sorted(metadata.brokers.values(),
                                                                                key=lambda b: b.id)],
    }
    names = sorted(name for name in metadata.topics if not name.startswith("__"))

    # A changelog partition can have several holders (a standby replica, when Faust is given any).
    owners: dict[tuple[str, int], list[str]] = {}
    members = []
    for member in sorted(group.members, key=lambda m: (m.client_id, m.member_id)):
        assigned = sorted((tp.topic, tp.partition) for tp in (member.assignment.topic_partitions
                                                               if member.assignment else ()))
        url = worker_url(member.client_id)
        for where in assigned:
            owners.setdefault(where, []).append(url or member.member_id)
        by_topic: dict[str, list[int]] = {}
        for topic, partition in assigned:
            by_topic.setdefault(topic, []).append(partition)
        members.append({"member_id": member.member_id, "client_id": member.client_id, "host": member.host,
                        "worker": url, "assignment": by_topic})

    topic_rows = []
    for name in names:
        rows = []
        for p in sorted(metadata.topics[name].partitions):
            info = metadata.topics[name].partitions[p]
            end = ends.get((name, p))
            done = committed.get((name, p))
            rows.append({"partition": p, "leader": info.leader, "replicas": list(info.replicas),
                         "isr": list(info.isrs), "end_offset": end, "committed": done,
                         "lag": _lag(end, done), "owners": sorted(owners.get((name, p), ()))})
        lags = [r["lag"] for r in rows if r["lag"] is not None]
        topic_rows.append({"name": name, "partitions": len(rows),
                           "replication_factor": len(rows[0]["replicas"]) if rows else 0,
                           "end_offsets": sum(r["end_offset"] or 0 for r in rows),
                           "consumed": any(r["owners"] or r["committed"] is not None for r in rows),
                           "lag": sum(lags) if lags else None, "partition_details": rows})

    urls = sorted({m["worker"] for m in members if m["worker"]})
    with ThreadPoolExecutor(max_workers=max(1, len(urls))) as pool:
        healths = dict(zip(urls, pool.map(lambda u: _health(u, min(timeout, 3.0)), urls)))
    workers = [{"url": url, **{k: v for k, v in healths[url].items() if k != "worker"},
                "partitions": sum(len(ps) for m in members if m["worker"] == url for ps in m["assignment"].values())}
               for url in urls]
    return {"broker": broker, "topics": topic_rows,
            "group": {"group_id": GROUP, "state": str(group.state).rsplit(".", 1)[-1],
                      "assignor": group.partition_assignor, "members": members},
            "workers": workers}


def render(status: dict) -> str:
    """The status as text for a terminal."""
    b = status["broker"]
    lines = [f"broker    {b['bootstrap_servers']}: reachable, {len(b['brokers'])} broker(s) "
             f"[{', '.join(str(x['id']) + '@' + x['host'] + ':' + str(x['port']) for x in b['brokers'])}], "
             f"controller {b['controller_id']}, cluster {b['cluster_id']}"
             + (f", Kafka {b['version']}" if b.get("version") else "")]
    g = status["group"]
    lines.append(f"group     {g['group_id']}: {g['state']}, {len(g['members'])} member(s), assignor {g['assignor']}")
    lines.append("workers")
    if not status["workers"]:
        lines.append("  (none in the consumer group)")
    for w in status["workers"]:
        lines.append(f"  {w['url']:<28} {w.get('status', '?'):<11} {w['partitions']:>3} partitions")
    for m in g["members"]:
        if not m["worker"]:
            lines.append(f"  {m['client_id']} ({m['member_id']}): not a streambank worker")
    lines.append("topics                                          parts repl   end offs   lag  owners")
    for t in status["topics"]:
        holders = sorted({o for r in t["partition_details"] for o in r["owners"]})
        owned = "  ".join(f"{_short(o)}: {','.join(str(r['partition']) for r in t['partition_details'] if o in r['owners'])}"
                          for o in holders)
        lag = "-" if t["lag"] is None else str(t["lag"])
        lines.append(f"  {t['name']:<46}{t['partitions']:>5}{t['replication_factor']:>5}{t['end_offsets']:>11}"
                     f"{lag:>6}  {owned}")
    return "\n".join(lines)


def _lag(end: int | None, committed: int | None) -> int | None:
    """Records not yet consumed by the group; None when unknown (no commit yet on a non-empty partition)."""
    if end is None:
        return None
    if committed is None:
        return 0 if end == 0 else None
    return max(0, end - committed)


def _short(owner: str) -> str:
    return owner.removeprefix("http://")
