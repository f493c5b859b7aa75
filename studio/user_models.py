"""The Study admin tab's "Your models" work: list, reload and upload user model files (:mod:`models.plugins`).

Plain functions (the tab checks the admin password first). Everything shown comes from files a
user provided (names, messages quoting sidecars), so it is escaped before it reaches markdown.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import Any

from models import model_card
from models.errors import PluginError, printable
from models.plugins import (ENV_MAX_SIZE, SIDECAR_MAX_BYTES, PluginReport, default_models_dir, last_report,
                            load_user_models, max_model_bytes, md_code, md_text, sidecar_path)
from models.user_nets import MODEL_SUFFIXES


def report_markdown(report: PluginReport | None) -> str:
    """The models folder as markdown: the user models registered (name, architecture, scale, SHA-256), then refusals."""
    if report is None:
        return f"The models folder (`{md_code(default_models_dir())}`) has not been read yet: press *Reload models*."
    lines = [f"**Models folder** `{md_code(report.folder)}`: {len(report.loaded)} model(s) registered, "
             f"{len(report.problems)} file(s) refused (read in {report.seconds:.1f} s)."]
    if report.loaded:
        lines += ["", "| model | task | architecture | parameters | file | SHA-256 | measured here |",
                  "|---|---|---|---|---|---|---|"]
        for name in report.loaded:
            try:
                c = model_card(name)
            except ValueError:  # removed by a later reload
                continue
            info = c.get("info", {})
            task = f"sr ×{c['scale']}" if c["task"] == "sr" else c["task"]
            lines.append(f"| `{name}` | {task} | {md_text(info.get('architecture', '?'))} | "
                         f"{int(info.get('params') or 0):,} | {md_text(info.get('file', '?'))} | `{c.get('sha256')}` | "
                         f"{'yes' if c.get('measured') else 'not measured here'} |")
    if report.problems:
        lines += ["", "**Refused** (fix the file, then *Reload models*):", ""]
        lines += [f"- {md_text(p.file, 120)}: {md_text(p.message)}" for p in report.problems]
    lines += ["", "New or removed models appear in the Enhance, Compare and study model lists after a page reload."]
    return "\n".join(lines)


def current_markdown() -> str:
    """The latest scan of this process, as markdown."""
    return report_markdown(last_report())


def reload_models() -> tuple[str, dict[str, Any]]:
    """Read the models folder again; returns (markdown, the report as a dict). Never raises for a bad file."""
    report = load_user_models()
    return report_markdown(report), report.to_dict()


def upload_model(model_file: str | Path, sidecar: str | Path | None = None) -> tuple[str, dict[str, Any]]:
    """Save an uploaded model file (and its optional ``NAME.json`` sidecar) in the models folder, then reload.

    The file is kept only if it registers: a refused upload is removed again, so a bad file never
    sits in the folder. Returns (markdown, report dict).

    Raises:
        PluginError: wrong kind of file, over the size limit, name taken, or refused on loading
            (the message says why).
    """
    saved = save_model_file(model_file, Path(model_file).name, sidecar=sidecar)
    report = load_user_models()
    refused = [p for p in report.problems if p.file == saved.name]
    if refused:
        saved.unlink(missing_ok=True)
        if sidecar is not None:
            saved.with_suffix(".json").unlink(missing_ok=True)
        load_user_models()  # the listing no longer mentions the removed file
        raise PluginError(f"Upload refused, not kept: {refused[0].message}")
    return report_markdown(report), report.to_dict()


def save_model_file(src: str | os.PathLike[str], file_name: str, folder: str | os.PathLike[str] | None = None,
                    sidecar: str | os.PathLike[str] | None = None) -> Path:
    """Copy an uploaded model file (and its optional sidecar) into the models folder; returns the new path.

    The caller reloads the models afterwards. The file name (the upload's) must end in a model
    suffix and is reduced to safe characters; an existing file of that name is not replaced.

    Raises:
        PluginError: wrong suffix, over the size limit, name taken, or the folder not writable.
    """
    src = Path(src)
    suffix = Path(file_name).suffix.lower()
    if suffix not in MODEL_SUFFIXES:
        raise PluginError(f"{printable(Path(file_name).name)[:80]}: not a model file (use {', '.join(MODEL_SUFFIXES)}).")
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(file_name).stem).strip("._-")[:48]
    if not stem:
        raise PluginError("The file name has no usable characters; rename it (letters, digits, '_', '-').")
    size = src.stat().st_size
    if size > max_model_bytes():
        raise PluginError(f"The upload is {size / 2**20:.1f} MB, over the limit of {max_model_bytes() / 2**20:.0f} MB "
                          f"({ENV_MAX_SIZE}).")
    target_dir = Path(folder) if folder is not None else default_models_dir()
    try:
        target_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise PluginError(f"The models folder cannot be created: {e.strerror or e}.") from None
    dst = target_dir / f"{stem}{suffix}"
    side_dst = sidecar_path(dst)
    if dst.exists() or (sidecar is not None and side_dst.exists()):
        raise PluginError(f"A model file named {dst.name!r} is already in the models folder; rename the upload.")
    if sidecar is not None and Path(sidecar).stat().st_size > SIDECAR_MAX_BYTES:
        raise PluginError(f"The sidecar is over {SIDECAR_MAX_BYTES // 1024} KB.")
    written = []
    try:
        for s, d in ((sidecar, side_dst), (src, dst)):  # the sidecar first: a scan never sees the model without it
            if s is None:
                continue
            tmp = d.with_name(f".{d.name}.partial")
            shutil.copyfile(s, tmp)
            os.replace(tmp, d)
            written.append(d)
    except OSError as e:
        for d in written:
            d.unlink(missing_ok=True)
        raise PluginError(f"The model could not be saved in the models folder: {e.strerror or e}.") from None
    return dst
