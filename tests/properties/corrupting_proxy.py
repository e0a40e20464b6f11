"""A loopback HTTP proxy in front of the sandbox that corrupts chosen records on their way to the
client, the way a source that changed shape (or a person typing into it) would send them.

Everything else passes through untouched, so the code under test (clients, extraction, staging,
warehouse) is the real one over real HTTP. Records are chosen by a hash of their id, corrupted the
same way in every response they appear in, and remembered in `corrupted` for the test's assertions.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx

Corruption = tuple[str, Callable[[dict], dict]]  # (name, record -> corrupted record)
_HOP = {"host", "content-length", "transfer-encoding", "connection", "accept-encoding", "content-encoding"}
_GALLERY_IMAGES = re.compile(r"/photoshelter/psapi/v3/mem/gallery/[^/]+/images$")


def chosen(record_id: str, every: int) -> int | None:
    """A stable pick of about one record in `every`: the index of its corruption, or None."""
    digest = int(hashlib.sha256(record_id.encode()).hexdigest()[:12], 16)
    return digest // every if digest % every == 0 else None


class CorruptingProxy:
    def __init__(self, upstream: str, plytix: list[Corruption], photoshelter: list[Corruption], every: int = 40):
        self.upstream = upstream.rstrip("/")
        self.rules = {"plytix": plytix, "photoshelter": photoshelter}
        self.every = every
        self.corrupted: dict[str, dict[str, str]] = {"plytix": {}, "photoshelter": {}}
        self._http = httpx.Client(timeout=60)
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive: every answer carries its Content-Length

            def _forward(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP}
                reply = proxy._http.request(self.command, proxy.upstream + self.path, content=body, headers=headers)
                content = proxy._rewrite(self.path.split("?")[0], reply)
                self.send_response(reply.status_code)
                for key, value in reply.headers.multi_items():
                    if key.lower() not in _HOP:
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(content)))
                self.end_headers()
                self.wfile.write(content)

            do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _forward

            def log_message(self, *args):  # quiet: the test reads the warehouse, not the access log
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> CorruptingProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._http.close()

    def _rewrite(self, path: str, reply: httpx.Response) -> bytes:
        if reply.status_code != 200:
            return reply.content
        if path.endswith("/plytix/api/v1/products/search"):
            body = reply.json()
            body["data"] = [self._corrupt("plytix", item, item.get("id")) for item in body.get("data", [])]
        elif _GALLERY_IMAGES.search(path):
            body = reply.json()
            data = body.get("data") or {}
            data["GalleryImage"] = [self._corrupt("photoshelter", item, item.get("image_id"))
                                    for item in data.get("GalleryImage") or []]
        else:
            return reply.content
        return json.dumps(body).encode()  # ASCII: a lone surrogate travels as a legal `\ud800` escape

    def _corrupt(self, source: str, item: dict, record_id: str | None) -> dict:
        # Only full records: Plytix's count probes and id-only listings carry no fields to corrupt.
        index = chosen(record_id, self.every) if record_id and len(item) > 2 else None
        if index is None:
            return item
        name, corrupt = self.rules[source][index % len(self.rules[source])]
        with self._lock:
            self.corrupted[source][record_id] = name
        return corrupt(dict(item))
