"""Tiled inference with bounded memory.

A fully convolutional network's output pixel depends only on input pixels
within its receptive field, so an image can be processed in tiles: each tile
is run with ``margin`` extra input pixels on every side, and only its core is
written into the output. With a margin at least the receptive radius the
result equals whole-image inference up to float rounding. Peak memory is one
output array plus one tile's activations, whatever the image size.
"""

from __future__ import annotations

from typing import Callable

import torch


def tile_starts(length: int, tile: int) -> list[int]:
    """Start offsets of tiles of size ``tile`` covering ``range(length)``."""
    return list(range(0, length, tile))


@torch.no_grad()
def tiled_apply(
    fn: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    scale: int,
    tile: int,
    margin: int,
    out: torch.Tensor | None = None,
    align: int = 1,
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
    Returns:
        (1, C, H*scale, W*scale) float32 CPU tensor (``out`` when given).
    """
    _, c, h, w = x.shape
    tile, margin = -(-tile // align) * align, -(-margin // align) * align
    if out is None:
        out = torch.empty((1, c, h * scale, w * scale), dtype=torch.float32)
    if h <= tile and w <= tile:  # one tile: no seams to worry about
        out.copy_(fn(x))
        return out
    for y0 in tile_starts(h, tile):
        for x0 in tile_starts(w, tile):
            y1, x1 = min(y0 + tile, h), min(x0 + tile, w)
            ya, xa = max(y0 - margin, 0), max(x0 - margin, 0)
            yb, xb = min(y1 + margin, h), min(x1 + margin, w)
            res = fn(x[:, :, ya:yb, xa:xb])
            cy, cx = (y0 - ya) * scale, (x0 - xa) * scale
            out[:, :, y0 * scale : y1 * scale, x0 * scale : x1 * scale] = res[
                :, :, cy : cy + (y1 - y0) * scale, cx : cx + (x1 - x0) * scale
            ]
    return out
