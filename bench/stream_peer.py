"""Section n of bench/run.sh: what a user would otherwise run to land a Kafka topic of
transactions in Delta, and the producer that fills the topic for both sides.

  stream_peer.py produce BROKERS TOPIC HANDBOOK.parquet [--partitions 3]
      Creates TOPIC (when absent) and produces every handbook transaction to it, in event-time
      order, keyed by customer_id, as `fraudlake stream` reads them: the JSON body of POST /score
      (TRANSACTION_ID, TX_DATETIME, CUSTOMER_ID, TERMINAL_ID, TX_AMOUNT -> tx_id, tx_ts,
      customer_id, terminal_id, amount), acks=all.

  stream_peer.py consume BROKERS TOPIC TABLE [--batch N]
      The peer: a confluent-kafka (librdkafka) consumer with every partition assigned (no
      group, so no join to wait for), N messages per batch (default 20000, fraudlake stream's
      --batch-rows); each message validated roughly as fraudlake validates POST /score (a JSON
      object with exactly the five fields, ids >= 0, amount finite in [0, 1e9], tx_ts RFC 3339
      from 2000-01-01 to now + 1 day; refused ones are counted, not stored); each batch
      appended to the Delta table TABLE with the Python `deltalake` package
      (write_deltalake mode="append"), in fraudlake's `transactions` schema, partitioned by
      tx_date like it. It stops at the end of every partition.

Both print one JSON line: produce {"messages", "seconds", "messages_per_s"}; consume
{"messages", "rows", "rejected", "commits", "seconds", "messages_per_s", "rows_per_s"}, the
seconds from the assignment to the last commit. What the peer does not do that fraudlake does:
exactly once (offsets in the Delta commit; a crash between two appends here re-reads and
duplicates, or with committed offsets drops), tx_ids already in the lake skipped, refused
messages stored with their reason, metrics.
"""
import datetime as dt
import json
import math
import os
import sys
import time

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

FIELDS = frozenset(("tx_id", "tx_ts", "customer_id", "terminal_id", "amount"))
EARLIEST = dt.datetime(2000, 1, 1, tzinfo=dt.timezone.utc)
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
MICROS = dt.timedelta(microseconds=1)
SCHEMA = pa.schema([
    ("tx_id", pa.int64()),
    ("tx_ts", pa.timestamp("us", tz="UTC")),
    ("customer_id", pa.int64()),
    ("terminal_id", pa.int64()),
    ("amount", pa.float64()),
    ("tx_date", pa.date32()),
    ("ingested_at", pa.timestamp("us", tz="UTC")),
])


def option(args, name, default):
    """The value after `name` in args (removed from them), else default."""
    if name in args:
        i = args.index(name)
        value = args[i + 1]
        del args[i:i + 2]
        return value
    return default


def ensure_topic(brokers, topic, partitions):
    admin = AdminClient({"bootstrap.servers": brokers})
    if topic not in admin.list_topics(timeout=10).topics:
        for future in admin.create_topics(
                [NewTopic(topic, num_partitions=partitions, replication_factor=1)]).values():
            future.result(30)
    deadline = time.monotonic() + 30
    while len(admin.list_topics(topic=topic, timeout=10).topics[topic].partitions) < partitions:
        if time.monotonic() > deadline:
            sys.exit(f"topic {topic} has not {partitions} partitions after 30 s")
        time.sleep(0.1)


def produce(brokers, topic, path, partitions):
    ensure_topic(brokers, topic, partitions)
    table = pq.read_table(path, columns=["TRANSACTION_ID", "TX_DATETIME", "CUSTOMER_ID",
                                         "TERMINAL_ID", "TX_AMOUNT"])
    table = table.sort_by([("TX_DATETIME", "ascending"), ("TRANSACTION_ID", "ascending")])
    # The handbook's times are UTC without a zone; whole seconds.
    stamps = pc.strftime(table["TX_DATETIME"], format="%Y-%m-%dT%H:%M:%SZ").to_pylist()
    ids = table["TRANSACTION_ID"].to_pylist()
    customers = table["CUSTOMER_ID"].to_pylist()
    terminals = table["TERMINAL_ID"].to_pylist()
    amounts = table["TX_AMOUNT"].to_pylist()
    producer = Producer({
        "bootstrap.servers": brokers,
        "acks": "all",
        "linger.ms": 5,
        # One request in flight: a retry cannot reorder a customer's transactions. Not
        # idempotent: Tansu 0.6 then reports wrong partition ends (ListOffsets).
        "max.in.flight.requests.per.connection": 1,
        "enable.idempotence": False,
        "queue.buffering.max.messages": 500000,
    })
    failed = []

    def delivered(err, _msg):
        if err is not None:
            failed.append(str(err))

    started = time.monotonic()
    for i in range(len(ids)):
        value = (f'{{"tx_id":{ids[i]},"tx_ts":"{stamps[i]}","customer_id":{customers[i]},'
                 f'"terminal_id":{terminals[i]},"amount":{amounts[i]!r}}}')
        while True:
            try:
                producer.produce(topic, key=str(customers[i]), value=value, on_delivery=delivered)
                break
            except BufferError:
                producer.poll(0.05)
        if i % 10000 == 0:
            producer.poll(0)
    left = producer.flush(300)
    seconds = time.monotonic() - started
    if left or failed:
        sys.exit(f"{left} messages undelivered; errors: {failed[:5]}")
    return {"messages": len(ids), "seconds": seconds, "messages_per_s": len(ids) / seconds}


