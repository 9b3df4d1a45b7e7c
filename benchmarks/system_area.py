"""Whole board designs per scheme at the largest size that fits: area, fmax, peak MAC/s.

For ``binary``, ``ternary``, ``pow2``, ``dorefa`` W2 A2 (DoReFa's own 2-bit weights and
2-bit unsigned activations), ``xnor`` and the int8 baseline (``int`` W8 A8 with its
multipliers on the DSP blocks, the fair baseline, and in logic only), the design that
``mulfree build --board B`` synthesises (the accelerator behind the host link,
``boards.top.BoardTop`` of ``boards.accelerator.AcceleratorTarget``, with the build's
defaults: 8-bit activations, 20-bit sums, 32-word scratchpads, 256-word buffers, 20-bit
counters) is sized on the iCE40UP5K (``icebreaker``) and the ECP5-85F (``ulx3s-85f``) to the
most MACs per cycle (rows x cols x lanes; ``xnor``'s lanes are the bits of its words) whose
packed design fits (``boards.build.estimate``: Yosys and nextpnr ``--pack-only``; on the
ECP5 within ``boards.build.LOGIC_HEADROOM`` of the logic, room for place-and-route), then
placed and routed (``boards.build.build``) for fmax. The table gives LCs / LUT4, flip-flops,
block RAMs, DSPs, fmax, peak MACs per cycle, peak MAC/s at fmax, MAC/s per LC / LUT4, and
the ratio of each to the int8-on-DSP design of the same device.

The size search: each resource is modelled as ``f0 + f1 L + P (a + b L)`` (``P`` PEs,
``L`` lanes) from four packed designs (1x1 and 2x2 at two lane counts); the sizes the model
lets fit are then packed, most MACs per cycle first, until one fits; then one shape larger
and twice the lanes are packed too, in case the model was pessimistic (only sizes over the
device's DSPs, which the model counts exactly, are skipped). If place-and-route fails, the
largest packed size within ``LOGIC_HEADROOM`` of the logic is placed instead.

A second table breaks one PE down (product units, lane reduction tree, accumulator and PE
glue, input scratchpad, its share of the row's filter scratchpad, and its shares of the
controller, the buffers and the host link) for ``ternary`` and int8 on DSPs, each part
synthesised on its own (``sim.synth``; packed logic cells on the iCE40).

Usage::

    python benchmarks/system_area.py [--device ice40|ecp5|both] [--design NAME ...]
        [--quick] [--no-pnr NAME ...] [--build-to-confirm] [--json FILE [--force]]
        [--cache FILE] [--out DIR] [--tree-stages N] [--no-breakdown]
    python benchmarks/system_area.py --from-json FILE ... [--out DIR]

``--quick``: synthesis only (no place-and-route) of two sizes per design. Place-and-route
takes minutes per design on the iCE40 and 10-60 minutes on the ECP5 (YoWASP on two cores).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

#: The designs compared: name -> (scheme, a_bits, w_bits, multipliers). ``a_bits`` None: the
#: build's default (8; 1 for xnor). The first int design is the baseline.
DESIGNS = {
    "binary": ("binary", None, None, None),
    "ternary": ("ternary", None, None, None),
    "pow2": ("pow2", None, None, None),
    "dorefa W2A2": ("dorefa", 2, 2, None),
    "xnor": ("xnor", None, None, None),
    "int8 DSP": ("int", None, 8, "dsp"),
    "int8 LUT": ("int", None, 8, "lut"),
}
BASELINE = "int8 DSP"

#: Devices: name -> (board, label, headroom of the size search (None: the build's
#: ``LOGIC_HEADROOM``), the two lane counts of the size model).
DEVICES = {"ice40": ("icebreaker", "iCE40UP5K (iCEBreaker)", 1.0, (2, 8)),
           "ecp5": ("ulx3s-85f", "ECP5-85F (ULX3S)", None, (2, 16))}

#: The issue's goals.
GOAL_PEAK = 6.0          # ternary and binary: peak MAC/s vs int8 on DSPs
GOAL_PER_LUT = 4.0       # ternary and binary: MAC/s per LUT vs int8 on DSPs
GOAL_XNOR = 60.0         # xnor: MAC/s per LUT vs int8 on DSPs
GOAL_ICE40_PES = 12      # the iCEBreaker holds 3x4 PEs with lanes ...
GOAL_ICE40_MHZ = 24.0    # ... at 24 MHz or more
GOAL_ECP5_MHZ = 100.0    # the ECP5-85F design at its largest size

_LOGIC = ("logic cells", "LUT4")


# ---- pure functions: sizes, metrics, ratios, tables -------------------------------------

@dataclasses.dataclass
class Result:
    """One design on one device: its size, its packed and placed resources, its fmax."""

    device: str
    design: str
    rows: int
    cols: int
    lanes: int
    resources: dict                  # resource -> used (placed if placed, else packed)
    available: dict                  # resource -> the device's count
    fmax_mhz: float | None = None    # None: not placed and routed
    placed: bool = False
    command: str = ""
    note: str = ""

    @property
    def macs_per_cycle(self) -> int:
        return self.rows * self.cols * self.lanes

    @property
    def logic(self) -> int:
        """Logic cells (iCE40) or LUT4s (ECP5)."""
        return next(self.resources[k] for k in _LOGIC if k in self.resources)

    @property
    def macs_per_second(self) -> float | None:
        return None if self.fmax_mhz is None else self.macs_per_cycle * self.fmax_mhz * 1e6

    @property
    def macs_per_second_per_lut(self) -> float | None:
        mps = self.macs_per_second
        return None if mps is None else mps / self.logic

    @property
    def macs_per_cycle_per_lut(self) -> float:
        return self.macs_per_cycle / self.logic

    def to_json(self) -> dict:
        out = dataclasses.asdict(self)
        out.update(macs_per_cycle=self.macs_per_cycle, macs_per_second=self.macs_per_second,
                   macs_per_second_per_lut=self.macs_per_second_per_lut)
        return out

    @classmethod
    def from_json(cls, values: dict) -> "Result":
        fields = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in fields})


def ratio(value, base) -> float | None:
    """``value / base``, or None when either is unknown (or the base is 0)."""
    if value is None or base is None or base == 0:
        return None
    return value / base


def ratios(result: Result, baseline: Result | None) -> dict:
    """Each figure of ``result`` divided by the baseline's (None where unknown)."""
    b = baseline
    return {
        "macs_per_cycle": ratio(result.macs_per_cycle, b and b.macs_per_cycle),
        "macs_per_second": ratio(result.macs_per_second, b and b.macs_per_second),
        "macs_per_second_per_lut": ratio(result.macs_per_second_per_lut,
                                         b and b.macs_per_second_per_lut),
        "macs_per_cycle_per_lut": ratio(result.macs_per_cycle_per_lut,
                                        b and b.macs_per_cycle_per_lut),
    }


