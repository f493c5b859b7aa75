"""Tiled inference with bounded memory, in one or two levels, reporting progress per tile.

A fully convolutional network's output pixel depends only on input pixels
within its receptive field, so an image can be processed in tiles: each tile
is run with ``margin`` extra input pixels on every side, and only its core is
written into the output. With a margin at least the receptive radius the
result equals whole-image inference up to float rounding. Peak memory is one
output array plus one tile's activations, whatever the image size.

The margin is recomputed for every tile, so small tiles of a deep network
spend most of their time on it: RRDBNet x4's 72-pixel margin around a
128-pixel tile is 4.5x the core's work. :func:`staged_tiled_apply` cuts a
post-upsampling network in two (:mod:`models.stages`): the low-resolution
stage, whose activations are small, runs on large tiles (little overlap), and
the high-resolution stage, whose activations are 4x or 16x larger but whose
receptive radius is a few pixels, runs on small sub-tiles of the first stage's
features.

``progress(done, total)`` is called with ``done = 0`` before the first tile and
after every tile; an exception raised by it stops the loop (cancellation).
"""

from __future__ import annotations

from typing import Callable, Iterator, NamedTuple

import torch

Progress = Callable[[int, int], None]


class Window(NamedTuple):
    """One tile: its core ``[y0, y1) x [x0, x1)`` and its input window ``[ya, yb) x [xa, xb)`` (core + margin)."""

    y0: int
    y1: int
    x0: int
    x1: int
    ya: int
    yb: int
    xa: int
    xb: int


def tile_starts(length: int, tile: int) -> list[int]:
    """Start offsets of tiles of size ``tile`` covering ``range(length)``."""
    return list(range(0, length, tile))


def windows(h: int, w: int, tile: int, margin: int,
            region: tuple[int, int, int, int] | None = None) -> Iterator[Window]:
    """Tiles of side ``tile`` covering ``region`` = (y0, y1, x0, x1) (default: the whole h x w image).

    Windows are the cores grown by ``margin`` and clipped to the image (not to the region).
    """
    ry0, ry1, rx0, rx1 = region or (0, h, 0, w)
    for y0 in range(ry0, ry1, tile):
        for x0 in range(rx0, rx1, tile):
            y1, x1 = min(y0 + tile, ry1), min(x0 + tile, rx1)
            yield Window(y0, y1, x0, x1, max(y0 - margin, 0), min(y1 + margin, h), max(x0 - margin, 0),
                         min(x1 + margin, w))


