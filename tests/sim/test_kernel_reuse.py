"""The reuse mapping's cycle and energy model (``sim.kernel_reuse``)."""

import numpy as np
import pytest

from model import kernels
from sim.cycle_model import ArrayParams, LayerShape, predict, utilisation_breakdown
from sim.kernel_reuse import estimate


def test_binary_layer_with_repeats_saves_cycles_and_compute_energy():
    rng = np.random.default_rng(0)
    w = rng.integers(0, 2, size=(32, 1, 5, 5))
    est = estimate("binary", w, height=8, width=8, padding=2, a_bits=6)
    shape = LayerShape(32, 1, 5, 5, 8, 8, 1, 2)
    params = ArrayParams()
    assert est.cycles_plain == predict(shape, params)["cycles"]
    parts = utilisation_breakdown(shape, params)
    counts = kernels.reuse_counts("binary", w, height=8, width=8, padding=2)
    assert est.counts == counts and counts.macs == parts["macs"]
    ratio = (counts.products + counts.adds) / counts.macs
    assert est.cycles_reuse == parts["cycles"] - parts["compute"] + round(
        parts["compute"] * ratio)
    assert est.cycles_reuse < est.cycles_plain
    # Compute energy is linear in the slots: one addition costs one binary MAC.
    assert est.compute_energy_reuse_pj == pytest.approx(est.compute_energy_plain_pj * ratio,
                                                        rel=1e-12)
    assert est.energy_reuse_pj < est.energy_plain_pj


def test_xnor_rows_that_never_repeat_cost_more():
    rng = np.random.default_rng(1)
    w = rng.integers(0, 1 << 16, size=(16, 2, 3, 3))   # 16-lane words: no repeats
    est = estimate("xnor", w, height=6, width=6, padding=1, a_bits=16, lanes=16)
    assert est.counts.products == est.counts.macs
    assert est.cycles_reuse > est.cycles_plain and est.energy_reuse_pj > est.energy_plain_pj


def test_pe_scope_saves_less_than_input_row_scope():
    rng = np.random.default_rng(2)
    w = rng.integers(0, 2, size=(24, 2, 3, 3))
    row = estimate("binary", w, height=6, width=6, padding=1, a_bits=8, scope="input_row")
    pe = estimate("binary", w, height=6, width=6, padding=1, a_bits=8, scope="pe")
    assert row.counts.products < pe.counts.products < pe.counts.macs
    assert row.cycles_reuse <= pe.cycles_reuse < pe.cycles_plain
