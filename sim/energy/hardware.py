"""The hardware a dataflow runs on, and the storage each dataflow gets under equal area.

Equal storage area (Chen, Emer, Sze, ISCA 2016, section VI-B): every dataflow gets the same
number of PEs and the storage area of the baseline

``#PE x Area(512 B RF) + Area(#PE x 512 B global buffer)``

(at 256 PEs: 512 B of RF per PE and a 128 kB buffer, which is RS's allocation). Each other
dataflow gets an RF sized to what it keeps there (``sim.energy.specs``) and the area left
over goes to its global buffer. Area is counted in bytes of global buffer: a byte of RF
costs ``rf_area_ratio`` bytes of buffer area.

``DEFAULT_RF_AREA_RATIO`` = 1.6 is derived from the two figures section VI-B gives for its
256-PE allocation (its Fig. 7b is a chart we read only through them): the global buffers of
the dataflows differ by up to 2.6x and the total on-chip storage by up to 80 kB. NLR, with
no RF, has the largest buffer and RS (with OS_A) the smallest, so NLR's buffer is about
2.6 x 128 kB = 333 kB and its total 77 kB above RS's 256 kB; its buffer replaced
256 x 512 B = 128 kB of RF, so one RF byte has the area of (333 - 128) / 128 = 1.6 buffer
bytes. The sensitivity table of ``docs/energy.md`` shows how the ratios move with it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from sim.energy.specs import DATAFLOWS, check_dataflow

__all__ = ["Hardware", "equal_area_hardware", "BASELINE_RF_BYTES", "DEFAULT_RF_AREA_RATIO",
           "near_square_rows"]

#: RF bytes per PE of the equal-area baseline (and of RS), section VI-B.
BASELINE_RF_BYTES = 512
#: Area of an RF byte in global-buffer bytes (derived in the module docstring).
DEFAULT_RF_AREA_RATIO = 1.6


@dataclass(frozen=True)
class Hardware:
    """What the dataflow runs on.

    Parameters
    ----------
    pes : int
        Number of processing elements.
    rows, cols : int
        Their arrangement (the row-stationary mapping needs it; the other dataflows use the
        PEs as a flat pool).
    rf_bytes : int
        Register-file bytes per PE (0: no RF).
    glb_bytes : int
        Global-buffer bytes.
    input_bits, weight_bits, psum_bits : int
        Word widths; storage holds words packed at these widths.
    offchip : str
        Off-chip memory the DRAM cost stands for (documentation only).
    """

    pes: int = 256
    rows: int = 16
    cols: int = 16
    rf_bytes: int = 512
    glb_bytes: int = 128 * 1024
    input_bits: int = 16
    weight_bits: int = 16
    psum_bits: int = 16
    offchip: str = "DRAM"

    def __post_init__(self):
        for name in ("pes", "rows", "cols", "glb_bytes", "input_bits", "weight_bits",
                     "psum_bits"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"hardware {name} must be a positive integer, not {value!r}")
        if isinstance(self.rf_bytes, bool) or not isinstance(self.rf_bytes, int) \
                or self.rf_bytes < 0:
            raise ValueError(f"hardware rf_bytes must be an integer >= 0, not {self.rf_bytes!r}")
        if self.rows * self.cols != self.pes:
            raise ValueError(f"hardware arrangement {self.rows}x{self.cols} does not give "
                             f"pes={self.pes}")

    def bits(self, data_type: str) -> int:
        return {"inputs": self.input_bits, "weights": self.weight_bits,
                "psums": self.psum_bits}[data_type]

    def to_dict(self) -> dict:
        return {"pes": self.pes, "rows": self.rows, "cols": self.cols,
                "rf_bytes": self.rf_bytes, "glb_bytes": self.glb_bytes,
                "input_bits": self.input_bits, "weight_bits": self.weight_bits,
                "psum_bits": self.psum_bits, "offchip": self.offchip}


def near_square_rows(pes: int) -> int:
    """The largest divisor of ``pes`` not above its square root."""
    rows = int(math.isqrt(pes))
    while pes % rows:
        rows -= 1
    return rows


def equal_area_hardware(dataflow: str, pes: int = 256, *, rows: int | None = None,
                        cols: int | None = None, baseline_rf_bytes: int = BASELINE_RF_BYTES,
                        rf_area_ratio: float = DEFAULT_RF_AREA_RATIO, input_bits: int = 16,
                        weight_bits: int = 16, psum_bits: int = 16) -> Hardware:
    """The hardware ``dataflow`` gets under the baseline's storage area (module docstring)."""
    spec = DATAFLOWS[check_dataflow(dataflow)]
    if isinstance(pes, bool) or not isinstance(pes, int) or pes < 1:
        raise ValueError(f"pes must be a positive integer, not {pes!r}")
    if rows is None and cols is None:
        rows = near_square_rows(pes)
    if rows is None:
        rows = pes // cols
    if cols is None:
        cols = pes // rows
    if rows * cols != pes:
        raise ValueError(f"a {rows}x{cols} arrangement does not give {pes} PEs")
    if not rf_area_ratio > 0:
        raise ValueError(f"rf_area_ratio must be > 0, not {rf_area_ratio!r}")
    width = {"inputs": input_bits, "weights": weight_bits, "psums": psum_bits}
    if spec.rf_baseline:
        rf_bytes = baseline_rf_bytes
    else:
        rf_bytes = math.ceil(sum(n * width[x] for x, n in spec.rf_words.items()) / 8)
    area = pes * baseline_rf_bytes * rf_area_ratio + pes * baseline_rf_bytes
    glb_bytes = int(area - pes * rf_bytes * rf_area_ratio)
    return Hardware(pes=pes, rows=rows, cols=cols, rf_bytes=rf_bytes, glb_bytes=glb_bytes,
                    input_bits=input_bits, weight_bits=weight_bits, psum_bits=psum_bits)
