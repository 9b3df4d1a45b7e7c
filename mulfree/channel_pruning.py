"""``mulfree compress MODEL.npz --channels RATIO``: structured pruning, end to end.

Rebuild the network the model came from (its training state and build options), remove
whole channels (``model.channels``: L1 norm, or LASSO with least-squares reconstruction),
fine-tune, write a smaller dense model of the same kind (an integer model through the same
fold and check as ``mulfree train``, or a float checkpoint), and print what changed per
layer: channels, weights, MACs and -- for integer models -- cycles and energy on the array
(``sim.model_cost``).
"""

from __future__ import annotations

import numpy as np

from model import channels, deploy, nets
from model import train as training
from mulfree.commands.evaluate import load_matching_dataset
from mulfree.commands.train import fold_and_save, one_blas_thread
from mulfree.errors import UsageError

#: Fine-tuning defaults: epochs, first and last learning rate (geometric decay).
FINETUNE_EPOCHS, FINETUNE_LR, FINETUNE_LR_END = 20, 3e-3, 1e-4

# Flags of Deep Compression that mean nothing to channel pruning, with their defaults.
_DEEP_COMPRESSION_ONLY = {"prune_steps": 4, "retrain_epochs": 20, "share_bits": 4,
                          "index_bits": 4, "huffman": False}


def _network(loaded, path: str):
    """The trainable network of a model file (integer model with its state, or checkpoint)."""
    if isinstance(loaded, deploy.FloatCheckpoint):
        name, state = loaded.net, loaded.state
    else:
        name, state = loaded.meta.get("net"), loaded.state
        if state is None or name is None:
            raise UsageError(f"{path!r} has no training state to fine-tune from (written by "
                             "an older mulfree); train it again with mulfree train")
    if name not in nets.NETS or nets.NETS[name].widths is None:
        raise UsageError(f"network {name!r} of {path!r} cannot be built with other widths; "
                         "--channels prunes "
                         f"{', '.join(n for n, s in nets.NETS.items() if s.widths)}")
    options = nets.build_options(loaded.meta)
    net = nets.build(name, loaded.input_shape, loaded.classes, pixel_max=loaded.pixel_max,
                     **options)
    try:
        net.load_state_dict(state)
    except ValueError as exc:
        raise UsageError(f"{path!r}: its training state does not fit {name}: {exc}") from None
    return name, net, options


def prune_and_finetune(net, name: str, options: dict, ds, ratio, *, select: str = "lasso",
                       epochs: int = FINETUNE_EPOCHS, lr: float = FINETUNE_LR, seed: int = 0,
                       progress: bool = False):
    """Prune ``net`` (network ``name`` of ``model.nets``, built with ``options``) to ``ratio``
    of its hidden channels on data set ``ds``, then fine-tune it. Returns the
    ``model.channels.PruneResult`` (its network fine-tuned) and the test accuracy right after
    pruning, before fine-tuning."""
    x_train, x_test = ds.x_train.astype(np.float64), ds.x_test.astype(np.float64)
    result = channels.prune_channels(
        net, x_train, ratio, method=select, net_name=name, input_shape=ds.input_shape,
        classes=ds.classes, pixel_max=ds.pixel_max, options=options, seed=seed)
    pruned_acc = training.accuracy(result.net, x_test, ds.y_test)
    if epochs:
        training.train(result.net, x_train, ds.y_train, epochs=epochs,
                       batch_size=nets.NETS[name].batch_size, lr=lr,
                       lr_end=min(lr, FINETUNE_LR_END), seed=seed, progress=progress,
                       desc=f"{name} fine-tune")
    return result, pruned_acc


def _cost(path):
    from sim.model_cost import model_cost
    return {c.name: c for c in model_cost(path)}


def _arrow(a, b, fmt="{:,}") -> str:
    return f"{fmt.format(a)} -> {fmt.format(b)}"


