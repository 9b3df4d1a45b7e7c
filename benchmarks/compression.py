"""Deep Compression benchmark: the sparse-index break-even analysis, and LeNet-300-100.

Usage::

    python benchmarks/compression.py [--plot break_even.png] [--skip-network] [--skip-rtl]
                                     [--seeds 3] [--dataset digits|mnist:PATH]

Part 1 (break-even) stores random masks of a given density with relative indices of
b = 4, 5, 8 bits and compares the measured size with the dense size and with the
expected size of ``model.sparse``; it prints the densities above which the sparse form
is larger than the dense one, and plots bits per weight against density (matplotlib Agg).

Part 2 (network) trains LeNet-300-100 (``mulfree train``'s defaults) and compresses it with
``model.compress.deep_compress`` (the settings of ``mulfree compress``'s defaults); it
prints accuracy and compression rate after pruning, sharing and Huffman coding next to the
paper's 40x, the Deep-Compression-shaped table, the accuracy cost of integer codebooks (and
of 8-bit activations, the whole network on the array's integers), and the MACs the array
skips for the pruned network, predicted by the cycle model and, for one test image, measured
on the RTL in Amaranth's simulator (bit-exact against ``model.compress.codebook_conv2d``).
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from model import data, nets
from model.compress import (CompressedLayer, CompressedModel, codebook_conv2d,
                            deep_compress, format_table, integer_codebook, sharing_rate)
from model.sparse import (
    break_even_density,
    encode_relative,
    sparse_bits_per_weight,
)
from model.train import accuracy, train

# The settings of ``mulfree compress``'s defaults for a three-layer network.
SETTINGS = dict(sparsity=[0.85, 0.9, 0.6], prune_steps=4, retrain_epochs=20, share_bits=4,
                finetune_epochs=10, index_bits=4, lr=3e-4)
PAPER_RATE = 40  # LeNet-300-100 on MNIST, Han et al. 2016, Table 1
ACTIVATION_BITS = 8

INDEX_BITS = (4, 5, 8)
# Dense value widths compared against: float32 weights, and 5-bit cluster indices (the
# width weight sharing leaves for LeNet-300-100's fully connected layers).
VALUE_BITS = (32, 5)
DENSITIES = (0.001, 0.003, 0.01, 0.03, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9, 1.0)
N_RANDOM = 200_000


def break_even_table(seed: int = 0) -> list[str]:
    """Rows of measured bits per weight (random masks) for each density and index width."""
    rng = np.random.default_rng(seed)
    lines = []
    for value_bits in VALUE_BITS:
        lines.append(f"\nvalue bits {value_bits} (dense: {value_bits} bits per weight); "
                     f"sparse = entries x ({value_bits} + b), measured on {N_RANDOM} random "
                     f"positions")
        head = f"{'density':>8} " + " ".join(f"{f'b={b}':>9}" for b in INDEX_BITS)
        head += "   " + " ".join(f"{f'vs dense b={b}':>12}" for b in INDEX_BITS)
        lines.append(head)
        for d in DENSITIES:
            mask = rng.random(N_RANDOM) < d
            measured = [encode_relative(mask, b).bits(value_bits) / N_RANDOM for b in INDEX_BITS]
            row = f"{d:>8.3f} " + " ".join(f"{m:>9.3f}" for m in measured)
            row += "   " + " ".join(f"{m / value_bits:>11.2f}x" for m in measured)
            lines.append(row)
        lines.append(f"{'break-even':>8} " + " ".join(
            f"{break_even_density(b, value_bits):>9.3f}" for b in INDEX_BITS)
            + "   (the sparse form pays only below this density)")
    return lines


def plot_break_even(path: str) -> None:
    """Bits per weight vs density for each index width, against the dense size."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    densities = np.logspace(-4, 0, 400)
    fig, axes = plt.subplots(1, len(VALUE_BITS), figsize=(11, 4.2))
    for ax, value_bits in zip(axes, VALUE_BITS):
        for b in INDEX_BITS:
            ax.plot(densities, sparse_bits_per_weight(densities, b, value_bits),
                    label=f"sparse, b = {b}")
            d = break_even_density(b, value_bits)
            ax.axvline(d, color=ax.lines[-1].get_color(), linestyle=":", linewidth=1)
        ax.axhline(value_bits, color="black", label=f"dense ({value_bits} bits)")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("density (fraction of non-zero weights)")
        ax.set_ylabel("bits per weight")
        ax.set_title(f"{value_bits}-bit values: dotted = break-even")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def with_integer_codebooks(compressed: CompressedModel, bits: int):
    """The model with each codebook replaced by its integer levels x scale, and the levels."""
    layers, books = [], []
    for layer in compressed.layers:
        levels, scale = integer_codebook(layer.codebook, bits)
        books.append((levels, scale))
        layers.append(CompressedLayer(layer.name, levels * scale, layer.share_bits,
                                      layer.sparse))
    return CompressedModel(layers, compressed.state, compressed.meta), books


