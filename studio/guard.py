"""Sign-in throttling before Gradio's queue: floods of wrong passwords or codes cost no worker and no slot.

Every endpoint of the studio shares Gradio's one queue (``max_size`` 64). Before this guard, each
wrong admin password slept 0.5 s in one of the 4 admin workers, so ~80 clients looping wrong
passwords filled the queue and readers got HTTP 503. :class:`SignInGuard` is an ASGI middleware in
front of Gradio's routes: it reads the (small, bounded) JSON body of every request that would run
an endpoint (``/gradio_api/queue/join``, ``/call/<api>``, ``/call/v2/<api>``, ``/run/<api>``), finds
the endpoint, and asks the :class:`Gate` whether it may go on. A refused request gets HTTP 429 with
``Retry-After`` right there; it never reaches the queue.

What the gate decides (keys are ``(client address, target)``; an IPv6 client counts by its /64):

* **admin endpoints** (``admin_*``; the password is the first input): a password the gate can verify
  cheaply (``STUDIO_ADMIN_PASSWORD``, or the generated one once it was verified in this process)
  always passes, whatever the flood: an attacker cannot lock the admin out. Any other attempt takes a
  token from the client's bucket (burst :data:`ADMIN_BURST`, one back every :data:`ADMIN_REFILL_S` s)
  and from a bucket shared by all clients (against many addresses at once); when empty: 429. The
  endpoint then checks the password (scrypt) and answers "Wrong admin password." as before.
* **every other endpoint** may not take the last quarter of Gradio's queue (16 of its 64 places): those are
  kept for readers, so a flood of ``/enhance`` calls, say, gets "busy" (429) rather than readers a 503.
* **reader endpoints** (``reader_next``, ``reader_rate``, ``reader_choose``; the code is the first
  input): a code that was valid before (:meth:`Gate.code_ok`) passes, subject to its own rate limit
  (:data:`CODE_BURST`, one request back every :data:`CODE_REFILL_S` s); an unknown code takes a token
  from the client's and the shared reader buckets. So a flood of wrong codes, even from the readers'
  own network, never slows a signed-in reader. (A reader signing in for the first time from the
  address of a flood may have to wait until the flood stops.)

Refusals are answered after a delay (:data:`TARPIT_S`, at most :data:`TARPIT_MAX` held at once): a
client looping on them slows itself down, and a held refusal costs only a coroutine and its socket. Logged (logger ``medenhance.studio.guard``): the first refusal of a flood per client and
target, then at most one line every :data:`LOG_EVERY_S` seconds with the number refused; unverified
admin attempts at INFO (the admin endpoint logs "wrong admin password" when one fails).

Behind a reverse proxy the client address is the proxy's unless uvicorn trusts it: set
``FORWARDED_ALLOW_IPS`` to the proxy's address (uvicorn then takes the client from
``X-Forwarded-For``); the default trusts only localhost.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import math
import os
import re
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Awaitable, Callable

import anyio

from studio.study.auth import AdminAuth, hash_code, normalize_code
from studio.throttle import Buckets, retry_after

logger = logging.getLogger("medenhance.studio.guard")

# Every admitted attempt costs Gradio a fresh session (~350 KB and tens of ms for this app's ~200
# components, a sessionless API call gets one) and the admin endpoints a scrypt check (~50 ms), hence
# the low rates. Nobody who holds the secret waits for them (see the module docstring).
ADMIN_BURST, ADMIN_REFILL_S = 10, 1.0  # per client: 10 unverified attempts at once, then 1 per second
ADMIN_ALL_BURST, ADMIN_ALL_REFILL_S = 20, 0.25  # all clients together: 4 per second
READER_BURST, READER_REFILL_S = 10, 1.0  # unknown codes per client: 10 at once, then 1 per second
READER_ALL_BURST, READER_ALL_REFILL_S = 20, 0.25  # unknown codes, all clients together: 4 per second
# One valid code: 60 requests at once, then 10 per second (a reader answers far slower); an operator
# whose scripted readers need more sets MEDENHANCE_CODE_BURST and MEDENHANCE_CODE_RATE (per second).
CODE_BURST, CODE_REFILL_S = 60, 0.1
READER_ENDPOINTS = ("reader_next", "reader_rate", "reader_choose")
READER_TAB_MODULE = "studio.ui.reader_tab"  # its events may use the queue places kept for readers
MAX_BODY = 4 * 2**20  # bytes of a request body read to find the endpoint (Gradio's bodies are small JSON)
TARPIT_S, TARPIT_MAX = 2.0, 256  # seconds a refusal is held back, refusals held at most at once
KNOWN_CODES = 100_000  # valid code hashes remembered (LRU)
LOOKUP_THREADS = 4  # code lookups at once (each one indexed query)
LOG_EVERY_S = 10.0  # at most one log line per throttled client and target in this time
READER_RESERVE = 0.25  # share of Gradio's queue only reader endpoints may fill (see SignInGuard._queue_reserved)

_PATHS = re.compile(r"/gradio_api/(?:(?P<join>queue/join)|call/v2/(?P<v2>[^/]+)|(?:call|run|api)/(?P<api>[^/]+))/?$")


@dataclass(frozen=True)
class Refusal:
    """Why a request is refused (HTTP 429) and when to come back."""

    message: str
    retry_after_s: float
    tarpit: bool = True  # held back TARPIT_S before the answer (not for "busy": that is no one's failure)


def _env_number(name: str, default: float) -> float:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"environment variable {name} must be a number, got {raw!r}") from None
    if value <= 0:
        raise ValueError(f"environment variable {name} must be positive, got {raw!r}")
    return value


def client_key(scope: dict[str, Any]) -> str:
    """The client of a request: its IP address (uvicorn resolves trusted proxies), an IPv6 one as its /64."""
    client = scope.get("client")
    host = client[0] if client else ""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return host or "unknown"
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))  # one host usually holds the whole /64
    return str(ip)


class Gate:
    """The throttling decisions (no HTTP here: :class:`SignInGuard` asks, the reader tab reports valid codes).

    Args:
        admin: the study's admin password check (its :meth:`AdminAuth.quick_check` is what lets the
            right password through a flood).
        code_exists: code hash -> whether a reader has it (a database lookup; run in a worker thread).
        clock: monotonic seconds (tests pass their own).
    """

    def __init__(self, admin: AdminAuth, code_exists: Callable[[str], bool] | None = None,
                 clock: Callable[[], float] | None = None) -> None:
        kw = {"clock": clock} if clock else {}
        self.admin = admin
        self.code_exists = code_exists
        self._lookups = anyio.CapacityLimiter(LOOKUP_THREADS)
        self.admin_client = Buckets(ADMIN_BURST, ADMIN_REFILL_S, **kw)
        self.admin_all = Buckets(ADMIN_ALL_BURST, ADMIN_ALL_REFILL_S, **kw)
        self.reader_client = Buckets(READER_BURST, READER_REFILL_S, **kw)
        self.reader_all = Buckets(READER_ALL_BURST, READER_ALL_REFILL_S, **kw)
        burst = _env_number("MEDENHANCE_CODE_BURST", CODE_BURST)
        rate = _env_number("MEDENHANCE_CODE_RATE", 1 / CODE_REFILL_S)
        self.per_code = Buckets(max(1, int(burst)), 1 / max(rate, 1e-6), **kw)
        self._known: OrderedDict[str, None] = OrderedDict()
        self._refusals: OrderedDict[Any, tuple[float, int]] = OrderedDict()  # key -> (last logged, refused since)
        self._clock = clock or time.monotonic
        self._lock = threading.Lock()

    # --- what the endpoints report -------------------------------------------------------------
    def code_ok(self, code: Any) -> None:
        """Remember that ``code`` is a reader's code (called after the database said so)."""
        self._remember(hash_code(code))

    def _remember(self, h: str) -> None:
        with self._lock:
            self._known[h] = None
            self._known.move_to_end(h)
            while len(self._known) > KNOWN_CODES:
                self._known.popitem(last=False)

    def _known_code(self, h: str) -> bool:
        with self._lock:
            return h in self._known

    # --- decisions -----------------------------------------------------------------------------
    def _take(self, buckets: Buckets, key: Any, what: str, consume: bool = True) -> float:
        wait = buckets.take(key, consume)
        if wait:
            self._log_refusal(key, what, buckets, wait)
        return wait

    def _log_refusal(self, key: Any, what: str, buckets: Buckets, wait: float) -> None:
        """One log line per key when a flood starts, then at most one per :data:`LOG_EVERY_S` with the count."""
        now = self._clock()
        with self._lock:
            last, count = self._refusals.pop(key, (-math.inf, 0))
            count += 1
            if now - last < LOG_EVERY_S:
                self._refusals[key] = (last, count)
                return
            self._refusals[key] = (now, 0)
            while len(self._refusals) > KNOWN_CODES:
                self._refusals.popitem(last=False)
        if last == -math.inf:
            logger.warning("%s: throttled (more than %d at once, then 1 per %.2f s); refusing for %.1f s",
                           what, buckets.burst, buckets.refill_s, wait)
        else:
            logger.warning("%s: still throttled, %d refused in the last %.0f s", what, count, now - last)

    def _two(self, client: Buckets, shared: Buckets, key: str, target: str, consume: bool = True) -> float:
        """A token from the client's bucket and from the one all clients share (both or neither)."""
        wait = self._take(client, (key, target), f"{target} sign-ins from {key}", consume)
        if wait:
            return wait
        wait = self._take(shared, target, f"{target} sign-ins from all clients", consume)
        if wait and consume:
            client.give_back((key, target))  # refused by the shared bucket: not this client's failure
        return wait

    def admin_request(self, password: Any, client: str) -> Refusal | None:
        """None when an admin endpoint call may go to the queue; else why not."""
        if self.admin.quick_check(password) is True:
            return None
        wait = self._two(self.admin_client, self.admin_all, client, "admin")
        if wait:
            return Refusal(f"Too many failed admin sign-ins from your address: wait {retry_after(wait)} s and "
                           "try again.", wait)
        logger.info("admin sign-in attempt from %s not verifiable in advance: the endpoint checks it", client)
        return None

    async def reader_request(self, code: Any, client: str) -> Refusal | None:
        """None when a reader endpoint call may go to the queue; else why not.

        A code not seen before is looked up (SHA-256 and one indexed query, in a worker thread):
        only codes the database does not know take tokens, so readers signing in together from one
        address are never refused; a client whose bucket is empty is refused without a lookup.
        """
        h = hash_code(code) if normalize_code(code) else ""
        if not (h and self._known_code(h)):
            wait = self._two(self.reader_client, self.reader_all, client, "reader", consume=False)
            if wait:  # this client (or everyone) sent too many unknown codes lately: no lookup
                return self._unknown(wait)
            if h and await self._lookup(h):
                self._remember(h)
            else:  # unknown: a token each, and the endpoint answers "Unknown access code" as before
                wait = self._two(self.reader_client, self.reader_all, client, "reader")
                return self._unknown(wait) if wait else None
        wait = self._take(self.per_code, h, f"reader code {h[:8]}… (hash)")
        if wait:
            return Refusal(f"Too many requests with this access code: wait {retry_after(wait)} s.", wait)
        return None

    @staticmethod
    def _unknown(wait: float) -> Refusal:
        return Refusal(f"Too many unknown access codes from your address: wait {retry_after(wait)} s and try "
                       "again (check the code you were given).", wait)

    async def _lookup(self, code_hash: str) -> bool:
        if self.code_exists is None:
            return False
        return await anyio.to_thread.run_sync(self.code_exists, code_hash, limiter=self._lookups)


