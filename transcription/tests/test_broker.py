"""The embedded broker's transport: quick polls while a message is in flight, slow ones when idle, and
messages that are never read half-written.

Each test uses its own queue name: kombu keeps declared bindings in state shared by every connection of a
transport class in one process, so a name reused with a new folder would not be bound there.
"""

import contextlib
import logging
import socket

import pytest
from kombu import Connection, Exchange, Queue

from diary_project import broker
from diary_project.celery import app


@contextlib.contextmanager
def log_messages(name: str):
    """The messages one logger emits, however earlier tests configured logging (a dictConfig can disable
    existing loggers or stop them propagating to pytest's capture)."""
    messages: list[str] = []
    handler = logging.Handler(logging.DEBUG)
    handler.emit = lambda record: messages.append(record.getMessage())
    logger = logging.getLogger(name)
    disabled, logger.disabled = logger.disabled, False
    logger.addHandler(handler)
    try:
        yield messages
    finally:
        logger.removeHandler(handler)
        logger.disabled = disabled


def folder_options(tmp_path, **polling) -> dict:
    folder = tmp_path / "queue"
    folder.mkdir(exist_ok=True)
    return {
        "data_folder_in": str(folder),
        "data_folder_out": str(folder),
        "control_folder": str(tmp_path / "control"),
        "store_processed": False,
        **polling,
    }


@pytest.fixture
def connection(tmp_path):
    options = folder_options(tmp_path, polling_interval=0.5, busy_polling_interval=0.02, busy_seconds=3.0)
    with Connection("filesystem://", transport=broker.FilesystemTransport, transport_options=options) as conn:
        yield conn


def test_the_embedded_default_uses_it():
    with app.connection_for_write() as conn:
        transport = conn.transport
        assert isinstance(transport, broker.FilesystemTransport)
        assert transport.polling_interval == 0.1
        assert transport.busy_polling_interval == 0.01
        assert transport.busy_seconds == 2.0


def test_interval_is_short_while_a_message_is_unacknowledged_and_shortly_after(connection, monkeypatch):
    clock = [1000.0]
    monkeypatch.setattr(broker, "monotonic", lambda: clock[0])
    queue = Queue("steps", Exchange("steps"), "steps")
    transport = connection.transport
    received = []
    with connection.Consumer(queue, callbacks=[lambda body, message: received.append(message)]) as consumer:
        consumer.qos(prefetch_count=1)
        assert transport.current_polling_interval() == 0.5  # idle

        connection.Producer().publish(
            {"step": "transcribe"}, exchange=queue.exchange, routing_key="steps", declare=[queue]
        )
        connection.drain_events(timeout=1)
        assert [m.payload for m in received] == [{"step": "transcribe"}]
        # The task runs for a long time: the interval stays short however long it holds the message.
        clock[0] += 600
        assert transport.current_polling_interval() == 0.02

        received[0].ack()
        clock[0] += 2.9  # the next step is published at the end of the task: still polled quickly
        assert transport.current_polling_interval() == 0.02
        clock[0] += 0.2
        assert transport.current_polling_interval() == 0.5


def test_drain_gives_up_at_its_timeout(connection):
    queue = Queue("empty", Exchange("empty"), "empty")
    with connection.Consumer(queue, callbacks=[lambda body, message: None]):
        with pytest.raises(socket.timeout):
            connection.drain_events(timeout=0.2)


def test_a_half_written_message_is_set_aside_not_fatal(connection, tmp_path):
    queue = Queue("half", Exchange("half"), "half")
    received = []
    with (
        log_messages("diary_project.broker") as logged,
        connection.Consumer(queue, callbacks=[lambda body, message: received.append(body)]),
    ):
        # What kombu's own producer leaves for an instant: the file exists, nothing written yet. Named to sort
        # (and be read) before the real message: names start with the publishing time in ms.
        (tmp_path / "queue" / "0_0000.half.msg").write_bytes(b"")
        connection.Producer().publish({"step": "format"}, exchange=queue.exchange, routing_key="half")
        connection.drain_events(timeout=2)
    assert received == [{"step": "format"}]
    assert any("could not be read" in message for message in logged)
    assert [p.name for p in (tmp_path / "queue").iterdir() if p.name.startswith(".unreadable")] == [
        ".unreadable.0_0000.half.msg"
    ]


def test_messages_published_while_two_consumers_poll_arrive_once_each(tmp_path):
    import threading

    options = folder_options(tmp_path, polling_interval=0.001, busy_polling_interval=0.001)
    folder = tmp_path / "queue"
    queue = Queue("stress", Exchange("stress"), "stress")
    count = 400
    received: list[int] = []
    lock = threading.Lock()
    done = threading.Event()

    def consume() -> None:
        with Connection("filesystem://", transport=broker.FilesystemTransport, transport_options=options) as conn:

            def keep(body, message):
                with lock:
                    received.append(body["n"])
                message.ack()

            with conn.Consumer(queue, callbacks=[keep]):
                while not done.is_set():
                    try:
                        conn.drain_events(timeout=0.05)
                    except TimeoutError:
                        pass

    with Connection("filesystem://", transport=broker.FilesystemTransport, transport_options=options) as conn:
        # Bound before the consumer threads start: threads share kombu's in-process binding state, so a
        # thread could otherwise skip writing a binding another thread has noted but not yet written.
        queue(conn.default_channel).declare()
        consumers = [threading.Thread(target=consume) for _ in range(2)]
        for thread in consumers:
            thread.start()
        producer = conn.Producer()
        for n in range(count):
            producer.publish({"n": n}, exchange=queue.exchange, routing_key="stress")
    for _ in range(200):  # at most 10 s
        with lock:
            if len(received) >= count:
                break
        done.wait(0.05)
    done.set()
    for thread in consumers:
        thread.join(timeout=10)
    # Every message exactly once, none half-read, nothing left behind.
    assert sorted(received) == list(range(count))
    assert list(folder.iterdir()) == []


def test_sqs_channel_treats_a_cut_off_response_as_an_empty_poll():
    from diary_project.broker_sqs import SQSChannel

    channel = SQSChannel.__new__(SQSChannel)  # the method needs no connection for this case
    # What a ReceiveMessage body cut off by a dropped connection parses to: kombu's own channel raises here
    # and never polls again; the count of 0 lets the next poll be scheduled.
    with log_messages("diary_project.broker_sqs") as logged:
        assert channel._on_messages_ready("queue", "diary-transcription", ["<ReceiveMessageResponse"]) == 0
    assert any("polling again" in message for message in logged)
