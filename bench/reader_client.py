"""A reader-endpoint client for load tools: plain HTTP (Gradio's queue protocol) or ``gradio_client``, and random answers."""

from __future__ import annotations

import json
import random
import time
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
    """A minimal client of the studio's documented HTTP API: ``POST /gradio_api/call/<api>``, then
    ``GET`` its server-sent events until ``complete`` (or ``error``).

    ``gradio_client`` spends about twice the server's CPU time per call; with
    20 of them in one process the load generator, not the server, would be
    measured. Same ``predict``/``submit`` interface as ``gradio_client.Client``.
    """

    RETRIES = 10

    def __init__(self, url: str, timeout: float = 120.0) -> None:
        import httpx

        self.refused = 0  # requests refused with "queue full" (503) and sent again
        self.url = url.rstrip("/") + "/"
        self.http = httpx.Client(timeout=timeout)
        self.pool = ThreadPoolExecutor(max_workers=2)

    def predict(self, *args: Any, api_name: str) -> tuple[Any, ...]:
        api = api_name.strip("/")
        for attempt in range(self.RETRIES + 1):
            r = self.http.post(f"{self.url}gradio_api/call/{api}", json={"data": list(args)})
            # 503 = Gradio's queue is full: the request was refused before running, so sending it
            # again is safe (answers are idempotent anyway), as a reader clicking again would.
            if r.status_code != 503 or attempt == self.RETRIES:
                break
            self.refused += 1
            time.sleep(random.uniform(0.05, 0.2) * (attempt + 1))
        r.raise_for_status()
        event_id = r.json()["event_id"]
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

    def submit(self, *args: Any, api_name: str) -> Future:
        return self.pool.submit(self.predict, *args, api_name=api_name)

    def close(self) -> None:
        self.pool.shutdown(wait=False)
        self.http.close()


def _client(url: str, kind: str) -> Any:
    if kind == "gradio":
        from gradio_client import Client

        return Client(url, verbose=False, download_files=False, analytics_enabled=False)
    return HttpClient(url)


class _ServerGone(Exception):
    """A request to the process that was killed failed: the reader moves to another process."""
