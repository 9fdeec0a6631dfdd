"""The production broker: kombu's SQS transport, kept polling after a malformed receive.

kombu's SQS consumer re-arms its next ReceiveMessage from the callback of the previous one. When a
connection drops mid-response, the cut-off body parses as a list instead of a dict and kombu's
`_on_messages_ready` raises: the callback chain ends, the worker logs "Error in timer" once and then stays
alive consuming nothing (found by the SQS restart fault test). Here such a response counts as an empty
poll, so the next one is scheduled as usual.
"""

from __future__ import annotations

import logging
from typing import Any

from kombu.transport import SQS

logger = logging.getLogger(__name__)


class SQSChannel(SQS.Channel):
    def _on_messages_ready(self, queue: Any, qname: str, messages: Any) -> int:
        if not isinstance(messages, dict):
            logger.warning(
                "Unreadable SQS ReceiveMessage response for %s (%s); polling again",
                qname,
                type(messages).__name__,
            )
            return 0
        return super()._on_messages_ready(queue, qname, messages)


class SQSTransport(SQS.Transport):
    Channel = SQSChannel
