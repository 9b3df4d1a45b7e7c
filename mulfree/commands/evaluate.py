"""``mulfree evaluate``: run a saved model on the test set (the integer model, bit-exact),
or on given float inputs (``--inputs X.npz -o OUT.npz``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from model import data, deploy, nets
from model import train as training
from model.files import check_new_file
from mulfree.commands.train import one_blas_thread
from mulfree.errors import UsageError


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "evaluate", help="test accuracy of a saved model (integer inference)",
        description="Load MODEL.npz (from mulfree train or mulfree import) and run it on the "
                    "test set of its data set: an integer model runs on the integer ops only, "
                    "a float checkpoint on the float network. With --inputs, run it on the "
                    "samples of X.npz instead and write the outputs to OUT.npz.")
    parser.add_argument("model", metavar="MODEL.npz")
    parser.add_argument("--dataset", default=None, metavar="SPEC",
                        help="digits or mnist:PATH (default: the one the model was trained on)")
    parser.add_argument("--inputs", default=None, metavar="X.npz",
                        help="samples to run: X.npz holds 'inputs', [N] + the model's input "
                             "shape (an imported model: floats in the graph's own layout, "
                             "quantized by its input quantizer; otherwise pixel codes "
                             "[N, C, H, W]), and optionally 'labels' [N]")
    parser.add_argument("-o", "--output", default=None, metavar="OUT.npz",
                        help="with --inputs: write 'outputs' (float32, [N] + the output "
                             "shape), 'codes' (the integers behind them) and 'predictions'")
    parser.add_argument("--force", action="store_true", help="overwrite OUT.npz")
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


def _load_inputs(path: str) -> tuple[np.ndarray, np.ndarray | None]:
    p = Path(path)
    if not p.is_file():
        raise UsageError(f"inputs file {path!r} not found")
    try:
        with np.load(p, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except Exception as exc:  # zip and format errors from NumPy
        raise UsageError(f"{path!r} is not a readable .npz file ({type(exc).__name__})") \
            from None
    if "inputs" not in arrays:
        raise UsageError(f"{path!r} has no 'inputs' array (found: "
                         f"{', '.join(sorted(arrays)) or 'none'})")
    labels = arrays.get("labels")
    if labels is not None and (labels.ndim != 1 or len(labels) != len(arrays["inputs"])):
        raise UsageError(f"'labels' must be [N] = [{len(arrays['inputs'])}], not "
                         f"{list(labels.shape)}")
    return arrays["inputs"], labels


def _run_inputs(loaded, args) -> int:
    from model.layer_file import save_arrays

    if isinstance(loaded, deploy.FloatCheckpoint):
        raise UsageError("--inputs needs an integer model (a float checkpoint has no integer "
                         "outputs)")
    out = check_new_file(args.output, force=args.force) if args.output else None
    x, labels = _load_inputs(args.inputs)
    with one_blas_thread():
        result = deploy.run_float(loaded, x)
    what = f"{len(x)} samples through {loaded.meta.get('net', 'the model')}"
    print(f"{what}: outputs {list(result.outputs.shape)}, predictions "
          f"{np.bincount(result.predictions, minlength=loaded.classes).tolist()} per class")
    if labels is not None:
        correct = int(np.sum(result.predictions == labels))
        print(f"accuracy on the labels: {100 * correct / max(len(x), 1):.2f} % "
              f"({correct}/{len(x)})")
    if out is not None:
        save_arrays(out, {"outputs": result.outputs, "codes": result.codes,
                          "predictions": result.predictions}, force=args.force)
        print(f"wrote {out}")
    return 0


def _dataset_floats(loaded, ds) -> np.ndarray:
    """The data set's test images as the imported graph's float inputs (pixels / max)."""
    shape = tuple(loaded.float_io.input_shape)
    images = ds.x_test.astype(np.float32) / np.float32(ds.pixel_max)
    if int(np.prod(shape)) != int(np.prod(ds.input_shape)):
        raise UsageError(f"the imported model takes {list(shape)} inputs, data set "
                         f"{ds.name!r} has {list(ds.input_shape)} images")
    return images.reshape((len(images),) + shape)


def run(args) -> int:
    if args.output and not args.inputs:
        raise UsageError("-o/--output writes the outputs of --inputs; give --inputs X.npz")
    loaded = deploy.load(args.model)
    if args.inputs:
        return _run_inputs(loaded, args)
    imported = isinstance(loaded, deploy.IntegerModel) and loaded.float_io is not None
    if imported:
        if not args.dataset:
            raise UsageError(f"{args.model} was imported and has no data set of its own; give "
                             "--inputs X.npz (float inputs) or --dataset SPEC")
        ds = data.load_dataset(args.dataset)
        spec = args.dataset
        with one_blas_thread():
            pred = deploy.run_float(loaded, _dataset_floats(loaded, ds)).predictions
        what = f"imported model ({loaded.meta.get('net', '?')}, {len(loaded.layers)} layers)"
    else:
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
                what = (f"integer model ({loaded.meta.get('net', '?')}, {len(loaded.layers)} "
                        "layers)")
    correct = int(np.sum(pred == ds.y_test))
    print(f"{what} on {ds.name} test set: {100 * correct / len(ds.y_test):.2f} % "
          f"({correct}/{len(ds.y_test)})")
    recorded = loaded.meta.get("accuracy", {})
    key = "trained_model" if isinstance(loaded, deploy.FloatCheckpoint) else "integer_model"
    if key in recorded and spec == loaded.meta.get("dataset"):
        print(f"recorded at training: {100 * recorded[key]:.2f} %")
    return 0
