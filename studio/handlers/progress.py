"""Progress and cancellation of long runs: tiles done / total with an estimate, and a Stop button.

:func:`models.enhance` calls ``progress(done, total)`` before the first tile
and after each one. :class:`TileProgress` turns that into a line for the page
("srresnet_x4: tile 40 / 240 · about 35 s left") and, when the user pressed
Stop, raises :class:`Cancelled` from inside the tile loop, so the worker
actually stops instead of finishing a result nobody will see. Gradio's
``cancels=`` frees the queue at once; the flag set here stops the thread that
was running the model at its next tile.

Stop flags are kept per (browser session, tab), so one user's Stop never
cancels another user's run.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable

import gradio as gr

logger = logging.getLogger("medenhance.studio")

# (session hash, tab) -> the stop flag of the run in flight there.
_stops: dict[tuple[str, str], threading.Event] = {}
_stops_lock = threading.Lock()


class Cancelled(gr.Error):
    """The user pressed Stop: raised from the progress callback, inside the tile loop."""

    def __init__(self) -> None:
        super().__init__("Stopped: the run was cancelled.", title="Stopped", print_exception=False)


def begin_run(session: str | None, tab: str) -> threading.Event:
    """A fresh stop flag for the run starting now in ``session``'s ``tab`` (replaces an older one)."""
    flag = threading.Event()
    if session:
        with _stops_lock:
            _stops[(session, tab)] = flag
    return flag


def end_run(session: str | None, tab: str, flag: threading.Event) -> None:
    """Forget ``flag`` once its run is over (a later run has its own)."""
    with _stops_lock:
        if session and _stops.get((session, tab)) is flag:
            del _stops[(session, tab)]


def request_stop(session: str | None, tab: str) -> bool:
    """Ask the run in flight in ``session``'s ``tab`` to stop; False when none is running."""
    with _stops_lock:
        flag = _stops.get((session, tab)) if session else None
    if flag is None:
        return False
    flag.set()
    return True


def estimate(done: int, total: int, elapsed_s: float) -> str:
    """ "about 35 s left" from the rate so far; "estimating…" before the first tile is done."""
    if done <= 0 or total <= 0:
        return "estimating…"
    if done >= total:
        return "finishing"
    left = round(elapsed_s / done * (total - done))
    return f"about {left} s left" if left < 60 else f"about {left // 60} min {left % 60} s left"


class TileProgress:
    """``progress(done, total)`` for :func:`models.enhance` that reports text and checks the stop flag.

    Args:
        report: ``report(done, total, text)``, e.g. ``lambda d, t, s: gr_progress((d, t), desc=s, unit="tiles")``.
        label: what runs (a model name), the start of the text.
        stop: the run's stop flag; when set, the next call raises :class:`Cancelled`.
        clock: seconds (monotonic); the estimate counts from the ``done == 0`` call.
    """

    def __init__(self, report: Callable[[int, int, str], None], label: str, stop: threading.Event | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.report, self.label, self.stop, self.clock = report, label, stop, clock
        self.started: float | None = None

    def __call__(self, done: int, total: int) -> None:
        if self.stop is not None and self.stop.is_set():
            logger.info("%s stopped by the user at tile %d / %d", self.label, done, total)
            raise Cancelled()
        now = self.clock()
        if done == 0 or self.started is None:  # a new pass (e.g. redone with smaller tiles after running out of memory)
            self.started = now
        self.report(done, total, f"{self.label}: tile {done} / {total} · {estimate(done, total, now - self.started)}")
