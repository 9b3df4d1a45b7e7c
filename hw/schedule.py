"""The accelerator's schedule in one place: its parameters, limits, latencies and counters.

This module imports no Amaranth. The RTL (``hw.accelerator`` and its parts), the cycle model
(``sim.cycle_model``), the host (``sim.run_layer``, ``boards``) and the command line all read
the facts below from here, so each is written once:

- ``AcceleratorConfig``: the generator's parameters (validated when made; one line names a
  bad value and what is allowed), with its datapaths (``Datapath``, ``modes``);
- ``CONFIG_FIELDS``: every field of a layer's configuration, with its meaning and its largest
  value on a given accelerator (``config_limits``), from which the RTL sizes its counters and
  ``config_field_bits`` the configuration beats;
- the named latencies of the pipeline (``INPUT_LATENCY``, ``accumulate_latency``, ...), which
  the RTL is built from and the cycle model adds up;
- ``COUNTERS``: what the accelerator counts, in the order it reports them, and
  ``derived_counters``, what the host computes from them.

The array (``hw.array``): ``rows`` x ``cols`` PEs, each doing ``lanes`` MACs per cycle over
``lanes`` input channels (a *word* carries ``lanes`` codes; a layer's ``C`` channels are
``ceil(C / lanes)`` words, the last one padded with zero codes whose lanes are idle, never
counted as MACs). PE row ``i`` holds one filter row of ``q`` channel words for ``p`` filters in
a filter scratchpad shared by the row; PE ``(i, j)`` holds ``q`` input rows (segments of
``Wseg`` words) in its own input scratchpad. A *dot* is one output position of one filter: the
``q * S`` slots of the row's filter row against the window (a *period* of ``d = q * S``
cycles). Rows run the same dot sequence, each one period behind the row above, and a PE's
accumulator starts each dot from the finished dot of the PE above: the psums of a column are
summed on their way down, the top PE starts from the psum buffer's old value (or 0) and the
bottom PE's sum is written back. No PE holds a psum scratchpad; no drain phase exists.

Modes. A PE may have several datapaths (``AcceleratorConfig.modes``: mode 0 is the config's
``scheme, lanes, a_bits, w_bits, codebook``, then ``more_modes``); the configuration field
``mode`` picks the layer's, and the layer then runs with that mode's lanes (e.g. binary
weights on 8-bit activations with 4 lanes, and xnor with 32 lanes, on 32-bit activation
words). Every mode's activation word ``lanes * a_bits`` has the same width; the weight word
is the widest mode's, a narrower mode's codes in its low bits. A layer's schedule depends
only on its mode's lanes (``sim.cycle_model.ArrayParams.of(config, mode)``).
"""

from __future__ import annotations

import dataclasses

__all__ = ["AcceleratorConfig", "Datapath", "check_modes", "LANES", "MAX_STRIDE", "MAX_PADDING",
           "ROW_BITS",
           "INPUT_LATENCY", "SPAD_READ_LATENCY", "GLB_READ_LATENCY", "accumulate_latency",
           "WEIGHT_LOAD_OVERHEAD", "INPUT_LOAD_OVERHEAD", "EVENT_LATENCY",
           "CONFIG_FIELDS", "config_limits", "config_field_bits", "COUNTERS",
           "COUNTER_MEANINGS", "derived_counters", "COUNTER_BITS", "MAX_DIM"]

#: Lane counts a PE can have (MACs per PE per cycle).
LANES = (1, 2, 4, 8, 16, 32, 64)

#: Largest convolution stride.
MAX_STRIDE = 4

#: Largest padding a configuration holds (more only adds outputs made of padding).
MAX_PADDING = 15

#: Width of the input-row tags (``h + padding - r``): layers need ``H + padding`` below
#: ``2 ** (ROW_BITS - 1)``.
ROW_BITS = 12

#: Largest rows or cols.
MAX_DIM = 64

#: Default width of each counter.
COUNTER_BITS = 48

