"""The Compare tab's work as plain functions: N models on one image, side by side, with numbers.

:func:`compare_file` is the ``/compare`` endpoint:

1. read the upload like the Enhance tab (frame, window) into float32 [0, 1] display values;
2. choose what the results are compared with (``mode``):

   * ``"simulate"``: the upload is a clean original; a degradation of the training
     package (:mod:`train.degrade`, with the evaluation settings of :mod:`train.tasks`)
     makes the model input and the clean image is the reference;
   * ``"reference"``: the upload is the model input and a second upload the ground truth;
   * ``"none"``: no reference, so only no-reference indicators (not quality scores);

3. run the baseline (bicubic for SR, the input itself at scale 1) and every chosen
   model through :func:`models.enhance`, timing each call;
4. score every result with :mod:`train.metrics`: the same functions, data range (1.0)
   and border crop (= scale for SR) as training and evaluation, so numbers agree;
5. absolute-error heat maps and one ZIP with the results, the maps and the table (CSV).

The float results stay in memory under a run id (the last :data:`MAX_RUNS_KEPT`
runs) for the before/after slider (:func:`slider_pair`) and the synchronized zoom
(:func:`zoom_views`), which only re-crop; they never re-run a model.

Modules: :mod:`.options` (modes, degradations, model groups, checking a request), :mod:`.run`
(running and scoring), :mod:`.views` (galleries, slider, zoom), :mod:`.report` (``/compare``, the
report and the ZIP), :mod:`.heatmap` (error maps with a scale bar).
"""

from .options import (
                      DEFAULT_GROUP,
                      DEFAULT_MODE,
                      GROUPS,
                      default_degradation,
                      default_models,
                      degradation_choices,
                      mode_choices,
                      model_choices,
)
from .report import compare_file
from .run import INPUT, REFERENCE, get_run, no_reference_indicators
from .views import ZOOM_FACTORS, click_to_centre, slider_pair, view_choices, zoom_box, zoom_views

__all__ = [
    "DEFAULT_GROUP",
    "DEFAULT_MODE",
    "GROUPS",
    "INPUT",
    "REFERENCE",
    "ZOOM_FACTORS",
    "click_to_centre",
    "compare_file",
    "default_degradation",
    "default_models",
    "degradation_choices",
    "get_run",
    "mode_choices",
    "model_choices",
    "no_reference_indicators",
    "slider_pair",
    "view_choices",
    "zoom_box",
    "zoom_views",
]