def activation_steps(net, x_train, a_bits: int) -> list[float]:
    """Per hidden layer: the step of its unsigned a-bit codes (the training set's max / n)."""
    steps, h = [], x_train
    for layer in net.layers[:-1]:
        h = layer.forward(h)
        if type(layer).__name__ == "ReLU":
            steps.append(float(h.max()) / ((1 << a_bits) - 1))
    return steps


def integer_pipeline(compressed, books, x_codes, pixel_max: int, steps, a_bits: int):
    """LeNet-300-100 on integers: each layer's sums are what the array computes
    (``codebook_conv2d`` on codes), then scale + bias + ReLU and a re-quantization to a-bit
    codes outside the array. Returns (predictions, per-layer input codes)."""
    codes, step, in_bits = x_codes.reshape(len(x_codes), -1), 1.0 / pixel_max, \
        int(pixel_max).bit_length()
    biases = [compressed.state[k] for k in sorted(compressed.state) if k.endswith(".bias")]
    layer_codes = []
    for k, (layer, (levels, scale), bias) in enumerate(zip(compressed.layers, books, biases)):
        layer_codes.append((codes, in_bits))
        idx = layer.indices()
        acc = codebook_conv2d(codes[:, :, None, None], idx[:, :, None, None], levels,
                              a_bits=in_bits)[:, :, 0, 0]
        y = acc * (scale * step) + bias
        if k == len(compressed.layers) - 1:
            return np.argmax(y, axis=1), layer_codes
        step, in_bits = steps[k], a_bits
        codes = np.clip(np.round(np.maximum(y, 0) / step), 0, (1 << a_bits) - 1).astype(np.int64)
    raise AssertionError("unreachable")


def network_benchmark(dataset: str, seeds: int, run_rtl: bool) -> None:
    from threadpoolctl import threadpool_limits

    ds = data.load_dataset(dataset)
    x_train, x_test = ds.x_train.astype(np.float64), ds.x_test.astype(np.float64)
    spec = nets.NETS["lenet300"]
    print(f"\n== LeNet-300-100 on {ds.name} ({len(ds.y_train)} train / {len(ds.y_test)} test "
          f"images): Deep Compression ==")
    print(f"settings: {SETTINGS}")
    head = (f"{'seed':>4} {'float':>7} {'pruned':>7} {'shared':>7} {'int8 cb':>8} "
            f"{'+int8 act':>9} {'lost':>6} {'P':>6} {'P+Q':>6} {'P+Q+H':>6} {'paper':>6} "
            f"{'time':>6}")
    rows, results = [head], []
    with threadpool_limits(1, user_api="blas"):
        for seed in range(seeds):
            t0 = time.perf_counter()
            net = nets.build("lenet300", ds.input_shape, ds.classes, pixel_max=ds.pixel_max,
                             seed=seed)
            train(net, x_train, ds.y_train, epochs=spec.epochs, lr=spec.lr, lr_end=spec.lr_end,
                  seed=seed, progress=False)
            result = deep_compress(net, x_train, ds.y_train, x_test, ds.y_test, seed=seed,
                                   **SETTINGS)
            compressed = result.compressed
            int_model, books = with_integer_codebooks(compressed, 8)
            int_net = int_model.apply(result.net)
            acc_int = accuracy(int_net, x_test, ds.y_test)
            steps = activation_steps(int_net, x_train, ACTIVATION_BITS)
            pred, _ = integer_pipeline(int_model, books, ds.x_test, ds.pixel_max, steps,
                                       ACTIVATION_BITS)
            acc_pipe = float(np.mean(pred == ds.y_test))
            seconds = time.perf_counter() - t0
            tot = compressed.totals()
            a = result.accuracy
            rows.append(
                f"{seed:>4} {100 * a['original']:>6.2f}% {100 * a['pruned']:>6.2f}% "
                f"{100 * a['stored']:>6.2f}% {100 * acc_int:>7.2f}% {100 * acc_pipe:>8.2f}% "
                f"{100 * (a['original'] - a['stored']):>5.2f} "
                f"{tot['dense'] / tot['pruned']:>5.1f}x {tot['dense'] / tot['shared']:>5.1f}x "
                f"{tot['dense'] / tot['huffman']:>5.1f}x {PAPER_RATE:>5}x {seconds:>5.1f}s")
            results.append((result, int_model, books, steps))
    for line in rows:
        print(line)
    print("float: trained LeNet-300-100; pruned: after pruning and retraining; shared: after "
          "k-means sharing, centroid\nfine-tuning, decoded from the Huffman-coded form; int8 cb: "
          "codebooks as 8-bit integers x one scale;\n+int8 act: and 8-bit activations, every "
          "layer's sums as the array computes them; lost: float - shared,\nin points; rates: "
          "original size / size after pruning (P), + sharing (P+Q), + Huffman (P+Q+H).")
    result, int_model, books, steps = results[0]
    print("\nseed 0, per layer (the shape of Deep Compression's Table 2):")
    for line in format_table(result.compressed):
        print(line)
    rates = ", ".join(f"{s.name} {sharing_rate(s.n_weights, 1 << s.share_bits):.2f}x"
                      for s in (layer.storage() for layer in result.compressed.layers))
    tot = result.compressed.totals()
    print(f"weight sharing alone, the paper's r = n b / (n log2 k + k b), b = 32: {rates}")
    print(f"measured with pruning and relative indices: P+Q {tot['dense'] / tot['shared']:.1f}x,"
          f" P+Q+H {tot['dense'] / tot['huffman']:.1f}x (Huffman saves "
          f"{100 * (1 - tot['huffman'] / tot['shared']):.0f} % of P+Q)")
    for bits in (8, 6, 5, 4):
        model, _ = with_integer_codebooks(result.compressed, bits)
        acc = accuracy(model.apply(result.net), x_test, ds.y_test)
        print(f"integer codebook of {bits} bits: accuracy {100 * acc:.2f} % "
              f"(float codebook {100 * result.accuracy['stored']:.2f} %)")
    array_benchmark(int_model, books, steps, ds, run_rtl)