def count_tiles(h: int, w: int, tile: int) -> int:
    """Number of ``tile``-sided tiles covering an h x w image."""
    return -(-h // tile) * -(-w // tile)


def _align(n: int, align: int) -> int:
    return -(-n // align) * align


def _write_core(out: torch.Tensor, res: torch.Tensor, win: Window, oy: int, ox: int, scale: int) -> None:
    """Copy the core of a tile's result ``res`` (computed on the window whose origin is (oy, ox)) into ``out``."""
    cy, cx = (win.y0 - oy) * scale, (win.x0 - ox) * scale
    hh, ww = (win.y1 - win.y0) * scale, (win.x1 - win.x0) * scale
    out[:, :, win.y0 * scale : win.y1 * scale, win.x0 * scale : win.x1 * scale] = res[:, :, cy : cy + hh, cx : cx + ww]


@torch.no_grad()
def tiled_apply(
    fn: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    scale: int,
    tile: int,
    margin: int,
    out: torch.Tensor | None = None,
    align: int = 1,
    progress: Progress | None = None,
) -> torch.Tensor:
    """Apply ``fn`` to ``x`` tile by tile.

    Args:
        fn: maps (1, C, h, w) to (1, C, h*scale, w*scale); runs on whatever
            device it wants, its result is copied into ``out`` on the CPU.
        x: (1, C, H, W) input (CPU).
        scale: integer output/input size ratio.
        tile: core tile size in input pixels (>= 1).
        margin: context pixels added on each side of a tile (input pixels).
        out: optional preallocated (1, C, H*scale, W*scale) float32 CPU tensor.
        align: tile and margin are rounded up to multiples of it, so every tile's
            input window starts on the same pixel grid as the whole image (networks
            that pool by 2**k give other results on a shifted grid).
        progress: called as ``progress(done, total)`` (tiles) before the first tile and after each.
    Returns:
        (1, C, H*scale, W*scale) float32 CPU tensor (``out`` when given).
    """
    _, c, h, w = x.shape
    tile, margin = _align(tile, align), _align(margin, align)
    if out is None:
        out = torch.empty((1, c, h * scale, w * scale), dtype=torch.float32)
    say = progress or (lambda done, total: None)
    if h <= tile and w <= tile:  # one tile: no seams to worry about
        say(0, 1)
        out.copy_(fn(x))
        say(1, 1)
        return out
    total = count_tiles(h, w, tile)
    say(0, total)
    for done, win in enumerate(windows(h, w, tile, margin), start=1):
        _write_core(out, fn(x[:, :, win.ya : win.yb, win.xa : win.xb]), win, win.ya, win.xa, scale)
        say(done, total)
    return out


@torch.no_grad()
def staged_tiled_apply(
    lr_fn: Callable[[torch.Tensor], torch.Tensor],
    hr_fn: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    scale: int,
    lr_tile: int,
    lr_margin: int,
    hr_tile: int,
    hr_margin: int,
    out: torch.Tensor | None = None,
    progress: Progress | None = None,
) -> torch.Tensor:
    """Two-level tiling of a network split into ``hr_fn(lr_fn(x))`` (see :mod:`models.stages`).

    Args:
        lr_fn: (1, C, h, w) -> (1, K, h, w) low-resolution features, on any device.
        hr_fn: (1, K, h, w) features (a slice of ``lr_fn``'s result) -> (1, C, h*scale, w*scale) CPU.
        x: (1, C, H, W) input (CPU).
        lr_tile, lr_margin: tiles of ``lr_fn``; ``lr_margin`` must cover the receptive radius of the
            whole network (``lr_fn``'s and ``hr_fn``'s together), so that the features are exact
            wherever an HR sub-tile reads them.
        hr_tile, hr_margin: sub-tiles of ``hr_fn`` inside each LR tile's core; ``hr_margin`` covers
            ``hr_fn``'s receptive radius in input pixels.
        progress: ``progress(done, total)`` counted in HR sub-tiles.
    Returns:
        (1, C, H*scale, W*scale) float32 CPU tensor (``out`` when given).
    """
    _, c, h, w = x.shape
    if lr_margin < hr_margin:
        raise ValueError(f"lr_margin {lr_margin} must cover hr_margin {hr_margin}")
    if out is None:
        out = torch.empty((1, c, h * scale, w * scale), dtype=torch.float32)
    outer = list(windows(h, w, lr_tile, lr_margin))
    total = sum(count_tiles(o.y1 - o.y0, o.x1 - o.x0, hr_tile) for o in outer)
    say = progress or (lambda done, total: None)
    say(0, total)
    done = 0
    for o in outer:
        feats = lr_fn(x[:, :, o.ya : o.yb, o.xa : o.xb])
        # Sub-tile windows are clipped to the image; they stay inside the LR window because
        # lr_margin >= hr_margin, and the features there are exact (lr_margin covers both stages).
        for win in windows(h, w, hr_tile, hr_margin, region=(o.y0, o.y1, o.x0, o.x1)):
            sub = feats[:, :, win.ya - o.ya : win.yb - o.ya, win.xa - o.xa : win.xb - o.xa]
            _write_core(out, hr_fn(sub), win, win.ya, win.xa, scale)
            done += 1
            say(done, total)
        del feats
    return out
