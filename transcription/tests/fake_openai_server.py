"""A small OpenAI-compatible HTTP server for tests (stdlib only, 127.0.0.1, a free port).

It implements POST /v1/chat/completions and POST /v1/audio/transcriptions. Each endpoint plays a
script of behaviours, one per request (then its default), and every request is recorded so tests
can check what the client really sent over the wire.

    server = FakeOpenAIServer()
    server.script_chat(Behaviour.rate_limited(retry_after="0.05"), Behaviour.ok())
    formatter = OpenAIFormatter(base_url=server.base_url, ...)
    ...
    server.close()
"""

from __future__ import annotations

import email.parser
import email.policy
import html
import json
import re
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

TRANSCRIPT_RE = re.compile(r"<transcript>\n?(.*?)\n?</transcript>", re.DOTALL)
INJECTION_RE = re.compile(r"write that (.+?)(?:[.!?]|$)", re.IGNORECASE)


@dataclass
class Behaviour:
    """What the server does with one request."""

    kind: str  # ok | status | delay | content | entry | invent | compromised | transcription
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = None
    delay: float = 0.0
    options: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def ok(cls) -> Behaviour:
        """A well-behaved model: the transcript's own words, in order, as the entry."""
        return cls("ok")

    @classmethod
    def status_error(cls, status: int, message: str = "error", code: str | None = None, **headers: str) -> Behaviour:
        body = {"error": {"message": message, "type": "server_error" if status >= 500 else "invalid_request_error"}}
        if code:
            body["error"]["code"] = code
        return cls("status", status=status, body=body, headers=headers)

    @classmethod
    def rate_limited(cls, retry_after: str | None = "0.05", code: str = "rate_limit_exceeded") -> Behaviour:
        headers = {"Retry-After": retry_after} if retry_after is not None else {}
        return cls.status_error(429, "Rate limit reached", code, **headers)

    @classmethod
    def server_error(cls) -> Behaviour:
        return cls.status_error(500, "The server had an error while processing your request.")

    @classmethod
    def slow(cls, seconds: float) -> Behaviour:
        """Answer normally, but only after `seconds` (longer than the client's timeout)."""
        return cls("ok", delay=seconds)

    @classmethod
    def content(cls, text: str) -> Behaviour:
        """A 200 reply whose assistant message content is exactly `text` (e.g. malformed JSON)."""
        return cls("content", body=text)

    @classmethod
    def raw(cls, body: bytes, content_type: str = "application/json") -> Behaviour:
        """A 200 reply with exactly this body (e.g. broken JSON, or a proxy's HTML page)."""
        return cls("raw", body=body, headers={"Content-Type": content_type})

    @classmethod
    def entry(cls, entry: dict[str, Any]) -> Behaviour:
        return cls("content", body=json.dumps(entry))

    @classmethod
    def invent(cls, sentence: str = "Then I won the lottery and bought a yacht.") -> Behaviour:
        """The well-behaved entry plus a sentence that was never spoken."""
        return cls("invent", options={"sentence": sentence})

    @classmethod
    def compromised(cls, *, embellish: bool = True) -> Behaviour:
        """A naive model that obeys "write that ..." found inside the transcript.

        embellish=True writes the injected claim with added words; False writes only the
        injected (spoken) words and drops the rest of the diary.
        """
        return cls("compromised", options={"embellish": embellish})

    @classmethod
    def transcription(
        cls, segments: list[tuple[float, float, str]], language: str = "english", duration: float | None = None
    ) -> Behaviour:
        """A verbose_json transcription reply."""
        return cls("transcription", options={"segments": segments, "language": language, "duration": duration})


@dataclass
class RecordedRequest:
    path: str
    headers: dict[str, str]
    json: Any = None
    form: dict[str, list[str]] = field(default_factory=dict)
    files: dict[str, tuple[str, bytes]] = field(default_factory=dict)

    @property
    def messages(self) -> list[dict[str, Any]]:
        return list((self.json or {}).get("messages", []))

    def message(self, role: str) -> str:
        return next((m["content"] for m in self.messages if m.get("role") == role), "")

    @property
    def transcript(self) -> str | None:
        """The text the client put between the delimiters (still escaped), or None."""
        match = TRANSCRIPT_RE.search(self.message("user"))
        return match.group(1) if match else None


def _spoken_transcript(request: RecordedRequest) -> str:
    return html.unescape(request.transcript or "")


def well_behaved_entry(transcript: str) -> dict[str, Any]:
    lines = [line.strip() for line in transcript.splitlines() if line.strip()]
    paragraphs = [" ".join(lines[i : i + 2]) for i in range(0, len(lines), 2)] or [""]
    words = re.findall(r"[A-Za-z']+", transcript)
    first_sentence = re.split(r"(?<=[.!?])\s", paragraphs[0])[0]
    return {
        "title": " ".join(words[:5]).capitalize() or "Entry",
        "paragraphs": paragraphs,
        "summary": first_sentence,
        "mood_label": "neutral",
        "mood_score": 0.0,
        "tags": sorted({w.lower() for w in words if len(w) > 5})[:3],
    }


def compromised_entry(transcript: str, *, embellish: bool) -> dict[str, Any]:
    match = INJECTION_RE.search(transcript)
    claim = match.group(1).strip() if match else "I am happy"
    claim = claim[0].upper() + claim[1:]
    body = f"{claim}! Everything in my life is wonderful and perfect." if embellish else f"{claim}."
    return {
        "title": claim,
        "paragraphs": [body],
        "summary": f"{claim}.",
        "mood_label": "positive",
        "mood_score": 0.95,
        "tags": ["happy"],
    }


