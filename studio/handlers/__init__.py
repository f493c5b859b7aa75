"""Event handlers of the studio as plain functions: call them from tests, scripts or Gradio.

* :mod:`.uploads`: reading an upload (DICOM de-identified first), its preview and header panel;
* :mod:`.options`: the tasks, models and options the Enhance tab offers, and how inputs are checked;
* :mod:`.enhance`: running the model (``/enhance``) and writing PNG / DICOM results;
* :mod:`.measure`: what the input looks like (``/measure``: noise, JPEG, smoothness, the automatic choice);
* :mod:`.results`: the folder results are written to; :mod:`.errors`: how failures reach the user.

The tabs (:mod:`studio.ui`) wire these functions to Gradio components; the
only Gradio object used here is ``gr.Error``.
"""

from .enhance import EnhanceResult, enhance_file, enhance_upload, run_model
from .measure import input_report, measure_file
from .options import (
                      DEFAULT_TASK,
                      DEFAULT_WINDOW,
                      TASKS,
                      about_models,
                      default_model,
                      model_choices,
                      parse_ensemble,
                      parse_noise_level,
                      parse_strength,
                      parse_window,
                      window_choices,
)
from .results import preview_file, preview_files, result_bits, results_dir
from .uploads import Upload, header_panel, inspect_upload, load_image, prepare_upload

__all__ = [
    "DEFAULT_TASK",
    "DEFAULT_WINDOW",
    "EnhanceResult",
    "TASKS",
    "Upload",
    "about_models",
    "default_model",
    "enhance_file",
    "enhance_upload",
    "input_report",
    "measure_file",
    "header_panel",
    "inspect_upload",
    "load_image",
    "model_choices",
    "parse_ensemble",
    "parse_noise_level",
    "parse_strength",
    "parse_window",
    "prepare_upload",
    "preview_file",
    "preview_files",
    "result_bits",
    "results_dir",
    "run_model",
    "window_choices",
]
