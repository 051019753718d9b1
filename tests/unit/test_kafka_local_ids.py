"""Cluster ids for kafka-storage format."""
from streams.dev.local_broker import _random_cluster_id


def test_a_cluster_id_never_starts_with_a_dash_which_kafka_storage_would_take_for_an_option():
    ids = [_random_cluster_id() for _ in range(5000)]  # about 80 would start with "-" unguarded
    assert not [i for i in ids if i.startswith("-")]
    assert all(len(i) == 22 for i in ids)
