"""``mulfree compress``: Deep Compression of a float checkpoint (prune, share, Huffman), or
structured pruning of whole channels (``--channels``) of any model that can be rebuilt."""

from __future__ import annotations

import argparse
import math

import numpy as np

from model import compress, deploy, nets
from model import train as training
from model.files import check_new_file
from mulfree import flags
from mulfree.commands.evaluate import load_matching_dataset
from mulfree.commands.train import one_blas_thread
from mulfree.errors import UsageError


def _numbers(kind, *, fraction: bool = False):
    """An argparse type: one number or a comma-separated list (one per layer); floats must
    be finite, and with ``fraction`` in (0, 1] (other ranges are checked by
    ``model.compress`` before any work)."""

    def parse(text: str):
        try:
            values = [kind(part) for part in text.split(",")]
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a {kind.__name__} or a "
                                             f"comma-separated list of them") from None
        if not all(math.isfinite(v) for v in values):
            raise argparse.ArgumentTypeError(f"{text!r} holds NaN or inf; allowed: finite "
                                             "numbers")
        bad = [v for v in values if fraction and not 0 < v <= 1]
        if bad:
            raise argparse.ArgumentTypeError(f"{text!r} holds {bad[0]:g}; allowed: fractions "
                                             "in (0, 1]")
        return values[0] if len(values) == 1 else values

    parse.__name__ = f"{kind.__name__} or list"
    return parse


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "compress", help="Deep Compression of a float model, or channel pruning (--channels)",
        description="Prune a float checkpoint (from mulfree train --net lenet300 or float) by "
                    "magnitude with retraining, share its weights by k-means with centroid "
                    "fine-tuning, store them with relative indices and Huffman-code them; "
                    "print the per-layer table and the accuracy before and after. Settings "
                    "take one value or one per weight layer (comma-separated). With "
                    "--channels, remove whole channels instead (an integer model or a float "
                    "checkpoint), fine-tune, and write a smaller dense model of the same kind.")
    parser.add_argument("model", metavar="MODEL.npz",
                        help="a float checkpoint (or, with --channels, an integer model)")
    prune = parser.add_mutually_exclusive_group()
    prune.add_argument("--prune", type=_numbers(float), default=None, metavar="SPARSITY",
                       help="fraction of each layer's weights to prune, in [0, 1] "
                            "(default 0.85,0.9,0.6 for a 3-layer network, else 0.8)")
    prune.add_argument("--prune-quality", type=_numbers(float), default=None, metavar="Q",
                       help="prune |w| <= Q x std(w) instead of a target sparsity")
    prune.add_argument("--channels", type=_numbers(float, fraction=True), default=None,
                       metavar="RATIO",
                       help="structured pruning: the fraction of each hidden layer's channels "
                            "to keep, in (0, 1] (one value or one per hidden layer)")
    parser.add_argument("--select", default="lasso",
                        type=flags.choice(["l1", "lasso"], "channel selection"),
                        help="with --channels: keep the filters of largest L1 norm, or select "
                             "by LASSO and reconstruct the next layer by least squares (He "
                             "et al. 2017; default)")
    parser.add_argument("--prune-steps", type=flags.integer(1, 100), default=4,
                        help="pruning steps, each followed by retraining (default 4)")
    parser.add_argument("--retrain-epochs", type=flags.integer(0, flags.MAX_EPOCHS), default=20,
                        help="retraining epochs after each pruning step (default 20)")
    parser.add_argument("--share-bits", type=_numbers(int), default=4, metavar="BITS",
                        help="bits of a cluster index, 2 to 8: 2^BITS - 1 centroids and zero "
                             "(default 4)")
    parser.add_argument("--finetune-epochs", type=flags.integer(0, flags.MAX_EPOCHS),
                        default=None,
                        help="centroid fine-tuning epochs (default 10); with --channels, "
                             "fine-tuning epochs of the pruned network (default 20)")
    parser.add_argument("--index-bits", type=_numbers(int), default=4, metavar="BITS",
                        help="bits of a relative index, e.g. 4, 5, 8 (default 4)")
    parser.add_argument("--huffman", action="store_true",
                        help="store the Huffman-coded streams (else the raw fields)")
    parser.add_argument("--lr", type=flags.real(0.0, 10.0, lo_open=True), default=None,
                        help="retraining learning rate (default 3e-4; with --channels the "
                             "first fine-tuning epoch's, decaying to 1e-4, default 3e-3)")
    parser.add_argument("--seed", type=flags.SEED, default=0, help="shuffling seed")
    parser.add_argument("--dataset", default=None, metavar="SPEC",
                        help="digits or mnist:PATH (default: the model's)")
    parser.add_argument("-o", "--output", required=True, metavar="OUT.npz")
    parser.add_argument("--force", action="store_true", help="overwrite an existing output")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.set_defaults(func=run)