def validate(value, now_us):
    """The message as a row (tx_id, tx_ts_us, customer_id, terminal_id, amount), or None."""
    try:
        d = json.loads(value, parse_constant=lambda c: float("nan"))
    except (ValueError, UnicodeDecodeError, TypeError):
        return None
    if not isinstance(d, dict) or d.keys() != FIELDS:
        return None
    ids = (d["tx_id"], d["customer_id"], d["terminal_id"])
    if any(type(v) is not int or v < 0 for v in ids):
        return None
    amount = d["amount"]
    if type(amount) not in (int, float) or not math.isfinite(amount) or not 0 <= amount <= 1e9:
        return None
    if not isinstance(d["tx_ts"], str):
        return None
    try:
        ts = dt.datetime.fromisoformat(d["tx_ts"].strip())
    except ValueError:
        return None
    if ts.tzinfo is None:
        return None
    ts_us = (ts - EPOCH) // MICROS
    if ts < EARLIEST or ts_us > now_us + 86_400_000_000:
        return None
    return ids[0], ts_us, ids[1], ids[2], float(amount)


def write_batch(table_uri, rows):
    from deltalake import write_deltalake
    tx_id, ts_us, customer, terminal, amount = (list(c) for c in zip(*rows))
    now_us = (dt.datetime.now(dt.timezone.utc) - EPOCH) // MICROS
    batch = pa.table([
        pa.array(tx_id, pa.int64()),
        pa.array(ts_us, pa.int64()).cast(pa.timestamp("us", tz="UTC")),
        pa.array(customer, pa.int64()),
        pa.array(terminal, pa.int64()),
        pa.array(amount, pa.float64()),
        pa.array([t // 86_400_000_000 for t in ts_us], pa.int32()).cast(pa.date32()),
        pa.array([now_us] * len(rows), pa.int64()).cast(pa.timestamp("us", tz="UTC")),
    ], schema=SCHEMA)
    write_deltalake(table_uri, batch, mode="append", partition_by=["tx_date"])


def consume(brokers, topic, table_uri, batch_size):
    consumer = Consumer({
        "bootstrap.servers": brokers,
        "group.id": f"stream-peer-{os.getpid()}",  # required by librdkafka; nothing committed
        "enable.auto.commit": False,
        # The end of each partition, from the fetch responses.
        "enable.partition.eof": True,
    })
    meta = consumer.list_topics(topic=topic, timeout=10).topics.get(topic)
    if meta is None or meta.error is not None:
        sys.exit(f"topic {topic}: {meta.error if meta else 'absent'}")
    partitions = sorted(meta.partitions)
    started = time.monotonic()
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
    at_end, rows, messages, written, rejected, commits = set(), [], 0, 0, 0, 0
    now_us = (dt.datetime.now(dt.timezone.utc) - EPOCH) // MICROS
    while len(at_end) < len(partitions):
        for msg in consumer.consume(min(10000, batch_size), timeout=0.5):
            err = msg.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    at_end.add(msg.partition())
                    continue
                sys.exit(f"{topic}: {err}")
            at_end.discard(msg.partition())
            messages += 1
            row = validate(msg.value() or b"", now_us)
            if row is None:
                rejected += 1
            else:
                rows.append(row)
            if len(rows) >= batch_size:
                write_batch(table_uri, rows)
                written, commits, rows = written + len(rows), commits + 1, []
    if rows:
        write_batch(table_uri, rows)
        written, commits = written + len(rows), commits + 1
    seconds = time.monotonic() - started
    consumer.close()
    return {"messages": messages, "rows": written, "rejected": rejected, "commits": commits,
            "seconds": seconds, "messages_per_s": messages / seconds,
            "rows_per_s": written / seconds}


def main(args):
    command = args[:1]
    if command == ["produce"]:
        partitions = int(option(args, "--partitions", "3"))
        if len(args) == 4:
            return produce(args[1], args[2], args[3], partitions)
    if command == ["consume"]:
        batch = int(option(args, "--batch", "20000"))
        if len(args) == 4:
            return consume(args[1], args[2], args[3], batch)
    sys.exit(__doc__)


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1:])))
    sys.stdout.flush()
    # Skip interpreter teardown (librdkafka's and deltalake's native threads): the work is done.
    os._exit(0)
