"""The controller: the accelerator's schedule as parts joined by typed signatures and streams.

- ``ComputeSequencer`` (``sequencer``): the ``DotSource`` (``dots``: the layer's dots into
  PE row 0 as each becomes ready) and one ``RowSequencer`` per PE row (``rows``: a row runs
  the dots handed to it slot by slot and hands each to the row below);
- ``WeightLoader`` (``weights``): each pass's weights into the rows' filter scratchpads;
- ``InputLoader`` (``inputs``): each block's input rows into the PEs' input scratchpads;
- ``PsumUnit`` (``psums``): old partial sums into the columns' tops, the bottoms' sums into
  the psum banks.

``hw.accelerator.Accelerator`` builds them beside the array and the global buffer and joins
them with ``wiring.connect``. The facts they share (configuration fields, latencies, limits)
are in ``hw.schedule``; the schedule they follow is ``sim.cycle_model``'s.
"""

from hw.controller.dots import DotSource
from hw.controller.inputs import InputLoader
from hw.controller.interfaces import (DotEvents, Progress, RowFlags, SequencerStatus,
                                      config_layout, dot_state_layout)
from hw.controller.psums import PsumUnit
from hw.controller.rows import RowSequencer
from hw.controller.sequencer import ComputeSequencer
from hw.controller.weights import WeightLoader

__all__ = ["ComputeSequencer", "DotSource", "RowSequencer", "WeightLoader", "InputLoader",
           "PsumUnit", "config_layout", "dot_state_layout", "Progress", "SequencerStatus",
           "RowFlags", "DotEvents"]
