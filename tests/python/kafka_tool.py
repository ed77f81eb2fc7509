"""The stream tests' Kafka client (cli/tests/it/stream.rs): librdkafka through confluent-kafka,
so the messages `fraudlake stream` reads come from a client other than its own, and what it
produces (dead letters, scores) is read back by one too. Prints one JSON document.

Usage:
  kafka_tool.py create-topic BROKERS TOPIC PARTITIONS
  kafka_tool.py produce BROKERS TOPIC FILE [--rate N]
  kafka_tool.py consume BROKERS TOPIC [--timeout SECONDS]

produce: FILE holds one message per line, a JSON object {"key": TEXT or null, "value": TEXT}, or
"value_hex" instead of "value" for bytes that are not UTF-8 (poison messages). Sent in file order
with acks=all; with --rate, at most N messages per second (a stream that keeps arriving while the
consumer is killed and restarted). Prints {"produced", "seconds", "offsets"}: offsets[i] is the
[partition, offset] the broker gave line i.

consume: reads every partition of TOPIC from its first offset up to its end (partition EOF),
with `assign` (no consumer group: no join to wait for). Prints {"count", "messages"}, each
message with partition, offset, key, value (UTF-8, invalid bytes replaced), value_hex and
headers (name -> UTF-8 text).
"""
import json
import os
import sys
import time

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic


def create_topic(brokers, topic, partitions):
    admin = AdminClient({"bootstrap.servers": brokers})
    futures = admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)])
    for future in futures.values():
        future.result(30)
    # The topic is usable once the metadata names all its partitions.
    deadline = time.monotonic() + 30
    while True:
        meta = admin.list_topics(topic=topic, timeout=10).topics.get(topic)
        if meta is not None and meta.error is None and len(meta.partitions) == partitions:
            break
        if time.monotonic() > deadline:
            sys.exit(f"topic {topic}: metadata still shows {meta} after 30 s")
        time.sleep(0.1)
    return {"topic": topic, "partitions": partitions}


def produce(brokers, topic, path, rate):
    producer = Producer({
        "bootstrap.servers": brokers,
        "acks": "all",
        "linger.ms": 5,
        # One request in flight per connection: a retried request cannot overtake the next
        # one, so a key's messages (a customer's transactions) keep their order.
        "max.in.flight.requests.per.connection": 1,
        # Not idempotent: Tansu 0.6 then answers ListOffsets(latest) with 1 (seen with
        # librdkafka 2.16), which would break any client that asks for the end of a partition.
        "enable.idempotence": False,
        "message.timeout.ms": 60000,
    })
    with open(path, encoding="utf-8") as f:
        lines = [json.loads(line) for line in f if line.strip()]
    offsets = [None] * len(lines)
    errors = []

    def delivered(err, msg, i):
        if err is not None:
            errors.append(f"line {i}: {err}")
        else:
            offsets[i] = [msg.partition(), msg.offset()]

    started = time.monotonic()
    for i, line in enumerate(lines):
        if rate > 0:
            due = started + i / rate
            while True:
                now = time.monotonic()
                if now >= due:
                    break
                producer.poll(min(due - now, 0.05))
        value = bytes.fromhex(line["value_hex"]) if "value_hex" in line else line["value"].encode()
        key = line.get("key")
        while True:
            try:
                producer.produce(topic, key=None if key is None else key.encode(), value=value,
                                 on_delivery=lambda err, msg, i=i: delivered(err, msg, i))
                break
            except BufferError:
                producer.poll(0.1)  # the local queue is full: let deliveries drain it
        if i % 1000 == 0:
            producer.poll(0)
    left = producer.flush(120)
    if left or errors or any(o is None for o in offsets):
        sys.exit(f"produce to {topic}: {left} undelivered, errors: {errors[:10]}")
    return {"produced": len(lines), "seconds": time.monotonic() - started, "offsets": offsets}


def consume(brokers, topic, timeout):
    consumer = Consumer({
        "bootstrap.servers": brokers,
        # librdkafka wants a group id even with assign(); nothing is committed to it.
        "group.id": f"kafka-tool-{os.getpid()}",
        "enable.auto.commit": False,
        # The end of a partition comes as an event from the fetch responses. (Tansu 0.6's
        # ListOffsets answer, i.e. get_watermark_offsets, is wrong for batches of several
        # records, so the end is never asked for.)
        "enable.partition.eof": True,
    })
    meta = consumer.list_topics(topic=topic, timeout=10).topics.get(topic)
    if meta is None or meta.error is not None:
        sys.exit(f"topic {topic}: {meta.error if meta else 'absent'}")
    partitions = sorted(meta.partitions)
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
    at_end = set()
    messages = []
    deadline = time.monotonic() + timeout
    while len(at_end) < len(partitions):
        if time.monotonic() > deadline:
            sys.exit(f"topic {topic}: partitions {sorted(set(partitions) - at_end)} not read to "
                     f"their end in {timeout} s ({len(messages)} messages read)")
        for msg in consumer.consume(10000, timeout=0.5):
            err = msg.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    at_end.add(msg.partition())
                    continue
                sys.exit(f"topic {topic}: {err}")
            at_end.discard(msg.partition())
            value = msg.value() or b""
            key = msg.key()
            messages.append({
                "partition": msg.partition(),
                "offset": msg.offset(),
                "key": None if key is None else key.decode("utf-8", "replace"),
                "value": value.decode("utf-8", "replace"),
                "value_hex": value.hex(),
                "headers": {k: (v or b"").decode("utf-8", "replace") for k, v in (msg.headers() or [])},
            })
    consumer.close()
    return {"count": len(messages), "messages": messages}


def main(args):
    command = args[0] if args else ""
    if command == "create-topic" and len(args) == 4:
        return create_topic(args[1], args[2], int(args[3]))
    if command == "produce" and len(args) in (4, 6):
        rate = float(args[5]) if len(args) == 6 and args[4] == "--rate" else 0.0
        return produce(args[1], args[2], args[3], rate)
    if command == "consume" and len(args) in (3, 5):
        timeout = float(args[4]) if len(args) == 5 and args[3] == "--timeout" else 60.0
        return consume(args[1], args[2], timeout)
    sys.exit(__doc__)


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1:])))
    sys.stdout.flush()
    # As read_lake.py: skip interpreter teardown (librdkafka's threads), the work is done.
    os._exit(0)
