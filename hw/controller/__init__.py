"""The controller: the accelerator's schedule as four parts joined by typed signatures.

- ``ComputeSequencer`` (``sequencer``): one dot per period into row 0, the rows' dot states,
  their slots, when to wait;
- ``WeightLoader`` (``weights``): each pass's weights into the filter scratchpads;
- ``InputLoader`` (``inputs``): each block's input rows into the input scratchpads;
- ``PsumUnit`` (``psums``): old partial sums into the columns' tops, the bottoms' sums into
  the psum banks.

``hw.accelerator.Accelerator`` builds the four beside the array and the global buffer and
joins them with ``wiring.connect``. The facts they share (configuration fields, latencies,
limits) are in ``hw.schedule``; the schedule they follow is ``sim.cycle_model``'s.
"""

from hw.controller.inputs import InputLoader
from hw.controller.interfaces import (DotEvents, Progress, RowFlags, SequencerStatus,
                                      config_layout, dot_state_layout)
from hw.controller.psums import PsumUnit
from hw.controller.sequencer import ComputeSequencer
from hw.controller.weights import WeightLoader

__all__ = ["ComputeSequencer", "WeightLoader", "InputLoader", "PsumUnit", "config_layout",
           "dot_state_layout", "Progress", "SequencerStatus", "RowFlags", "DotEvents"]