# ---- latencies (cycles) --------------------------------------------------------------------

#: From the controller's outputs to the PEs: one register stage inside the array (a copy per
#: PE row or column, so no net fans out to the whole array).
INPUT_LATENCY = 1

#: A scratchpad read (synchronous: block RAM, or LUT RAM with its output register).
SPAD_READ_LATENCY = 1

#: A global-buffer read (synchronous).
GLB_READ_LATENCY = 1


def accumulate_latency(tree_stages: int) -> int:
    """Cycles from a slot reaching a PE to its accumulator update: the scratchpad reads, then
    ``tree_stages`` pipeline registers in the lane reduction tree. The accumulator holds the
    new sum from the cycle after."""
    return SPAD_READ_LATENCY + tree_stages


#: A pass's weights: from the weight loader's decision to the first cycle in which the
#: sequencer sees them written, beyond one cycle per word (one read issue cycle after the
#: decision, the read latency, then the write-done flag).
WEIGHT_LOAD_OVERHEAD = 2

#: A block's inputs: from the input loader's decision to the first cycle in which the
#: sequencer sees them written, beyond one cycle per word (advance, raw ranges, clipped
#: ranges, the broadcast register, the done flag).
INPUT_LOAD_OVERHEAD = 5

#: Event counts (slots, skips, input writes) reach the counters this many cycles after the
#: events: a register beside each PE, one per PE row, one for the total.
EVENT_LATENCY = 3


# ---- the generator's parameters -------------------------------------------------------------

