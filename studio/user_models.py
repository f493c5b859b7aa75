"""The Study admin tab's "Your models" work: list, reload and upload user model files (:mod:`models.plugins`).

Plain functions (the tab checks the admin password first). Everything shown comes from files a
user provided (names, messages quoting sidecars), so it is escaped before it reaches markdown.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from models import model_card
from models.errors import PluginError
from models.plugins import (PluginReport, default_models_dir, last_report, load_user_models, md_code, md_text,
                            save_model_file)


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
