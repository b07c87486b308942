"""Pattern 2 over messaging: a RabbitMQ RPC worker serving the same Predictor as the REST API.

Requests go to a durable queue; each carries the image bytes, a ``reply_to`` queue and a
``correlation_id``; the worker answers with the prediction JSON (or a JSON error for a bad
image) and acknowledges only after replying, so a crash redelivers instead of losing work.
A message that cannot be answered (not an image, or one that breaks a decoder) is answered with
an error and acknowledged like any other: it can never take the worker down, nor again on
restart.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import pika
from pika.adapters.blocking_connection import BlockingChannel
from pika.spec import Basic, BasicProperties

from kennel.display import redact
from kennel.errors import ConfigError, ServiceError
from kennel.imaging import ImageRejected
from kennel.serve.predlog import PredictionLog, row_of
from kennel.serve.runtime import Predictor

log = logging.getLogger(__name__)

DEFAULT_URL = "amqp://guest:guest@127.0.0.1:5672/%2F"
DEFAULT_QUEUE = "kennel.predict"
LOG_TIMEOUT_S = 30.0  # the most an answer waits for its record to be durable


def check_queue(name: str, what: str = "--queue") -> str:
    """A request queue's name, or a one-line ConfigError: an empty name would have RabbitMQ
    make up one no client knows, and AMQP names are at most 255 bytes, none of them starting
    with RabbitMQ's own ``amq.``."""
    size = len(name.encode())
    if not name:
        raise ConfigError(f"{what}: give a queue name (an empty one is named by RabbitMQ)")
    if size > 255:
        raise ConfigError(f"{what}: at most 255 bytes (AMQP's limit); this one has {size}")
    if name.startswith("amq."):
        raise ConfigError(f"{what}: names starting with 'amq.' are RabbitMQ's own")
    return name


def parameters(url: str, what: str = "the RabbitMQ URL") -> pika.URLParameters:
    """``url`` as pika's connection parameters, or a one-line ConfigError naming ``what`` and
    the URL (never its password): pika itself fails on some with an IndexError."""
    shown = redact(url)
    usage = "use amqp://USER:PASSWORD@HOST:PORT/VHOST"
    if urlsplit(url).scheme not in ("amqp", "amqps"):
        raise ConfigError(f"{what}: {shown!r} is not an AMQP URL; {usage}")
    try:
        return pika.URLParameters(url)
    except (ValueError, IndexError, KeyError, TypeError) as exc:
        raise ConfigError(f"{what}: {shown!r}: {exc}; {usage}") from exc


def _connect(url: str) -> pika.BlockingConnection:
    params = parameters(url)
    try:
        return pika.BlockingConnection(params)
    except pika.exceptions.AMQPError as exc:
        raise ServiceError(
            f"cannot reach RabbitMQ at {redact(url)}: {exc.__class__.__name__}"
        ) from exc


class TooLarge(Exception):
    """A request message over the worker's ``max_bytes``."""


