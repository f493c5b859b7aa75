"""The "Reader study" tab: one case at a time, blinded; the work is in :mod:`studio.study.reading`.

Named API endpoints (every one takes the reader's access code and checks it
against the database on each call; nothing held by the browser is trusted):

* ``/reader_next``   (code) -> (left image, right image, item)
* ``/reader_rate``   (code, item_key, overall, noise, sharpness, contrast, artefacts, confidence, comment)
  -> (left image, right image, item)
* ``/reader_choose`` (code, item_key, choice, confidence, comment) -> (left image, right image, item)

``item`` is a JSON object: status ("item", "done", "waiting", "closed"),
item_key, kind ("likert" or "pair"), number, total, answered, message, and
after a submission ``saved`` (the stored answer; ``duplicate`` true when the
item had been answered already and nothing changed). It never names a model.
"""

from __future__ import annotations

import logging
import os
import traceback
import uuid
from contextlib import contextmanager
from typing import Any, Iterator

import gradio as gr

from db import CRITERIA
from studio.guard import Gate
from studio.study import reading
from studio.study.auth import hash_code
from studio.study.store import StudyStore
from studio.ui.served_images import ImageTokens, ServedImage, served_url

logger = logging.getLogger("medenhance.studio.reader")

# Reader requests are short database transactions: many may run at once (SQLite queues the writers).
READER_CONCURRENCY = 16

CRITERION_LABELS = {
    "overall": "Overall image quality (1 = non-diagnostic … 5 = excellent)",
    "noise": "Noise (1 = severe … 5 = none)",
    "sharpness": "Sharpness (1 = very blurred … 5 = very sharp)",
    "contrast": "Contrast (1 = poor … 5 = excellent)",
    "artefacts": "Artefacts (1 = severe … 5 = none)",
    "confidence": "Diagnostic confidence (1 = very low … 5 = very high)",
}
SCORES = [(str(v), v) for v in range(1, 6)]

# Window/level of the displayed grey levels (centre, width on the 0…1 display scale). The models
# ran on the study's window, so these re-map what is shown; they cannot recover clipped values.
DISPLAY_PRESETS = {
    "As rendered": (0.5, 1.0),
    "More contrast (narrow window)": (0.5, 0.6),
    "Dark structures (low level)": (0.35, 0.7),
    "Bright structures (high level)": (0.65, 0.7),
}

HELP = (
    "Rate each image on its own, as you would for diagnosis. Model names are hidden and the order is "
    "randomized for you. **Keyboard:** digits 1–5 fill the next unanswered score, Enter submits; in pairs "
    "← / → choose left or right, 1–5 set your confidence, Enter submits. You can stop at any time: "
    "every answer is saved immediately and *Start / resume* brings you back to the next case."
)

# An SVG filter for exact window/level (y = (x - c) / w + 0.5) on the displayed image, plus the help.
_HTML = (
    '<svg width="0" height="0" style="position:absolute" aria-hidden="true">'
    '<filter id="me-wl" color-interpolation-filters="sRGB"><feComponentTransfer>'
    '<feFuncR type="linear" slope="1" intercept="0"/><feFuncG type="linear" slope="1" intercept="0"/>'
    '<feFuncB type="linear" slope="1" intercept="0"/></feComponentTransfer></filter></svg>'
)