def _int_in(name: str, value, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ValueError(f"{name} must be an integer in [{lo}, {hi}], not {value!r}")
    return value


def _power_of_two(name: str, value, hi: int = 1 << 16) -> int:
    if (isinstance(value, bool) or not isinstance(value, int) or value < 1 or value > hi
            or value & (value - 1)):
        raise ValueError(f"{name} must be a power of two in [1, {hi}], not {value!r}")
    return value


def _check_datapath(obj) -> None:
    """Validate and normalise the datapath fields ``scheme, lanes, a_bits, w_bits, codebook``
    of the frozen dataclass ``obj`` (``Datapath`` or ``AcceleratorConfig``'s mode 0)."""
    from model.quant import activation_code_range, check_scheme, weight_bits
    check_scheme(obj.scheme)
    if obj.lanes not in LANES or isinstance(obj.lanes, bool):
        raise ValueError(f"lanes must be one of {', '.join(map(str, LANES))}, not "
                         f"{obj.lanes!r}")
    if obj.scheme == "xnor":
        for name in ("a_bits", "w_bits"):
            value = getattr(obj, name)
            if value not in (None, 1) or isinstance(value, bool):
                raise ValueError(f"xnor codes are 1 bit per lane: {name} must be 1, not "
                                 f"{value!r}")
        object.__setattr__(obj, "a_bits", 1)
        object.__setattr__(obj, "w_bits", 1)
    else:
        activation_code_range(obj.scheme, obj.a_bits)
        object.__setattr__(obj, "w_bits", weight_bits(obj.scheme, obj.w_bits))
    if obj.codebook is not None:
        if obj.scheme != "dorefa":
            raise ValueError(f"a codebook needs the table-look-up scheme 'dorefa', not "
                             f"{obj.scheme!r}")
        if isinstance(obj.codebook, (str, bytes)) or not hasattr(obj.codebook, "__iter__"):
            raise ValueError(f"codebook must be a sequence of integer levels, not "
                             f"{obj.codebook!r}")
        levels = tuple(obj.codebook)
        if len(levels) != 1 << obj.w_bits:
            raise ValueError(f"codebook must have 2^{obj.w_bits} = {1 << obj.w_bits} "
                             f"levels, not {len(levels)}")
        for level in levels:
            if isinstance(level, bool) or not hasattr(level, "__index__"):
                raise ValueError(f"codebook levels must be integers, not {level!r}")
        object.__setattr__(obj, "codebook", tuple(int(v) for v in levels))
    if obj.scheme == "dorefa" and obj.a_bits + obj.w_bits > 16:
        raise ValueError(f"a dorefa table of 2^{obj.w_bits} x 2^{obj.a_bits} entries is too "
                         f"large; allowed: a_bits + w_bits <= 16")


def _dot_acc_bits(d) -> int:
    """The narrowest signed sum that holds one word's dot product of datapath ``d``."""
    from model.ops import product_range, signed_width
    if d.codebook is not None:
        a_hi = (1 << d.a_bits) - 1
        corners = [lv * a for lv in d.codebook for a in (0, a_hi)]
        lo, hi = min(corners), max(corners)
    else:
        lo, hi = product_range(d.scheme, a_bits=d.a_bits, w_bits=d.w_bits)
    return signed_width(d.lanes * lo, d.lanes * hi)


@dataclasses.dataclass(frozen=True)
class Datapath:
    """One datapath (*mode*) of the PE: how a slot's word pair becomes a dot product.

    An accelerator has one or more modes (``AcceleratorConfig.modes``); a layer runs in the
    mode whose ``(scheme, a_bits, w_bits, codebook)`` is its own (``key``), chosen by the
    configuration field ``mode``.

    Parameters
    ----------
    scheme : str
        Product scheme (``model.quant.SCHEMES``); ``xnor`` has 1-bit codes per lane.
    lanes : int
        MACs per PE per cycle in this mode, over that many input channels (``LANES``).
    a_bits, w_bits : int
        Activation and weight code widths per lane (``w_bits`` None: the scheme's fixed
        width; ``xnor``: both 1).
    codebook : tuple of int, optional
        Integer level per weight code (``dorefa`` tables only: weight sharing).
    """

    scheme: str
    lanes: int
    a_bits: int = 8
    w_bits: int | None = None
    codebook: tuple | None = None

    def __post_init__(self):
        _check_datapath(self)

    @property
    def key(self) -> tuple:
        """``(scheme, a_bits, w_bits, codebook)``: what a layer must match to run in it."""
        return (self.scheme, self.a_bits, self.w_bits, self.codebook)

    @property
    def a_word_bits(self) -> int:
        """Bits of an activation word (``lanes`` codes)."""
        return self.lanes * self.a_bits

    @property
    def w_word_bits(self) -> int:
        """Bits of a weight word (``lanes`` codes)."""
        return self.lanes * self.w_bits

    @property
    def min_acc_bits(self) -> int:
        """The narrowest partial sum that holds one word's dot product."""
        return _dot_acc_bits(self)

    def describe(self) -> str:
        """One short line: scheme, widths, lanes (and a codebook's levels)."""
        book = "" if self.codebook is None else f" codebook {list(self.codebook)}"
        return f"{self.scheme} A{self.a_bits} W{self.w_bits}{book} x{self.lanes} lanes"

    def to_dict(self) -> dict:
        """The fields as plain JSON-able values."""
        out = dataclasses.asdict(self)
        out["codebook"] = None if self.codebook is None else list(self.codebook)
        return out

    @classmethod
    def from_dict(cls, values: dict) -> "Datapath":
        """From ``to_dict``'s form; unknown keys are refused (one line names them)."""
        names = {f.name for f in dataclasses.fields(cls)}
        if not isinstance(values, dict):
            raise ValueError(f"a mode must be a Datapath or a dict of {', '.join(sorted(names))}"
                             f", not {values!r}")
        unknown = sorted(set(values) - names)
        if unknown:
            raise ValueError(f"unknown mode parameter(s) {', '.join(unknown)}; allowed: "
                             f"{', '.join(sorted(names))}")
        values = dict(values)
        if values.get("codebook") is not None:
            values["codebook"] = tuple(values["codebook"])
        return cls(**values)


def check_modes(modes) -> tuple:
    """``modes`` (Datapaths, mode 0 first) if they can share one PE; else ``ValueError``
    naming the mode at fault: every mode's activation word ``lanes * a_bits`` has the same
    width, and no two modes are equal."""
    modes = tuple(modes)
    width = modes[0].a_word_bits
    for k, mode in enumerate(modes):
        if mode.a_word_bits != width:
            raise ValueError(f"mode {k} ({mode.describe()}) has {mode.a_word_bits}-bit "
                             f"activation words, mode 0 ({modes[0].describe()}) {width}-bit; "
                             f"allowed: every mode's lanes * a_bits = {width}")
        for j in range(k):
            if modes[j] == mode:
                raise ValueError(f"modes {j} and {k} are the same ({mode.describe()}); "
                                 f"allowed: distinct modes")
    return modes


@dataclasses.dataclass(frozen=True)
class AcceleratorConfig:
    """The accelerator's generator parameters (what ``mulfree generate``/``build`` take).

    Parameters
    ----------
    scheme : str
        Product scheme (``model.quant.SCHEMES``); ``xnor`` has 1-bit codes per lane.
    rows, cols : int
        PE array size (1..64 each).
    lanes : int
        MACs per PE per cycle, over that many input channels (``LANES``).
    a_bits, w_bits : int
        Activation and weight code widths per lane (``w_bits`` None: the scheme's fixed
        width; ``xnor``: both 1).
    acc_bits : int
        Partial-sum width: at least ``model.ops.accumulator_width`` of every layer run.
    filter_spad, ifmap_spad : int
        Scratchpad words per bank (powers of two); a word carries ``lanes`` codes.
    in_depth, wb_depth, pb_depth : int
        Global buffer: input words, words per weight bank (one per PE row), words per psum
        bank (one per PE column).
    tree_stages : int
        Pipeline registers in each PE's lane reduction tree (0..2).
    codebook : tuple of int, optional
        Integer level per weight code (``dorefa`` tables only: weight sharing).
    counter_bits : int
        Width of each counter (8..64).
    groups : int
        The most groups a grouped (depthwise) layer may have: the controller then runs the
        layer's row folds once per group (configuration fields ``groups``, ``grp_inputs``,
        ``grp_psums``). 1: layers of one group only, and no group loop in the controller.
    more_modes : tuple of Datapath
        Further datapaths of the PE besides mode 0 (``scheme, lanes, a_bits, w_bits,
        codebook`` above); a layer picks one with the configuration field ``mode``. Every
        mode's activation word ``lanes * a_bits`` has the same width; the weight word is the
        widest mode's (a narrower mode uses its low bits); no two modes are equal. Dicts of
        ``Datapath``'s fields are taken too.
    """

    scheme: str = "ternary"
    rows: int = 3
    cols: int = 4
    lanes: int = 1
    a_bits: int = 8
    w_bits: int | None = None
    acc_bits: int = 20
    filter_spad: int = 32
    ifmap_spad: int = 32
    in_depth: int = 256
    wb_depth: int = 256
    pb_depth: int = 256
    tree_stages: int = 0
    codebook: tuple | None = None
    counter_bits: int = COUNTER_BITS
    more_modes: tuple = ()
    groups: int = 1

    def __post_init__(self):
        _int_in("rows", self.rows, 1, MAX_DIM)
        _int_in("cols", self.cols, 1, MAX_DIM)
        _check_datapath(self)
        _int_in("acc_bits", self.acc_bits, 2, 64)
        for name in ("filter_spad", "ifmap_spad"):
            _power_of_two(name, getattr(self, name))
        for name in ("in_depth", "wb_depth", "pb_depth"):
            _int_in(name, getattr(self, name), 1, 1 << 24)
        _int_in("tree_stages", self.tree_stages, 0, 2)
        _int_in("counter_bits", self.counter_bits, 8, 64)
        _int_in("groups", self.groups, 1, 1 << 16)
        if isinstance(self.more_modes, (str, bytes, dict)) or \
                not hasattr(self.more_modes, "__iter__"):
            raise ValueError(f"more_modes must be a sequence of Datapath, not "
                             f"{self.more_modes!r}")
        more = tuple(m if isinstance(m, Datapath) else Datapath.from_dict(m)
                     for m in self.more_modes)
        object.__setattr__(self, "more_modes", more)
        check_modes(self.modes)
        low = self.min_acc_bits
        if self.acc_bits < low:
            widest = max(self.modes, key=lambda d: d.min_acc_bits)
            raise ValueError(f"acc_bits {self.acc_bits} cannot hold one word's products "
                             f"({widest.scheme}, lanes {widest.lanes}, A{widest.a_bits} "
                             f"W{widest.w_bits}); allowed: at least {low}")

    # ---- modes ---------------------------------------------------------------------------
    @property
    def datapath(self) -> Datapath:
        """Mode 0: the ``scheme, lanes, a_bits, w_bits, codebook`` fields."""
        return Datapath(self.scheme, self.lanes, self.a_bits, self.w_bits, self.codebook)

    @property
    def modes(self) -> tuple:
        """Every mode (``Datapath``), mode 0 first; a layer's ``mode`` field indexes them."""
        return (self.datapath,) + self.more_modes

    def mode_of(self, scheme: str, *, a_bits: int, w_bits: int | None = None,
                codebook=None) -> int:
        """The index of the mode that runs layers of ``scheme`` at these widths (its
        ``Datapath.key``); ``ValueError`` naming the layer's datapath and the modes there are
        when none does."""
        from model.quant import weight_bits
        if scheme == "xnor":
            a_bits, w_bits = 1, 1
        elif w_bits is None:
            w_bits = weight_bits(scheme)
        book = None if codebook is None else tuple(int(v) for v in codebook)
        key = (scheme, a_bits, w_bits, book)
        for k, mode in enumerate(self.modes):
            if mode.key == key:
                return k
        book = "" if book is None else f" codebook {list(book)}"
        raise ValueError(f"no mode of the accelerator runs {scheme} A{a_bits} W{w_bits}{book}; "
                         f"its modes: {'; '.join(d.describe() for d in self.modes)}")

    # ---- derived sizes -------------------------------------------------------------------
    @property
    def pes(self) -> int:
        return self.rows * self.cols

    @property
    def max_lanes(self) -> int:
        """The most lanes of any mode."""
        return max(d.lanes for d in self.modes)

    @property
    def macs_per_cycle(self) -> int:
        """Peak MACs per cycle: PEs x the most lanes of any mode."""
        return self.rows * self.cols * self.max_lanes

    @property
    def a_word_bits(self) -> int:
        """Bits of an activation word (every mode's ``lanes * a_bits``)."""
        return self.lanes * self.a_bits

    @property
    def w_word_bits(self) -> int:
        """Bits of a weight word: the widest mode's ``lanes * w_bits``."""
        return max(d.w_word_bits for d in self.modes)

    @property
    def accumulate_latency(self) -> int:
        return accumulate_latency(self.tree_stages)

    @property
    def min_acc_bits(self) -> int:
        """The narrowest partial sum that holds one word's dot product in every mode (a
        layer needs more: ``model.ops.accumulator_width`` of its fan-in)."""
        return max(d.min_acc_bits for d in self.modes)

    def replace(self, **changes) -> "AcceleratorConfig":
        """A copy with ``changes`` (validated)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        """The parameters as plain JSON-able values."""
        out = dataclasses.asdict(self)
        out["codebook"] = None if self.codebook is None else list(self.codebook)
        out["more_modes"] = [d.to_dict() for d in self.more_modes]
        return out

    @classmethod
    def from_dict(cls, values: dict) -> "AcceleratorConfig":
        """From ``to_dict``'s form; unknown keys are refused (one line names them)."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ValueError(f"unknown accelerator parameter(s) {', '.join(unknown)}; allowed: "
                             f"{', '.join(sorted(names))}")
        values = dict(values)
        if values.get("codebook") is not None:
            values["codebook"] = tuple(values["codebook"])
        if "more_modes" in values:
            more = values["more_modes"]
            if isinstance(more, (list, tuple)):
                more = tuple(Datapath.from_dict(d) if isinstance(d, dict) else d for d in more)
            values["more_modes"] = more
        return cls(**values)


