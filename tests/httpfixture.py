"""A local HTTP server for download tests: in-memory files, Range support, scripted faults.

Faults are queued per path and consumed one per request:
  "cut"   send the full Content-Length, then only half the body, then close the connection
  "stall" send half the body, then hang until the server stops (the client must time out)
  "503"   answer 503 Service Unavailable
Setting `honour_range = False` makes the server ignore Range headers (always 200, whole body).
Every request is logged as (path, Range header or None).
"""
from __future__ import annotations

import threading
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):   # keep pytest output clean
        pass

    def do_GET(self):
        srv: FaultyServer = self.server.owner
        rng = self.headers.get("Range")
        with srv.mutex:
            srv.requests.append((self.path, rng))
            queue = srv.faults.get(self.path, [])
            fault = queue.pop(0) if queue else None
        if fault == "503":
            return self.send_error(503)
        if self.path not in srv.files:
            return self.send_error(404)
        body = srv.files[self.path]
        status, start = 200, 0
        if rng and srv.honour_range:
            start = int(rng.removeprefix("bytes=").split("-")[0])
            if start >= len(body):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(body)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            status = 206
        self.send_response(status)
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        self.send_header("Content-Length", str(len(body) - start))
        self.end_headers()
        if fault in ("cut", "stall"):
            self.wfile.write(body[start:start + (len(body) - start) // 2])
            self.wfile.flush()
            if fault == "stall":
                srv.stopping.wait(10)
            self.close_connection = True
            return
        self.wfile.write(body[start:])


class FaultyServer:
    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.faults: dict[str, list[str]] = {}
        self.honour_range = True
        self.requests: list[tuple[str, str | None]] = []
        self.mutex = threading.Lock()
        self.stopping = threading.Event()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.httpd.owner = self
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def url(self, path: str) -> str:
        return self.base + path


@contextmanager
def serve():
    srv = FaultyServer()
    thread = threading.Thread(target=srv.httpd.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    try:
        yield srv
    finally:
        srv.stopping.set()
        srv.httpd.shutdown()
        srv.httpd.server_close()
        thread.join(5)
