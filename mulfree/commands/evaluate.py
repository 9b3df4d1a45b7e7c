"""``mulfree evaluate``: run a saved model on the test set (the integer model, bit-exact)."""

from __future__ import annotations

import numpy as np

from model import data, deploy, nets
from model import train as training
from mulfree.commands.train import one_blas_thread
from mulfree.errors import UsageError


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "evaluate", help="test accuracy of a saved model (integer inference)",
        description="Load MODEL.npz (from mulfree train) and run it on the test set of its "
                    "data set: an integer model runs on the integer ops only, a float "
                    "checkpoint on the float network.")
    parser.add_argument("model", metavar="MODEL.npz")
    parser.add_argument("--dataset", default=None, metavar="SPEC",
                        help="digits or mnist:PATH (default: the one the model was trained on)")
    parser.set_defaults(func=run)


def load_matching_dataset(loaded, spec: str | None) -> tuple[data.Dataset, str]:
    """The data set ``spec`` (``None``: the one ``loaded`` was trained on) and that spec.

    ``loaded`` is a model or checkpoint of ``deploy.load``. A data set whose images differ from
    the model's in shape or pixel range is a ``UsageError``.
    """
    spec = spec or loaded.meta.get("dataset", "digits")
    ds = data.load_dataset(spec)
    if tuple(ds.input_shape) != tuple(loaded.input_shape) or ds.pixel_max != loaded.pixel_max:
        raise UsageError(f"the model takes {list(loaded.input_shape)} images with pixels up to "
                         f"{loaded.pixel_max}, data set {spec!r} has {list(ds.input_shape)} up to "
                         f"{ds.pixel_max}")
    return ds, spec


def run(args) -> int:
    loaded = deploy.load(args.model)
    ds, spec = load_matching_dataset(loaded, args.dataset)
    with one_blas_thread():
        if isinstance(loaded, deploy.FloatCheckpoint):
            net = nets.build(loaded.net, loaded.input_shape, loaded.classes,
                             pixel_max=loaded.pixel_max, **nets.build_options(loaded.meta))
            net.load_state_dict(loaded.state)
            pred = training.predict(net, ds.x_test.astype(np.float64))
            what = f"float network {loaded.net}"
        else:
            pred = deploy.predict(loaded, ds.x_test)
            what = f"integer model ({loaded.meta.get('net', '?')}, {len(loaded.layers)} layers)"
    correct = int(np.sum(pred == ds.y_test))
    print(f"{what} on {ds.name} test set: {100 * correct / len(ds.y_test):.2f} % "
          f"({correct}/{len(ds.y_test)})")
    recorded = loaded.meta.get("accuracy", {})
    key = "trained_model" if isinstance(loaded, deploy.FloatCheckpoint) else "integer_model"
    if key in recorded and spec == loaded.meta.get("dataset"):
        print(f"recorded at training: {100 * recorded[key]:.2f} %")
    return 0