# ---- configuration fields -------------------------------------------------------------------

#: The configuration fields, in ``config_stream`` order, with their meaning. The host
#: computes every value (``sim.cycle_model.config_values``); the controller only counts,
#: compares and adds.
CONFIG_FIELDS = {
    "H": "input height", "W": "input width", "R": "filter height", "S": "filter width",
    "U": "stride", "P": "padding", "E": "output height",
    "q": "channel words per PE", "p": "filters per pass", "Cg": "channel groups Cw / q",
    "Gi": "filter groups M / p", "Fseg": "segment length F'", "n_f": "segments",
    "F_last": "length of the last segment", "Wseg": "input scratchpad row stride",
    "n_r": "row folds", "rows_last": "PE rows used in the last row fold",
    "n_v": "column folds", "cols_last": "PE columns used in the last column fold",
    "YdivR": "rows // R", "YmodR": "rows % R", "qS": "q * S (the period d)",
    "pqS": "p * q * S (weight words per pass and row)",
    "MqS": "weight words per reduction unit M * q * S",
    "n_weights": "weight words M * Cw * R * S", "HW": "H * W", "qHW": "q * H * W",
    "YdivR_qHW": "(rows // R) * q * H * W", "n_inputs": "input words Cw * H * W",
    "PW": "P * W", "FsegU": "F' * U", "Fp": "F * p", "GiFp": "Gi * F * p",
    "Fsegp": "F' * p", "FsU1": "(F' - 1) * U", "FlU1": "(F_last - 1) * U",
    "XU": "cols * U", "XUW": "cols * U * W", "CL1U": "(cols_last - 1) * U",
    "n_last": "real lanes of the last channel word",
    "n_min": "fewest taps a dot runs (sim.cycle_model.dot_taps)",
    "fold_dots": "dots per row fold n_v * Gi * F * p",
    "wb_base": "the layer's first word in every weight bank (0 for one layer at a time)",
    "in_base": "the layer's first activation word (0 for one layer at a time)",
    "mode": "the layer's datapath: index into AcceleratorConfig.modes",
    "groups": "groups of a grouped layer (1: not grouped); the row folds run once per group",
    "grp_inputs": "input words per group Cw_g * H * W (0 for one group)",
    "grp_psums": "psum words per bank, column fold and group Gi * F * p (0 for one group)",
}