# --- the ASGI middleware -----------------------------------------------------------------------

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


class _TooBig(Exception):
    pass


async def _read_body(receive: Receive, limit: int) -> tuple[bytes, list[dict[str, Any]]]:
    """The whole request body (at most ``limit`` bytes: :class:`_TooBig` beyond) and the messages read."""
    chunks, messages, size = [], [], 0
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request":
            break
        body = message.get("body", b"")
        size += len(body)
        if size > limit:
            raise _TooBig()
        chunks.append(body)
        if not message.get("more_body", False):
            break
    return b"".join(chunks), messages


def _replay(messages: list[dict[str, Any]], receive: Receive) -> Receive:
    """A ``receive`` that hands the buffered messages to the app first, then the real ones."""
    pending = list(messages)

    async def replayed() -> dict[str, Any]:
        if pending:
            return pending.pop(0)
        return await receive()

    return replayed


class SignInGuard:
    """ASGI middleware: the :class:`Gate` decides before Gradio's routes see a request (see the module docstring).

    Args:
        app: the next ASGI app.
        gate: the decisions.
        blocks: the ``gr.Blocks`` whose endpoints are served (to find an endpoint by index or API name).
    """

    def __init__(self, app: Any, gate: Gate, blocks: Any) -> None:
        self.app, self.gate, self.blocks = app, gate, blocks
        self._kinds: dict[int, tuple[str, str] | None] = {}
        self._parked = 0

    def _kind(self, fn: Any) -> tuple[str, str] | None:
        """("admin" | "reader", first parameter name) of a guarded endpoint, None for the others."""
        if fn is None:
            return None
        if id(fn) in self._kinds:  # the endpoints live as long as the app: their ids are stable
            return self._kinds[id(fn)]
        import inspect

        name = str(fn.name or fn.api_name or "")  # the function's name: UI-only copies have api names like x_1
        kind = "admin" if name.startswith("admin_") else "reader" if name in READER_ENDPOINTS else None
        first = ""
        if kind is not None:
            try:
                first = next(iter(inspect.signature(fn.fn).parameters), "")
            except (TypeError, ValueError):
                first = ""
        self._kinds[id(fn)] = (kind, first) if kind else None
        return self._kinds[id(fn)]

    def _endpoint(self, match: re.Match[str], body: Any) -> Any:
        fns = getattr(self.blocks, "fns", {})
        if match["join"]:
            index = body.get("fn_index") if isinstance(body, dict) else None
            return fns.get(index) if isinstance(index, int) else None
        api = match["v2"] or match["api"]
        return next((f for f in fns.values() if f.api_name == api), None)

    @staticmethod
    def _secret(match: re.Match[str], body: Any, first: str) -> Any:
        if not isinstance(body, dict):
            return None
        if match["v2"]:
            return body.get(first)
        data = body.get("data")
        return data[0] if isinstance(data, list) and data else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") != "POST":
            return await self.app(scope, receive, send)
        match = _PATHS.search(scope.get("path", ""))
        if match is None:
            return await self.app(scope, receive, send)
        try:
            raw, messages = await _read_body(receive, MAX_BODY)
        except _TooBig:
            return await _respond(send, 413, "The request is too large.", None)
        receive = _replay(messages, receive)
        try:
            body = json.loads(raw) if raw else None
        except (ValueError, UnicodeDecodeError):
            body = None  # Gradio answers malformed JSON itself
        try:
            refusal = await self._decide(match, body, scope)
        except Exception:  # noqa: BLE001 - a bug here must not take the app down; the endpoints still check
            logger.exception("sign-in guard failed; the request goes on unthrottled")
            refusal = None
        if refusal is not None:
            if refusal.tarpit:
                await self._tarpit()
            return await _respond(send, 429, refusal.message, retry_after(refusal.retry_after_s))
        return await self.app(scope, receive, send)

    async def _decide(self, match: re.Match[str], body: Any, scope: Scope) -> Refusal | None:
        fn = self._endpoint(match, body)
        kind = self._kind(fn)
        # The reader tab's own events (the endpoints and their UI updates) may use the reserved places.
        reader_tab = getattr(getattr(fn, "fn", None), "__module__", "") == READER_TAB_MODULE
        if fn is not None and not reader_tab and self._queue_reserved():
            return Refusal("The server is busy: try again in a few seconds.", 2.0, tarpit=False)
        if kind is None:
            return None
        secret = self._secret(match, body, kind[1])
        client = client_key(scope)
        if kind[0] == "admin":
            return self.gate.admin_request(secret, client)
        return await self.gate.reader_request(secret, client)

    def _queue_reserved(self) -> bool:
        """True when Gradio's shared queue is so full that only readers may join it now.

        The queue's ``max_size`` counts every endpoint together: a flood of any other endpoint
        (``/enhance`` is open to all) would otherwise fill it and readers would get HTTP 503. The last
        :data:`READER_RESERVE` (a quarter: 16 of the default 64) of its places are kept for reader endpoints.
        """
        queue = getattr(self.blocks, "_queue", None)
        size = getattr(queue, "max_size", None)
        reserve = int((size or 0) * READER_RESERVE)  # 16 of the default 64; none in a tiny queue
        return reserve > 0 and len(queue) >= size - reserve

    async def _tarpit(self) -> None:
        """Hold a refusal back for :data:`TARPIT_S` (not when :data:`TARPIT_MAX` are held already).

        A flooding client waits for its answers, so this caps its rate (100 looping clients: ~50
        requests/s instead of hundreds), which is what keeps the readers' share of the CPU.
        """
        if self._parked >= TARPIT_MAX:
            return
        self._parked += 1
        try:
            await asyncio.sleep(TARPIT_S)
        finally:
            self._parked -= 1


async def _respond(send: Send, status: int, message: str, retry: str | None) -> None:
    body = json.dumps({"detail": message, "error": message}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
               (b"cache-control", b"no-store")]
    if retry is not None:
        headers.append((b"retry-after", retry.encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