# Installed once per page: keyboard shortcuts, and window/level + zoom re-applied to every new image.
_JS = """
if (!window.__meReader) {
  window.__meReader = {preset: [0.5, 1.0], zoom: 1.0};
  const st = window.__meReader;
  const shown = (el) => el && el.offsetParent !== null;
  const apply = () => {
    const [c, w] = st.preset;
    for (const f of document.querySelectorAll('#me-wl feFuncR, #me-wl feFuncG, #me-wl feFuncB')) {
      f.setAttribute('slope', String(1 / w)); f.setAttribute('intercept', String(0.5 - c / w));
    }
    for (const img of document.querySelectorAll('#reader-images img')) {
      const f = (c === 0.5 && w === 1.0) ? '' : 'url(#me-wl)';
      // Fit to the panel (every variant of a case has the same size), zoom by enlarging; the panel scrolls.
      const size = (100 * st.zoom) + '%';
      if (img.style.filter !== f) img.style.filter = f;
      if (img.style.width !== size) {
        Object.assign(img.style, {width: size, height: size, maxWidth: 'none', maxHeight: 'none', objectFit: 'contain'});
      }
      if (img.parentElement && img.parentElement.style.overflow !== 'auto') img.parentElement.style.overflow = 'auto';
    }
  };
  window.meReaderView = (preset, zoom) => {
    if (Array.isArray(preset)) st.preset = preset;
    if (zoom) st.zoom = Number(zoom) / 100;
    apply();
  };
  new MutationObserver(apply).observe(document.body, {childList: true, subtree: true});
  document.addEventListener('keydown', (ev) => {
    const t = ev.target;
    if (t && (t.tagName === 'TEXTAREA' || (t.tagName === 'INPUT' && !['radio', 'checkbox', 'range'].includes(t.type)))) return;
    const likert = document.querySelector('#reader-likert'), pair = document.querySelector('#reader-pair');
    const pick = (root, k) => { const r = root ? root.querySelectorAll('input[type=radio]') : []; if (r[k]) { r[k].click(); ev.preventDefault(); } };
    if (shown(likert)) {
      if (/^[1-5]$/.test(ev.key)) {
        const groups = [...likert.querySelectorAll('[id^=reader-c-]')];
        const open = groups.find((g) => !g.querySelector('input:checked')) || groups[groups.length - 1];
        pick(open, Number(ev.key) - 1);
      } else if (ev.key === 'Enter') { document.querySelector('#reader-rate-btn')?.click(); ev.preventDefault(); }
    } else if (shown(pair)) {
      if (ev.key === 'ArrowLeft') pick(pair.querySelector('#reader-choice'), 0);
      else if (ev.key === 'ArrowRight') pick(pair.querySelector('#reader-choice'), 1);
      else if (/^[1-5]$/.test(ev.key)) pick(pair.querySelector('#reader-pair-conf'), Number(ev.key) - 1);
      else if (ev.key === 'Enter') { document.querySelector('#reader-choose-btn')?.click(); ev.preventDefault(); }
    }
  });
}
"""


def hf_signin_enabled() -> bool:
    """Hugging Face sign-in on the Reader tab: on a Space with OAuth (Spaces set ``SPACE_ID``, and
    ``OAUTH_CLIENT_ID`` when the README's front matter says ``hf_oauth: true``), or locally with
    ``MEDENHANCE_HF_SIGNIN=1`` (Gradio then signs in as the user of the local Hugging Face token)."""
    on_space = bool(os.environ.get("SPACE_ID")) and bool(os.environ.get("OAUTH_CLIENT_ID"))
    return on_space or os.environ.get("MEDENHANCE_HF_SIGNIN") == "1"


@contextmanager
def guard(stage: str) -> Iterator[None]:
    """Map study errors to ``gr.Error`` (message shown as is); log and hide everything unexpected."""
    try:
        yield
    except gr.Error:
        raise
    except ValueError as e:  # StudyError, AccessError and the library's ValueErrors: the user's input
        raise gr.Error(str(e), title="Cannot do that", print_exception=False) from None
    except Exception as e:  # a bug or a resource problem: keep serving; the stored answers are untouched
        ref = uuid.uuid4().hex[:8]
        logger.error("internal error ref=%s while %s:\n%s", ref, stage,
                     "".join(traceback.format_exception(type(e), e, e.__traceback__)))
        raise gr.Error(f"Internal error while {stage} (reference {ref}); it has been logged. Your saved answers "
                       "are safe; try again.", title="Internal error", print_exception=False) from None


def view_outputs(view: reading.ReaderView, tokens: ImageTokens, code: Any,
                 request: gr.Request | None) -> tuple[Any, Any, dict[str, Any]]:
    """A :class:`ReaderView` -> the endpoints' outputs (left image, right image, item JSON).

    Over HTTP the images are served under fresh tokens (:mod:`studio.ui.served_images`): the
    variant files are not copied, and the URLs name neither a variant nor a server path.
    """
    owner = hash_code(code)
    return (served_url(tokens, view.left, owner, request), served_url(tokens, view.right, owner, request),
            view.public())


