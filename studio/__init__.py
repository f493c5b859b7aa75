"""MedEnhance Studio: the Gradio web UI over :mod:`models`.

Layers: ``app.py`` -> ``studio`` -> ``models``, ``db``. The Compare tab also uses the
training package's metrics and degradations (``train.metrics``, ``train.degrade``) so its
numbers are the ones evaluation reports. Handlers are plain functions testable without a browser.

Where things are:

* :mod:`studio.ui`: the tabs (layout and wiring only), rendering helpers, example images;
* :mod:`studio.handlers`: uploads, the Enhance tab's model run and result files, error policy;
* :mod:`studio.compare`: the Compare tab's runs, scores, views and report;
* :mod:`studio.study`: reader studies (design, cases, readers, answers, access codes, storage);
* :mod:`studio.stats`: the statistics and analysis of a finished study;
* :mod:`studio.app` assembles the tabs; :mod:`studio.config` reads the environment once.

    from studio import build_app
    demo = build_app()
    demo.queue().launch()
"""

from studio.app import build_app
from studio.config import Settings
from studio.handlers import enhance_file, inspect_upload

__all__ = ["build_app", "enhance_file", "inspect_upload", "Settings"]
