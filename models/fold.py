"""Fold a convolution that follows a pixel shuffle down to the shuffle's lower resolution (exact rewrite).

SRResNet x4 ends with ``PixelShuffle(2) -> PReLU(48) -> Conv2d(48, 1, 9)`` at the
output resolution: a 9x9 convolution with a single output channel, which oneDNN
and ONNX Runtime run at a few percent of the CPU's peak (ONNX Runtime pads the
output to 8 channels: 8x the work) and which needs the 48-channel, 16x-pixel
tensor materialised twice (shuffle, activation). On the shuffle's input grid
the same map is one ``Conv2d(48*4, 1*4, 5)`` followed by a shuffle of 4
channels: the 48-channel full-resolution tensor never exists.

With ``z`` the (C*r*r)-channel input of ``PixelShuffle(r)`` and ``W`` the k x k
kernel, output pixel ``(r*i + a, r*j + b)`` of channel ``o`` reads shuffled
pixel ``r*i + a + u - k//2``, which is pixel ``i + di`` of channel
``c*r*r + a'*r + b'`` of ``z`` with ``r*di + a' = a + u - k//2``. The folded
kernel gathers those taps; zero padding maps to zero padding, so the result
is the same function (up to float summation order). A per-channel activation
between the shuffle and the convolution (PReLU, ReLU, LeakyReLU) moves before
the shuffle with its slopes repeated r*r times.

Folding multiplies the convolution's dense FLOPs by K'^2 r^2 / k^2 (1.23 for
k=9, 4 for k=3 at r=2), so it is applied only when the convolution has so few
output channels (``out_channels * r*r <= MAX_FOLDED_OUT``) that its time is set
by memory traffic, not arithmetic.
"""

from __future__ import annotations

import math

import torch
import torch.fx as fx
from torch import nn

MAX_FOLDED_OUT = 16  # output channels of the folded conv (out_channels * r * r)
_POINTWISE = (nn.PReLU, nn.ReLU, nn.LeakyReLU, nn.Identity)


def folded_conv(conv: nn.Conv2d, r: int) -> nn.Conv2d:
    """The conv on the pre-shuffle grid equal to ``conv(PixelShuffle(r)(z))`` followed by ``PixelShuffle(r)``.

    ``conv``: stride 1, dilation 1, groups 1, odd square kernel, zero padding k//2.
    Returns a Conv2d (C*r*r -> O*r*r, kernel 2R+1, padding R) on the same device and dtype.
    """
    k, k2 = conv.kernel_size[0], conv.kernel_size[0] // 2
    o_ch, c_ch = conv.out_channels, conv.in_channels
    reach = max(max(abs(math.floor((a - k2) / r)), abs(math.floor((a + k2) / r))) for a in range(r))
    kk = 2 * reach + 1
    w = conv.weight.detach()
    new = torch.zeros(o_ch * r * r, c_ch * r * r, kk, kk, dtype=w.dtype, device=w.device)
    for a in range(r):
        for b in range(r):
            out_idx = torch.arange(o_ch, device=w.device) * r * r + a * r + b
            for u in range(k):
                di, ap = divmod(a + u - k2, r)
                for v in range(k):
                    dj, bp = divmod(b + v - k2, r)
                    in_idx = torch.arange(c_ch, device=w.device) * r * r + ap * r + bp
                    new[out_idx[:, None], in_idx[None, :], di + reach, dj + reach] = w[:, :, u, v]
    folded = nn.Conv2d(c_ch * r * r, o_ch * r * r, kk, padding=reach, bias=conv.bias is not None)
    folded = folded.to(device=w.device, dtype=w.dtype)
    with torch.no_grad():
        folded.weight.copy_(new)
        if conv.bias is not None:
            folded.bias.copy_(conv.bias.detach().repeat_interleave(r * r))
    return folded.eval()


def _repeated(act: nn.Module, r: int) -> nn.Module:
    """A per-channel activation acting before the shuffle: PReLU slopes repeated r*r times; others as they are."""
    if isinstance(act, nn.PReLU) and act.num_parameters > 1:
        new = nn.PReLU(act.num_parameters * r * r).to(act.weight.device, act.weight.dtype)
        with torch.no_grad():
            new.weight.copy_(act.weight.detach().repeat_interleave(r * r))
        return new
    if isinstance(act, nn.ReLU):  # never in place: the shuffle's input may have other users
        return nn.ReLU()
    if isinstance(act, nn.LeakyReLU):
        return nn.LeakyReLU(act.negative_slope)
    return act


def _foldable(conv: nn.Module, r: int) -> bool:
    return (isinstance(conv, nn.Conv2d) and conv.groups == 1 and conv.stride == (1, 1) and conv.dilation == (1, 1)
            and conv.kernel_size[0] == conv.kernel_size[1] and conv.kernel_size[0] % 2 == 1
            and conv.padding == (conv.kernel_size[0] // 2,) * 2 and conv.padding_mode == "zeros"
            and conv.out_channels * r * r <= MAX_FOLDED_OUT)


def fold_shuffle_convs(gm: fx.GraphModule) -> int:
    """Rewrite every ``PixelShuffle -> [per-channel activation]* -> small Conv2d`` chain of ``gm`` in place.

    Returns how many chains were folded. The new modules are added to ``gm``
    (``_folded_<n>_conv``, ``_folded_<n>_act<i>``); the old ones stay (other nodes may use them).
    """
    mods = dict(gm.named_modules())
    count = 0
    for node in list(gm.graph.nodes):
        if node.op != "call_module" or not isinstance(mods.get(node.target), nn.PixelShuffle):
            continue
        r = mods[node.target].upscale_factor
        chain, cur = [], node
        while len(cur.users) == 1:
            nxt = next(iter(cur.users))
            if nxt.op != "call_module" or not isinstance(mods.get(nxt.target), (*_POINTWISE, nn.Conv2d)):
                break
            if isinstance(mods[nxt.target], nn.Conv2d):
                chain.append(nxt)
                break
            act = mods[nxt.target]
            if isinstance(act, nn.PReLU) and act.num_parameters not in (1, _shuffled_channels(node)):
                break
            chain.append(nxt)
            cur = nxt
        if not chain or not isinstance(mods[chain[-1].target], nn.Conv2d) or not _foldable(mods[chain[-1].target], r):
            continue
        conv_node = chain[-1]
        prefix = f"_folded_{count}"
        with gm.graph.inserting_before(conv_node):
            value = node.args[0]  # the shuffle's input
            for i, act_node in enumerate(chain[:-1]):
                gm.add_submodule(f"{prefix}_act{i}", _repeated(mods[act_node.target], r))
                value = gm.graph.call_module(f"{prefix}_act{i}", (value,))
            gm.add_submodule(f"{prefix}_conv", folded_conv(mods[conv_node.target], r))
            gm.add_submodule(f"{prefix}_shuffle", nn.PixelShuffle(r))
            value = gm.graph.call_module(f"{prefix}_conv", (value,))
            value = gm.graph.call_module(f"{prefix}_shuffle", (value,))
        conv_node.replace_all_uses_with(value)
        for dead in [conv_node, *reversed(chain[:-1]), node]:
            gm.graph.erase_node(dead)
        count += 1
    if count:
        gm.graph.lint()
        gm.recompile()
    return count


def _shuffled_channels(node: fx.Node) -> int:
    """Channels after the shuffle ``node`` (from ShapeProp metadata; 0 when unknown)."""
    meta = node.meta.get("tensor_meta")
    return int(meta.shape[1]) if meta is not None and hasattr(meta, "shape") else 0
