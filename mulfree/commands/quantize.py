"""``mulfree quantize``: a trained float checkpoint into an integer model of a quantized net."""

from __future__ import annotations

import os

import numpy as np

from model import data, deploy, nets, ptq
from model import train as training
from model.files import check_new_file
from mulfree import flags
from mulfree.commands.train import fold_and_save, one_blas_thread
from mulfree.errors import UsageError


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "quantize", help="quantize a trained float checkpoint into an integer model",
        description="Post-training quantization: copy a float checkpoint's weights and batch "
                    "norms (mulfree train --net float) into a quantized network of the same "
                    "shape, re-estimate the batch-norm statistics with the quantized forward "
                    "pass, optionally fine-tune a few epochs with straight-through estimators, "
                    "fold into the integer model and save it; prints the accuracy after each "
                    "step.")
    parser.add_argument("checkpoint", metavar="CHECKPOINT.npz",
                        help="a float checkpoint written by mulfree train")
    parser.add_argument("--net", required=True, metavar="NAME",
                        type=flags.choice(nets.QUANTIZED_NETS, "quantized network"),
                        help=f"the quantized network: one of {', '.join(nets.QUANTIZED_NETS)}")
    parser.add_argument("--epochs", type=flags.integer(0, flags.MAX_EPOCHS), default=0,
                        help="fine-tuning epochs after the transfer (default 0: none)")
    parser.add_argument("--dataset", default=None, metavar="SPEC",
                        help="digits or mnist:PATH (default: the checkpoint's)")
    parser.add_argument("--seed", type=flags.SEED, default=0,
                        help="shuffling seed of the fine-tuning")
    parser.add_argument("-o", "--output", default="model.npz", metavar="MODEL.npz",
                        help="where to save the integer model (default model.npz)")
    parser.add_argument("--force", action="store_true", help="overwrite an existing output")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)


def run(args) -> int:
    check_new_file(args.output, force=args.force)
    loaded = deploy.load(args.checkpoint)
    if not isinstance(loaded, deploy.FloatCheckpoint):
        raise UsageError(f"{args.checkpoint!r} is already an integer model; quantize takes a "
                         "float checkpoint (mulfree train --net float)")
    spec = args.dataset or loaded.meta.get("dataset", "digits")
    ds = data.load_dataset(spec)
    if tuple(ds.input_shape) != tuple(loaded.input_shape) or ds.pixel_max != loaded.pixel_max \
            or ds.classes != loaded.classes:
        raise UsageError(f"the checkpoint takes {list(loaded.input_shape)} images with pixels up "
                         f"to {loaded.pixel_max} in {loaded.classes} classes; data set {spec!r} "
                         f"has {list(ds.input_shape)} up to {ds.pixel_max} in {ds.classes}")
    shift_bn = bool(loaded.meta.get("shift_bn", False))
    x_train, x_test = ds.x_train.astype(np.float64), ds.x_test.astype(np.float64)
    with one_blas_thread():
        options = nets.build_options(loaded.meta)
        source = nets.build(loaded.net, loaded.input_shape, loaded.classes,
                            pixel_max=loaded.pixel_max, **options)
        source.load_state_dict(loaded.state)
        target = nets.build(args.net, loaded.input_shape, loaded.classes,
                            pixel_max=loaded.pixel_max, shift_bn=shift_bn,
                            widths=options.get("widths"))
        try:
            accuracy = ptq.quantize(source, target, x_train, ds.y_train, x_test, ds.y_test,
                                    epochs=args.epochs,
                                    batch_size=nets.NETS[args.net].batch_size, seed=args.seed,
                                    progress=not args.no_progress)
        except ValueError as exc:
            raise UsageError(f"{loaded.net} cannot be quantized into {args.net}: {exc}") from None
        print(f"{loaded.net} -> {args.net} on {ds.name} ({len(ds.y_test)} test images): "
              f"float {100 * accuracy['float_checkpoint']:.2f} %, weights quantized "
              f"{100 * accuracy['transferred']:.2f} %, batch norms recalibrated "
              f"{100 * accuracy['recalibrated']:.2f} %")
        if args.epochs:
            print(f"fine-tuned {args.epochs} epochs: {100 * accuracy['fine_tuned']:.2f} %")
        trained_pred = training.predict(target, x_test)
        meta = {"net": args.net, "dataset": ds.spec(), "shift_bn": shift_bn,
                "widths": options.get("widths"),
                "quantized_from": {"net": loaded.net, "checkpoint": os.path.basename(
                    args.checkpoint)}, "fine_tune_epochs": args.epochs, "seed": args.seed,
                "accuracy": {**accuracy, "trained_model": float(np.mean(
                    trained_pred == ds.y_test)), "test_images": len(ds.y_test)}}
        return fold_and_save(target, ds, meta, args.output, force=args.force,
                             reference=trained_pred, what="the quantized network")
