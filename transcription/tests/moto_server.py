"""moto in server mode as a real HTTP endpoint for tests, plus a fault-injecting proxy.

`start_moto_server()` runs moto as a subprocess on 127.0.0.1 (the project rules want real HTTP,
not in-process mocks), so boto3, kombu's SQS transport and Celery workers in other processes can
all talk to the same fake AWS. `FaultProxy` sits in front of it for faults moto cannot produce
(a FAILED Transcribe job, throttling, S3 5xx): every request still goes over a socket.

Usage in a test module (the lead engineer owns conftest.py, so import the fixture explicitly):

    from transcription.tests.moto_server import moto_server_url  # noqa: F401
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import pytest

# Dummy credentials: botocore refuses to sign without some, and these can never reach real AWS.
DUMMY_AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SECURITY_TOKEN": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    # Never fall back to the instance metadata service when looking for credentials.
    "AWS_EC2_METADATA_DISABLED": "true",
}


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_until_answering(url: str, process: subprocess.Popen, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        try:
            with urllib.request.urlopen(f"{url}/moto-api/", timeout=1.0) as response:
                if response.status == 200:
                    return True
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.05)
    return False


def start_moto_server(*, timeout: float = 30.0, attempts: int = 3) -> tuple[str, subprocess.Popen]:
    """Start `python -m moto.server` on a free 127.0.0.1 port; return its URL and process."""
    env = {**os.environ, **DUMMY_AWS_ENV}
    last_output = ""
    for _ in range(attempts):
        # The port is chosen before moto binds it, so another process may take it: retry then.
        port = _free_port()
        process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,  # a Ctrl-C in the test run must not kill it before teardown
        )
        url = f"http://127.0.0.1:{port}"
        if _wait_until_answering(url, process, timeout):
            # Drain stderr in the background so moto's request log never fills the pipe and blocks it.
            threading.Thread(target=_drain, args=(process,), daemon=True).start()
            return url, process
        stop_moto_server(process)
        last_output = process.stderr.read().decode(errors="replace")[-2000:] if process.stderr else ""
    raise RuntimeError(f"moto server did not start after {attempts} attempts: {last_output}")


def _drain(process: subprocess.Popen) -> None:
    assert process.stderr is not None
    for _ in iter(process.stderr.readline, b""):
        pass


def stop_moto_server(process: subprocess.Popen, timeout: float = 10.0) -> None:
    """Stop the subprocess started by start_moto_server (SIGTERM, then SIGKILL)."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=timeout)


def reset_moto(url: str) -> None:
    """Forget every bucket, queue and job in the running moto server."""
    request = urllib.request.Request(f"{url}/moto-api/reset", method="POST", data=b"")
    with urllib.request.urlopen(request, timeout=5.0):
        pass


def set_moto_transition(url: str, model_name: str, transition: dict[str, Any]) -> None:
    """Change how moto advances a model's status.

    E.g. ("transcribe::transcriptionjob", {"progression": "immediate"}) completes jobs on the first Get.
    """
    body = json.dumps({"model_name": model_name, "transition": transition}).encode()
    request = urllib.request.Request(f"{url}/moto-api/state-manager/set-transition", method="POST", data=body)
    with urllib.request.urlopen(request, timeout=5.0):
        pass


@pytest.fixture(scope="session")
def moto_server_url() -> Iterator[str]:
    """A moto server for the whole session, with dummy AWS credentials in the environment."""
    saved = {name: os.environ.get(name) for name in DUMMY_AWS_ENV}
    os.environ.update(DUMMY_AWS_ENV)
    url, process = start_moto_server()
    try:
        yield url
    finally:
        stop_moto_server(process)
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


# --- Fault-injecting proxy ----------------------------------------------------------------


@dataclass
class ProxiedRequest:
    method: str
    path: str
    headers: dict[str, str]  # lower-case names
    body: bytes

    @property
    def amz_target(self) -> str:
        """The JSON-protocol operation, e.g. "Transcribe.GetTranscriptionJob" ("" for S3)."""
        return self.headers.get("x-amz-target", "")

    def json(self) -> Any:
        return json.loads(self.body or b"null")


