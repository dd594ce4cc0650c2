"""The Kafka side of the relay: the producer it publishes with (bounded, idempotent),
the error a round raises when Kafka did not acknowledge it, and the backoff between
failed rounds."""

from __future__ import annotations

import contextlib
import random
from collections.abc import Callable, Sequence
from typing import Any

from kafka import KafkaProducer
from kafka.net.compat import KafkaNetClient

# Bounded so an unreachable broker fails a round quickly instead of hanging the thread.
PRODUCER_SETTINGS: dict[str, Any] = {
    "client_id": "coffeebuddy-relay",
    "enable_idempotence": True,
    "acks": "all",
    "max_block_ms": 3000,
    "request_timeout_ms": 5000,
    "delivery_timeout_ms": 15000,
    "linger_ms": 5,
    "retry_backoff_ms": 200,
    "reconnect_backoff_max_ms": 2000,
    "bootstrap_timeout_ms": 3000,
}
# Longer than any record may live in the producer; a flush past it means a stuck client.
FLUSH_LIMIT_SECONDS = PRODUCER_SETTINGS["delivery_timeout_ms"] / 1000 + 5

ProducerFactory = Callable[[Sequence[str]], Any]


def make_producer(bootstrap_servers: Sequence[str], **overrides: Any) -> Any:
    clients: list[Any] = []

    def client(**configs: Any) -> Any:
        clients.append(KafkaNetClient(**configs))
        return clients[-1]

    try:
        return KafkaProducer(
            bootstrap_servers=list(bootstrap_servers),
            kafka_client=client,
            **{**PRODUCER_SETTINGS, **overrides},
        )
    except Exception:
        # A failed bootstrap leaves the client's sockets open; with the broker down for
        # hours that would be one leak per retry.
        for made in clients:
            with contextlib.suppress(Exception):
                made.close()
        raise


class PublishFailed(Exception):
    """Kafka did not acknowledge every event of a round."""


class Backoff:
    """Exponential delay with jitter, capped."""

    def __init__(self, base: float = 0.5, cap: float = 30.0) -> None:
        self.base = base
        self.cap = cap
        self.failures = 0

    def next(self) -> float:
        self.failures += 1
        delay = min(self.cap, self.base * 2.0 ** min(self.failures - 1, 30))
        # Jitter keeps replicas that failed together from retrying together.
        return min(self.cap, delay * random.uniform(0.5, 1.5))

    def reset(self) -> None:
        self.failures = 0


def error_name(exc: BaseException) -> str:
    # Exception messages can quote payloads; the type (and a cause's type) is enough.
    cause = exc.__cause__
    if isinstance(exc, PublishFailed) and cause is not None:
        return type(cause).__name__
    return type(exc).__name__
