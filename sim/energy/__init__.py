"""Dataflow energy model: row stationary against the Eyeriss paper's other dataflows, and the
energy of what our accelerator ran.

The modules, in the order they build on each other:

``costs``
    cost tables: the Eyeriss normalised costs and the 45 nm figures (Horowitz).
``compute``
    product schemes and the energy of one MAC on a PE of ``lanes`` lanes.
``specs``
    the dataflows (RS, WS, OS_A, OS_B, OS_C, NLR and two named alternatives).
``hardware``
    the hardware a dataflow runs on and its storage under equal area.
``tiles``, ``search``
    access counts of a mapping (the paper's framework) and the mapping search.
``network``
    least energy of layers and networks under each dataflow.
``array``, ``runs``
    our accelerator: what each counter moves, and the energy of a ``run-layer`` output
    beside the model's prediction.
``report``
    table, JSON and plots.

Layers are ``sim.energy_presets.NamedLayer`` (a name beside a ``model.shapes.LayerShape``).
Every name callers use is importable from ``sim.energy`` itself.
"""

from sim.energy.array import (COUNTER_USE, OUR_ARRAY, array_counters, array_energy,
                              array_hardware, counters_by_type, counts_by_level, run_lanes,
                              shape_counters)
from sim.energy.compute import (INT16, Scheme, can_skip, compute_pj, default_sparsity,
                                mac_pj, tree_adds)
from sim.energy.costs import (COST_TABLES, ENERGY_LEVELS, REFERENCE_MAC_PJ, CostTable,
                              add_pj, cost_table, multiply_pj, sram_pj_per_bit)
from sim.energy.hardware import (BASELINE_RF_BYTES, DEFAULT_RF_AREA_RATIO, Hardware,
                                 equal_area_hardware)
from sim.energy.network import (DataflowEnergy, EnergyReport, LayerEnergy, layer_energy,
                                network_energy, resolve_network)
from sim.energy.report import (format_runs, format_table, plot_dataflows, plot_schemes,
                               to_json, write_json)
from sim.energy.runs import RunEnergy, price_run
from sim.energy.search import CandidateCounts, candidate_counts, describe
from sim.energy.specs import (DATA_TYPES, DATAFLOWS, DIMS, LEVELS, PAPER_DATAFLOWS,
                              check_dataflow, parse_dataflows)
from sim.energy.tiles import Problem

__all__ = [
    "COST_TABLES", "ENERGY_LEVELS", "REFERENCE_MAC_PJ", "CostTable", "cost_table", "add_pj",
    "multiply_pj", "sram_pj_per_bit", "Scheme", "INT16", "compute_pj", "mac_pj", "tree_adds",
    "default_sparsity", "can_skip", "DIMS", "DATA_TYPES", "LEVELS", "DATAFLOWS",
    "PAPER_DATAFLOWS", "check_dataflow", "parse_dataflows", "Hardware", "equal_area_hardware",
    "BASELINE_RF_BYTES", "DEFAULT_RF_AREA_RATIO", "Problem", "CandidateCounts",
    "candidate_counts", "describe", "LayerEnergy", "layer_energy", "DataflowEnergy",
    "EnergyReport", "network_energy", "resolve_network", "COUNTER_USE", "OUR_ARRAY",
    "counts_by_level", "array_counters", "counters_by_type", "shape_counters",
    "array_hardware", "array_energy", "run_lanes", "RunEnergy", "price_run", "format_table",
    "format_runs", "to_json", "write_json", "plot_dataflows", "plot_schemes",
]
