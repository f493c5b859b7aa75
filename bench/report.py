"""What every benchmark table carries: machine, commit, date; written as CSV + markdown."""

from __future__ import annotations

import csv
import datetime as dt
import os
import platform
import subprocess
from pathlib import Path
from typing import Any, Sequence

import torch


def machine() -> str:
    """CPU model and cores (or GPU name), for the table header."""
    cpu = platform.processor() or "cpu"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    desc = f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__}, {torch.get_num_threads()} threads"
    if torch.cuda.is_available():
        desc += f"; GPU {torch.cuda.get_device_name(0)}"
    return desc


def commit() -> str:
    """Short hash of the checked-out commit ("unknown" outside a git checkout)."""
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def write_table(rows: Sequence[dict[str, Any]], out: str | os.PathLike[str], stem: str, title: str) -> str:
    """Write ``rows`` to ``out/stem.csv`` and ``out/stem.md`` and return the markdown.

    The markdown starts with ``title``, the date, the commit and :func:`machine`, so a number
    quoted from it always says where and when it was measured.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cols = list(rows[0])
    with open(out / f"{stem}.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols)
        w.writeheader()
        w.writerows(rows)
    stamp = dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    md = [f"{title}; {stamp}, commit {commit()}, {machine()}", "",
          "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    md += ["| " + " | ".join(str(r[c]) for c in cols) + " |" for r in rows]
    text = "\n".join(md) + "\n"
    (out / f"{stem}.md").write_text(text)
    return text