def run(args) -> int:
    check_new_file(args.output, force=args.force)
    if args.channels is not None:
        from mulfree.channel_pruning import run_channels
        return run_channels(args)
    if args.finetune_epochs is None:
        args.finetune_epochs = 10
    if args.lr is None:
        args.lr = 3e-4
    loaded = deploy.load(args.model)
    if not isinstance(loaded, deploy.FloatCheckpoint):
        raise UsageError(f"{args.model!r} is an integer model of {loaded.meta.get('net', '?')}; "
                         "Deep Compression takes a float checkpoint (mulfree train --net "
                         "lenet300 or float): quantized weights already take 1 to 3 bits "
                         "(--channels prunes integer models)")
    ds, _ = load_matching_dataset(loaded, args.dataset)
    shift_bn = bool(loaded.meta.get("shift_bn", False))
    net = nets.build(loaded.net, loaded.input_shape, loaded.classes,
                     pixel_max=loaded.pixel_max, **nets.build_options(loaded.meta))
    net.load_state_dict(loaded.state)
    n_layers = len(compress.compressible_layers(net))
    quality, sparsity = args.prune_quality, args.prune
    if quality is None and sparsity is None:
        sparsity = [0.85, 0.9, 0.6] if n_layers == 3 else 0.8
    compress.check_settings(n_layers, quality=quality, sparsity=sparsity,
                            prune_steps=args.prune_steps, retrain_epochs=args.retrain_epochs,
                            share_bits=args.share_bits, finetune_epochs=args.finetune_epochs,
                            index_bits=args.index_bits)
    x_train, x_test = ds.x_train.astype(np.float64), ds.x_test.astype(np.float64)
    print(f"compressing {loaded.net} ({n_layers} weight layers) on {ds.name}: "
          f"{'sparsity ' + str(sparsity) if quality is None else 'quality ' + str(quality)}, "
          f"{args.prune_steps} steps x {args.retrain_epochs} epochs, share bits "
          f"{args.share_bits}, index bits {args.index_bits}")
    with one_blas_thread():
        result = compress.deep_compress(
            net, x_train, ds.y_train, x_test, ds.y_test, quality=quality, sparsity=sparsity,
            prune_steps=args.prune_steps, retrain_epochs=args.retrain_epochs,
            share_bits=args.share_bits, finetune_epochs=args.finetune_epochs,
            index_bits=args.index_bits, lr=args.lr, seed=args.seed,
            progress=not args.no_progress)
        result.compressed.meta.update(
            net=loaded.net, input_shape=list(loaded.input_shape), pixel_max=loaded.pixel_max,
            classes=loaded.classes, shift_bn=shift_bn, dataset=ds.spec(),
            widths=loaded.meta.get("widths"),
            settings={"sparsity": sparsity, "quality": quality, "prune_steps": args.prune_steps,
                      "retrain_epochs": args.retrain_epochs, "share_bits": args.share_bits,
                      "finetune_epochs": args.finetune_epochs, "index_bits": args.index_bits,
                      "lr": args.lr, "seed": args.seed, "huffman": args.huffman})
        result.compressed.save(args.output, huffman=args.huffman, overwrite=args.force)
        # "After" is measured on the network decoded from the file just written.
        decoded = compress.load_compressed(args.output).network()
        after = training.accuracy(decoded, x_test, ds.y_test)
    for line in compress.format_table(result.compressed):
        print(line)
    acc = result.accuracy
    print("accuracy on the test set: " + ", ".join(
        f"{stage} {100 * value:.2f} %" for stage, value in acc.items() if stage != "stored"))
    print(f"accuracy before {100 * acc['original']:.2f} %, after {100 * after:.2f} % "
          f"(decoded from {args.output}; {100 * (after - acc['original']):+.2f} points)")
    totals = result.compressed.totals()
    stage = "huffman" if args.huffman else "shared"
    print(f"saved {args.output}: {totals[stage] / 8000:.2f} kB of weights, codebooks, indices "
          f"and tables ({'Huffman-coded' if args.huffman else 'raw fields'}), "
          f"{totals['dense'] / totals[stage]:.1f}x smaller than {totals['dense'] / 8000:.1f} kB")
    return 0
