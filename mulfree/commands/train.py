"""``mulfree train``: train a network, fold it into the integer model, save it."""

from __future__ import annotations

import contextlib

import numpy as np

from model import data, deploy, nets
from model import train as training
from model.files import check_new_file
from model.optim import OPTIMIZERS
from mulfree import flags
from mulfree.errors import UsageError


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "train", help="train a network (STE) and save its integer deployment model",
        description="Train one of the seed's networks on the digits (default) or MNIST, fold "
                    "it into integer thresholds and save the integer model; the integer "
                    "model's test predictions are checked against the trained network's.")
    parser.add_argument("--net", default=nets.DEFAULT_NET, metavar="NAME",
                        type=flags.choice(nets.NETS, "network"),
                        help=f"one of {', '.join(nets.NETS)} (default {nets.DEFAULT_NET})")
    parser.add_argument("--dataset", default="digits", metavar="SPEC",
                        help="digits (scikit-learn's 8x8, default) or mnist:PATH (a folder with "
                             "the four IDX files, gzip or not)")
    parser.add_argument("--epochs", type=flags.integer(1, flags.MAX_EPOCHS), default=None,
                        help="passes over the training set (default: the net's, see --list)")
    parser.add_argument("--seed", type=flags.SEED, default=0,
                        help="initialisation and shuffling seed")
    parser.add_argument("--batch-size", type=flags.integer(1, 1 << 20), default=None,
                        help="examples per update")
    parser.add_argument("--lr", type=flags.real(0.0, 10.0, lo_open=True), default=None,
                        help="initial learning rate")
    parser.add_argument("--lr-end", type=flags.real(0.0, 10.0, lo_open=True), default=None,
                        help="learning rate of the last epoch (geometric decay)")
    parser.add_argument("--optimizer", default="adam", type=flags.choice(OPTIMIZERS, "optimizer"),
                        help=f"{' or '.join(OPTIMIZERS)} (default adam)")
    parser.add_argument("--bits", default=None, metavar="W,A,G",
                        type=flags.checked(nets.parse_bits),
                        help="DoReFa widths of weights, activations and gradients for "
                             "dorefanet (default 1,3,32; G = 32: float gradients)")
    parser.add_argument("--shift-bn", action="store_true",
                        help="shift-based batch norm (powers of two) instead of the standard")
    parser.add_argument("-o", "--output", default="model.npz", metavar="MODEL.npz",
                        help="where to save the model (default model.npz)")
    parser.add_argument("--force", action="store_true", help="overwrite an existing output")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--list", action="store_true", help="list the networks and exit")
    parser.set_defaults(func=run)


def one_blas_thread():
    """Limit BLAS to one thread: these small products run faster without threading."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - comes with scikit-learn
        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


def run(args) -> int:
    if args.list:
        for spec in nets.NETS.values():
            print(f"{spec.name:<15} {spec.summary} (default {spec.epochs} epochs)")
        return 0
    spec = nets.NETS[args.net]
    epochs = spec.epochs if args.epochs is None else args.epochs
    bits = spec.bits
    if args.bits is not None:
        if spec.bits is None:
            raise UsageError(f"--bits sets DoReFa widths; allowed with --net "
                             f"{', '.join(n for n, s in nets.NETS.items() if s.bits)}, "
                             f"not {args.net!r}")
        bits = args.bits
    out = args.output
    check_new_file(out, force=args.force)
    ds = data.load_dataset(args.dataset)
    net = nets.build(args.net, ds.input_shape, ds.classes, pixel_max=ds.pixel_max,
                     seed=args.seed, shift_bn=args.shift_bn, bits=bits)
    lr = spec.lr if args.lr is None else args.lr
    lr_end = spec.lr_end if args.lr_end is None else args.lr_end
    batch = spec.batch_size if args.batch_size is None else args.batch_size
    widths_bits = f", W,A,G = {','.join(map(str, bits))}" if bits else ""
    print(f"training {args.net} on {ds.name} ({len(ds.y_train)} train / {len(ds.y_test)} test "
          f"images, {'x'.join(map(str, ds.input_shape))}) for {epochs} epochs, seed "
          f"{args.seed}{widths_bits}")
    x_train, x_test = ds.x_train.astype(np.float64), ds.x_test.astype(np.float64)
    with one_blas_thread():
        history = training.train(net, x_train, ds.y_train, epochs=epochs, batch_size=batch,
                                 optimizer=args.optimizer, lr=lr, lr_end=lr_end, seed=args.seed,
                                 progress=not args.no_progress, desc=args.net)
        float_pred = training.predict(net, x_test)
        float_acc = float(np.mean(float_pred == ds.y_test))
        meta = {"net": args.net, "dataset": ds.spec(), "seed": args.seed, "epochs": epochs,
                "batch_size": batch, "optimizer": args.optimizer, "lr": lr, "lr_end": lr_end,
                "shift_bn": args.shift_bn, "train_seconds": round(history.seconds, 2),
                "bits": list(bits) if bits else None,
                "final_loss": history.loss[-1],
                "accuracy": {"trained_model": float_acc, "test_images": len(ds.y_test)}}
        print(f"trained in {history.seconds:.1f} s: loss {history.loss[-1]:.4f}, train accuracy "
              f"{100 * history.train_accuracy[-1]:.2f} %, test accuracy {100 * float_acc:.2f} %")
        if not spec.quantized:
            deploy.save_float(net, out, net_name=args.net, input_shape=ds.input_shape,
                              pixel_max=ds.pixel_max, classes=ds.classes, meta=meta,
                              overwrite=args.force)
            print(f"{args.net} is a float network: saved a float checkpoint to {out} "
                  "(only quantized networks fold to an integer model)")
            return 0
        return fold_and_save(net, ds, meta, out, force=args.force, reference=float_pred,
                             what="the trained network")


def fold_and_save(net, ds, meta: dict, out, *, force: bool, reference, what: str) -> int:
    """Fold ``net`` into the integer model, record its test accuracy and its agreement with
    ``reference`` (the network's own test predictions) in ``meta``, save it to ``out`` and
    print its summary. Returns 0, or 1 when the integer model disagrees with the network."""
    model = deploy.fold(net, input_shape=ds.input_shape, pixel_max=ds.pixel_max,
                        classes=ds.classes, meta=meta)
    int_pred = deploy.predict(model, ds.x_test)
    int_acc = float(np.mean(int_pred == ds.y_test))
    agreement = float(np.mean(int_pred == reference))
    meta["accuracy"].update(integer_model=int_acc, agreement=agreement)
    model.meta = meta
    deploy.save(model, out, overwrite=force)
    print("integer model:")
    for line in model.summary():
        print(f"  {line}")
    print(f"integer model test accuracy {100 * int_acc:.2f} %; agrees with {what} "
          f"on {100 * agreement:.2f} % of the {len(ds.y_test)} test images")
    print(f"saved {out}")
    if agreement < 1.0:
        print(f"warning: the integer model disagrees with {what}; please report this as a bug")
        return 1
    return 0