@dataclass
class ProxiedResponse:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)

    def json(self) -> Any:
        return json.loads(self.body or b"null")

    @classmethod
    def aws_json_error(cls, status: int, code: str, message: str = "") -> ProxiedResponse:
        """An error as the AWS JSON protocol (Transcribe, SQS) sends it."""
        body = json.dumps({"__type": code, "message": message or code}).encode()
        return cls(status, body, {"Content-Type": "application/x-amz-json-1.1", "x-amzn-ErrorType": code})

    @classmethod
    def s3_error(cls, status: int, code: str, message: str = "") -> ProxiedResponse:
        """An error as S3's REST-XML protocol sends it."""
        body = (
            f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code>'
            f"<Message>{message or code}</Message><RequestId>fault-proxy</RequestId></Error>"
        ).encode()
        return cls(status, body, {"Content-Type": "application/xml"})


# intercept(request) -> a response to send instead of forwarding, or None to forward.
Interceptor = Callable[[ProxiedRequest], ProxiedResponse | None]
# rewrite(request, upstream_response) -> a replacement response, or None to pass it through.
Rewriter = Callable[[ProxiedRequest, ProxiedResponse], ProxiedResponse | None]

_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-connection"}


class FaultProxy:
    """An HTTP proxy on 127.0.0.1 in front of `upstream` whose responses tests can replace or rewrite."""

    def __init__(self, upstream: str) -> None:
        parts = urlsplit(upstream)
        self.upstream_host = parts.hostname or "127.0.0.1"
        self.upstream_port = parts.port or 80
        self.interceptors: list[Interceptor] = []
        self.rewriters: list[Rewriter] = []
        self.requests: list[ProxiedRequest] = []
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _read_body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    chunks = []
                    while True:
                        size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                        if size == 0:
                            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                                pass  # trailers
                            return b"".join(chunks)
                        chunks.append(self.rfile.read(size))
                        self.rfile.readline()
                length = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(length) if length else b""

            def _handle(self) -> None:
                request = ProxiedRequest(
                    method=self.command,
                    path=self.path,
                    headers={k.lower(): v for k, v in self.headers.items()},
                    body=self._read_body(),
                )
                with proxy._lock:
                    proxy.requests.append(request)
                    interceptors = list(proxy.interceptors)
                    rewriters = list(proxy.rewriters)
                response = next((r for fn in interceptors if (r := fn(request)) is not None), None)
                if response is None:
                    response = proxy._forward(request)
                    for fn in rewriters:
                        replaced = fn(request, response)
                        if replaced is not None:
                            response = replaced
                self.send_response(response.status)
                for name, value in response.headers.items():
                    if name.lower() not in _HOP_BY_HOP and name.lower() != "content-length":
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(response.body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(response.body)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    def _forward(self, request: ProxiedRequest) -> ProxiedResponse:
        conn = http.client.HTTPConnection(self.upstream_host, self.upstream_port, timeout=30)
        try:
            headers = {k: v for k, v in request.headers.items() if k not in _HOP_BY_HOP}
            headers["content-length"] = str(len(request.body))
            conn.request(request.method, request.path, body=request.body, headers=headers)
            upstream = conn.getresponse()
            body = upstream.read()
            return ProxiedResponse(upstream.status, body, dict(upstream.getheaders()))
        finally:
            conn.close()

    def intercept(self, fn: Interceptor) -> Interceptor:
        with self._lock:
            self.interceptors.append(fn)
        return fn

    def rewrite(self, fn: Rewriter) -> Rewriter:
        with self._lock:
            self.rewriters.append(fn)
        return fn

    def clear(self) -> None:
        with self._lock:
            self.interceptors.clear()
            self.rewriters.clear()
            self.requests.clear()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