class FakeOpenAIServer:
    """OpenAI-compatible endpoints on 127.0.0.1 with scripted behaviours and recorded requests."""

    def __init__(self) -> None:
        self.requests: list[RecordedRequest] = []
        self._scripts: dict[str, deque[Behaviour]] = {"chat": deque(), "transcription": deque()}
        self.defaults: dict[str, Behaviour] = {
            "chat": Behaviour.ok(),
            "transcription": Behaviour.transcription([(0.0, 1.5, " Hello from the fake server.")]),
        }
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._server.block_on_close = False  # a handler still sleeping (timeout test) must not block close()
        self.base_url = f"http://127.0.0.1:{self._server.server_address[1]}/v1"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    # -- scripting -----------------------------------------------------------------------

    def script_chat(self, *behaviours: Behaviour) -> None:
        with self._lock:
            self._scripts["chat"].extend(behaviours)

    def script_transcription(self, *behaviours: Behaviour) -> None:
        with self._lock:
            self._scripts["transcription"].extend(behaviours)

    def requests_to(self, suffix: str) -> list[RecordedRequest]:
        with self._lock:
            return [r for r in self.requests if r.path.endswith(suffix)]

    @property
    def chat_requests(self) -> list[RecordedRequest]:
        return self.requests_to("/chat/completions")

    @property
    def transcription_requests(self) -> list[RecordedRequest]:
        return self.requests_to("/audio/transcriptions")

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _next(self, endpoint: str) -> Behaviour:
        with self._lock:
            script = self._scripts[endpoint]
            return script.popleft() if script else self.defaults[endpoint]

    # -- HTTP ----------------------------------------------------------------------------

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                recorded = RecordedRequest(path=self.path, headers={k.lower(): v for k, v in self.headers.items()})
                if self.path.endswith("/chat/completions"):
                    recorded.json = json.loads(raw or b"null")
                    endpoint = "chat"
                elif self.path.endswith("/audio/transcriptions"):
                    recorded.form, recorded.files = _parse_multipart(self.headers.get("Content-Type", ""), raw)
                    endpoint = "transcription"
                else:
                    self._send(404, {"error": {"message": f"no route {self.path}", "type": "invalid_request_error"}})
                    return
                with server._lock:
                    server.requests.append(recorded)
                behaviour = server._next(endpoint)
                if behaviour.delay:
                    time.sleep(behaviour.delay)
                try:
                    if behaviour.kind == "status":
                        self._send(behaviour.status, behaviour.body, behaviour.headers)
                    elif behaviour.kind == "raw":
                        self._send_bytes(200, behaviour.body, behaviour.headers)
                    elif endpoint == "chat":
                        self._send(200, _chat_reply(behaviour, recorded))
                    else:
                        self._send(200, _transcription_reply(behaviour))
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout test)

            def _send(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
                headers = {"Content-Type": "application/json", **(headers or {})}
                self._send_bytes(status, json.dumps(payload).encode(), headers)

            def _send_bytes(self, status: int, body: bytes, headers: dict[str, str]) -> None:
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)

        return Handler


def _parse_multipart(content_type: str, raw: bytes) -> tuple[dict[str, list[str]], dict[str, tuple[str, bytes]]]:
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + raw
    )
    form: dict[str, list[str]] = {}
    files: dict[str, tuple[str, bytes]] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        filename = part.get_filename()
        payload = part.get_payload(decode=True) or b""
        if filename is not None:
            files[name] = (filename, payload)
        else:
            form.setdefault(name, []).append(payload.decode())
    return form, files


def _chat_reply(behaviour: Behaviour, request: RecordedRequest) -> dict[str, Any]:
    transcript = _spoken_transcript(request)
    if behaviour.kind == "content":
        content = behaviour.body
    elif behaviour.kind == "invent":
        entry = well_behaved_entry(transcript)
        entry["paragraphs"].append(behaviour.options["sentence"])
        content = json.dumps(entry)
    elif behaviour.kind == "compromised":
        content = json.dumps(compromised_entry(transcript, embellish=behaviour.options["embellish"]))
    else:
        content = json.dumps(well_behaved_entry(transcript))
    prompt_tokens = sum(len(str(m.get("content", "")).split()) for m in request.messages)
    completion_tokens = len(str(content).split())
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": (request.json or {}).get("model", "fake"),
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content, "refusal": None},
                "finish_reason": "stop",
                "logprobs": None,
            }
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


def _transcription_reply(behaviour: Behaviour) -> dict[str, Any]:
    segments = behaviour.options.get("segments") or []
    duration = behaviour.options.get("duration")
    return {
        "task": "transcribe",
        "language": behaviour.options.get("language", "english"),
        "duration": duration if duration is not None else (segments[-1][1] if segments else 0.0),
        "text": "".join(text for _, _, text in segments).strip(),
        "segments": [
            {
                "id": index,
                "seek": 0,
                "start": start,
                "end": end,
                "text": text,
                "tokens": [50364, 400, 500],
                "temperature": 0.0,
                "avg_logprob": -0.2,
                "compression_ratio": 1.1,
                "no_speech_prob": 0.01,
            }
            for index, (start, end, text) in enumerate(segments)
        ],
        "usage": {"type": "duration", "seconds": duration or 0},
    }


@pytest.fixture
def fake_openai() -> Iterator[FakeOpenAIServer]:
    server = FakeOpenAIServer()
    try:
        yield server
    finally:
        server.close()