def config_limits(config: AcceleratorConfig) -> dict[str, int]:
    """The largest value of each configuration field on this accelerator.

    Every layer whose buffers fit (``sim.cycle_model.memory_depths`` within the depths),
    whose mapping fits the scratchpads and whose padding is at most ``MAX_PADDING`` stays
    within them: ``Cw * H * W`` input words bound ``H``, ``W`` and their products; the weight
    words per bank ``n_r * M * q * S`` bound ``n_r``, ``M * q * S`` and ``Gi``; the psum words
    per bank ``n_v * Gi * p * F`` bound ``n_v``, ``Gi`` and ``F``; ``E`` and ``F`` are at
    most the padded input's size; ``p * q * S`` fits the filter scratchpad, ``q * Wseg`` the
    input one; the stride is at most ``MAX_STRIDE``. The host refuses a layer with a larger
    value (the field, its value and the limit in one line); the controller's counters and
    addresses are sized from these limits. A layer's ``groups`` is at most
    ``AcceleratorConfig.groups``; ``grp_inputs`` and ``grp_psums`` fit the buffers (0 on an
    accelerator without the group loop).
    """
    c = config
    Y, X, FS, IS = c.rows, c.cols, c.filter_spad, c.ifmap_spad
    Din, Dw, Dp, P, U = c.in_depth, c.wb_depth, c.pb_depth, MAX_PADDING, MAX_STRIDE
    E = Din + 2 * P          # output rows or columns (and filter rows) within the padded input
    return {
        "H": Din, "W": Din, "R": E, "S": min(FS, IS), "U": U, "P": P, "E": E,
        "q": FS, "p": FS, "Cg": Din, "Gi": Dp, "Fseg": IS, "n_f": min(Dp, E),
        "F_last": IS, "Wseg": IS, "n_r": Dw, "rows_last": Y, "n_v": Dp, "cols_last": X,
        "YdivR": Y, "YmodR": Y, "qS": FS, "pqS": FS, "MqS": Dw, "n_weights": Y * Dw,
        "HW": Din, "qHW": Din, "YdivR_qHW": Y * Din, "n_inputs": Din, "PW": P * Din,
        "FsegU": U * IS, "Fp": Dp, "GiFp": Dp, "Fsegp": Dp, "FsU1": U * IS, "FlU1": U * IS,
        "XU": X * U, "XUW": X * U * Din, "CL1U": X * U, "n_last": c.max_lanes,
        "n_min": min(FS, IS), "fold_dots": Dp, "wb_base": Dw - 1, "in_base": Din - 1,
        "mode": len(c.modes) - 1,
        "groups": c.groups, "grp_inputs": Din if c.groups > 1 else 0,
        "grp_psums": Dp if c.groups > 1 else 0,
    }


