"""Area of the post-processing unit (``hw.postproc.PostProcessor``) on iCE40 and ECP5.

The unit is sized for a network with ``PostProcessorParams.for_model``: by default the
demo's BinaryNet on digits (layer shapes only: it is folded from its initial weights, which
give the same parameters as a trained one), whose three thresholded layers all write
32-lane XNOR words. Yosys (YoWASP) synthesises it with ``synth_ice40`` (logic cells after
nextpnr-ice40's packer on the UP5K) and ``synth_ecp5``; the table gives logic, flip-flops,
carry cells, block RAMs (``SB_RAM40_4K`` / ``DP16KD``/``PDPW16KD``), ECP5 LUT RAM
(``TRELLIS_DPR16X4``) and DSPs (none: the unit has no multiplier).

Usage: ``python benchmarks/postproc_area.py [--net NAME ...] [--lanes L] [--model MODEL.npz]``
(a minute or two per network: YoWASP runs Yosys as WebAssembly).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hw.generate import to_verilog  # noqa: E402
from hw.postproc import PostProcessor, PostProcessorParams  # noqa: E402
from model import deploy, nets  # noqa: E402
from model.data import load_digits  # noqa: E402
from sim.synth import synthesize  # noqa: E402

BRAMS = ("SB_RAM40_4K", "DP16KD", "PDPW16KD")
LUTRAMS = ("TRELLIS_DPR16X4",)


def digits_model(name: str) -> deploy.IntegerModel:
    """``name`` folded from its initial weights on digits shapes."""
    ds = load_digits()
    net = nets.build(name, ds.input_shape, ds.classes, pixel_max=ds.pixel_max, seed=0)
    return deploy.fold(net, input_shape=ds.input_shape, pixel_max=ds.pixel_max)


def measure(params: PostProcessorParams) -> dict:
    """target -> ``sim.synth.Area`` of a ``PostProcessor(params)``."""
    text = to_verilog(PostProcessor(params), name="post_processor")
    sources = {"post_processor.v": text}
    return {"ice40": synthesize(sources, "post_processor", "ice40", pack=True)["post_processor"],
            "ecp5": synthesize(sources, "post_processor", "ecp5")["post_processor"]}


def count(area, names) -> int:
    return sum(area.cells.get(name, 0) for name in names)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--net", action="append", choices=["binarynet", "ternarynet",
                                                           "dorefanet"],
                        help="digits network(s) to size the unit for (default binarynet)")
    parser.add_argument("--model", help="an integer model file instead (model.deploy.save)")
    parser.add_argument("--lanes", type=int, help="lanes per word (default: for_model's)")
    args = parser.parse_args(argv)
    if args.model:
        model = deploy.load(args.model)
        if not isinstance(model, deploy.IntegerModel):
            print(f"error: {args.model} is a float checkpoint; allowed: an integer model",
                  file=sys.stderr)
            return 2
        models = {Path(args.model).name: model}
    else:
        models = {name: digits_model(name) for name in args.net or ["binarynet"]}
    print("| network | parameters | target | logic cells / LUT4 | FFs | carries | "
          "block RAM | LUT RAM | DSP |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|")
    for name, model in models.items():
        params = PostProcessorParams.for_model(model, lanes=args.lanes)
        desc = (f"acc {params.acc_bits} b, {params.max_channels} ch, k<={params.max_out_bits}, "
                f"pool<={params.max_pool}, {params.lanes}x{params.code_bits} b words, "
                f"depth {params.depth}, {params.thr_depth} threshold entries")
        for target, area in measure(params).items():
            print(f"| {name} | {desc} | {target} | {area.lcs} | {area.ffs} | {area.carries} | "
                  f"{count(area, BRAMS)} | {count(area, LUTRAMS)} | {area.dsps} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
