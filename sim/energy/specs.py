"""The dataflows: what each keeps in its register file and what it spreads over the PEs.

The six dataflows of the Eyeriss comparison (Chen, Emer, Sze, "Eyeriss: A Spatial
Architecture for Energy-Efficient Dataflow for Convolutional Neural Networks", ISCA 2016;
section numbers below are that paper's), each written as a ``DataflowSpec`` that the generic
tile analysis (``sim.energy.tiles``) and the mapping search (``sim.energy.search``) read:

``rs`` -- row stationary (section V)
    PE (i, j) runs the 1-D convolution of filter row i with input row j*U + i (a *logical
    PE set* is R x E PEs); filter rows are reused across the row, input rows diagonally,
    partial sums accumulate down the column. Sets of several channels and filters are
    folded into one PE (the RF keeps p filter rows, q channels' input window and p rows of
    partial sums) and replicated across the array. RF 512 B per PE (section VI-B).
``ws`` -- weight stationary (sections IV-A and VI-A)
    "Each PE holds a single weight in the RF at a time"; the R x R weights of one filter
    and channel sit on R x R PEs, every input pixel of the channel is broadcast to them and
    their partial sums are added across those PEs "passed to its neighbor PE"; what leaves
    the R x R region is "stored back to the global buffer" and accumulated there across
    channels. Regions of several filters side by side share the broadcast inputs.
``osa``, ``osb``, ``osc`` -- output stationary (sections IV-B and VI-A)
    "Each PE runs the psum accumulation of a single ofmap pixel at a time"; the RF keeps
    that one partial sum, and "all additional input data reuse is exploited at the array
    level": every MAC takes its input and its weight from the array.

    - ``osa`` = SOC-MOP: a 2-D patch of output pixels of a single output channel (the
      array is "dedicated to 2D convolutional reuse"; the weight is broadcast);
    - ``osb`` = MOC-MOP: several output channels x a row of output pixels ("1D
      convolutional reuse and ifmap reuse"), the variant the paper models;
    - ``osc`` = MOC-SOP: several output channels of a single output pixel ("used mainly
      for FC layers ... exploiting ifmap reuse").
``nlr`` -- no local reuse (sections IV-C and VI-A)
    No RF; PEs of a group read the same input pixel with the weights of different filters,
    groups take different input channels, and partial sums are added across the groups in
    the array; everything else lives in the global buffer.

Two named alternatives (the dataflows this model used before it followed the paper; kept
because they bound how much the array alone could save):

``ws_array``
    WS whose array also adds the partial sums of different *channels* (filter planes of
    C x R x S spread over the PEs), so only whole sums reach the buffer.
``os_any``
    OS whose PEs may hold any mix of filters and output pixels (M x E x F spread over the
    PEs), the best of the three OS variants for every layer.

Register-file contents under equal area (``rf_baseline`` or ``rf_words``): RS 512 B
(section VI-B: "We fix the RF size in RS dataflow at 512B"); OS_A a register file as large
as RS's -- section VI-D names RS and OS_A as the two dataflows whose RF would *not* be
cheaper to access if priced by its size, and section IV-B says SOC-MOP and MOC-MOP need RF
"for ifmap buffering"; WS one weight; OS_B one partial sum and a FIFO of 15 inputs for the
1-D sliding window (up to 16-wide filters; *our choice of depth*); OS_C one partial sum;
NLR none.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["DIMS", "DATA_TYPES", "LEVELS", "RELEVANT", "STATIONARY_ORDERS", "DataflowSpec",
           "DATAFLOWS", "PAPER_DATAFLOWS", "check_dataflow", "parse_dataflows"]

#: Loop dimensions in the paper's notation: batch N, filters M, channels C, output E x F,
#: filter R x S.
DIMS = ("N", "M", "C", "E", "F", "R", "S")
DATA_TYPES = ("inputs", "weights", "psums")
#: Storage levels, most expensive first: off-chip DRAM, global buffer, inter-PE array, RF.
LEVELS = ("dram", "glb", "array", "rf")
#: The dimensions that index each data type.
RELEVANT = {"inputs": frozenset("NCEFRS"), "weights": frozenset("MCRS"),
            "psums": frozenset("NMEF")}
# Canonical loop order (outer to inner) inside a group of loops: the sliding-window
# dimensions innermost so that a step fetches only the new rows/columns.
_CANON = ("N", "M", "C", "R", "S", "E", "F")
#: Loop orders of a level: the named data type stays while the loops it ignores run inside.
STATIONARY_ORDERS = {
    x: tuple(d for d in _CANON if d in RELEVANT[x]) + tuple(d for d in _CANON
                                                                 if d not in RELEVANT[x])
    for x in DATA_TYPES
}


@dataclass(frozen=True)
class DataflowSpec:
    """What distinguishes a dataflow: RF contents, spatial dimensions, PE loops, RF size.

    ``rf_dims`` are the dimensions of the RF-resident tile (searched), ``rf_full`` those
    held whole in it, ``pe_order`` the loops a PE runs over its RF tile within one pass
    (full extent of the dimension), ``spatial`` the dimensions spread over PEs.
    ``stationary`` names the data type a PE keeps until all its uses are done (the GLB
    and DRAM loops then keep it too); ``None`` lets the search choose the loop orders.
    ``splits_batch`` lets the search run a batch as halves one after the other (refetching
    the weights for each).
    Under equal area (``sim.energy.hardware``) the RF per PE is the baseline's (RS's 512 B)
    when ``rf_baseline``, otherwise the ``rf_words`` it holds per data type (sized at the
    data types' widths).
    """

    name: str
    label: str
    description: str
    rf_keeps: frozenset
    rf_dims: tuple
    rf_full: tuple
    pe_order: tuple
    spatial: tuple
    row_stationary: bool = False
    stationary: str | None = None
    splits_batch: bool = True
    rf_baseline: bool = False
    rf_words: dict = field(default_factory=dict)
    paper: bool = True


def _spec(name, label, description, keeps, spatial, pe_order=(), rf_dims=(), rf_full=(),
          **kw) -> DataflowSpec:
    return DataflowSpec(name, label, description, frozenset(keeps), rf_dims, rf_full,
                        pe_order, spatial, **kw)


#: Input words of OS_B's sliding-window FIFO (our choice: filters up to 16 wide).
OSB_FIFO_WORDS = 15

DATAFLOWS = {d.name: d for d in (
    _spec("rs", "RS", "row stationary: PE(i, j) convolves filter row i with input row "
          "j*U + i; filter rows, input window and partial sums of p filters x q channels "
          "in the RF", ("inputs", "weights", "psums"), ("R", "E", "C", "M"),
          pe_order=("F",), rf_dims=("M", "C"), rf_full=("S",), row_stationary=True,
          rf_baseline=True),
    _spec("ws", "WS", "weight stationary: one weight per PE; a filter plane on R x S PEs, "
          "inputs broadcast, partial sums added across the plane, channels accumulated in "
          "the global buffer", ("weights",), ("M", "R", "S"), pe_order=("E", "F"),
          stationary="weights", splits_batch=False, rf_words={"weights": 1}),
    _spec("osa", "OS_A", "output stationary SOC-MOP: one partial sum per PE, a 2-D patch "
          "of output pixels of one filter; inputs and weights through the array",
          ("psums",), ("E", "F"), pe_order=("R", "S"), stationary="psums",
          rf_baseline=True),
    _spec("osb", "OS_B", "output stationary MOC-MOP: one partial sum per PE, several "
          "filters x a row of output pixels; inputs and weights through the array",
          ("psums",), ("M", "F"), pe_order=("R", "S"), stationary="psums",
          rf_words={"psums": 1, "inputs": OSB_FIFO_WORDS}),
    _spec("osc", "OS_C", "output stationary MOC-SOP: one partial sum per PE, several "
          "filters of one output pixel; inputs and weights through the array",
          ("psums",), ("M",), pe_order=("R", "S"), stationary="psums",
          rf_words={"psums": 1}),
    _spec("nlr", "NLR", "no local reuse: no RF; inputs multicast across filters, partial "
          "sums added across channels in the array, everything else from the buffer",
          (), ("M", "C")),
    _spec("ws_array", "WS_ARRAY", "weight stationary, channels too: one weight per PE over "
          "C x R x S (and filters), partial sums added across all of them in the array "
          "(not the paper's WS)", ("weights",), ("M", "C", "R", "S"), pe_order=("E", "F"),
          rf_words={"weights": 1}, paper=False),
    _spec("os_any", "OS_ANY", "output stationary, any region: one partial sum per PE over "
          "filters x output rows x columns (the best of OS_A, OS_B, OS_C; not one of the "
          "paper's)", ("psums",), ("E", "F", "M"), pe_order=("R", "S"),
          rf_words={"psums": 1}, paper=False),
)}

#: The paper's six dataflows, in its order.
PAPER_DATAFLOWS = tuple(n for n, d in DATAFLOWS.items() if d.paper)


def check_dataflow(name: str) -> str:
    """``name`` if it is a dataflow, else ``ValueError`` naming the allowed ones."""
    if name not in DATAFLOWS:
        raise ValueError(f"unknown dataflow {name!r}; allowed: {', '.join(DATAFLOWS)}")
    return name


def parse_dataflows(text: str) -> tuple[str, ...]:
    """``"rs,ws"`` -> ``("rs", "ws")``, refusing unknown or repeated names."""
    names = tuple(n.strip().lower() for n in str(text).split(",") if n.strip())
    if not names:
        raise ValueError(f"no dataflow in {text!r}; allowed: {', '.join(DATAFLOWS)}")
    for n in names:
        check_dataflow(n)
    if len(set(names)) != len(names):
        raise ValueError(f"dataflow listed twice in {text!r}")
    return names
