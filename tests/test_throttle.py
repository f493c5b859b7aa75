"""Sign-in throttling decisions (studio.throttle, studio.guard.Gate) and the readers' image tokens, on a fake
clock: who is refused, for how long, and who never is. Through a running app: tests/test_hostile_clients.py.
"""

from __future__ import annotations

import asyncio
import re
import logging
from pathlib import Path

import pytest

from studio import guard
from studio.guard import Gate, client_key
from studio.study.auth import AdminAuth, hash_code
from studio.throttle import Buckets, retry_after
from studio.ui.served_images import ImageTokens


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_buckets_burst_refill_and_memory_bound() -> None:
    clock = Clock()
    b = Buckets(burst=3, refill_s=0.5, max_keys=2, clock=clock)
    assert [b.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert b.take("a") == pytest.approx(0.5)  # empty: seconds until a token is back
    assert b.take("b") == 0.0  # another key is not affected
    clock.now += 0.5
    assert b.take("a") == 0.0
    assert b.take("a", consume=False) > 0  # a peek refuses like a take but takes nothing
    clock.now += 0.25
    assert b.tokens("a") == pytest.approx(0.5)
    b.give_back("a")
    assert b.tokens("a") == pytest.approx(1.5)
    b.take("c")
    assert len(b) == 2 and b.tokens("b") == 3  # "b" (least recently used) dropped: a full bucket again
    assert retry_after(0.2) == "1" and retry_after(2.1) == "3"
    with pytest.raises(ValueError):
        Buckets(burst=0, refill_s=1)


def test_client_keys() -> None:
    assert client_key({"client": ("203.0.113.7", 5000)}) == "203.0.113.7"
    assert client_key({"client": ("::ffff:203.0.113.7", 1)}) == "203.0.113.7"
    # Every address of one IPv6 /64 is one client (a host can pick any of them).
    assert client_key({"client": ("2001:db8:1:2::1", 1)}) == client_key({"client": ("2001:db8:1:2:ffff::9", 1)})
    assert client_key({"client": ("2001:db8:1:2::1", 1)}) == "2001:db8:1:2::/64"
    assert client_key({}) == "unknown"


def _admin(tmp_path: Path, password: str | None = "right-password") -> AdminAuth:
    return AdminAuth(tmp_path, password)


def test_wrong_admin_passwords_throttle_only_their_client(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    gate = Gate(_admin(tmp_path), clock=clock)
    caplog.set_level(logging.INFO, "medenhance.studio.guard")
    admitted = [gate.admin_request("guess", "10.0.0.66") is None for _ in range(guard.ADMIN_BURST + 5)]
    assert admitted == [True] * guard.ADMIN_BURST + [False] * 5
    refusal = gate.admin_request("guess", "10.0.0.66")
    assert refusal is not None and "wait 1 s" in refusal.message and 0 < refusal.retry_after_s <= guard.ADMIN_REFILL_S
    # The flood's client is throttled; the real admin is not, from another address or even from the same one.
    assert gate.admin_request("guess", "10.0.0.1") is None
    assert gate.admin_request("right-password", "10.0.0.66") is None
    # One line when the flood starts, then at most one per LOG_EVERY_S with the count refused meanwhile.
    throttled = [r.getMessage() for r in caplog.records if "throttled" in r.getMessage()]
    assert len(throttled) == 1 and "admin sign-ins from 10.0.0.66: throttled" in throttled[0]
    clock.now += guard.ADMIN_REFILL_S
    assert gate.admin_request("guess", "10.0.0.66") is None
    clock.now += guard.LOG_EVERY_S  # the bucket is full again: a new burst, then refusals
    for _ in range(guard.ADMIN_BURST + 2):
        gate.admin_request("guess", "10.0.0.66")
    throttled = [r.getMessage() for r in caplog.records if "throttled" in r.getMessage()]
    assert len(throttled) == 2 and re.search(r"still throttled, 6 refused in the last 1\d s", throttled[1])


def test_many_clients_share_a_cap_but_the_right_password_always_passes(tmp_path: Path) -> None:
    gate = Gate(_admin(tmp_path), clock=Clock())
    results = [gate.admin_request("guess", f"10.1.{i // 250}.{i % 250}") is None for i in range(200)]
    assert sum(results) == guard.ADMIN_ALL_BURST  # a distributed flood is capped as a whole
    assert gate.admin_request("right-password", "10.9.9.9") is None


def test_generated_password_passes_the_flood_once_verified(tmp_path: Path) -> None:
    auth = AdminAuth(tmp_path)  # no STUDIO_ADMIN_PASSWORD: scrypt hash in admin.json
    password = "known-for-the-test"
    import json

    from studio.study import auth as auth_module

    record = json.loads(auth.path.read_text())
    record["hash"] = auth_module._scrypt(password, bytes.fromhex(record["salt"]))
    auth.path.write_text(json.dumps(record))
    auth = AdminAuth(tmp_path)
    assert auth.quick_check(password) is None and auth.quick_check("") is False  # unknown until scrypt ran
    assert auth.check("wrong") is False and auth.quick_check("wrong") is None
    assert auth.check(password) is True and auth.quick_check(password) is True
    gate = Gate(auth, clock=Clock())
    for _ in range(50):
        gate.admin_request("wrong", "10.0.0.66")
    assert gate.admin_request(password, "10.0.0.66") is None


def test_unknown_codes_are_throttled_but_known_readers_never_are(tmp_path: Path) -> None:
    clock = Clock()
    valid = {hash_code("GOOD-CODE-0001"), hash_code("GOOD-CODE-0002")}
    lookups: list[str] = []

    def exists(h: str) -> bool:
        lookups.append(h)
        return h in valid

    gate = Gate(_admin(tmp_path), code_exists=exists, clock=clock)
    ask = lambda code, client="192.0.2.5": asyncio.run(gate.reader_request(code, client))  # noqa: E731
    assert [ask(f"WRONG-{i:04d}") is None for i in range(guard.READER_BURST + 3)] == \
        [True] * guard.READER_BURST + [False] * 3
    assert len(lookups) == guard.READER_BURST  # refused ones cost no lookup
    # A reader with a valid code from the flooded address, signing in now: looked up only when the
    # bucket allows; one that signed in before the flood passes without any lookup.
    gate.code_ok("GOOD-CODE-0001")
    n = len(lookups)
    assert ask("good-code-0001") is None and len(lookups) == n  # case and dashes do not matter
    clock.now += guard.READER_REFILL_S
    assert ask("GOOD-CODE-0002") is None  # valid: no token taken ...
    assert ask("GOOD-CODE-0002") is None  # ... and remembered
    assert ask("WRONG-9999") is None and ask("WRONG-9998") is not None
    # Readers signing in together from one address (a hospital network) are not refused.
    gate2 = Gate(_admin(tmp_path), code_exists=lambda h: True, clock=Clock())
    assert all(asyncio.run(gate2.reader_request(f"READER-{i:04d}", "192.0.2.9")) is None for i in range(100))


def test_one_code_is_rate_limited(tmp_path: Path) -> None:
    clock = Clock()
    gate = Gate(_admin(tmp_path), code_exists=lambda h: True, clock=clock)
    results = [asyncio.run(gate.reader_request("GOOD-CODE-0001", "192.0.2.5")) for _ in range(guard.CODE_BURST + 2)]
    assert all(r is None for r in results[:guard.CODE_BURST])
    assert results[-1] is not None and "this access code" in results[-1].message
    assert asyncio.run(gate.reader_request("GOOD-CODE-0002", "192.0.2.5")) is None  # other codes unaffected
    clock.now += guard.CODE_REFILL_S
    assert asyncio.run(gate.reader_request("GOOD-CODE-0001", "192.0.2.5")) is None


def test_image_tokens_expire_and_are_bounded(tmp_path: Path) -> None:
    clock = Clock()
    tokens = ImageTokens(ttl_s=60, per_owner=3, max_tokens=5, clock=clock)
    img = tmp_path / "v.png"
    img.write_bytes(b"png")
    issued = [tokens.issue(img, "reader-a") for _ in range(4)]
    assert len(set(issued)) == 4 and all(len(t) == 24 for t in issued)  # a fresh unguessable name each time
    assert tokens.resolve(issued[0]) is None  # the owner's oldest went when a 4th was issued
    assert [tokens.resolve(t) for t in issued[1:]] == [img] * 3
    for i in range(4):
        tokens.issue(img, f"reader-{i}")
    assert len(tokens) == 5 and tokens.resolve(issued[1]) is None  # the oldest overall went
    clock.now += 61
    assert tokens.resolve(issued[3]) is None and tokens.resolve("made-up") is None


# --- the ASGI middleware, called as uvicorn would --------------------------------------------------

def _endpoint(name: str, module: str = "studio.ui.admin_tab", api_name: str | None = None) -> object:
    from types import SimpleNamespace

    def fn(secret: str, other: str = "") -> None:  # first parameter: the password or code
        return None

    fn.__name__, fn.__module__ = name, module
    return SimpleNamespace(name=name, api_name=api_name or name, fn=fn)


class _Queue:
    def __init__(self, max_size: int, waiting: int) -> None:
        self.max_size, self.waiting = max_size, waiting

    def __len__(self) -> int:
        return self.waiting


def _call(app: object, path: str, body: bytes, chunks: int = 1) -> tuple[int, dict[str, str], bytes, bytes]:
    """One POST through ``app``: (status, headers, response body, the request body the inner app read)."""
    sent: list[dict] = []
    parts = [body[i * len(body) // chunks:(i + 1) * len(body) // chunks] for i in range(chunks)]
    messages = [{"type": "http.request", "body": p, "more_body": i < len(parts) - 1} for i, p in enumerate(parts)]

    async def receive() -> dict:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": path, "client": ("192.0.2.8", 40000)}
    asyncio.run(app(scope, receive, send))  # type: ignore[operator]
    start = next(m for m in sent if m["type"] == "http.response.start")
    headers = {k.decode(): v.decode() for k, v in start["headers"]}
    return start["status"], headers, b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body"), \
        getattr(getattr(app, "app", None), "seen", b"")


def test_middleware_refuses_before_the_app_and_passes_everything_else(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    import json
    from types import SimpleNamespace

    from studio.guard import SignInGuard

    monkeypatch.setattr(guard, "TARPIT_S", 0.0)

    class Inner:
        seen = b""

        async def __call__(self, scope: dict, receive, send) -> None:
            body = b""
            while True:
                m = await receive()
                body += m.get("body", b"")
                if not m.get("more_body"):
                    break
            Inner.seen = body
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"inner"})

    blocks = SimpleNamespace(fns={0: _endpoint("admin_studies"), 1: _endpoint("reader_next", guard.READER_TAB_MODULE),
                                  2: _endpoint("enhance", "studio.ui.enhance_tab"),
                                  3: _endpoint("reader_next", guard.READER_TAB_MODULE, "reader_next_1")},
                             _queue=_Queue(64, 0))
    gate = Gate(_admin(tmp_path), code_exists=lambda h: False, clock=Clock())
    app = SignInGuard(Inner(), gate, blocks)
    wrong = json.dumps({"data": ["guess"]}).encode()
    for _ in range(guard.ADMIN_BURST):
        status, _, body, seen = _call(app, "/gradio_api/call/admin_studies", wrong, chunks=3)
        assert status == 200 and seen == wrong  # the inner app reads the whole body, even sent in parts
    status, headers, body, _ = _call(app, "/gradio_api/call/admin_studies", wrong)
    assert status == 429 and headers["retry-after"] == "1" and headers["content-type"] == "application/json"
    assert "Too many failed admin sign-ins" in json.loads(body)["detail"]
    # The same endpoint by index (the browser's queue/join) and by name in the v2 route: refused too.
    join = json.dumps({"data": ["guess"], "fn_index": 0, "session_hash": "x"}).encode()
    assert _call(app, "/gradio_api/queue/join", join)[0] == 429
    assert _call(app, "/gradio_api/call/v2/admin_studies", json.dumps({"secret": "guess"}).encode())[0] == 429
    assert _call(app, "/gradio_api/call/admin_studies", json.dumps({"data": ["right-password"]}).encode())[0] == 200
    # Made-up codes, also through the UI-only copy of reader_next (api name reader_next_1).
    code_join = json.dumps({"data": ["MADE-UP-0000"], "fn_index": 3, "session_hash": "x"}).encode()
    assert [_call(app, "/gradio_api/queue/join", code_join)[0] for _ in range(guard.READER_BURST + 1)] == \
        [200] * guard.READER_BURST + [429]
    # Other routes and endpoints pass untouched; a body over the limit is refused; junk goes to Gradio.
    assert _call(app, "/gradio_api/upload", b"x" * 100)[0] == 200
    assert _call(app, "/gradio_api/call/enhance", wrong)[0] == 200
    monkeypatch.setattr(guard, "MAX_BODY", 50)
    assert _call(app, "/gradio_api/call/enhance", b"{" + b" " * 60 + b"}")[0] == 413
    monkeypatch.setattr(guard, "MAX_BODY", 4 * 2**20)
    assert _call(app, "/gradio_api/call/enhance", b"not json")[0] == 200  # Gradio answers malformed JSON
    assert _call(app, "/gradio_api/call/admin_studies", b"not json")[0] == 429  # still an attempt at admin
    # A nearly full queue keeps its last places for the reader tab's events.
    blocks._queue.waiting = 48
    status, _, body, _ = _call(app, "/gradio_api/call/enhance", wrong)
    assert status == 429 and "busy" in json.loads(body)["detail"]
    gate.code_ok("GOOD-CODE-0001")
    assert _call(app, "/gradio_api/call/reader_next", json.dumps({"data": ["GOOD-CODE-0001"]}).encode())[0] == 200
    # A failure inside the guard never takes the app down: the request goes on (the endpoint still checks).
    monkeypatch.setattr(gate, "admin_request", lambda *a: 1 / 0)
    blocks._queue.waiting = 0
    assert _call(app, "/gradio_api/call/admin_studies", wrong)[0] == 200
