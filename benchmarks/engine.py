"""Images per second of whole networks on the network engine, and the RTL simulation of a
test set on Verilator.

For each network and array: the engine's cycles per image (``sim.program.image_cycles`` plus
the image's input words; equal to the RTL's ``image_cycles`` counter, see
``tests/sim/test_engine_run.py``), images/s at the iCEBreaker's 12 MHz and the ULX3S's
25 MHz board clocks, and the MACs per cycle. Networks: the digits network the demo trains
(BinaryNet on 8x8 digits, trained here for ``--epochs``) and MNIST-shaped ones (28x28,
random weights: the cycles do not depend on the values), each from ``--from-layer`` on.

``--verilator N|all`` also runs that many digits test images through the generated Verilog
on Verilator (``mulfree run-model``'s path), checks every score against the integer model
and prints the wall time (Verilator build included) and images/s of the simulation.

``--verilator`` runs on the first of ``--arrays``.

``--logic RxC`` also synthesizes the digits network's engine of that array alone (no host link)
for the iCE40 (Yosys ``synth_ice40``, packed): with its program loaded and per-layer counters,
and with its program built in and none (``hw.program.EngineConfig``).

Run: ``python benchmarks/engine.py [--arrays 2x2,3x4] [--from-layer K] [--verilator all]
[--logic 1x2] [--json FILE]``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from model import deploy, nets  # noqa: E402
from model.ops import conv_output_size  # noqa: E402
from sim.program import (compile_program, engine_for_model, image_cycles,  # noqa: E402
                         submodel)

CLOCKS = {"iCEBreaker 12 MHz": 12e6, "ULX3S 25 MHz": 25e6}


def _digits_model(epochs: int) -> deploy.IntegerModel:
    from mulfree.cli import main
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp, "binarynet.npz")
        main(["train", "--net", "binarynet", "--epochs", str(epochs), "-o", str(path),
              "--no-progress"])
        return deploy.load(path)


def _random_model(name: str, shape) -> deploy.IntegerModel:
    return deploy.fold(nets.build(name, shape, pixel_max=255, seed=0), input_shape=shape,
                       pixel_max=255)


def _taps_inside(size: int, taps: int, stride: int, padding: int) -> int:
    """Over every output position of one dimension, the filter taps that fall inside the
    input (not on its padding)."""
    outputs = conv_output_size(size, taps, stride, padding)
    return sum(sum(0 <= o * stride + t - padding < size for t in range(taps))
               for o in range(outputs))


def network_macs(model: deploy.IntegerModel) -> int:
    """The network's MACs per image: every output of every layer (before pooling) times its
    filter's channels (bits for ``xnor``) and the taps inside the input; the engine's padding
    lanes, taps on padding and a split first layer's zero-padded taps are not MACs."""
    total = 0
    for layer in model.layers:
        m, _, r, s = layer.weights.shape
        _, h, w = layer.in_shape
        total += (m * (layer.channels // layer.groups)
                  * _taps_inside(h, r, layer.stride, layer.padding)
                  * _taps_inside(w, s, layer.stride, layer.padding))
    return total


def measure(name: str, model, start: int, rows: int, cols: int) -> dict:
    body = submodel(model, start) if start else model
    row = {"network": name, "from_layer": start, "array": f"{rows}x{cols}"}
    try:
        engine = engine_for_model(body, rows=rows, cols=cols)
        program = compile_program(body, engine)
    except ValueError as exc:
        return dict(row, refused=str(exc))
    cycles = image_cycles(program) + program.header["input_words"]
    macs = network_macs(body)
    row.update(lanes="+".join(str(m.lanes) for m in engine.accelerator.modes),
               layers=len(body.layers), cycles=cycles, split=program.split,
               macs=macs, macs_per_cycle=macs / cycles,
               **{f"images_per_s@{k}": hz / cycles for k, hz in CLOCKS.items()})
    return row


def simulate(model, start: int, rows: int, cols: int, count: str) -> dict:
    from mulfree.commands.evaluate import load_matching_dataset
    from sim.run_model import EngineJob, engine_backend
    ds, _ = load_matching_dataset(model, None)
    n = len(ds.x_test) if count == "all" else int(count)
    x = ds.x_test[:n]
    body, inputs = model, x
    if start:
        body = submodel(model, start)
        inputs = deploy.run_integer(model, x).layers[start - 1].outputs
    engine = engine_for_model(body, rows=rows, cols=cols)
    program = compile_program(body, engine)
    want = deploy.run_integer(body, inputs).layers[-1].accumulators.reshape(n, -1)
    job = EngineJob.of(program, [program.input_words(v) for v in inputs])
    started = time.perf_counter()
    results = engine_backend("verilator").run(engine, job)
    seconds = time.perf_counter() - started
    exact = sum(np.array_equal(program.decode_scores(r.scores).ravel(), want[i])
                for i, r in enumerate(results))
    return {"images": n, "seconds": seconds, "images_per_s": n / seconds,
            "bit_exact": int(exact)}


def logic(model, rows: int, cols: int) -> list[dict]:
    """The engine alone for the iCE40, packed: program loaded with counters, built in
    without."""
    from amaranth.back import verilog

    from hw.engine import NetworkEngine
    from sim.synth import synthesize
    found = []
    for builtin, counters in ((False, True), (True, False)):
        engine = engine_for_model(model, rows=rows, cols=cols, builtin=builtin,
                                  counters=counters)
        text = verilog.convert(NetworkEngine(engine), name="engine", emit_src=False)
        area = synthesize({"engine.v": text}, "engine", "ice40", pack=True)["engine"]
        found.append({"program": "built in" if builtin else "loaded", "counters": counters,
                      "luts": area.luts, "ffs": area.ffs, "carries": area.carries,
                      "lcs": area.lcs})
    return found


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arrays", default="2x2,3x4", metavar="RxC,...",
                        help="engine arrays (default 2x2,3x4)")
    parser.add_argument("--from-layer", type=int, default=0,
                        help="run the networks from this layer on (default 0: whole)")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--verilator", default=None, metavar="N|all")
    parser.add_argument("--logic", default=None, metavar="RxC")
    parser.add_argument("--json", default=None, metavar="FILE")
    args = parser.parse_args(argv)

    digits = _digits_model(args.epochs)
    networks = [("BinaryNet, digits 8x8 (trained)", digits),
                ("BinaryNet, MNIST 28x28", _random_model("binarynet", (1, 28, 28))),
                ("binary MLP, MNIST 28x28", _random_model("binarymlp", (1, 28, 28)))]
    arrays = [tuple(int(v) for v in a.split("x")) for a in args.arrays.split(",")]
    rows = [measure(name, model, args.from_layer, r, c)
            for name, model in networks for r, c in arrays]
    keys = list(CLOCKS)
    print("| network | from layer | array x lanes per mode | first layer split | cycles per image "
          "| MACs per cycle | "
          + " | ".join(f"images/s at {k}" for k in keys) + " |")
    print("|---|---|---|---|---|---|" + "---|" * len(keys))
    for r in rows:
        if "refused" in r:
            print(f"| {r['network']} | {r['from_layer']} | {r['array']} | refused: "
                  f"{r['refused']} |")
            continue
        print(f"| {r['network']} | {r['from_layer']} | {r['array']} x {r['lanes']} | "
              f"{r['split']} | {r['cycles']:,} | {r['macs_per_cycle']:.1f} | "
              + " | ".join(f"{r[f'images_per_s@{k}']:,.0f}" for k in keys) + " |")
    result = {"rows": rows}
    if args.verilator:
        sim = simulate(digits, args.from_layer, *arrays[0], args.verilator)
        result["verilator"] = sim
        print(f"\nVerilator: {sim['images']} digits test images through the whole "
              f"{args.arrays.split(',')[0]} engine in "
              f"{sim['seconds']:.1f} s (build included), {sim['images_per_s']:.1f} images/s; "
              f"scores bit-exact on {sim['bit_exact']}/{sim['images']}")
    if args.logic:
        r, c = (int(v) for v in args.logic.split("x"))
        result["logic"] = logic(digits, r, c)
        print(f"\n| engine ({args.logic}, digits BinaryNet, no host link) | LUT4 | flip-flops "
              "| carries | logic cells |\n|---|---|---|---|---|")
        for row in result["logic"]:
            print(f"| program {row['program']}, "
                  f"{'per-layer counters' if row['counters'] else 'no per-layer counters'} | "
                  f"{row['luts']:,} | {row['ffs']:,} | {row['carries']:,} | {row['lcs']:,} |")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
