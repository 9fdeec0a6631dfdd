"""The embedded default's broker: kombu's filesystem transport, polling quickly while work is in flight.

kombu's virtual transports sleep a fixed `polling_interval` whenever the queue is empty or the worker
is full. A job's chain publishes its next step just before the current step is acknowledged, so with
a fixed interval every one of the five hops waits on average about one interval (make bench: 0.45 s of
a one-minute job's 2.8 s at 0.1 s). This transport polls every `busy_polling_interval` while this
connection holds an unacknowledged message and for `busy_seconds` after it last did; idle, it polls at
`polling_interval`. While a task runs, a poll is only a check of the prefetch count (no directory
listing); after it, a few hundred listings of one folder at most.
"""

from __future__ import annotations

from queue import Empty
from time import monotonic, sleep
from typing import Any

from kombu.transport import filesystem


def _holds_unacked(channel: Any) -> bool:
    qos = getattr(channel, "_qos", None)  # created on first use; none yet means nothing delivered
    # kombu's QoS keeps a delivery in `_delivered` until its acknowledgement is flushed from `_dirty`.
    return qos is not None and len(qos._delivered) > len(qos._dirty)


class FilesystemTransport(filesystem.Transport):
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
