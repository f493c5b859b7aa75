"""The "Study admin" tab: create studies, hand out reader codes, watch progress, close, export, analyse.

Every endpoint takes the admin password as its first input and checks it on
each call (``STUDIO_ADMIN_PASSWORD``, else the generated one printed at first
start). Named API endpoints:

* ``/admin_create_study`` (password, name, design, models, files, folder, readers, repeat_cases,
  washout_days, pair_mode, seed, window) -> (summary markdown, reader codes JSON {label: code}, shown once)
* ``/admin_add_readers`` (password, study_id, count) -> (markdown, reader codes JSON)
* ``/admin_add_hf_readers`` (password, study_id, usernames) -> (markdown, {reader: Hugging Face username})
* ``/admin_studies`` (password) -> (markdown table, JSON list)
* ``/admin_progress`` (password, study_id) -> (markdown, JSON per reader)
* ``/admin_close_study`` (password, study_id) -> markdown
* ``/admin_export`` (password, study_id, seed) -> (answers CSV, analysis ZIP, analysis markdown, plots)
* ``/admin_export_bundle`` (password, study_id) -> the study bundle ZIP (rows and images, to move the study
  to another installation or database: :mod:`studio.study.bundle`)
* ``/admin_import_bundle`` (password, bundle ZIP, new name or "", keep_codes) -> (markdown with the readers' new
  access codes, shown once, unless keep_codes; new study id)
* ``/admin_create_study_from_results`` (password, name, design, models, results ZIP, results folder, readers,
  repeat_cases, washout_days, pair_mode, seed, window) -> (summary markdown, reader codes JSON): another
  tool's precomputed results (:mod:`studio.study.results_import`) as variants beside any chosen models
* ``/admin_reload_models`` (password) -> (markdown, JSON report): read the user models folder again
* ``/admin_upload_model`` (password, model file, optional NAME.json sidecar) -> (markdown, JSON report)
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any

import gradio as gr
from gradio.utils import get_upload_folder

from studio import handlers, study, user_models
from studio.study import results_import
from studio.study.design import create_study_from_results
from studio.study.store import StudyStore
from studio.ui.reader_tab import guard

EXPORT_TTL_S = 3600
logger = logging.getLogger("medenhance.studio.admin")

_EXPORT_ROOT: Path | None = None


def _check(store: StudyStore, password: Any) -> None:
    # No delay here: a sleeping worker is what let ~80 looping clients fill the queue. Failed sign-ins
    # are throttled per client before they are queued (studio.guard), which also logs the address.
    if not store.admin.check(password):
        logger.warning("wrong admin password")
        raise gr.Error("Wrong admin password.", title="Not allowed", print_exception=False)


def export_dir() -> Path:
    """A fresh folder for one export inside this process's temp dir (Gradio serves files from there);
    exports older than an hour are removed."""
    global _EXPORT_ROOT
    if _EXPORT_ROOT is None or not _EXPORT_ROOT.is_dir():
        _EXPORT_ROOT = Path(tempfile.mkdtemp(prefix="medenhance-study-exports-"))
    cutoff = time.time() - EXPORT_TTL_S
    for d in _EXPORT_ROOT.iterdir():
        try:
            if d.stat().st_mtime < cutoff:
                shutil.rmtree(d, ignore_errors=True)
        except OSError:
            pass
    return Path(tempfile.mkdtemp(dir=_EXPORT_ROOT))


def remove_uploads(paths: list[str]) -> int:
    """Delete uploaded files from Gradio's upload cache once imported (or refused); returns how many.

    An uploaded DICOM carries patient identifiers in its header; the study keeps
    only the pixels, so the upload need not wait for Gradio's hourly clean-up.
    Files outside the upload cache (server-folder imports) are never touched.
    """
    cache = Path(get_upload_folder()).resolve()
    removed = 0
    for p in paths:
        try:
            path = Path(p).resolve()
            if path.is_relative_to(cache) and path.is_file():
                path.unlink()
                removed += 1
        except OSError:  # already gone
            pass
    return removed


def _codes_markdown(codes: dict[str, str]) -> str:
    rows = "\n".join(f"| {label} | `{code}` |" for label, code in codes.items())
    return ("**Reader codes: shown only now; copy them and give one to each reader.** Only their hashes are "
            "stored: a lost code cannot be shown again (add a new reader instead).\n\n"
            "| reader | access code |\n|---|---|\n" + rows)


def _studies_markdown(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "No studies yet."
    head = "| id | name | design | status | models | cases | readers | answered |\n|---|---|---|---|---|---|---|---|"
    body = "\n".join(f"| {r['study_id']} | {r['name']} | {r['design']} | {r['status']} | {', '.join(r['models'])} | "
                     f"{r['cases']} | {r['readers']} | {r['answered']} of {r['items']} |" for r in rows)
    return head + "\n" + body


def _progress_markdown(p: dict[str, Any]) -> str:
    head = (f"### Study {p['study_id']}: {p['name']} ({p['design']}, {p['status']})\n\n"
            f"{p['ratings']} ratings and {p['preferences']} preferences stored.\n\n"
            "| reader | status | answered | last answer (UTC) |\n|---|---|---|---|")
    body = "\n".join(f"| {r['reader']} | {r['status']} | {r['answered']} of {r['total']} | "
                     f"{(r['last_answer'] or '-')[:19].replace('T', ' ')} |" for r in p["readers"])
    return head + "\n" + body


def build_admin_tab(demo: gr.Blocks, store: StudyStore) -> None:
    """Lay out the Study admin tab inside the current ``gr.Tab`` and wire its endpoints (see the module docstring)."""
    import_note = ("Server folders can be imported from inside the configured import folder."
                   if store.settings.import_root else "Server-folder import is off (the operator can set STUDIO_IMPORT_ROOT).")
    password = gr.Textbox(label="Admin password", type="password",
                          info="STUDIO_ADMIN_PASSWORD, or the password printed once when the server first started.")
    with gr.Tab("New study"):
        with gr.Row():
            with gr.Column():
                name = gr.Textbox(label="Study name")
                design = gr.Radio([("Single-image Likert", "likert"), ("Pairwise 2AFC", "2afc"), ("Both", "both")],
                                  value="both", label="Design")
                models = gr.Dropdown(choices=study.ready_models(), value=study.default_models(), multiselect=True,
                                     label="Models",
                                     info="The original image is always included as the reference.",
                                     allow_custom_value=True)
                pair_mode = gr.Radio([("All pairs", "all"), ("Each model vs the original", "reference")],
                                     value="all", label="2AFC pairs")
                window = gr.Dropdown(choices=handlers.window_choices(), value=handlers.DEFAULT_WINDOW,
                                     label="Display window of DICOM sources", allow_custom_value=True)
            with gr.Column():
                files = gr.File(label="Images (DICOM, PNG, JPEG, TIFF)", file_count="multiple", type="filepath")
                folder = gr.Textbox(label="…or a server folder", info=import_note)
                readers = gr.Number(label="Readers", value=3, precision=0, minimum=1)
                repeats = gr.Number(label="Repeated cases per reader (intra-reader agreement)", value=0,
                                    precision=0, minimum=0)
                washout = gr.Number(label="Washout before repeats (days)", value=0, minimum=0)
                seed = gr.Number(label="Randomization seed", value=0, precision=0, minimum=0)
        create = gr.Button("Create study", variant="primary")
        with gr.Accordion("…or from another tool's results (precomputed outputs as variants)", open=False):
            gr.Markdown("A zip or a server folder of `CASE/original.(dcm|png|tif|jpg)` plus `CASE/METHOD.(png|tif|dcm)` "
                        "per case, or a `manifest.csv` (`case,method,path`). Each METHOD becomes a variant beside "
                        "the models chosen above (which may stay empty); readers see only the images.")
            with gr.Row():
                results_zip = gr.File(label="Results (zip)", file_types=[".zip"], type="filepath")
                results_folder = gr.Textbox(label="…or a server folder of results", info=import_note)
            create_results = gr.Button("Create study from results", variant="primary")
        summary = gr.Markdown()
        codes = gr.JSON(label="Reader codes (shown once)", visible=False)
    with gr.Tab("Progress & readers"):
        with gr.Row():
            study_id = gr.Number(label="Study id", value=1, precision=0, minimum=1)
            list_btn = gr.Button("List studies")
            progress_btn = gr.Button("Show progress")
        with gr.Row():
            more = gr.Number(label="Add readers", value=1, precision=0, minimum=1)
            add_btn = gr.Button("Generate codes")
            close_btn = gr.Button("Close study", variant="stop")
        with gr.Row():
            hf_users = gr.Textbox(label="Add readers by Hugging Face username (on a Space they sign in with it)",
                                  placeholder="one per line, or separated by commas", lines=2, scale=3)
            hf_add_btn = gr.Button("Add Hugging Face readers", scale=1)
        admin_md = gr.Markdown()
        admin_json = gr.JSON(visible=False)
        add_md = gr.Markdown()
        add_codes = gr.JSON(visible=False)
    with gr.Tab("Export & analysis"):
        with gr.Row():
            export_id = gr.Number(label="Study id", value=1, precision=0, minimum=1)
            boot_seed = gr.Number(label="Bootstrap seed", value=0, precision=0, minimum=0)
            export_btn = gr.Button("Export and analyse", variant="primary")
        with gr.Row():
            answers_file = gr.File(label="answers.csv (one row per answer)")
            zip_file = gr.File(label="Analysis (CSV tables, markdown, JSON, plots)")
        plots_gallery = gr.Gallery(label="Plots", columns=2, height="auto")
        report = gr.Markdown()
    with gr.Tab("Your models"):
        gr.Markdown("Model files in the models folder (`MEDENHANCE_MODELS_DIR`): spandrel weights (`.safetensors`, "
                    "or `.pth`/`.pt`/`.ckpt` loaded as plain weights only) and ONNX graphs, with an optional "
                    "`NAME.json` sidecar (name, task, scale, title, licence, source, trained_on).")
        models_md = gr.Markdown(user_models.current_markdown(), elem_id="admin-user-models")
        models_json = gr.JSON(visible=False)
        with gr.Row():
            model_upload = gr.File(label="Model file", file_types=[".safetensors", ".pth", ".pt", ".ckpt", ".onnx"],
                                   type="filepath")
            sidecar_upload = gr.File(label="Sidecar NAME.json (optional)", file_types=[".json"], type="filepath")
        with gr.Row():
            upload_btn = gr.Button("Add model", variant="primary")
            reload_btn = gr.Button("Reload models")
    with gr.Tab("Move a study"):
        gr.Markdown("A study bundle is one zip file with the study's rows (design, cases, readers, answers) and "
                    "its images: import it on another installation, SQLite or PostgreSQL. Readers get new access "
                    "codes on import (shown once: whoever holds the bundle cannot sign in), unless you keep them.")
        with gr.Row():
            bundle_id = gr.Number(label="Study id", value=1, precision=0, minimum=1)
            bundle_btn = gr.Button("Export study bundle")
            bundle_file = gr.File(label="Study bundle (zip)")
        with gr.Row():
            bundle_upload = gr.File(label="Study bundle to import (zip)", file_types=[".zip"], type="filepath")
            bundle_name = gr.Textbox(label="New name (optional; needed when the name is taken here)")
            bundle_keep = gr.Checkbox(label="Keep the readers' access codes", value=False,
                                      info="Off: every reader gets a new code, shown once after the import.")
            bundle_import_btn = gr.Button("Import study bundle", variant="primary")
        bundle_md = gr.Markdown()
        bundle_new_id = gr.Number(label="Imported study id", precision=0, visible=False)

    def admin_create_study(password: str, name: str, design: str, models: list[str] | None, files: list[str] | None,
                           folder: str, readers: Any, repeat_cases: Any, washout_days: Any, pair_mode: str,
                           seed: Any, window: str, progress: gr.Progress = gr.Progress()) -> tuple[str, dict[str, str]]:
        """Create a study from uploads and/or a server folder; returns (summary, {reader: access code})."""
        _check(store, password)
        uploads = [handlers.uploads._upload_path(f) for f in (files or [])]
        try:
            with guard("creating the study"):
                paths = list(uploads)
                if folder and str(folder).strip():
                    paths += study.folder_files(store.settings.import_root, folder)
                d = study.StudyDesign(name=name, design=design, models=tuple(models or ()), readers=readers,
                                      repeat_cases=repeat_cases or 0, washout_days=washout_days or 0,
                                      pair_mode=pair_mode or "all", seed=seed or 0,
                                      window=handlers.parse_window(window))
                created = study.create_study(store, d, paths, progress=lambda f, t: progress(f, desc=t))
        finally:
            remove_uploads(uploads)
        lines = [f"### Study {created.study_id} created: {created.name}",
                 f"{created.cases} cases × {created.variants // max(1, created.cases)} variants "
                 f"(original + {created.variants // max(1, created.cases) - 1} models); "
                 f"{created.items_per_reader} items per reader."]
        if created.skipped:
            lines.append("Skipped: " + "; ".join(created.skipped))
        return "\n\n".join(lines) + "\n\n" + _codes_markdown(created.codes), created.codes

    def admin_create_study_from_results(password: str, name: str, design: str, models: list[str] | None,
                                        results_file: Any, folder: str, readers: Any, repeat_cases: Any,
                                        washout_days: Any, pair_mode: str, seed: Any, window: str,
                                        progress: gr.Progress = gr.Progress()) -> tuple[str, dict[str, str]]:
        """Create a study from another tool's results (zip or server folder); returns (summary, {reader: code})."""
        _check(store, password)
        upload = handlers.uploads._upload_path(results_file) if results_file else None
        results = None
        try:
            with guard("creating the study from results"):
                results = results_import.open_results(upload, store.settings.import_root, folder)
                d = study.StudyDesign(name=name, design=design, models=tuple(models or ()), readers=readers,
                                      repeat_cases=repeat_cases or 0, washout_days=washout_days or 0,
                                      pair_mode=pair_mode or "all", seed=seed or 0,
                                      window=handlers.parse_window(window))
                created = create_study_from_results(store, d, results, progress=lambda f, t: progress(f, desc=t))
        finally:
            if results is not None:
                results.cleanup()
            remove_uploads([upload] if upload else [])
        per_case = created.variants // max(1, created.cases)
        cases = "\n".join(f"| {label} | {user_models.md_text(tool, 120)} |" for label, tool in created.case_names.items())
        lines = [f"### Study {created.study_id} created from results: {created.name}",
                 f"{created.cases} cases × {per_case} variants (original + {len(d.models)} models + "
                 f"{per_case - 1 - len(d.models)} methods: {', '.join(results.methods)}); "
                 f"{created.items_per_reader} items per reader.",
                 "**Case labels** (shown only now; the tool's case names are not stored):\n\n"
                 "| case | the tool's case |\n|---|---|\n" + cases]
        return "\n\n".join(lines) + "\n\n" + _codes_markdown(created.codes), created.codes

    def admin_reload_models(password: str) -> tuple[str, dict[str, Any]]:
        """Read the user models folder again: (markdown of what registered and what was refused, report)."""
        _check(store, password)
        with guard("reloading the models"):
            return user_models.reload_models()

    def admin_upload_model(password: str, model_file: Any, sidecar: Any) -> tuple[str, dict[str, Any]]:
        """Add a model file (and its optional NAME.json sidecar) to the models folder; kept only if it registers."""
        _check(store, password)
        if not model_file:
            raise gr.Error("Choose a model file to add.", title="Cannot do that", print_exception=False)
        paths = [handlers.uploads._upload_path(f) for f in (model_file, sidecar) if f]
        try:
            with guard("adding the model"):
                return user_models.upload_model(paths[0], paths[1] if len(paths) > 1 else None)
        finally:
            remove_uploads(paths)

    def admin_add_readers(password: str, study_id: Any, count: Any) -> tuple[str, dict[str, str]]:
        """Add readers to an open study; returns (markdown, {reader: access code}) shown once."""
        _check(store, password)
        with guard("adding readers"):
            new = study.add_readers(store, study_id, count)
        return _codes_markdown(new), new

    def admin_add_hf_readers(password: str, study_id: Any, usernames: str) -> tuple[str, dict[str, str]]:
        """Add readers who sign in with Hugging Face; returns (markdown, {reader: username}) shown once."""
        _check(store, password)
        with guard("adding Hugging Face readers"):
            new = study.add_hf_readers(store, study_id, usernames)
        if not new:
            return "Every one of them is already a reader of this study.", new
        rows = "\n".join(f"| {label} | @{user} |" for label, user in new.items())
        return ("Added (they sign in on the Reader study tab with Hugging Face; only the code's hash is stored, "
                "so note who is who now):\n\n| reader | Hugging Face account |\n|---|---|\n" + rows), new

    def admin_studies(password: str) -> tuple[str, list[dict[str, Any]]]:
        """Every study with its size and answer counts."""
        _check(store, password)
        with guard("listing studies"):
            rows = study.list_studies(store)
        return _studies_markdown(rows), rows

    def admin_progress(password: str, study_id: Any) -> tuple[str, dict[str, Any]]:
        """Progress per reader (answered of total per block, last answer); no answers are shown."""
        _check(store, password)
        with guard("reading progress"):
            p = study.study_progress(store, study_id)
        return _progress_markdown(p), p

    def admin_close_study(password: str, study_id: Any) -> str:
        """Close a study: readers can no longer answer; stored answers stay."""
        _check(store, password)
        with guard("closing the study"):
            res = study.close_study(store, study_id)
        return f"Study {res['study_id']} is closed (since {res['closed_at'][:19].replace('T', ' ')} UTC)."

    def admin_export(password: str, study_id: Any, seed: Any) -> tuple[str, str, str, list[str]]:
        """Export answers (CSV) and the full analysis (ZIP), with the report and plots."""
        # Imported here, not at the top: `python -m studio.stats.analysis` must not find itself already
        # imported by the package (runpy warns and would run a second copy of the module).
        from studio.stats import analysis

        _check(store, password)
        with guard("exporting the study"):
            sid = study.study_id_of(study_id)
            boot_seed = study.whole_number(seed or 0, "Seed", 0, 2**31 - 1)
            out = export_dir()
            res = analysis.write_outputs(store.db, sid, out / f"study-{sid}", seed=boot_seed)
            zip_path = out / f"study-{sid}-analysis.zip"
            with zipfile.ZipFile(zip_path, "w", zipfile.ZIP_DEFLATED) as z:
                for f in res["files"]:
                    z.write(f, f.relative_to(out))
            answers = out / f"study-{sid}-answers.csv"
            shutil.copyfile(out / f"study-{sid}" / "answers.csv", answers)
        return str(answers), str(zip_path), res["markdown"], [str(p) for p in res["plots"]]

    def admin_export_bundle(password: str, study_id: Any) -> str:
        """The study's rows and images as one zip file (a study bundle)."""
        # Imported here: `python -m studio.study.bundle` must not find itself imported by the package already.
        from studio.study import bundle

        _check(store, password)
        with guard("exporting the study bundle"):
            sid = study.study_id_of(study_id)
            out = export_dir() / f"study-{sid}-bundle.zip"
            bundle.export_bundle(store, sid, out)
        return str(out)

    def admin_import_bundle(password: str, file: Any, name: str, keep_codes: bool = False) -> tuple[str, int]:
        """Import a study bundle as a new study; returns (markdown with the new reader codes, new study id)."""
        from studio.study import bundle

        _check(store, password)
        if not file:
            raise gr.Error("Choose a study bundle (zip) to import.", title="Cannot do that", print_exception=False)
        upload = handlers.uploads._upload_path(file)
        try:
            with guard("importing the study bundle"):
                imported = bundle.import_bundle(store, upload, (name or "").strip() or None, keep_codes=bool(keep_codes))
                new_id = imported.study_id
                row = next(r for r in study.list_studies(store) if r["study_id"] == new_id)
        finally:
            remove_uploads([upload])
        return (f"Imported as **study {new_id}**: {row['name']} ({row['cases']} cases, {row['readers']} readers, "
                f"{row['answered']} of {row['items']} items answered). "
                + ("\n\n" + _codes_markdown(imported.codes) if imported.codes
                   else "Readers sign in with their old codes.")), new_id

    admin = {"concurrency_limit": 4, "concurrency_id": "admin"}
    private = {"api_visibility": "private"}
    # Rendering is model inference: it queues with the Enhance tab's runs.
    create.click(admin_create_study, [password, name, design, models, files, folder, readers, repeats, washout,
                                      pair_mode, seed, window], [summary, codes], api_name="admin_create_study",
                 concurrency_id="inference")
    add_btn.click(admin_add_readers, [password, study_id, more], [add_md, add_codes], api_name="admin_add_readers",
                  **admin)
    hf_add_btn.click(admin_add_hf_readers, [password, study_id, hf_users], [add_md, add_codes],
                     api_name="admin_add_hf_readers", **admin)
    list_btn.click(admin_studies, password, [admin_md, admin_json], api_name="admin_studies", **admin)
    progress_btn.click(admin_progress, [password, study_id], [admin_md, admin_json], api_name="admin_progress", **admin)
    close_btn.click(admin_close_study, [password, study_id], admin_md, api_name="admin_close_study", **admin)
    export_btn.click(admin_export, [password, export_id, boot_seed], [answers_file, zip_file, report, plots_gallery],
                     api_name="admin_export", **admin)
    bundle_btn.click(admin_export_bundle, [password, bundle_id], bundle_file, api_name="admin_export_bundle", **admin)
    bundle_import_btn.click(admin_import_bundle, [password, bundle_upload, bundle_name, bundle_keep],
                            [bundle_md, bundle_new_id],
                            api_name="admin_import_bundle", **admin)
    create_results.click(admin_create_study_from_results,
                         [password, name, design, models, results_zip, results_folder, readers, repeats, washout,
                          pair_mode, seed, window], [summary, codes], api_name="admin_create_study_from_results",
                         concurrency_id="inference")
    # Loading model files runs networks (shape checks): it queues with the inference runs.
    reload_btn.click(admin_reload_models, password, [models_md, models_json], api_name="admin_reload_models",
                     concurrency_id="inference")
    upload_btn.click(admin_upload_model, [password, model_upload, sidecar_upload], [models_md, models_json],
                     api_name="admin_upload_model", concurrency_id="inference")
    demo.load(user_models.current_markdown, None, models_md, **private)
    # Weights trained after start-up become choosable on the next page load (UI only).
    demo.load(lambda: gr.update(choices=study.ready_models()), None, models, **private)