def _ui_update(item: dict[str, Any] | None) -> list[Any]:
    """Item JSON -> visibility and reset of the answer forms (UI only)."""
    item = item or {}
    status, kind = item.get("status"), item.get("kind")
    lines = []
    saved = item.get("saved")
    if saved:
        lines.append("Saved (already recorded earlier)." if saved.get("duplicate") else "Saved.")
    if item.get("message"):
        lines.append(f"**{item['message']}**")
    if item.get("total"):
        lines.append(f"Progress: {item.get('answered', 0)} of {item['total']} answered.")
    is_item = status == "item"
    return [
        "\n\n".join(lines),
        gr.update(visible=is_item and kind == "likert"),
        gr.update(visible=is_item and kind == "pair"),
        item.get("item_key", "") if is_item else "",
        gr.update(label="Left" if kind == "pair" else "Image"),
        gr.update(visible=is_item and kind == "pair"),
        *[gr.update(value=None) for _ in CRITERIA],
        gr.update(value=""),
        gr.update(value=None), gr.update(value=None), gr.update(value=""),
    ]


def build_reader_tab(demo: gr.Blocks, store: StudyStore, gate: Gate, tokens: ImageTokens) -> None:
    """Lay out the Reader study tab inside the current ``gr.Tab`` and wire its events.

    Registers ``/reader_next``, ``/reader_rate`` and ``/reader_choose`` (see the module docstring).
    ``gate`` learns every code the database accepted (signed-in readers pass a flood of wrong codes);
    ``tokens`` serves the images.
    """
    gr.HTML(_HTML, js_on_load=_JS, elem_id="reader-setup")
    gr.Markdown(HELP)
    with gr.Row():
        code = gr.Textbox(label="Access code", type="password", placeholder="e.g. K7PD-Q2XM-9HTA", scale=3,
                          elem_id="reader-code")
        start = gr.Button("Start / resume", variant="primary", scale=1)
    if hf_signin_enabled():  # on a Space: readers the admin added by username need no code
        with gr.Row():
            gr.LoginButton(scale=1)
            hf_start = gr.Button("Start / resume with my Hugging Face account", scale=2)
    status = gr.Markdown(elem_id="reader-status")
    with gr.Row():
        display = gr.Radio(list(DISPLAY_PRESETS), value="As rendered", label="Display window/level", scale=3)
        zoom = gr.Slider(100, 400, value=100, step=25, label="Zoom (%)", scale=1)
    with gr.Row(elem_id="reader-images"):
        left = ServedImage(label="Image", type="filepath", format="png", image_mode=None, interactive=False,
                           height=640, buttons=["fullscreen"])
        right = ServedImage(label="Right", type="filepath", format="png", image_mode=None, interactive=False,
                            height=640, buttons=["fullscreen"], visible=False)
    with gr.Group(visible=False, elem_id="reader-likert") as likert_box:
        radios = [gr.Radio(SCORES, label=CRITERION_LABELS[c], elem_id=f"reader-c-{c}") for c in CRITERIA]
        comment = gr.Textbox(label="Comment (optional)", lines=2, max_length=reading.MAX_COMMENT)
        rate = gr.Button("Submit rating", variant="primary", elem_id="reader-rate-btn")
    with gr.Group(visible=False, elem_id="reader-pair") as pair_box:
        choice = gr.Radio([("Left is better", "left"), ("Right is better", "right")],
                          label="Which image is better for diagnosis?", elem_id="reader-choice")
        pair_conf = gr.Radio(SCORES, label="Confidence (1 = guess … 5 = certain)", elem_id="reader-pair-conf")
        pair_comment = gr.Textbox(label="Comment (optional)", lines=2, max_length=reading.MAX_COMMENT)
        choose = gr.Button("Submit choice", variant="primary", elem_id="reader-choose-btn")
    # The item being answered: a reference only; the handlers check it belongs to the code's reader.
    item_key = gr.Textbox(visible=False)
    item = gr.JSON(visible=False, label="Item")

    def next_view(code: str) -> reading.ReaderView:
        view = reading.next_item(store, code)
        gate.code_ok(code)  # the database knows this code: a flood of wrong ones will not slow it down
        return view

    def reader_next(code: str, request: gr.Request = None) -> tuple[Any, Any, dict[str, Any]]:
        """Sign in / resume: (access code) -> (left image, right image or None, item JSON)."""
        with guard("loading your next case"):
            return view_outputs(next_view(code), tokens, code, request)

    def reader_rate(code: str, item_key: str, overall: Any, noise: Any, sharpness: Any, contrast: Any,
                    artefacts: Any, confidence: Any, comment: str,
                    request: gr.Request = None) -> tuple[Any, Any, dict[str, Any]]:
        """Store Likert scores (1-5) for the current single-image item, then return the next item."""
        with guard("saving your rating"):
            scores = dict(zip(CRITERIA, (overall, noise, sharpness, contrast, artefacts, confidence)))
            saved = reading.submit_rating(store, code, item_key, scores, comment)
        with guard("loading your next case"):  # the answer is committed before the next case is read
            view = next_view(code)
        view.saved = saved
        return view_outputs(view, tokens, code, request)

    def reader_choose(code: str, item_key: str, choice: str, confidence: Any, comment: str,
                      request: gr.Request = None) -> tuple[Any, Any, dict[str, Any]]:
        """Store a forced choice ("left"/"right", confidence 1-5) for the current pair, then return the next item."""
        with guard("saving your choice"):
            saved = reading.submit_preference(store, code, item_key, choice, confidence, comment)
        with guard("loading your next case"):
            view = next_view(code)
        view.saved = saved
        return view_outputs(view, tokens, code, request)

    def reader_hf(profile: gr.OAuthProfile | None, request: gr.Request = None) -> tuple[str, Any, Any, dict[str, Any]]:
        # Gradio fills `profile` from the Space's OAuth session (None when signed out); the derived
        # code goes into the (password) code box, so every later request is checked as usual.
        with guard("signing you in"):
            code_ = reading.hf_code(store, profile.username if profile is not None else None)
            return (code_, *view_outputs(next_view(code_), tokens, code_, request))

    outputs = [left, right, item]
    ui = [status, likert_box, pair_box, item_key, left, right, *radios, comment, choice, pair_conf, pair_comment]
    common = {"concurrency_limit": READER_CONCURRENCY, "concurrency_id": "reader"}
    private = {"api_visibility": "private"}
    start.click(reader_next, code, outputs, api_name="reader_next",
                api_description="Sign in and get the next unanswered item: (code) -> (left, right, item).",
                **common).success(_ui_update, item, ui, **private)
    code.submit(reader_next, code, outputs, **common, **private).success(_ui_update, item, ui, **private)
    if hf_signin_enabled():
        hf_start.click(reader_hf, None, [code, *outputs], **common, **private).success(_ui_update, item, ui, **private)
    rate.click(reader_rate, [code, item_key, *radios, comment], outputs, api_name="reader_rate",
               api_description="Rate the current single image (scores 1-5), get the next item.",
               **common).success(_ui_update, item, ui, **private)
    choose.click(reader_choose, [code, item_key, choice, pair_conf, pair_comment], outputs, api_name="reader_choose",
                 api_description="Choose the better image of the current pair ('left'/'right', confidence 1-5), "
                                 "get the next item.", **common).success(_ui_update, item, ui, **private)
    # Display only: runs in the browser, nothing reaches the server.
    view_js = ("(p, z) => { const m = %s; if (window.meReaderView) window.meReaderView(m[p], z); return []; }"
               % {k: list(v) for k, v in DISPLAY_PRESETS.items()}).replace("'", '"')
    display.change(None, [display, zoom], None, js=view_js)
    zoom.change(None, [display, zoom], None, js=view_js)