class RpcWorker:
    """``predictor``: a fixed Predictor, or a callable giving the one to use now (a model
    holder following an environment's alias). ``predlog``: where each answer is recorded,
    durably before it is sent, as the REST service records its own (environment
    ``environment``, source ``rpc:QUEUE``, the image kept when ``keep_inputs``)."""

    def __init__(
        self,
        predictor: Predictor | Callable[[], Predictor],
        *,
        url: str = DEFAULT_URL,
        queue: str = DEFAULT_QUEUE,
        prefetch: int = 16,
        predlog: PredictionLog | None = None,
        environment: str = "rpc",
        keep_inputs: bool = False,
        max_bytes: int = 10 * 1024 * 1024,
    ) -> None:
        self.served: Callable[[], Predictor] = (
            (lambda: predictor) if isinstance(predictor, Predictor) else predictor
        )
        self.predlog = predlog
        self.environment = environment
        self.keep_inputs = keep_inputs
        self.url = url
        self.queue = queue
        self.prefetch = prefetch
        # a message over it is answered too_large and kept nowhere, as the REST service
        # answers 413 over serve.max_upload_bytes (RabbitMQ itself takes up to 128 MB)
        self.max_bytes = max_bytes
        self.handled = 0
        self.rejected = 0  # answered with an error (bad image, or a message that broke the model)
        self._stop = threading.Event()
        self._ready = threading.Event()

    def _on_request(
        self, channel: BlockingChannel, method: Basic.Deliver, props: BasicProperties, body: bytes
    ) -> None:
        source = f"rpc:{self.queue}"
        try:
            if len(body) > self.max_bytes:
                raise TooLarge(f"message of {len(body)} bytes exceeds {self.max_bytes} bytes")
            prediction = self.served().predict_one(body)
            if self.predlog is not None:  # answered only once the record is on disk
                self.predlog.add(
                    row_of(
                        prediction,
                        environment=self.environment,
                        source=source,
                        input_sha256=hashlib.sha256(body).hexdigest(),
                        data=body if self.keep_inputs else None,
                    )
                ).result(LOG_TIMEOUT_S)
            answer: dict[str, Any] = prediction.as_dict()
        except (ImageRejected, TooLarge) as exc:
            error = "too_large" if isinstance(exc, TooLarge) else "invalid_image"
            answer = {"error": error, "detail": str(exc)}
            if self.predlog is not None:
                self.predlog.reject(environment=self.environment, source=source, reason=str(exc))
        except Exception as exc:  # a poison message: answered and acknowledged, never retried
            log.exception("request %s could not be answered", props.correlation_id)
            answer = {"error": "internal", "detail": f"{exc.__class__.__name__}: {exc}"}
        self.rejected += "error" in answer
        if props.reply_to:
            channel.basic_publish(
                exchange="",
                routing_key=props.reply_to,
                properties=pika.BasicProperties(
                    correlation_id=props.correlation_id, content_type="application/json"
                ),
                body=json.dumps(answer).encode(),
            )
        channel.basic_ack(delivery_tag=method.delivery_tag)
        self.handled += 1

    def run(self, on_ready: Callable[[], None] | None = None) -> None:
        """Consume until ``stop()``; reconnects are left to the supervisor (systemd, k8s), so
        a broker that closes the connection or refuses the queue ends it with a one-line
        ServiceError. ``on_ready``: called once the worker consumes."""
        connection = _connect(self.url)
        try:
            channel = connection.channel()
            try:
                channel.queue_declare(self.queue, durable=True)
            except pika.exceptions.ChannelClosedByBroker as exc:
                hint = (  # 406 PRECONDITION_FAILED; 403 ACCESS_REFUSED (a user's rights) says it
                    " (a queue of that name exists with other settings: name another with --queue)"
                    if exc.reply_code == 406
                    else ""
                )
                raise ServiceError(
                    f"RabbitMQ refuses the queue {self.queue!r}: {exc.reply_text}{hint}"
                ) from exc
            channel.basic_qos(prefetch_count=self.prefetch)
            channel.basic_consume(self.queue, self._on_request)
            self._ready.set()
            if on_ready is not None:
                on_ready()
            while not self._stop.is_set():
                connection.process_data_events(time_limit=0.2)
        except (
            pika.exceptions.ConnectionClosedByBroker,
            pika.exceptions.AMQPConnectionError,
        ) as exc:
            raise ServiceError(
                f"RabbitMQ at {redact(self.url)} closed the connection: "
                f"{exc.__class__.__name__} {exc}".rstrip()
            ) from exc
        finally:
            if connection.is_open:
                connection.close()

    def wait_ready(self, timeout: float = 10.0) -> bool:
        return self._ready.wait(timeout)

    def stop(self) -> None:
        self._stop.set()


class RpcClient:
    """Send images to the worker and wait for each answer (correlated by id)."""

    def __init__(self, url: str = DEFAULT_URL, queue: str = DEFAULT_QUEUE) -> None:
        self.queue = queue
        self.connection = _connect(url)
        self.channel = self.connection.channel()
        self.channel.queue_declare(queue, durable=True)
        self.callback_queue = self.channel.queue_declare("", exclusive=True).method.queue
        self.answers: dict[str, dict[str, Any]] = {}
        self.channel.basic_consume(self.callback_queue, self._on_answer, auto_ack=True)

    def _on_answer(
        self, _ch: BlockingChannel, _m: Basic.Deliver, props: BasicProperties, body: bytes
    ) -> None:
        self.answers[str(props.correlation_id)] = json.loads(body)

    def predict(self, image: bytes, timeout: float = 30.0) -> dict[str, Any]:
        correlation = uuid.uuid4().hex
        self.channel.basic_publish(
            exchange="",
            routing_key=self.queue,
            body=image,
            properties=pika.BasicProperties(
                reply_to=self.callback_queue, correlation_id=correlation, delivery_mode=2
            ),
        )
        self.connection.process_data_events(time_limit=0)
        waited = 0.0
        while correlation not in self.answers:
            self.connection.process_data_events(time_limit=0.05)
            waited += 0.05
            if waited > timeout:
                raise ServiceError(f"no RPC answer within {timeout:.0f}s")
        return self.answers.pop(correlation)

    def close(self) -> None:
        if self.connection.is_open:
            self.connection.close()
