"""The cheap estimate of a design point: speed and energy from the models, area from a formula.

Speed and energy are exact models of the array (``sim.model_cost``: the cycle model's fastest
mapping of every layer and the 45 nm energy of its counters), evaluated in well under a second.
The area is a formula, so points that cannot fit are pruned before any synthesis:

- logic (iCE40 logic cells, ECP5 LUT4): a fixed part (controller, host link, buffers' logic)
  plus parts per row, per column and per PE that grow with the lanes, fitted to packed
  designs of this code (``_LOGIC``; ``benchmarks/explore.py`` prints the estimate's error
  against synthesis);
- block RAMs: each memory of the design (global buffers, psum and weight banks, the PE
  scratchpads, the host link's frame buffer) counted in the device's block-RAM shapes.

A point is pruned only when the estimate exceeds the device by more than ``PRUNE_MARGIN`` (the
formula is rough; synthesis and nextpnr's packer decide the rest exactly).
"""

from __future__ import annotations

import math

__all__ = ["DEVICES", "PRUNE_MARGIN", "area_estimate", "block_rams", "prune_reason",
           "logic_name"]

#: What the devices of the tested boards have (nextpnr's packer reports the same numbers).
DEVICES = {
    "iCE40UP5K": {"logic": 5280, "brams": 30, "dsps": 8},
    "LFE5U-85F": {"logic": 83640, "brams": 208, "dsps": 156},
    "LFE5U-45F": {"logic": 43848, "brams": 108, "dsps": 72},
    "LFE5U-25F": {"logic": 24288, "brams": 56, "dsps": 28},
    "LFE5U-12F": {"logic": 12096, "brams": 32, "dsps": 28},
}

#: Logic per family: (fixed, per row, per column, per PE, per PE and extra lane), each a
#: least-squares fit to packed designs of the sweeps in ``docs/explore.md``
#: (``benchmarks/explore.py --fit``): a row (its filter scratchpad, weight bank and row
#: control) costs about ten times a column. iCE40: the 32 designs of binarynet for the digits
#: (1x2 to 3x1 arrays, 1 to 4 lanes). ECP5: the 17 designs of binarynet for 28x28 inputs (3x4
#: to 12x14 and 6x28, one lane; the per-lane part is not measured there and kept from the
#: first formula). The ECP5 fit is for binary weights: ternary arrays take about twice the
#: logic per PE (``docs/boards.md``: ternary 3x4 and 12x11, 10,923 and 69,517 LUT4), so it
#: underestimates them, which only means fewer of them are pruned.
_LOGIC = {"iCE40": (3265, 427, 39, 88, 16), "ecp5": (3649, 511, 41, 179, 100)}

#: Block-RAM shapes (depth, width) per family: iCE40 SB_RAM40_4K, ECP5 DP16KD; ECP5 puts
#: memories of at most ``_LUT_RAM_DEPTH`` words in LUT RAM instead.
_BRAM_SHAPES = {"iCE40": ((256, 16), (512, 8), (1024, 4), (2048, 2)),
                "ecp5": ((512, 36), (1024, 18), (2048, 9), (4096, 4), (8192, 2), (16384, 1))}
_LUT_RAM_DEPTH = {"iCE40": 0, "ecp5": 64}

#: Block RAMs of the host link (its frame buffer).
_LINK_BRAMS = 1

#: A point is pruned when an estimate exceeds the device by more than this factor.
PRUNE_MARGIN = 1.25


def logic_name(family: str | None) -> str:
    """The logic resource's key in ``area``: ``lcs`` (iCE40 logic cells) or ``luts``."""
    return "lcs" if family == "iCE40" else "luts"


def block_rams(family: str, depth: int, width: int) -> int:
    """Block RAMs one ``depth`` x ``width``-bit memory takes on ``family``'s device."""
    if depth <= _LUT_RAM_DEPTH.get(family, 0):
        return 0
    shapes = _BRAM_SHAPES[family]
    return min(math.ceil(depth / d) * math.ceil(width / w) for d, w in shapes)


def area_estimate(config, family: str | None) -> dict | None:
    """``{"logic", "brams"}`` of the accelerator ``config`` (an ``AcceleratorConfig``) behind
    the host link on ``family``'s device, or None for a family without a formula."""
    if family not in _LOGIC:
        return None
    fixed, per_row, per_col, per_pe, per_lane = _LOGIC[family]
    logic = (fixed + per_row * config.rows + per_col * config.cols
             + config.pes * (per_pe + per_lane * (config.lanes - 1)))
    memories = [(config.in_depth, config.a_word_bits)]
    memories += [(config.wb_depth, config.w_word_bits)] * config.rows
    memories += [(config.pb_depth, config.acc_bits)] * config.cols
    memories += [(2 * config.ifmap_spad, config.a_word_bits)] * config.pes
    memories += [(2 * config.filter_spad, config.w_word_bits)] * config.rows
    brams = _LINK_BRAMS + sum(block_rams(family, d, w) for d, w in memories)
    return {"logic": int(logic), "brams": int(brams)}


def prune_reason(estimate: dict | None, device: str) -> str | None:
    """Why a point with this area estimate cannot fit ``device`` (None: it may fit)."""
    have = DEVICES.get(device)
    if estimate is None or have is None:
        return None
    for key, noun in (("logic", "logic"), ("brams", "block RAMs")):
        if estimate[key] > PRUNE_MARGIN * have[key]:
            return (f"pruned by the estimate: about {estimate[key]:,} {noun}, the {device} has "
                    f"{have[key]:,}")
    return None