def _num(value, spec=",") -> str:
    return "—" if value is None else format(value, spec)


def _x(value) -> str:
    return "—" if value is None else f"{value:.2f}×"


def _down(value: float) -> str:
    """``value`` to two decimals, rounded down (a goal line never shows a miss as a hit)."""
    import math
    return f"{math.floor(value * 100) / 100:.2f}×"


def _si(value) -> str:
    if value is None:
        return "—"
    for scale, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= scale:
            return f"{value / scale:.3g} {unit}"
    return f"{value:.3g}"


def system_table(results: list[Result]) -> str:
    """The Markdown table of ``results`` with ratios to each device's baseline."""
    base = {r.device: r for r in results if r.design == BASELINE}
    head = ("| device | design | rows×cols×lanes | LC / LUT4 | FF | BRAM | DSP | fmax MHz | "
            "MACs/cycle | peak MAC/s | MAC/s per LC/LUT | ×MAC/s | ×MAC/s per LUT | "
            "×MACs/cycle per LUT |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in results:
        q = ratios(r, base.get(r.device))
        fmax = f"{r.fmax_mhz:.1f}" if r.placed and r.fmax_mhz is not None else \
            "not placed"
        lines.append(
            f"| {r.device} | {r.design} | {r.rows}×{r.cols}×{r.lanes} | {r.logic:,} | "
            f"{_num(r.resources.get('flip-flops'))} | {_num(r.resources.get('block RAM'))} | "
            f"{_num(r.resources.get('DSP'))} | {fmax} | {r.macs_per_cycle:,} | "
            f"{_si(r.macs_per_second)} | {_si(r.macs_per_second_per_lut)} | "
            f"{_x(q['macs_per_second'])} | {_x(q['macs_per_second_per_lut'])} | "
            f"{_x(q['macs_per_cycle_per_lut'])} |")
    return "\n".join(lines)


def summary_table(results: list[Result]) -> str:
    """The short table of the README: size, logic, fmax, peak MAC/s and the two ratios."""
    base = {r.device: r for r in results if r.design == BASELINE}
    lines = ["| device | design | rows×cols×lanes | LC / LUT4 | fmax MHz | peak MAC/s | "
             "× int8 DSP: MAC/s | × int8 DSP: MAC/s per LUT |", "|---|---|---|---|---|---|---|---|"]
    for r in results:
        q = ratios(r, base.get(r.device))
        fmax = f"{r.fmax_mhz:.1f}" if r.placed and r.fmax_mhz is not None else "not placed"
        per_lut = _x(q["macs_per_second_per_lut"]) if r.placed else \
            f"{_x(q['macs_per_cycle_per_lut'])} per cycle"
        lines.append(f"| {r.device} | {r.design} | {r.rows}×{r.cols}×{r.lanes} | {r.logic:,} | "
                     f"{fmax} | {_si(r.macs_per_second)} | {_x(q['macs_per_second'])} | "
                     f"{per_lut} |")
    return "\n".join(lines)


def goals(results: list[Result]) -> list[str]:
    """One line per goal of the issue: reached, missed, or not measured, with the numbers."""
    by = {(r.device, r.design): r for r in results}
    out = []
    for device in DEVICES:
        base = by.get((device, BASELINE))
        for design, goal_peak, goal_lut in (("ternary", GOAL_PEAK, GOAL_PER_LUT),
                                            ("binary", GOAL_PEAK, GOAL_PER_LUT),
                                            ("xnor", None, GOAL_XNOR)):
            r = by.get((device, design))
            if r is None or base is None:
                continue
            q = ratios(r, base)
            for what, goal, key in (("peak MAC/s", goal_peak, "macs_per_second"),
                                    ("MAC/s per LUT", goal_lut, "macs_per_second_per_lut")):
                if goal is None:
                    continue
                got = q[key]
                if got is None:
                    cyc = q["macs_per_cycle" if key == "macs_per_second"
                            else "macs_per_cycle_per_lut"]
                    out.append(f"{device} {design} {what} ≥ {goal:g}× int8 DSP: not measured "
                               f"(not placed; per cycle {_down(cyc) if cyc else '—'})")
                else:
                    verdict = "reached" if got >= goal else "MISSED"
                    out.append(f"{device} {design} {what} ≥ {goal:g}× int8 DSP: {verdict} "
                               f"({_down(got)})")
    for r in results:
        if r.device == "ice40" and r.design in ("ternary", "binary"):
            pes = r.rows * r.cols
            ok = pes >= GOAL_ICE40_PES and r.lanes > 1 and r.placed and \
                r.fmax_mhz is not None and r.fmax_mhz >= GOAL_ICE40_MHZ
            fmax = f"{r.fmax_mhz:.1f} MHz" if r.placed and r.fmax_mhz is not None else \
                "not placed"
            out.append(f"ice40 {r.design}: 3x4 PEs with lanes at ≥ {GOAL_ICE40_MHZ:g} MHz: "
                       f"{'reached' if ok else 'MISSED'} (largest {r.rows}x{r.cols}x{r.lanes}, "
                       f"{fmax})")
        if r.device == "ecp5" and r.placed and r.fmax_mhz is not None:
            ok = r.fmax_mhz >= GOAL_ECP5_MHZ
            out.append(f"ecp5 {r.design} at {r.rows}x{r.cols}x{r.lanes}: ≥ "
                       f"{GOAL_ECP5_MHZ:g} MHz: {'reached' if ok else 'MISSED'} "
                       f"({r.fmax_mhz:.1f} MHz)")
    return out


def fit_model(points: dict) -> dict:
    """Least-squares ``f0 + f1 L + P (a + b L)`` through ``points`` ((P, L) -> used), as
    ``{"f0", "f1", "a", "b"}`` (exact with four points at two P and two L)."""
    import numpy as np
    keys = sorted(points)
    A = np.array([[1.0, L, P, P * L] for P, L in keys])
    y = np.array([float(points[k]) for k in keys])
    coef, *_ = np.linalg.lstsq(A, y, rcond=None)
    return dict(zip(("f0", "f1", "a", "b"), (float(v) for v in coef)))


def predict(model: dict, pes: int, lanes: int) -> float:
    return model["f0"] + model["f1"] * lanes + pes * (model["a"] + model["b"] * lanes)


def shapes(limit: int = 64) -> list[tuple[int, int]]:
    """Near-square array shapes ``rows <= cols <= rows + 2`` (and 1x1 .. 1x3), by PE count."""
    out = {(1, 1), (1, 2), (1, 3)}
    for r in range(1, limit + 1):
        for c in range(r, min(limit, r + 2) + 1):
            out.add((r, c))
    return sorted(out, key=lambda s: (s[0] * s[1], s[1] - s[0]))


#: Counts are integers: a prediction this far above a limit (least-squares rounding) fits.
_SLACK = 0.5


def candidates(models: dict, limits: dict, lanes_allowed, *, max_pes: int = 64 * 66) -> list:
    """Sizes ``(rows, cols, lanes)`` the resource ``models`` predict to fit ``limits``
    (resource -> most usable), most MACs per cycle first (then the least predicted logic)."""
    out = []
    logic = next((k for k in _LOGIC if k in models), None)
    for lanes in lanes_allowed:
        best = None
        for r, c in shapes():
            if r * c > max_pes:
                break
            if all(predict(models[k], r * c, lanes) <= limits[k] + _SLACK
                   for k in models if k in limits):
                best = (r, c)
        if best:
            size = (*best, lanes)
            cost = predict(models[logic], best[0] * best[1], lanes) if logic else 0
            out.append((size, cost))
    out.sort(key=lambda item: (-item[0][0] * item[0][1] * item[0][2], item[1]))
    return [size for size, _ in out]


def next_shape(rows: int, cols: int) -> tuple[int, int]:
    """The next larger shape of ``shapes()`` after ``rows x cols``."""
    all_shapes = shapes()
    pes = rows * cols
    for r, c in all_shapes:
        if r * c > pes:
            return r, c
    return rows, cols + 1


# ---- the designs: configuration, command, packing, building -----------------------------

def config_of(design: str, rows: int, cols: int, lanes: int, tree_stages: int):
    """The ``AcceleratorConfig`` ``mulfree build`` makes for ``design`` at this size."""
    from hw.schedule import AcceleratorConfig
    from mulfree.commands.build import DEFAULTS
    scheme, a_bits, w_bits, _ = DESIGNS[design]
    a_bits = (1 if scheme == "xnor" else DEFAULTS["a_bits"]) if a_bits is None else a_bits
    probe = AcceleratorConfig(scheme=scheme, rows=rows, cols=cols, lanes=lanes, a_bits=a_bits,
                              w_bits=w_bits, acc_bits=64, tree_stages=tree_stages)
    acc_bits = max(DEFAULTS["acc_bits"], probe.min_acc_bits)
    depth = DEFAULTS["depth"]
    return probe.replace(acc_bits=acc_bits, filter_spad=DEFAULTS["spad"],
                         ifmap_spad=DEFAULTS["spad"], in_depth=depth, wb_depth=depth,
                         pb_depth=depth, counter_bits=DEFAULTS["counter_bits"])


def command_of(device: str, design: str, rows, cols, lanes, tree_stages) -> str:
    """The ``mulfree build`` command line that builds the same design."""
    from mulfree.commands.build import DEFAULTS
    scheme, a_bits, w_bits, multipliers = DESIGNS[design]
    config = config_of(design, rows, cols, lanes, tree_stages)
    parts = [f"mulfree build --board {DEVICES[device][0]} --scheme {scheme}",
             f"--rows {rows} --cols {cols} --lanes {lanes} --tree-stages {tree_stages}"]
    if a_bits is not None:
        parts.append(f"--a-bits {a_bits}")
    if w_bits is not None:
        parts.append(f"--w-bits {w_bits}")
    if config.acc_bits != DEFAULTS["acc_bits"]:
        parts.append(f"--acc-bits {config.acc_bits}")
    if multipliers:
        parts.append(f"--multipliers {multipliers}")
    return " ".join(parts) + " -o DIR"


def _top(config):
    from boards.accelerator import AcceleratorTarget
    from boards.top import BoardTop
    return BoardTop(lambda: AcceleratorTarget(config))


def _synth_opts(device: str, design: str):
    from boards.build import synthesis_options
    return synthesis_options(DEVICES[device][0], DESIGNS[design][3])


def _headroom(device: str) -> float:
    from boards.build import LOGIC_HEADROOM
    h = DEVICES[device][2]
    return LOGIC_HEADROOM if h is None else h


class Packer:
    """Packed designs of one device and design, remembered by size."""

    def __init__(self, device: str, design: str, tree_stages: int, say, cache=None):
        self.device, self.design, self.stages, self.say = device, design, tree_stages, say
        self.seen: dict = {}
        self.available: dict = {}
        self.cache = cache

    def _cache_key(self, key) -> str:
        return f"{self.device}|{self.design}|{'x'.join(map(str, key))}|stages {self.stages}"

    def __call__(self, rows: int, cols: int, lanes: int) -> dict:
        from boards.build import estimate
        key = (rows, cols, lanes)
        if key not in self.seen and self.cache is not None \
                and self._cache_key(key) in self.cache.data:
            used, self.available = self.cache.data[self._cache_key(key)]
            self.seen[key] = used
        if key not in self.seen:
            started = time.monotonic()
            config = config_of(self.design, rows, cols, lanes, self.stages)
            packed = estimate(DEVICES[self.device][0], _top(config),
                              synth_opts=_synth_opts(self.device, self.design))
            self.available = {u.resource: u.available for u in packed}
            self.seen[key] = {u.resource: u.used for u in packed}
            if self.cache is not None:
                self.cache.put(self._cache_key(key), [self.seen[key], self.available])
            self.say(f"  packed {rows}x{cols}x{lanes}: "
                     + ", ".join(f"{u.used:,} {u.resource}" for u in packed
                                 if u.resource in (*_LOGIC, "block RAM", "DSP"))
                     + f" ({time.monotonic() - started:.0f} s)")
        return self.seen[key]

    def limits(self) -> dict:
        h = _headroom(self.device)
        return {k: v * (h if k in _LOGIC or k == "flip-flops" else 1)
                for k, v in self.available.items()}

    def fits(self, rows: int, cols: int, lanes: int) -> bool:
        used = self(rows, cols, lanes)
        lim = self.limits()
        return all(used[k] <= lim[k] for k in used if k in lim)


class PackCache:
    """Packed designs kept in a JSON file between runs (``--cache``)."""

    def __init__(self, path):
        self.path = Path(path)
        self.data = json.loads(self.path.read_text()) if self.path.exists() else {}

    def put(self, key: str, value) -> None:
        self.data[key] = value
        tmp = self.path.with_suffix(".part")
        tmp.write_text(json.dumps(self.data, indent=1) + "\n")
        tmp.replace(self.path)


def lanes_allowed(design: str) -> tuple:
    from hw.schedule import LANES
    return LANES


def resource_models(packer: Packer) -> dict:
    """Each resource's model (module docstring) from four packed designs (1x1 and 2x2 at the
    device's two model lane counts)."""
    resources = ("logic cells", "LUT4", "block RAM", "DSP", "flip-flops")
    points: dict = {}
    for lanes in DEVICES[packer.device][3]:
        for r, c in ((1, 1), (2, 2)):
            used = packer(r, c, lanes)
            for k in resources:
                if k in used:
                    points.setdefault(k, {})[(r * c, lanes)] = used[k]
    return {k: fit_model(v) for k, v in points.items()}


def model_sizes(packer: Packer, models=None) -> list:
    """The sizes the resource models let fit, most MACs per cycle first."""
    models = models or resource_models(packer)
    return candidates(models, packer.limits(), lanes_allowed(packer.design))


def grow(packer: Packer, size, models=None):
    """``size`` made larger while the packed design fits, in case the model was pessimistic:
    one shape larger at the same lanes, then twice the lanes on the smallest shape that
    gives more MACs per cycle than the size reached. A size whose DSPs the ``models`` put
    over the device's is not packed (the DSP model is exact; the others are not, so their
    sizes are always packed: e.g. block RAM grows slower than linearly in the lanes)."""
    from hw.schedule import LANES
    limits = packer.limits() if models else {}

    def worth(r, c, lanes):
        return "DSP" not in (models or {}) or "DSP" not in limits or \
            predict(models["DSP"], r * c, lanes) <= limits["DSP"] + _SLACK

    def fits(r, c, lanes):
        return r <= 64 and c <= 64 and worth(r, c, lanes) and packer.fits(r, c, lanes)

    r, c, lanes = size
    while fits(*next_shape(r, c), lanes):
        r, c = next_shape(r, c)
    if lanes * 2 in LANES:
        wider = next(((r2, c2, 2 * lanes) for r2, c2 in shapes()
                      if r2 * c2 * 2 * lanes > r * c * lanes), None)
        if wider is not None and fits(*wider):
            return grow(packer, wider, models)
    return r, c, lanes


def search(packer: Packer, *, tries: int = 6):
    """The size with the most MACs per cycle whose packed design fits (module docstring):
    ``(rows, cols, lanes)``, or None if not even 1x1 with one lane fits."""
    models = resource_models(packer)
    for size in model_sizes(packer, models)[:tries]:
        if packer.fits(*size):
            return grow(packer, size, models)
    fitting = [k for k in packer.seen if packer.fits(*k)]
    if not fitting:
        return None
    return max(fitting, key=lambda k: (k[0] * k[1] * k[2], -packer.seen[k].get("LUT4", 0)))


def place(device: str, design: str, size, tree_stages: int, out: Path, say):
    """Place and route the design (``boards.build.build``): ``(utilisation, fmax)``."""
    from boards.build import build
    config = config_of(design, *size, tree_stages)
    folder = _folder(out, device, design, size)
    report = build(DEVICES[device][0], _top(config), folder, force=True,
                   synth_opts=_synth_opts(device, design), progress=lambda s: say("  " + s))
    used = {u.resource: u.used for u in report.utilisation}
    if "flip-flops" not in used:       # nextpnr-ice40 reports logic cells only
        ffs = flip_flops_in_log((folder / "top.rpt").read_text())
        if ffs is not None:
            used["flip-flops"] = ffs
    fmax = min(report.fmax_mhz.values()) if report.fmax_mhz else None
    return used, fmax


def flip_flops_in_log(text: str) -> int | None:
    """The flip-flops (SB_DFF*, TRELLIS_FF) of the whole design in the last statistics of a
    Yosys log (its design-hierarchy total when there is one)."""
    import re
    block = text.rsplit("Printing statistics", 1)
    if len(block) < 2:
        return None
    stats = block[1].split("=== design hierarchy ===")[-1]
    stats = re.split(r"\n\d+(?:\.\d+)+\. ", stats)[0]        # up to the next pass
    found = re.findall(r"^\s*(?:(\d+)\s+(SB_DFF\w*|TRELLIS_FF)|(SB_DFF\w*|TRELLIS_FF)\s+(\d+))"
                       r"\s*$", stats, flags=re.M)
    if not found:
        return None
    return sum(int(a or d) for a, _, _, d in found)


def _folder(out: Path, device: str, design: str, size) -> Path:
    return Path(out) / f"{device}-{design.replace(' ', '-').lower()}-{'x'.join(map(str, size))}"


def fill_flip_flops(results: list, out) -> None:
    """Flip-flops of placed iCE40 designs (nextpnr-ice40 reports logic cells only) from
    their builds' Yosys reports under ``out``, where missing."""
    for r in results:
        report = _folder(out, r.device, r.design, (r.rows, r.cols, r.lanes)) / "top.rpt"
        if r.placed and "flip-flops" not in r.resources and report.exists():
            ffs = flip_flops_in_log(report.read_text())
            if ffs is not None:
                r.resources["flip-flops"] = ffs


# ---- per-PE breakdown --------------------------------------------------------------------

def _spad(width: int, depth: int):
    """A scratchpad alone: one write port, one synchronous read port (as the PE's)."""
    from amaranth.hdl import Module
    from amaranth.lib import wiring
    from amaranth.lib.memory import Memory
    from amaranth.lib.wiring import In, Out

    from hw.pe import addr_bits

    class Scratchpad(wiring.Component):
        def __init__(self):
            super().__init__({"waddr": In(addr_bits(depth)), "wdata": In(width), "we": In(1),
                              "raddr": In(addr_bits(depth)), "rdata": Out(width)})

        def elaborate(self, platform):
            m = Module()
            m.submodules.mem = mem = Memory(shape=width, depth=depth, init=[])
            wr, rd = mem.write_port(), mem.read_port()
            m.d.comb += [wr.addr.eq(self.waddr), wr.data.eq(self.wdata), wr.en.eq(self.we),
                         rd.addr.eq(self.raddr), self.rdata.eq(rd.data)]
            return m
    return Scratchpad()


def breakdown_parts(config) -> dict:
    """name -> component of the parts the per-PE breakdown synthesises."""
    from hw.accelerator import Accelerator
    from hw.array import RowStationaryArray
    from hw.buffer import GlobalBuffer, WordBuffer
    from hw.lanes import LaneDot
    from hw.pe import PE
    from hw.units import product_unit
    c = config
    return {
        "unit": product_unit(c.scheme, a_bits=c.a_bits, w_bits=c.w_bits),
        "dot": LaneDot(c.scheme, lanes=c.lanes, a_bits=c.a_bits, w_bits=c.w_bits,
                       stages=c.tree_stages),
        "pe": PE(c.scheme, lanes=c.lanes, a_bits=c.a_bits, w_bits=c.w_bits,
                 acc_bits=c.acc_bits, ifmap_spad=c.ifmap_spad, tree_stages=c.tree_stages),
        "ispad": _spad(c.a_word_bits, 2 * c.ifmap_spad),
        "fspad": _spad(c.w_word_bits, 2 * c.filter_spad),
        "array": RowStationaryArray(c.rows, c.cols, c.scheme, lanes=c.lanes, a_bits=c.a_bits,
                                    w_bits=c.w_bits, acc_bits=c.acc_bits,
                                    filter_spad=c.filter_spad, ifmap_spad=c.ifmap_spad,
                                    tree_stages=c.tree_stages),
        "buffer": GlobalBuffer(rows=c.rows, cols=c.cols, w_word_bits=c.w_word_bits,
                               acc_bits=c.acc_bits, wb_depth=c.wb_depth, pb_depth=c.pb_depth),
        "inputs": WordBuffer(depth=c.in_depth, shape=c.a_word_bits),
        "accelerator": Accelerator(c),
    }


def breakdown_rows(area: dict, config, board_logic: int | None) -> list[tuple]:
    """``(part, logic, FF, BRAM, DSP)`` per PE from the parts' areas (part -> dict of
    ``logic``, ``ffs``, ``brams``, ``dsps``); ``board_logic``: the whole board design's logic
    (for the host link's share), or None."""
    pes = config.rows * config.cols
    keys = ("logic", "ffs", "brams", "dsps")

    def sub(a, *bs, scale=1.0):
        return tuple((area[a][k] - sum(area[b][k] for b in bs)) * scale for k in keys)

    lanes = config.lanes
    unit = tuple(area["unit"][k] * lanes for k in keys)
    rows = [
        (f"product units ({lanes} × {area['unit']['logic']})", *unit),
        ("lane reduction tree", *(d - u for d, u in zip(sub("dot"), unit))),
        ("accumulator and PE glue", *sub("pe", "dot", "ispad")),
        ("input scratchpad", *sub("ispad")),
        (f"filter scratchpad (1/{config.cols} of the row's)",
         *sub("fspad", scale=1 / config.cols)),
    ]
    pe_total = tuple(sum(r[1 + i] for r in rows) for i in range(4))
    array_share = sub("array", scale=1 / pes)
    rows.append(("array's own glue (per PE)", *(a - p for a, p in zip(array_share, pe_total))))
    rows.append(("**the array, per PE**", *array_share))
    rows.append(("controller and loaders (share)",
                 *sub("accelerator", "array", "buffer", "inputs", scale=1 / pes)))
    rows.append(("global and input buffers (share)",
                 *tuple((area["buffer"][k] + area["inputs"][k]) / pes for k in keys)))
    rows.append(("**the accelerator, per PE**", *sub("accelerator", scale=1 / pes)))
    if board_logic is not None:
        rows.append(("host link and board top (share, logic only)",
                     (board_logic - area["accelerator"]["logic"]) / pes, None, None, None))
    return rows


def breakdown_table(device: str, design: str, config, rows: list[tuple]) -> str:
    unit = "LC" if device == "ice40" else "LUT4"
    out = [f"{device} {design} at {config.rows}×{config.cols}×{config.lanes} "
           f"(tree stages {config.tree_stages}, {config.acc_bits}-bit sums):", "",
           f"| part (per PE) | {unit} | FF | BRAM | DSP |", "|---|---|---|---|---|"]
    for name, *values in rows:
        out.append(f"| {name} | " + " | ".join(
            "—" if v is None else (f"{v:,.0f}" if abs(v) >= 10 or v == int(v) else f"{v:.2f}")
            for v in values) + " |")
    return "\n".join(out)


def measure_breakdown(device: str, design: str, config) -> dict:
    """part -> {logic, ffs, brams, dsps}, each part synthesised alone."""
    from amaranth.back import verilog

    from sim.synth import synthesize
    multipliers = DESIGNS[design][3]
    target = "ice40-dsp" if device == "ice40" and multipliers == "dsp" else \
        ("ice40" if device == "ice40" else "ecp5")
    out = {}
    for name, part in breakdown_parts(config).items():
        text = verilog.convert(part, name=name, emit_src=False)
        a = synthesize({f"{name}.v": text}, name, target, pack=device == "ice40")[name]
        bram = sum(n for cell, n in a.cells.items() if cell in ("SB_RAM40_4K", "DP16KD"))
        out[name] = {"logic": a.lcs, "ffs": a.ffs, "brams": bram, "dsps": a.dsps}
    return out


# ---- the run -----------------------------------------------------------------------------

def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def run_design(device: str, design: str, args, say) -> Result:
    packer = Packer(device, design, args.tree_stages, say,
                    PackCache(args.cache) if args.cache else None)
    say(f"{device} {design}: searching the largest size")
    if args.quick:
        sizes = [(1, 1, 2), (2, 2, 2)]
        for s in sizes:
            packer(*s)
        fitting = [s for s in sizes if packer.fits(*s)] or sizes[:1]
        size = fitting[-1]
        note = "quick: synthesis only, 1x1x2 and 2x2x2 tried"
    elif args.build_to_confirm and design not in args.no_pnr:
        return _build_largest(device, design, packer, args, say)
    else:
        size = search(packer)
        note = ""
        if size is None:
            raise RuntimeError(f"{device} {design}: not even 1x1x1 fits")
    used = dict(packer(*size))
    result = Result(device, design, *size, used, dict(packer.available),
                    command=command_of(device, design, *size, args.tree_stages), note=note)
    if not args.quick and design not in args.no_pnr:
        say(f"{device} {design}: place and route {'x'.join(map(str, size))}")
        started = time.monotonic()
        from boards.build import BuildError
        try:
            placed, fmax = place(device, design, size, args.tree_stages, Path(args.out), say)
            result.resources.update(placed)
            result.fmax_mhz, result.placed = fmax, True
            say(f"  fmax {fmax} MHz ({time.monotonic() - started:.0f} s)")
        except BuildError as exc:
            result.note = f"place-and-route of {'x'.join(map(str, size))} failed: " \
                          f"{str(exc).splitlines()[0]}"
            say("  " + result.note)
            smaller = _within_headroom(packer, size)
            if smaller is not None:
                say(f"{device} {design}: place and route {'x'.join(map(str, smaller))} "
                    "(within the build's logic headroom)")
                try:
                    placed, fmax = place(device, design, smaller, args.tree_stages,
                                         Path(args.out), say)
                except BuildError as again:
                    result.note += f"; {'x'.join(map(str, smaller))} failed too: " \
                                   f"{str(again).splitlines()[0]}"
                else:
                    result = Result(device, design, *smaller, dict(packer(*smaller)),
                                    dict(packer.available), note=result.note,
                                    command=command_of(device, design, *smaller,
                                                       args.tree_stages))
                    result.resources.update(placed)
                    result.fmax_mhz, result.placed = fmax, True
    elif not args.quick:
        result.note = "synthesis and packing only (no place-and-route)"
    result.note = "; ".join(filter(None, [result.note,
                                          f"{len(packer.seen)} sizes packed"]))
    return result


def _within_headroom(packer: Packer, below):
    """The packed size with the most MACs (fewer than ``below``'s) within the build's
    ``LOGIC_HEADROOM`` of the logic, or None."""
    from boards.build import LOGIC_HEADROOM
    macs = below[0] * below[1] * below[2]
    ok = [k for k, used in packer.seen.items() if k[0] * k[1] * k[2] < macs
          and all(used[r] <= packer.available[r] * (LOGIC_HEADROOM if r in _LOGIC else 1)
                  for r in used if r in packer.available)]
    return max(ok, key=lambda k: k[0] * k[1] * k[2]) if ok else None


def _build_largest(device, design, packer, args, say, tries: int = 4) -> Result:
    """The model's sizes built (placed and routed) most MACs first until one fits: the build
    packs first and refuses a design that does not fit before placement."""
    from boards.build import BuildError, DoesNotFit
    sizes = model_sizes(packer)[:tries]
    for size in sizes:
        say(f"{device} {design}: place and route {'x'.join(map(str, size))} (the model's "
            "largest)")
        started = time.monotonic()
        try:
            placed, fmax = place(device, design, size, args.tree_stages, Path(args.out), say)
        except DoesNotFit as exc:
            say(f"  does not fit: {exc}")
            continue
        except BuildError as exc:
            say(f"  place-and-route failed: {str(exc).splitlines()[0]}")
            continue
        say(f"  fmax {fmax} MHz ({time.monotonic() - started:.0f} s)")
        return Result(device, design, *size, placed, dict(packer.available), fmax_mhz=fmax,
                      placed=True, command=command_of(device, design, *size, args.tree_stages),
                      note=f"largest size of the model that builds; {len(packer.seen)} "
                           "sizes packed for the model")
    raise RuntimeError(f"{device} {design}: none of {sizes} built")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("ice40", "ecp5", "both"), default="both")
    parser.add_argument("--design", action="append", choices=list(DESIGNS), default=None,
                        help="only these designs (repeatable; the ratios need the "
                             f"baseline, {BASELINE!r}, in the run or in --from-json)")
    parser.add_argument("--from-json", nargs="+", metavar="FILE", default=None,
                        help="print the tables of earlier runs' --json files (merged, the "
                             "later file's design winning) instead of running")
    parser.add_argument("--quick", action="store_true",
                        help="synthesis only, no place-and-route, two sizes per design")
    parser.add_argument("--no-pnr", action="append", choices=list(DESIGNS), default=[],
                        metavar="DESIGN", help="no place-and-route for DESIGN (repeatable)")
    parser.add_argument("--tree-stages", type=int, choices=(0, 1, 2), default=2,
                        help="pipeline registers in each PE's lane tree (default 2)")
    parser.add_argument("--build-to-confirm", action="store_true",
                        help="build (place and route) the model's sizes directly, most MACs "
                             "first, instead of packing each first (saves a synthesis of "
                             "large ECP5 designs; no 'one size larger' try)")
    parser.add_argument("--no-breakdown", action="store_true",
                        help="skip the per-PE breakdown")
    parser.add_argument("--json", metavar="FILE", help="write the results as JSON (updated "
                                                       "after every design)")
    parser.add_argument("--force", action="store_true",
                        help="replace an existing --json file")
    parser.add_argument("--cache", metavar="FILE",
                        help="keep packed designs in FILE (JSON) and reuse them in later runs")
    parser.add_argument("--out", default="build/system_area",
                        help="where the placed designs go (default build/system_area)")
    args = parser.parse_args(argv)
    if args.json and Path(args.json).is_dir():
        print(f"system_area.py: error: --json {args.json} is a folder; allowed: a file path",
              file=sys.stderr)
        return 2
    if args.json and Path(args.json).exists() and not args.force:
        print(f"system_area.py: error: --json {args.json} exists; allowed: a new file, or "
              "--force to replace it", file=sys.stderr)
        return 2
    if args.from_json:
        return print_saved(args.from_json, args.out)
    devices = ["ice40", "ecp5"] if args.device == "both" else [args.device]
    designs = args.design or list(DESIGNS)
    results: list[Result] = []
    breakdowns: dict = {}

    def save():
        if args.json:
            payload = {"results": [r.to_json() for r in results],
                       "breakdowns": breakdowns, "goals": goals(results),
                       "tree_stages": args.tree_stages, "quick": args.quick}
            tmp = Path(args.json).with_suffix(".part")
            tmp.write_text(json.dumps(payload, indent=2) + "\n")
            tmp.replace(args.json)

    for device in devices:
        for design in designs:
            results.append(run_design(device, design, args, _say))
            _say(system_table(results[-1:]).splitlines()[-1])
            save()
        if not args.no_breakdown:
            for design in ("ternary", BASELINE):
                r = next((x for x in results if (x.device, x.design) == (device, design)), None)
                size = (r.rows, r.cols, r.lanes) if r else (2, 2, 2)
                config = config_of(design, *size, args.tree_stages)
                _say(f"{device} {design}: per-PE breakdown at {'x'.join(map(str, size))}")
                area = measure_breakdown(device, design, config)
                rows = breakdown_rows(area, config, r.logic if r else None)
                breakdowns[f"{device} {design}"] = {"size": list(size), "parts": area,
                                                    "table": breakdown_table(device, design,
                                                                             config, rows)}
                save()
    report(results, breakdowns)
    return 0