def run_channels(args) -> int:
    for key, default in _DEEP_COMPRESSION_ONLY.items():
        if getattr(args, key) != default:
            raise UsageError(f"--{key.replace('_', '-')} belongs to Deep Compression; "
                             "--channels takes --select, --finetune-epochs, --lr, --seed")
    epochs = FINETUNE_EPOCHS if args.finetune_epochs is None else args.finetune_epochs
    lr = FINETUNE_LR if args.lr is None else args.lr
    loaded = deploy.load(args.model)
    name, net, options = _network(loaded, args.model)
    prunables = channels.prunable_layers(net)
    keeps = channels.keep_counts(args.channels, prunables)
    ds, _ = load_matching_dataset(loaded, args.dataset)
    x_test = ds.x_test.astype(np.float64)
    integer = isinstance(loaded, deploy.IntegerModel)
    with one_blas_thread():
        before_acc = (float(np.mean(deploy.predict(loaded, ds.x_test) == ds.y_test)) if integer
                      else training.accuracy(net, x_test, ds.y_test))
        kept = ", ".join(f"{k}/{p.channels}" for k, p in zip(keeps, prunables))
        print(f"pruning {name} to {kept} channels ({args.select} selection), then {epochs} "
              "epochs of fine-tuning")
        result, pruned_acc = prune_and_finetune(
            net, name, options, ds, args.channels, select=args.select, epochs=epochs, lr=lr,
            seed=args.seed, progress=not args.no_progress)
        meta = dict(loaded.meta, widths=list(result.widths), pruned_from={
            "model": str(args.model), "widths": [p.channels for p in prunables],
            "select": args.select, "ratio": args.channels, "finetune_epochs": epochs,
            "lr": lr, "seed": args.seed, "accuracy_before": before_acc,
            "accuracy_pruned": pruned_acc})
        reference = training.predict(result.net, x_test)
        trained_acc = float(np.mean(reference == ds.y_test))
        meta["accuracy"] = {"trained_model": trained_acc, "test_images": len(ds.y_test)}
        if integer:
            status = fold_and_save(result.net, ds, meta, args.output, force=args.force,
                                   reference=reference, what="the pruned network")
            after_acc = float(np.mean(deploy.predict(deploy.load(args.output), ds.x_test)
                                      == ds.y_test))
        else:
            deploy.save_float(result.net, args.output, net_name=name,
                              input_shape=loaded.input_shape, pixel_max=loaded.pixel_max,
                              classes=loaded.classes, meta=meta, overwrite=args.force)
            status, after_acc = 0, trained_acc
            print(f"saved {args.output}")
    old = channels.layer_sizes(net, loaded.input_shape)
    new = channels.layer_sizes(result.net, loaded.input_shape)
    header = f"{'layer':<7}{'channels':>13}{'weights':>22}{'MACs':>26}"
    costs = None
    if integer:
        costs = (_cost(args.model), _cost(args.output))
        header += f"{'cycles (3x4 array)':>28}{'energy (45 nm, nJ)':>24}"
    print(header)
    rows = list(zip(old, new)) + [(
        {"name": "total", "channels": "", "weights": sum(o["weights"] for o in old),
         "macs": sum(o["macs"] for o in old)},
        {"name": "total", "channels": "", "weights": sum(n["weights"] for n in new),
         "macs": sum(n["macs"] for n in new)})]
    for o, n in rows:
        chans = _arrow(o["channels"], n["channels"], "{}") if o["channels"] != "" else ""
        line = (f"{o['name']:<7}{chans:>13}{_arrow(o['weights'], n['weights']):>22}"
                f"{_arrow(o['macs'], n['macs']):>26}")
        if costs:
            if o["name"] == "total":
                a = (sum(c.cycles for c in costs[0].values()),
                     sum(c.energy_pj for c in costs[0].values()))
                b = (sum(c.cycles for c in costs[1].values()),
                     sum(c.energy_pj for c in costs[1].values()))
            else:
                a = (costs[0][o["name"]].cycles, costs[0][o["name"]].energy_pj)
                b = (costs[1][n["name"]].cycles, costs[1][n["name"]].energy_pj)
            line += (f"{_arrow(a[0], b[0]):>28}"
                     f"{_arrow(a[1] / 1e3, b[1] / 1e3, '{:,.1f}'):>24}")
        print(line)
    print(f"accuracy before {100 * before_acc:.2f} %, right after pruning "
          f"{100 * pruned_acc:.2f} %, after fine-tuning {100 * after_acc:.2f} % "
          f"({'integer model read back from' if integer else 'saved in'} {args.output})")
    return status
