"""``mulfree inspect``: what a model file holds, and the repeated kernels of its binary layers."""

from __future__ import annotations

from model import deploy, kernels


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "inspect", help="a model's layers, and the repeated kernels of its binary layers",
        description="Print a model file's network, data set, accuracy and layers; for every "
                    "layer with +/-1 weights (binary, xnor) the distinct kernels (per input "
                    "channel, as BinaryNet counts them), the distinct filter rows up to sign "
                    "(the unit a PE of the row-stationary array holds) and the share of MACs "
                    "that computing each distinct row once per input row, and reusing or "
                    "negating its partial sums, would save.")
    parser.add_argument("model", metavar="MODEL.npz", help="an integer model (mulfree train)")
    parser.set_defaults(func=run)


def _pct(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f} %"


def binary_layer_lines(layer: deploy.IntegerLayer) -> list[str]:
    """The repeated-kernel report of one binary (or xnor) layer, indented lines."""
    lanes = layer.w_bits if layer.scheme == "xnor" else 1
    _, h, w = layer.in_shape
    m, c, r, s = layer.weights.shape
    ks = kernels.kernel_stats(layer.scheme, layer.weights, lanes)
    rs = kernels.row_stats(layer.scheme, layer.weights, lanes)
    unit = (f"{s} weight{'s' if s > 1 else ''}" if layer.scheme == "binary"
            else f"{s} word{'s' if s > 1 else ''} of {lanes} lanes")
    lines = [f"  kernels {r}x{s} (per filter and +/-1 input channel): {ks.distinct:,} of "
             f"{ks.kernels:,} distinct ({_pct(ks.distinct, ks.kernels)}), "
             f"{ks.distinct_up_to_sign:,} up to sign ({_pct(ks.distinct_up_to_sign, ks.kernels)})",
             f"  filter rows ({unit}): {rs.rows:,}; distinct up to sign per input channel "
             f"{rs.per_channel:,} ({_pct(rs.per_channel, rs.rows)}), per filter row and "
             f"channel (one PE) {rs.per_pe:,} ({_pct(rs.per_pe, rs.rows)})"]
    for scope, what in (("input_row", "once per input row"), ("pe", "once per PE")):
        rc = kernels.reuse_counts(layer.scheme, layer.weights, height=h, width=w,
                                  stride=layer.stride, padding=layer.padding, lanes=lanes,
                                  scope=scope)
        net = (f"saves {100 * rc.net_saved:.1f} % of the MAC slots" if rc.net_saved >= 0
               else f"needs {-100 * rc.net_saved:.1f} % more MAC slots")
        lines.append(f"  reuse, each distinct row {what}: {rc.products:,} of {rc.macs:,} "
                     f"MACs, saves {100 * rc.saved:.1f} %; with its {rc.adds:,} partial-sum "
                     f"additions it {net}")
    return lines


def run(args) -> int:
    loaded = deploy.load(args.model)
    meta = loaded.meta
    if isinstance(loaded, deploy.FloatCheckpoint):
        print(f"{args.model}: float checkpoint of {loaded.net} "
              f"({'x'.join(map(str, loaded.input_shape))} images, {loaded.classes} classes); "
              "no integer layers, no binary kernels")
        return 0
    acc = meta.get("accuracy", {}).get("integer_model")
    print(f"{args.model}: integer model of {meta.get('net', '?')} on "
          f"{meta.get('dataset', '?')}, {len(loaded.layers)} layers"
          + (f", test accuracy {100 * acc:.2f} %" if acc is not None else ""))
    for i, (line, layer) in enumerate(zip(loaded.summary(), loaded.layers)):
        print(line)
        if layer.scheme in kernels.BINARY_SCHEMES:
            if layer.groups != 1:
                print("  (grouped: repeated kernels are counted for groups = 1 only)")
                continue
            for extra in binary_layer_lines(layer):
                print(extra)
    if not any(ly.scheme in kernels.BINARY_SCHEMES for ly in loaded.layers):
        print("no layer has +/-1 weights: nothing to reuse")
    return 0
