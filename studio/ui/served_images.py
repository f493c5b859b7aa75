"""The images a reader is shown: written once, served under a fresh unguessable name per request.

Gradio would copy every image an endpoint returns into its cache, under a folder named by the
image's hash: a new full copy per ``/reader_next`` (100 calls on a 2048² case added 163 MiB), and a
URL ``…/file=<server temp dir>/<hash>/…`` whose folder is the same for one variant across items and
readers (a blinding leak) and names a server path. Here instead:

* the variant PNG stays where the study wrote it, once (``<data dir>/variants/``); nothing is copied;
* each request gets a token (:class:`ImageTokens`, 144 random bits) and the image is served at
  ``<app>/reader-image/<token>.png`` (:func:`image_route`) with no ETag or Last-Modified, so neither
  the URL nor the headers identify the variant or reveal a path;
* tokens expire (30 min), each access code holds at most :data:`PER_CODE` of them (older ones stop
  working: only the current item is on screen), and the registry holds at most :data:`MAX_TOKENS`,
  so memory is bounded and temp space does not grow at all.

The endpoint's image output is a :class:`ServedImage` (a ``gr.Image`` the browser renders as usual)
given a :class:`ServedURL`; Gradio passes an absolute URL through to the browser untouched.
Tokens live in this process: behind a load balancer, readers need the same session affinity Gradio's
queue already requires.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable

import gradio as gr
from gradio.data_classes import ImageData
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Route

IMAGE_ROUTE = "/reader-image"
TTL_S = 1800
PER_CODE = 16
MAX_TOKENS = 20_000


class ServedURL(str):
    """An absolute URL of an image served by :func:`image_route` (what a :class:`ServedImage` displays)."""


class ImageTokens:
    """Token -> image file, for a limited time, at most ``per_owner`` live tokens per owner.

    Args:
        ttl_s: seconds a token works after it was issued.
        per_owner: live tokens per owner (an access code's hash); issuing one more drops its oldest.
        max_tokens: live tokens in all; issuing one more drops the oldest.
    """

    def __init__(self, ttl_s: float = TTL_S, per_owner: int = PER_CODE, max_tokens: int = MAX_TOKENS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl_s, self.per_owner, self.max_tokens, self.clock = ttl_s, per_owner, max_tokens, clock
        self._tokens: OrderedDict[str, tuple[Path, str, float]] = OrderedDict()  # token -> (path, owner, expiry)
        self._owned: dict[str, list[str]] = {}
        self._lock = threading.Lock()

    def _drop(self, token: str) -> None:
        entry = self._tokens.pop(token, None)
        if entry is not None:
            owned = self._owned.get(entry[1])
            if owned is not None:
                if token in owned:
                    owned.remove(token)
                if not owned:
                    del self._owned[entry[1]]

    def issue(self, path: Path, owner: str) -> str:
        """A fresh token for ``path`` (URL-safe, 24 characters)."""
        token = secrets.token_urlsafe(18)
        with self._lock:
            now = self.clock()
            while self._tokens:  # expired ones first (the dict is in issue order)
                oldest = next(iter(self._tokens))
                if self._tokens[oldest][2] > now and len(self._tokens) < self.max_tokens:
                    break
                self._drop(oldest)
            owned = self._owned.setdefault(owner, [])
            while len(owned) >= self.per_owner:
                self._drop(owned[0])
                owned = self._owned.setdefault(owner, [])
            self._tokens[token] = (Path(path), owner, now + self.ttl_s)
            owned.append(token)
        return token

    def resolve(self, token: str) -> Path | None:
        """The file of a live token, or None (unknown, expired or replaced)."""
        with self._lock:
            entry = self._tokens.get(token)
            if entry is None:
                return None
            if entry[2] <= self.clock():
                self._drop(token)
                return None
            return entry[0]

    def __len__(self) -> int:
        return len(self._tokens)


class _BlindFileResponse(FileResponse):
    """A file response without ETag and Last-Modified: both derive from the file and would name the variant."""

    def set_stat_headers(self, stat_result: Any) -> None:
        self.headers.setdefault("content-length", str(stat_result.st_size))


def image_route(tokens: ImageTokens) -> Route:
    """``GET /reader-image/<token>.png``: the image of a live token, else 404 (the same for every reason)."""

    async def serve(request: Request) -> Response:
        name = request.path_params["name"]
        path = tokens.resolve(name[:-4]) if name.endswith(".png") else None
        if path is None or not path.is_file():
            return Response("Not found", status_code=404, media_type="text/plain",
                            headers={"cache-control": "no-store"})
        return _BlindFileResponse(path, media_type="image/png",
                                  headers={"cache-control": "private, max-age=1800",
                                           "x-content-type-options": "nosniff",
                                           "content-disposition": 'inline; filename="image.png"'})

    return Route(IMAGE_ROUTE + "/{name}", serve, methods=["GET", "HEAD"])


def public_root(request: gr.Request) -> str:
    """The app's public root URL as Gradio itself computes it for its file URLs (proxies, root_path)."""
    from gradio import route_utils

    raw = request.request
    root_path = getattr(getattr(raw, "app", None), "root_path", "") or ""
    try:
        route_path = route_utils.get_api_call_path(request=raw)
    except ValueError:  # not a queue or call route (e.g. a direct /run call): strip nothing
        route_path = ""
    return route_utils.get_root_url(request=raw, route_path=route_path, root_path=root_path)


def served_url(tokens: ImageTokens, path: Path | None, owner: str, request: gr.Request | None) -> Any:
    """What a :class:`ServedImage` output gets for ``path``: a :class:`ServedURL` when serving over HTTP.

    Without a request (the handler called directly, in-process) the file path itself is returned.
    """
    if path is None:
        return None
    if request is None or getattr(request, "request", None) is None:
        return str(path)
    return ServedURL(f"{public_root(request)}{IMAGE_ROUTE}/{tokens.issue(path, owner)}.png")


class ServedImage(gr.Image):
    """A ``gr.Image`` output that shows a :class:`ServedURL` as it is (no copy into Gradio's cache).

    ``is_template`` makes the browser use the ordinary Image component.
    """

    is_template = True

    def postprocess(self, value: Any) -> ImageData | None:
        if isinstance(value, ServedURL):
            # An absolute URL in `url` is passed through untouched by Gradio (nothing copied or fetched).
            return ImageData(path=str(value), url=str(value), orig_name="image.png", mime_type="image/png")
        return super().postprocess(value)
