"""SHA-256 manifest of the weights files: written after training, verified at start-up.

    python -m models.checksums --write    # after training: (re)write models/weights/SHA256SUMS
    python -m models.checksums            # verify; exit status 1 if the app would refuse to start

The manifest is in ``sha256sum`` format (``<64 hex digits>  <file name>``, one
line per ``*.safetensors`` file, sorted), so ``cd models/weights && sha256sum -c
SHA256SUMS`` checks it as well. Start-up (``app.py``) calls :func:`verify_weights`:

* a weights file whose SHA-256 differs from its manifest entry, or a damaged
  manifest line, is *fatal*: the app refuses to start (a swapped or corrupted
  weights file must never serve results silently);
* a weights file not listed in the manifest, a listed file that is missing,
  and no manifest at all (before the first ``--write``) are *warnings*;
* registered networks without a weights file are reported by
  :func:`unavailable_models` (they stay listed in the UI, and a request for one
  is a clear :class:`~models.errors.WeightsError`).
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from . import loading
from .registry import list_models

__all__ = ["MANIFEST_NAME", "Problem", "read_manifest", "unavailable_models", "verify_weights", "write_manifest"]

MANIFEST_NAME = "SHA256SUMS"
_LINE = re.compile(r"([0-9a-f]{64}) [ *](\S.*)")


@dataclass(frozen=True)
class Problem:
    """One finding of :func:`verify_weights`.

    Attributes:
        kind: ``"mismatch"``, ``"bad manifest"`` (fatal), ``"unlisted"``, ``"missing"``, ``"no manifest"``.
        file: the weights (or manifest) file name.
        detail: a sentence for the log.
    """

    kind: str
    file: str
    detail: str

    @property
    def fatal(self) -> bool:
        """True if the app must refuse to start."""
        return self.kind in ("mismatch", "bad manifest")

    def __str__(self) -> str:
        return f"{self.file}: {self.detail}"


def _weights_dir(weights_dir: str | Path | None) -> Path:
    # Looked up at call time, so tests (and tools) can point models.loading.WEIGHTS_DIR elsewhere.
    return Path(weights_dir) if weights_dir is not None else loading.WEIGHTS_DIR


def read_manifest(path: str | Path) -> tuple[dict[str, str], list[str]]:
    """Parse a manifest: ({file name: sha256 hex}, [lines that are not ``<hex>  <name>``])."""
    entries: dict[str, str] = {}
    bad: list[str] = []
    for line in Path(path).read_text(encoding="utf-8", errors="replace").splitlines():
        if not line.strip():
            continue
        m = _LINE.fullmatch(line.strip())
        if m is None or "/" in m.group(2):
            bad.append(line.strip()[:80])
        else:
            entries[m.group(2)] = m.group(1)
    return entries, bad


def write_manifest(weights_dir: str | Path | None = None) -> Path:
    """Hash every ``*.safetensors`` file of ``weights_dir`` (default: the models' weights folder) into its manifest.

    Written to a temporary name and renamed, so a reader never sees half a manifest.
    Returns the manifest path.
    """
    folder = _weights_dir(weights_dir)
    lines = [f"{loading.sha256(p)}  {p.name}\n" for p in sorted(folder.glob("*.safetensors"))]
    out = folder / MANIFEST_NAME
    tmp = out.with_name(f".{MANIFEST_NAME}.partial")
    tmp.write_text("".join(lines), encoding="utf-8")
    tmp.replace(out)
    return out


def verify_weights(weights_dir: str | Path | None = None) -> list[Problem]:
    """Check every weights file against the manifest; an empty list means all is well.

    See the module docstring for which problems are fatal (:attr:`Problem.fatal`).
    """
    folder = _weights_dir(weights_dir)
    files = {p.name: p for p in sorted(folder.glob("*.safetensors"))}
    manifest = folder / MANIFEST_NAME
    if not manifest.is_file():
        if not files:
            return []
        return [Problem("no manifest", MANIFEST_NAME,
                        f"no checksum manifest, so {len(files)} weights file(s) are not verified; "
                        "run 'python -m models.checksums --write' after training")]
    entries, bad = read_manifest(manifest)
    problems = [Problem("bad manifest", MANIFEST_NAME, f"line {line!r} is not '<sha256>  <file name>'")
                for line in bad]
    for name, path in files.items():
        expected = entries.get(name)
        if expected is None:
            problems.append(Problem("unlisted", name, "not in the checksum manifest, so it is not verified"))
        elif loading.sha256(path) != expected:
            problems.append(Problem("mismatch", name, "SHA-256 does not match the checksum manifest "
                                    "(file replaced or corrupted; if it was retrained, rewrite the manifest)"))
    for name in sorted(set(entries) - set(files)):
        problems.append(Problem("missing", name, "listed in the checksum manifest but not present"))
    return problems


def unavailable_models(weights_dir: str | Path | None = None) -> list[str]:
    """Names of registered networks whose weights file does not exist (in registry order)."""
    folder = _weights_dir(weights_dir)
    return [s.name for s in list_models() if s.kind == "network" and s.weights and not (folder / s.weights).is_file()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write or verify the SHA-256 manifest of the weights files.")
    parser.add_argument("--write", action="store_true", help="(re)write the manifest from the files present")
    parser.add_argument("--dir", type=Path, default=None, help="weights folder (default: models/weights)")
    args = parser.parse_args(argv)
    if args.write:
        out = write_manifest(args.dir)
        print(f"wrote {out} ({sum(1 for _ in out.open())} file(s))")
        return 0
    problems = verify_weights(args.dir)
    for p in problems:
        print(f"{'ERROR' if p.fatal else 'warning'}: {p}")
    missing = unavailable_models(args.dir)
    if missing:
        print(f"warning: {len(missing)} model(s) unavailable (weights missing): {', '.join(missing)}")
    if not problems:
        print("all weights files match the checksum manifest")
    return 1 if any(p.fatal for p in problems) else 0


if __name__ == "__main__":
    sys.exit(main())
