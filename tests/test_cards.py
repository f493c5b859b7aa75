"""Every registered model's card, as the studio shows it: summary, data, scores, where it fails, history folded."""

from __future__ import annotations

import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import pytest  # noqa: E402

from models import list_models, model_card  # noqa: E402
from studio.ui import render  # noqa: E402

NETWORKS = [s.name for s in list_models() if s.kind == "network"]


@pytest.mark.parametrize("name", NETWORKS)
def test_network_card_reads_summary_data_scores_failures_then_folded_history(name: str) -> None:
    card = model_card(name)
    assert card["fails"], f"{name}: a network's card must say where it fails (ModelSpec.fails)"
    md = render.card_markdown(card)
    if not card["weights_present"]:
        assert "not available" in md
        return
    order = [md.index(s) for s in (card["summary"][:40], "**Data**", "**Measured scores**", "**Where it fails**",
                                   "<details><summary>Training details</summary>")]
    assert order == sorted(order)
    # The history is inside the fold, never above it.
    notes = (card["metadata"].get("training") or {}).get("notes")
    if notes:
        assert md.index(notes[:60]) > md.index("<details>") and md.rstrip().endswith("</details>")


def test_card_shows_other_site_scores_after_the_held_out_test() -> None:
    meta = {"training": {"data_name": "cxr", "train_images": 3, "steps": 2, "notes": "stage 1"},
            "val": {"psnr": 30.0, "ssim": 0.9, "baseline": {"psnr": 29.0, "ssim": 0.8}},
            "external_sr_x2": {"psnr": 41.0, "ssim": 0.95, "images": 3, "baseline": {"model": "bicubic_x2", "psnr": 40.0}},
            "test_sr_x2": {"psnr": 31.0, "ssim": 0.91, "images": 5, "baseline": {"model": "bicubic_x2", "psnr": 30.5}}}
    card = {"name": "m", "kind": "network", "task": "sr", "scale": 2, "summary": "A model.", "fails": "Noise.",
            "weights_present": True, "metadata": meta}
    md = render.card_markdown(card)
    assert md.index("| val") < md.index("| test_sr_x2 (5 images)") < md.index("| external_sr_x2 (3 images)")
    assert "+1.00" in md and "+0.50" in md and "**Data**: cxr, 3 training images" in md
    assert "- history: stage 1" in md.split("<details>")[1]


def test_classical_card_has_no_training_fold() -> None:
    md = render.card_markdown(model_card("bicubic_x2"))
    assert "Classical method" in md and "<details>" not in md