def report(results: list[Result], breakdowns: dict) -> None:
    """Print the system table, the breakdowns and the goals."""
    order = {(d, n): i for i, (d, n) in enumerate((d, n) for d in DEVICES for n in DESIGNS)}
    results = sorted(results, key=lambda r: order.get((r.device, r.design), len(order)))
    print(system_table(results))
    print()
    print(summary_table(results))
    print()
    for b in breakdowns.values():
        print(b["table"])
        print()
    for line in goals(results):
        print("- " + line)


def merge_saved(payloads: list[dict]) -> tuple[list[Result], dict]:
    """Results and breakdowns of several ``--json`` payloads; a later payload's design (or
    breakdown) replaces an earlier one's."""
    results, breakdowns = {}, {}
    for payload in payloads:
        for values in payload.get("results", []):
            r = Result.from_json(values)
            results[r.device, r.design] = r
        breakdowns.update(payload.get("breakdowns", {}))
    return list(results.values()), breakdowns


def print_saved(files: list[str], out) -> int:
    payloads = []
    for name in files:
        try:
            payloads.append(json.loads(Path(name).read_text()))
        except (OSError, ValueError) as exc:
            print(f"system_area.py: error: --from-json {name}: {exc}", file=sys.stderr)
            return 2
    results, breakdowns = merge_saved(payloads)
    fill_flip_flops(results, out)
    report(results, breakdowns)
    return 0


if __name__ == "__main__":
    sys.exit(main())
