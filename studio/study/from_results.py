"""``python -m studio.study.from_results``: a blinded reader study from another tool's results, from the shell.

    python -m studio.study.from_results results.zip --name pilot --models edsr_x2 --readers 3
    python -m studio.study.from_results /srv/tool-output --name pilot --design 2afc --pair-mode reference

RESULTS is a zip or a folder of ``CASE/original.(dcm|png|tif|jpg)`` plus ``CASE/METHOD.(png|tif|dcm)``, or
with a ``manifest.csv`` (:mod:`studio.study.results_import`). The study is written where the app keeps
its studies (``STUDIO_DATA_DIR`` / ``DATABASE_URL``); ``--models`` adds registered models as variants
(user model files of ``MEDENHANCE_MODELS_DIR`` included). Prints the study id, the case labels next to
the tool's case names (not stored) and each reader's access code (shown only now).
Exit status: 0 created, 2 refused (the message says why).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from models.batch import _parse_window
from models.plugins import load_user_models
from studio.study.checks import StudyError
from studio.study.design import StudyDesign, create_study_from_results
from studio.study.results_import import open_results
from studio.study.store import open_store


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m studio.study.from_results", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("results", type=Path, help="zip file or folder of CASE/original.* and CASE/METHOD.* files")
    p.add_argument("--name", required=True, help="study name (shown to the admin, never to readers)")
    p.add_argument("--models", default="", help="comma-separated registered models to add as variants")
    p.add_argument("--design", default="both", choices=["likert", "2afc", "both"])
    p.add_argument("--pair-mode", default="all", choices=["all", "reference"])
    p.add_argument("--readers", type=int, default=3)
    p.add_argument("--repeat-cases", type=int, default=0)
    p.add_argument("--washout-days", type=float, default=0.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--window", type=_parse_window, default=None,
                   help="display window of DICOM files: default (the file's own), auto, full, a preset or CENTER,WIDTH")
    args = p.parse_args(argv)
    for prob in load_user_models().problems:
        print(f"note: user model {prob.file} not registered: {prob.message}", file=sys.stderr)
    store = open_store()
    results = None
    try:
        path = args.results.resolve()
        results = open_results(path) if path.is_file() else open_results(None, path.parent, path.name)
        design = StudyDesign(name=args.name, design=args.design, readers=args.readers, seed=args.seed,
                             models=tuple(m for m in args.models.split(",") if m), pair_mode=args.pair_mode,
                             repeat_cases=args.repeat_cases, washout_days=args.washout_days, window=args.window)
        created = create_study_from_results(store, design, results)
    except (StudyError, ValueError, OSError) as e:
        print(f"refused: {e}", file=sys.stderr)
        return 2
    finally:
        if results is not None:
            results.cleanup()
        store.close()
    print(f"study {created.study_id} created: {created.name}, {created.cases} cases, methods "
          f"{', '.join(results.methods)}, {created.items_per_reader} items per reader")
    for label, tool_case in created.case_names.items():
        print(f"  case {label} = {tool_case}")
    print("reader access codes (shown only now):")
    for label, code in created.codes.items():
        print(f"  {label}  {code}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
