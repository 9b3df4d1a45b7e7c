"""cocotb testbenches, one module per design, each checking against the ``model`` function.

A testbench reads its parameters from the ``MULFREE_TB_CONFIG`` environment variable (JSON,
set by ``sim.cocotb_runner.run_cocotb``) and its seed from ``MULFREE_TB_SEED``.
"""

import json
import os

__all__ = ["config", "seed"]


def config() -> dict:
    """The JSON parameters the runner passed to this testbench."""
    text = os.environ.get("MULFREE_TB_CONFIG")
    if not text:
        raise RuntimeError("MULFREE_TB_CONFIG is not set; run testbenches through "
                           "sim.cocotb_runner.run_cocotb")
    return json.loads(text)


def seed() -> int:
    """The seed of every random choice of a testbench."""
    return int(os.environ.get("MULFREE_TB_SEED", "1"))