def array_benchmark(int_model, books, steps, ds, run_rtl: bool) -> None:
    """MACs the 3x4 array skips for the pruned network (cycle model; RTL for one image)."""
    from model.layer_file import Layer
    from sim.cycle_model import ArrayParams, LayerShape, predict

    params = ArrayParams()
    print(f"\n== The pruned, shared network on the {params.rows}x{params.cols} array "
          f"(LutUnit with the 8-bit integer codebook) ==")
    _, layer_codes = integer_pipeline(int_model, books, ds.x_test[:1], ds.pixel_max, steps,
                                      ACTIVATION_BITS)
    print(f"{'layer':<6}{'MACs':>8}{'skipped':>9}{'skipped %':>10}{'cycles':>8}"
          f"{'cycles, no zeros':>17}{'saved':>7}  RTL (one test image)")
    total = dict(macs=0, skipped=0, cycles=0)
    for layer, (levels, _), (codes, a_bits) in zip(int_model.layers, books, layer_codes):
        idx = layer.indices()[:, :, None, None]
        shape = LayerShape.of(idx.shape, (idx.shape[1], 1, 1))
        pred = predict(shape, params, weights=idx, scheme="dorefa", codebook=levels)
        no_zero_book = np.where(levels == 0, 1, levels)   # the same layer without zeros
        dense = predict(shape, params, weights=idx, scheme="dorefa", codebook=no_zero_book)
        rtl = "not run (--skip-rtl)"
        if run_rtl:
            from sim.run_layer import run_layer
            t0 = time.perf_counter()
            hw_layer = Layer("dorefa", idx, codes[0][:, None, None], a_bits=a_bits,
                             w_bits=layer.share_bits, codebook=levels)
            run = run_layer(hw_layer, params=params)
            exact = np.array_equal(run.outputs, codebook_conv2d(
                hw_layer.inputs, idx, levels, a_bits=a_bits))
            same = all(run.counters[k] == pred[k] for k in run.counters)
            rtl = (f"{'bit-exact' if exact else 'MISMATCH'}, counters "
                   f"{'=' if same else '!='} model, {time.perf_counter() - t0:.0f} s")
        for k in total:
            total[k] += pred[k]
        print(f"{layer.name:<6}{pred['macs']:>8}{pred['skipped']:>9}"
              f"{100 * pred['skipped'] / pred['macs']:>9.1f}%{pred['cycles']:>8}"
              f"{dense['cycles']:>17}{dense['cycles'] - pred['cycles']:>7}  {rtl}")
    print(f"{'total':<6}{total['macs']:>8}{total['skipped']:>9}"
          f"{100 * total['skipped'] / total['macs']:>9.1f}%{total['cycles']:>8}")
    print("Skipped MACs gate the accumulator (no toggle, energy saved) but save no cycle: the "
          "row-stationary\nschedule is static, every (weight, input) slot is visited whether "
          "its weight is zero or not.")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plot", default="break_even.png", help="where to write the plot")
    parser.add_argument("--skip-network", action="store_true",
                        help="only the break-even analysis (no training)")
    parser.add_argument("--skip-rtl", action="store_true",
                        help="no RTL simulation of the compressed layers (about 45 s)")
    parser.add_argument("--seeds", type=int, default=3, help="training seeds (default 3)")
    parser.add_argument("--dataset", default="digits", help="digits or mnist:PATH")
    args = parser.parse_args(argv)
    print("== Sparse storage with relative indices: bits per weight vs density ==")
    for line in break_even_table():
        print(line)
    plot_break_even(args.plot)
    print(f"\nplot: {args.plot}")
    if not args.skip_network:
        network_benchmark(args.dataset, args.seeds, not args.skip_rtl)
    return 0


if __name__ == "__main__":
    sys.exit(main())
