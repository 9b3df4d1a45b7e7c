"""The controller: the accelerator's schedule as parts joined by typed signatures and streams.

- ``ComputeSequencer`` (``sequencer``): the ``DotSource`` (``dots``: the layer's dots into
  PE row 0 as each becomes ready) and one ``RowSequencer`` per PE row (``rows``: a row runs
  the dots handed to it slot by slot and hands each to the row below);
- ``WeightLoader`` (``weights``): each pass's weights into the rows' filter scratchpads;
- ``InputLoader`` (``inputs``): each block's input rows into the PEs' input scratchpads;
- ``PsumUnit`` (``psums``): old partial sums into the columns' tops, the bottoms' sums into
  the psum banks;
- ``Unloader`` (``unload``): a finished layer's sums out of the psum banks, with their
  coordinates;
- ``FieldLoader`` (``fields``): a configuration register written one field per beat.

``hw.core.AcceleratorCore`` builds the first four beside the array and the banks and joins
them with ``wiring.connect``; the wrappers (``hw.accelerator``, ``hw.engine``) add the rest.
The facts they share (configuration fields, latencies, limits) are in ``hw.schedule``; the
schedule they follow is ``sim.cycle_model``'s.
"""

from hw.controller.dots import DotSource
from hw.controller.fields import FieldLoader
from hw.controller.inputs import InputLoader
from hw.controller.interfaces import (DotEvents, Progress, RowFlags, SequencerStatus,
                                      config_layout, dot_state_layout)
from hw.controller.psums import PsumUnit
from hw.controller.rows import RowSequencer
from hw.controller.sequencer import ComputeSequencer
from hw.controller.unload import Unloader, element_layout
from hw.controller.weights import WeightLoader

__all__ = ["ComputeSequencer", "DotSource", "RowSequencer", "WeightLoader", "InputLoader",
           "PsumUnit", "Unloader", "element_layout", "FieldLoader", "config_layout",
           "dot_state_layout", "Progress", "SequencerStatus", "RowFlags", "DotEvents"]
