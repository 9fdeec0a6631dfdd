"""The embedded broker's transport: quick polls while a message is in flight, slow ones when idle."""

import socket

import pytest
from kombu import Connection, Exchange, Queue

from diary_project import broker
from diary_project.celery import app


@pytest.fixture
def connection(tmp_path):
    folder = tmp_path / "queue"
    folder.mkdir()
    options = {
        "data_folder_in": str(folder),
        "data_folder_out": str(folder),
        "control_folder": str(tmp_path / "control"),
        "store_processed": False,
        "polling_interval": 0.5,
        "busy_polling_interval": 0.02,
        "busy_seconds": 3.0,
    }
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
