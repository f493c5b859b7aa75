"""A reader-endpoint client for load tools: plain HTTP (Gradio's queue protocol) or ``gradio_client``, and random answers."""

from __future__ import annotations

import json
import random
import time
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from db import CRITERIA


def _answer(rng: random.Random, item: dict[str, Any]) -> dict[str, Any]:
    if item["kind"] == "likert":
        return {c: rng.randint(1, 5) for c in CRITERIA}
    return {"choice": rng.choice(["left", "right"]), "confidence": rng.randint(1, 5)}


def _call(client: Any, code: str, item_key: str, kind: str, answer: dict[str, Any], submit: bool = False) -> Any:
    if kind == "likert":
        args = (code, item_key, *(answer[c] for c in CRITERIA), "")
        api = "/reader_rate"
    else:
        args = (code, item_key, answer["choice"], answer["confidence"], "")
        api = "/reader_choose"
    return client.submit(*args, api_name=api) if submit else client.predict(*args, api_name=api)


class HttpClient:
    """A minimal client of the studio's HTTP API, with the ``predict``/``submit`` interface of ``gradio_client``.

    ``session=False`` (default): the documented simple API, ``POST /gradio_api/call/<api>`` then ``GET``
    its server-sent events until ``complete`` (or ``error``). Gradio makes a fresh session for each
    such call (for this app ~350 KB and about half the server's time per call).

    ``session=True``: what the browser does: ``POST /gradio_api/queue/join`` under one session hash per
    client, results from ``GET /gradio_api/queue/data``; the server reuses the session. :meth:`predict`
    must then not be called from two threads at once on one client (one stream per session);
    :meth:`submit` (a double click) uses a session of its own, like a second tab.

    ``gradio_client`` spends about twice the server's CPU time per call; with
    20 of them in one process the load generator, not the server, would be
    measured.
    """

    RETRIES = 10

    def __init__(self, url: str, timeout: float = 120.0, session: bool = False) -> None:
        import httpx

        self.refused = 0  # requests refused with "queue full" (503) and sent again
        self.throttled = 0  # requests refused by the sign-in guard (429) and sent again after Retry-After
        self.url = url.rstrip("/") + "/"
        self.http = httpx.Client(timeout=timeout)
        self.pool = ThreadPoolExecutor(max_workers=2)
        self.session = session
        self.session_hash = uuid.uuid4().hex
        self._fn_index: dict[str, int] = {}

    def _post(self, path: str, body: dict[str, Any]) -> Any:
        """POST, sent again (as a reader clicking again would) while refused before running: 503 = Gradio's
        queue is full, 429 = the sign-in guard's throttle. Answers are idempotent, so this is safe."""
        for attempt in range(self.RETRIES + 1):
            r = self.http.post(f"{self.url}{path}", json=body)
            if r.status_code not in (429, 503) or attempt == self.RETRIES:
                break
            if r.status_code == 429:
                self.throttled += 1
                time.sleep(float(r.headers.get("retry-after", "1")))
            else:
                self.refused += 1
                time.sleep(random.uniform(0.05, 0.2) * (attempt + 1))
        r.raise_for_status()
        return r.json()

    def predict(self, *args: Any, api_name: str) -> tuple[Any, ...]:
        if self.session:
            return self._predict_queued(list(args), api_name, self.session_hash)
        api = api_name.strip("/")
        event_id = self._post(f"gradio_api/call/{api}", {"data": list(args)})["event_id"]
        event = None
        with self.http.stream("GET", f"{self.url}gradio_api/call/{api}/{event_id}") as stream:
            for line in stream.iter_lines():
                if line.startswith("event:"):
                    event = line[6:].strip()
                elif line.startswith("data:") and event in ("complete", "error"):
                    data = json.loads(line[5:])
                    if event == "error":
                        raise RuntimeError(f"{api_name}: {data}")
                    return tuple(data)
        raise RuntimeError(f"{api_name}: the stream ended without a result")

    def _index(self, api_name: str) -> int:
        if not self._fn_index:
            config = self.http.get(f"{self.url}config").json()
            self._fn_index = {d["api_name"]: d["id"] for d in config["dependencies"] if d.get("api_name")}
        return self._fn_index[api_name.strip("/")]

    def _predict_queued(self, args: list[Any], api_name: str, session_hash: str) -> tuple[Any, ...]:
        body = {"data": args, "fn_index": self._index(api_name), "session_hash": session_hash,
                "event_data": None, "trigger_id": None}
        event_id = self._post("gradio_api/queue/join", body)["event_id"]
        with self.http.stream("GET", f"{self.url}gradio_api/queue/data", params={"session_hash": session_hash}) as s:
            for line in s.iter_lines():
                if not line.startswith("data:"):
                    continue
                msg = json.loads(line[5:])
                if msg.get("msg") == "process_completed" and msg.get("event_id") == event_id:
                    if not msg.get("success"):
                        raise RuntimeError(f"{api_name}: {msg.get('output', {}).get('error')}")
                    return tuple(msg["output"]["data"])
        raise RuntimeError(f"{api_name}: the stream ended without a result")

    def submit(self, *args: Any, api_name: str) -> Future:
        if self.session:
            return self.pool.submit(self._predict_queued, list(args), api_name, uuid.uuid4().hex)
        return self.pool.submit(self.predict, *args, api_name=api_name)

    def close(self) -> None:
        self.pool.shutdown(wait=False)
        self.http.close()


def _client(url: str, kind: str) -> Any:
    """``kind``: "http" (the /call API), "browser" (the browser's queue protocol, one session) or "gradio"."""
    if kind == "gradio":
        from gradio_client import Client

        return Client(url, verbose=False, download_files=False, analytics_enabled=False)
    return HttpClient(url, session=kind == "browser")


class _ServerGone(Exception):
    """A request to the process that was killed failed: the reader moves to another process."""
