"""The embedded default's broker: kombu's filesystem transport, polling quickly while work is in flight.

kombu's virtual transports sleep a fixed `polling_interval` whenever the queue is empty or the worker
is full. A job's chain publishes its next step just before the current step is acknowledged, so with
a fixed interval every one of the five hops waits on average about one interval (make bench: 0.45 s of
a one-minute job's 2.8 s at 0.1 s). This transport polls every `busy_polling_interval` while this
connection holds an unacknowledged message and for `busy_seconds` after it last did; idle, it polls at
`polling_interval`. While a task runs, a poll is only a check of the prefetch count (no directory
listing); after it, a few hundred listings of one folder at most.

It also closes races in kombu's own transport that polling this fast made frequent (make bench: a
worker died mid-run). kombu creates a message file, then locks and writes it; a consumer moves and reads
files without the lock, so it can read an empty file, and its JSON error stops the Celery worker. Here a
message is written under a hidden name and renamed into place (readers see whole files only), a consumer
claims a file by renaming it within the folder (two consumers never both take it; no copy across file
systems), and a file that still cannot be decoded is moved aside and logged, never fatal. An exchange's
routing table, created empty and then written by kombu, is created whole the same way.
"""

from __future__ import annotations

import contextlib
import logging
import os
import uuid
from queue import Empty
from time import monotonic, sleep
from typing import Any

from kombu.exceptions import ChannelError
from kombu.transport import filesystem
from kombu.utils.json import dumps, loads

logger = logging.getLogger(__name__)


def _holds_unacked(channel: Any) -> bool:
    qos = getattr(channel, "_qos", None)  # created on first use; none yet means nothing delivered
    # kombu's QoS keeps a delivery in `_delivered` until its acknowledgement is flushed from `_dirty`.
    return qos is not None and len(qos._delivered) > len(qos._dirty)


class FilesystemChannel(filesystem.Channel):
    def _put(self, queue: str, payload: Any, **kwargs: Any) -> None:
        # kombu's name (time first, so listing order is publishing order); written hidden, then renamed.
        name = f"{round(monotonic() * 1000)}_{uuid.uuid4()}.{queue}.msg"
        final = os.path.join(self.data_folder_out, name)
        hidden = os.path.join(self.data_folder_out, f".{name}.{os.getpid()}.tmp")
        try:
            with open(hidden, "wb") as out:
                out.write(dumps(payload).encode())
            os.replace(hidden, final)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.unlink(hidden)
            raise ChannelError(f"Cannot add file {final!r} to directory") from exc

    def _get(self, queue: str) -> Any:
        wanted = f"{queue}.msg"
        for name in sorted(os.listdir(self.data_folder_in)):
            if name.startswith(".") or name.partition(".")[2] != wanted:
                continue
            path = os.path.join(self.data_folder_in, name)
            claimed = os.path.join(self.data_folder_in, f".claimed.{os.getpid()}.{uuid.uuid4()}.{name}")
            try:
                os.rename(path, claimed)  # atomic: exactly one consumer gets it
            except OSError:
                continue  # another consumer took it
            try:
                with open(claimed, "rb") as message:
                    payload = message.read()
                result = loads(payload.decode())
            except (OSError, ValueError) as exc:
                aside = os.path.join(self.data_folder_in, f".unreadable.{name}")
                with contextlib.suppress(OSError):
                    os.replace(claimed, aside)
                logger.error("Broker message %s could not be read (%s); moved to %s", name, exc, aside)
                continue
            if self.store_processed:
                os.replace(claimed, os.path.join(self.processed_folder, name))
            else:
                os.unlink(claimed)
            return result
        raise Empty()

    def _queue_bind(self, exchange: str, routing_key: str, pattern: str, queue: str) -> None:
        # kombu creates an exchange's table empty, then writes it: a publisher routing through it in between
        # reads "" and fails. Create it whole (a hard link fails if another process created it first).
        table = self._exchange_file(exchange)
        if not table.exists():
            self.control_folder.mkdir(exist_ok=True)
            row = filesystem.exchange_queue_t(routing_key or "", pattern or "", queue or "")
            hidden = table.with_name(f".{table.name}.{os.getpid()}.{uuid.uuid4()}.tmp")
            try:
                hidden.write_bytes(dumps([row]).encode())
                os.link(hidden, table)
                return
            except OSError:
                pass  # created meanwhile (or no hard links here): kombu's locked update
            finally:
                hidden.unlink(missing_ok=True)
        super()._queue_bind(exchange, routing_key, pattern, queue)


class FilesystemTransport(filesystem.Transport):
    Channel = FilesystemChannel
    busy_polling_interval = 0.01
    busy_seconds = 2.0

    def __init__(self, client: Any, **kwargs: Any) -> None:
        super().__init__(client, **kwargs)
        options = client.transport_options
        self.busy_polling_interval = float(options.get("busy_polling_interval", self.busy_polling_interval))
        self.busy_seconds = float(options.get("busy_seconds", self.busy_seconds))
        self._busy_until = 0.0

    def current_polling_interval(self) -> float:
        """The sleep before the next poll: short while a message is in flight or just was."""
        now = monotonic()
        if any(_holds_unacked(channel) for channel in self.channels):
            self._busy_until = now + self.busy_seconds
        idle = self.polling_interval or 0.0
        return min(self.busy_polling_interval, idle) if now < self._busy_until else idle

    def drain_events(self, connection: Any, timeout: float | None = None) -> None:
        # kombu's loop (virtual.Transport.drain_events) with the interval chosen at every empty poll.
        started = monotonic()
        get = self.cycle.get
        while True:
            try:
                get(self._deliver, timeout=timeout)
            except Empty:
                if timeout is not None and monotonic() - started >= timeout:
                    raise TimeoutError() from None
                interval = self.current_polling_interval()
                sleep(min(interval, timeout) if timeout else interval)
            else:
                self._busy_until = monotonic() + self.busy_seconds
                break
