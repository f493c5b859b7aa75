"""``python -m bench``: inference latency, FLOPs, peak memory and efficiency of every registered network.

For each network: parameters; FLOPs per output pixel (counted from the
layers); median and spread (min..max) of latency over ``--repeats`` runs after
a warm-up, for a 256x256 and a 1024x1024 output and a whole computed
radiograph (``cr``: pydicom-data's RG1_UNCR, 1841x1955 input, ``--cr-repeats``
runs), all tiled through ``models.enhance``; peak resident memory; the
execution plan chosen and how long choosing it took (``pick_s``: probe
timings, exports; once per process); and efficiency = (FLOPs / measured peak)
/ measured time, where the peak comes from a matrix-multiply probe (fp32, and
bf16 where a bf16 plan can be chosen) run in the same process. Besides the full
table, ``summary.md`` has one row per network: efficiency at 256², 1024² and
the whole CR, and the whole-CR seconds (:mod:`bench.whole_cr`).
``--plans fp32,auto`` compares the fp32 reference ("before") with the
automatically selected plan ("after"); ``torch`` is the automatic choice
without ONNX Runtime and ``ort`` forces ONNX Runtime (when installed and
within 50 dB of fp32). Writes CSV + markdown into ``--out``.

    python -m bench                       # all networks, CPU (CUDA when present): 256², 1024², whole CR
    python -m bench --models srresnet_x4,rrdbnet_x4,compact_x4_real --sizes 256,1024,cr --cr-repeats 3
    python -m bench --models vdsr_x2,srcnn_x2 --sizes 512 --repeats 5
    python -m bench --models dncnn --sizes 512 --plans fp32,torch,ort,auto
    python -m bench --memory-test         # x4 SR of 2048x2048 (8192x8192 output), peak RSS
    python -m bench --models-dir user-models --models my_esrgan,rrdbnet_x4 --sizes 512

User model files (``--models-dir``, default ``$MEDENHANCE_MODELS_DIR`` or ``./user-models``;
:mod:`models.plugins`) are registered first and timed through the same ``models.enhance``,
tiling and plans as ours. An imported ONNX graph runs in ONNX Runtime itself, so its FLOPs
(and efficiency) read 0: no PyTorch layers to count.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np
import torch

from models import enhance, get_spec, list_models
from models import device as devmod
from models.device import default_device, pick_plan
from models.loading import load_network
from models.user_nets import param_count

from .flops import flops_per_output_pixel, matmul_peak
from .memory import peak_rss
from .report import write_table
from .whole_cr import whole_cr


def time_enhance(image: np.ndarray, name: str, repeats: int, warm_up: np.ndarray | None = None) -> list[float]:
    """Wall-clock seconds of ``repeats`` calls to ``models.enhance`` after one warm-up (on ``warm_up`` if given)."""
    enhance(image if warm_up is None else warm_up, name)
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        enhance(image, name)
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        ts.append(time.perf_counter() - t)
    return ts


def _test_image(side: int, rng: np.random.Generator) -> np.ndarray:
    """A smooth image with texture: realistic for the kernels (no special-casing of zeros)."""
    yy, xx = np.mgrid[0:side, 0:side].astype(np.float32)
    return np.clip(0.5 + 0.3 * np.sin(xx / 17) * np.cos(yy / 23) + 0.02 * rng.standard_normal((side, side)),
                   0, 1).astype(np.float32)


def bench_model(name: str, sizes: list[str], repeats: int, peaks: dict[str, float], device: str,
                cr_repeats: int = 3) -> list[dict]:
    """One row per size: ``sizes`` are output sides in pixels, or ``"cr"`` (the whole CR as input)."""
    spec = get_spec(name)
    module = load_network(spec, device)
    params = param_count(module)  # an imported ONNX graph's weights are not torch parameters
    flops_px = flops_per_output_pixel(spec.build().eval(), module.in_channels, spec.scale)
    t0 = time.perf_counter()
    plan = pick_plan(name, module, device)
    pick_s = time.perf_counter() - t0  # 0 when an earlier call (another --plans mode's) already chose it
    peak = peaks["bf16" if plan.dtype == torch.bfloat16 else "fp16" if plan.dtype == torch.float16 else "fp32"]
    rows = []
    rng = np.random.default_rng(0)
    for size in sizes:
        if size == "cr":
            img = whole_cr()
            if img is None:
                print("note: pydicom-data's RG1_UNCR not found: no whole-CR row", flush=True)
                continue
            # Warm up on a crop: a whole-CR warm-up run would double the benchmark's time.
            with peak_rss() as mem:
                ts = time_enhance(img, name, cr_repeats, warm_up=np.ascontiguousarray(img[:256, :256]))
        else:
            img = _test_image(int(size) // spec.scale, rng)
            with peak_rss() as mem:
                ts = time_enhance(img, name, repeats if int(size) <= 1024 else max(3, repeats))
        med = statistics.median(ts)
        out_h, out_w = img.shape[0] * spec.scale, img.shape[1] * spec.scale
        flops = flops_px * out_h * out_w
        rows.append({
            "model": name, "device": device, "plan": plan.label, "fidelity_db": round(plan.fidelity_db, 1),
            "pick_s": round(pick_s, 1), "batch": 1, "params": params,
            "gflops_per_mpx": round(flops_px * 1e6 / 1e9, 2), "image": "whole CR" if size == "cr" else "pattern",
            "input": f"{img.shape[1]}x{img.shape[0]}",
            "output": f"{out_w}x{out_h}",
            "median_s": round(med, 4), "min_s": round(min(ts), 4), "max_s": round(max(ts), 4), "runs": len(ts),
            "achieved_gflops": round(flops / med / 1e9, 1), "efficiency": round(flops / peak / med, 3),
            "peak_rss_mb": round(mem["peak_mb"], 1),
        })
        print(rows[-1], flush=True)
    return rows


def memory_test() -> dict:
    """x4 SR of a 2048x2048 image (8192x8192 output) with the largest x4 network: peak RSS."""
    name = max((s for s in list_models(task="sr", scale=4) if s.kind == "network"),
               key=lambda s: sum(p.numel() for p in load_network(s, "cpu").parameters())).name
    img = np.random.default_rng(0).random((2048, 2048), dtype=np.float32)
    with peak_rss() as mem:
        t = time.perf_counter()
        out = enhance(img, name)
        secs = time.perf_counter() - t
    res = {"model": name, "input": "2048x2048", "output": f"{out.shape[1]}x{out.shape[0]}",
           "seconds": round(secs, 1), "peak_rss_mb": round(mem["peak_mb"], 1),
           "output_mb": round(out.nbytes / 2**20, 1)}
    print(res)
    return res


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default="", help="comma-separated networks (default: all)")
    p.add_argument("--sizes", default="256,1024,cr",
                   help="output sides in pixels, and cr: the whole CR (pydicom-data's RG1_UNCR) as input")
    p.add_argument("--cr-repeats", type=int, default=3, help="timed whole-CR runs (median reported)")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--plans", default="auto",
                   help="comma list of fp32 (reference), auto (chosen plan), torch (chosen without ONNX Runtime), "
                        "ort (ONNX Runtime forced)")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--out", default="results/bench")
    p.add_argument("--memory-test", action="store_true")
    p.add_argument("--peak-size", type=int, default=3072,
                   help="side of the matrix-multiply peak probe (smaller: faster, e.g. 768 on CPUs without native "
                        "bf16, where a 3072 bf16 product takes minutes; the peak only scales the efficiency column)")
    p.add_argument("--models-dir", default=None,
                   help="folder of user model files to register and time (default: $MEDENHANCE_MODELS_DIR, else ./user-models)")
    args = p.parse_args(argv)
    modes = args.plans.split(",")
    if set(modes) - {"fp32", "auto", "torch", "ort"}:
        p.error(f"--plans: unknown {sorted(set(modes) - {'fp32', 'auto', 'torch', 'ort'})}")
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.memory_test:
        memory_test()
        return 0

    from models.plugins import load_user_models

    for prob in load_user_models(args.models_dir).problems:
        print(f"note: user model {prob.file} not registered: {prob.message}", flush=True)
    device = default_device()
    names = [n for n in args.models.split(",") if n] or [s.name for s in list_models() if s.kind == "network"]
    n = args.peak_size
    peaks = {"fp32": matmul_peak(torch.float32, n, device=device)}
    # bf16 only where a bf16 plan can be chosen: elsewhere the probe alone takes minutes and scales nothing.
    half = any(p.dtype is not None for p in devmod.candidates(device))
    peaks["bf16"] = matmul_peak(torch.bfloat16, n, device=device) if half else peaks["fp32"]
    peaks["fp16"] = matmul_peak(torch.float16, n, device=device) if device.startswith("cuda") else peaks["bf16"]
    print(f"matmul peak: fp32 {peaks['fp32'] / 1e9:.1f} GFLOP/s, bf16 "
          + (f"{peaks['bf16'] / 1e9:.1f} GFLOP/s" if half else "not measured (no bf16 plan on this device)"), flush=True)
    sizes = [s.strip().lower() for s in args.sizes.split(",") if s.strip()]
    bad = [s for s in sizes if s != "cr" and not s.isdigit()]
    if bad:
        p.error(f"--sizes: output sides in pixels or cr, not {bad}")
    rows = []
    from models import loading

    user_ort = os.environ.get("MEDENHANCE_ORT", "1")
    for plan_mode in modes:
        os.environ["MEDENHANCE_PLAN"] = plan_mode if plan_mode in ("fp32", "ort") else ""
        os.environ["MEDENHANCE_ORT"] = "0" if plan_mode == "torch" else user_ort
        devmod._plans.clear()
        loading.clear_cache()
        for n in names:
            rows += bench_model(n, sizes, args.repeats, peaks, device, args.cr_repeats)

    title = (f"**Inference benchmark**, matmul peak fp32 {peaks['fp32'] / 1e9:.0f} GFLOP/s, bf16 "
             f"{peaks['bf16'] / 1e9:.0f} GFLOP/s; median of {args.repeats} runs after warm-up "
             f"({args.cr_repeats} for the whole CR)")
    print(write_table(rows, args.out, "bench", title))
    summary = summarize(rows)
    if summary:
        print(write_table(summary, args.out, "summary", "**Per network**: efficiency = (FLOPs / matmul peak) / "
                          f"time, fp32 peak {peaks['fp32'] / 1e9:.0f} GFLOP/s; whole CR = RG1_UNCR 1841x1955 input, "
                          f"median of {args.cr_repeats}"))
    return 0


def summarize(rows: list[dict]) -> list[dict]:
    """One row per (network, plan): efficiency at each size and the whole-CR seconds."""
    out: dict[tuple[str, str], dict] = {}
    for r in rows:
        key = (r["model"], r["plan"])
        row = out.setdefault(key, {"model": r["model"], "plan": r["plan"], "pick_s": r["pick_s"]})
        cr = r["image"] == "whole CR"
        row["efficiency " + ("whole CR" if cr else r["output"])] = f"{r['efficiency']:.0%}"
        if cr:
            row["whole CR s"] = r["median_s"]
            row["whole CR min..max s"] = f"{r['min_s']}..{r['max_s']}"
    seen = list(dict.fromkeys(c for row in out.values() for c in row))  # first-seen order: sizes as given
    tail = ["whole CR s", "whole CR min..max s"]
    cols = [c for c in seen if c not in tail] + [c for c in tail if c in seen]
    return [{c: row.get(c, "") for c in cols} for row in out.values()]


if __name__ == "__main__":
    raise SystemExit(main())
