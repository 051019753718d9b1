"""CPU per record of a transactional producer with and without a delivery report per record: what
`Transactions._transact` saves by asking for one only on each changelog's last record.

Usage: python bench/results/s12/delivery_reports.py [bootstrap] (a broker started by `bank kafka start`)."""
import statistics
import sys
import time

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

BOOTSTRAP = sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1:9900"
TOPIC, RECORDS, TRANSACTIONS, ROUNDS = "bench.delivery-reports", 2000, 30, 5

admin = AdminClient({"bootstrap.servers": BOOTSTRAP})
admin.create_topics([NewTopic(TOPIC, 4, 1)])
for _ in range(100):  # until every partition has a leader
    topic = admin.list_topics(timeout=10).topics.get(TOPIC)
    if topic is not None and topic.error is None and len(topic.partitions) == 4 and all(
            p.leader >= 0 for p in topic.partitions.values()):
        break
    time.sleep(0.2)
producer = Producer({"bootstrap.servers": BOOTSTRAP, "transactional.id": "bench-delivery-reports",
                     "linger.ms": 5, "compression.type": "none"})
producer.init_transactions(30)
value = b"x" * 120  # about a deposit event's size


def run(report: bool) -> float:
    """Process CPU (every thread, librdkafka's included) per record, in microseconds."""
    last = {}

    def delivered(err, msg):
        last[msg.topic()] = msg.offset()
    started = time.process_time()
    for _ in range(TRANSACTIONS):
        producer.begin_transaction()
        for i in range(RECORDS):
            if report:
                producer.produce(TOPIC, key=b"k%d" % i, value=value, partition=i % 4, on_delivery=delivered)
            else:
                producer.produce(TOPIC, key=b"k%d" % i, value=value, partition=i % 4)
        producer.flush(30)
        producer.commit_transaction(30)
    return (time.process_time() - started) / (RECORDS * TRANSACTIONS) * 1e6


figures = {True: [], False: []}
for _ in range(ROUNDS):
    for report in (True, False):  # interleaved
        figures[report].append(run(report))
for report, cpu in figures.items():
    print(f"{'a report per record' if report else 'no reports':20s} cpu µs/record "
          f"median {statistics.median(cpu):.2f}  runs {', '.join(f'{c:.2f}' for c in cpu)}")
print(f"ratio (no reports / a report each): {statistics.median(figures[False]) / statistics.median(figures[True]):.2f}")