def config_field_bits(config: AcceleratorConfig) -> dict[str, int]:
    """Bits of each configuration field: enough for its ``config_limits`` value."""
    return {name: max(1, limit.bit_length()) for name, limit in config_limits(config).items()}


# ---- counters -------------------------------------------------------------------------------

#: What the accelerator counts, in the order it reports them (``counters`` of
#: ``hw.accelerator.Accelerator``, the board's ``READ_COUNTERS``).
COUNTER_MEANINGS = {
    "cycles": "clock cycles of the compute phase",
    "slots": "word slots of active PEs at taps inside the image (input scratchpad reads)",
    "last_slots": "those of slots on a layer's last channel word (its padded lanes are idle)",
    "skipped": "real lanes of slots whose weight level is 0 (no add)",
    "filter_reads": "filter scratchpad word reads (one per PE row and slot, shared by the row)",
    "filter_writes": "filter scratchpad words written",
    "input_writes": "input scratchpad words written (taken by a PE)",
    "array_transfers": "partial sums handed from a PE to the PE below",
    "glb_reads": "global-buffer words read (inputs, weights, old partial sums, outputs)",
    "glb_writes": "global-buffer words written (weights, inputs, partial sums)",
    "offchip_words": "words on the weight, input and output streams",
}
COUNTERS = tuple(COUNTER_MEANINGS)


def derived_counters(counts: dict, *, lanes: int, n_last: int) -> dict:
    """The counts users and the energy model read, from the accelerator's ``COUNTERS``:
    ``macs`` (real lanes of the slots: ``lanes * slots - (lanes - n_last) * last_slots``),
    ``rf_reads`` (input and filter scratchpad words read) and ``rf_writes`` (words written)."""
    return {
        "macs": lanes * counts["slots"] - (lanes - n_last) * counts["last_slots"],
        "rf_reads": counts["slots"] + counts["filter_reads"],
        "rf_writes": counts["filter_writes"] + counts["input_writes"],
    }


#: The names ``derived_counters`` gives, in order.
DERIVED_COUNTERS = tuple(derived_counters(dict.fromkeys(COUNTERS, 0), lanes=1, n_last=1))


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def channel_words(channels: int, lanes: int) -> tuple[int, int]:
    """``(Cw, n_last)``: words of ``lanes`` channels holding ``channels``, and the real lanes
    of the last word."""
    cw = ceil_div(channels, lanes)
    return cw, channels - (cw - 1) * lanes


__all__ += ["ceil_div", "channel_words", "DERIVED_COUNTERS"]
