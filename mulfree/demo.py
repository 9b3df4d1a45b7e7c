"""The main job, end to end, on the embedded default (``mulfree demo``).

``run_demo`` trains the default network on scikit-learn's 8x8 digits, folds it into the
integer model, runs test images through the generated accelerator in RTL simulation and
checks every accumulator against the golden model, then prices the run (energy by level on
our array, by dataflow and by scheme), estimates the design's size on a board with Yosys and
optionally builds its bitstream. Every number is computed in the run. It writes a report
folder: ``report.md`` (tables and plots), ``summary.json``, the model file, the Verilog of
each accelerator it simulated, the plots.

Each stage is a function taking what the previous ones produced; ``run_demo`` calls them in
order and reports progress through ``say`` (a line per stage) and tqdm bars.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import numpy as np

from model.files import staged_folder
from model.layer_file import Layer
from model.progress import on_terminal

__all__ = ["DemoSettings", "preflight", "run_demo", "summary_lines"]


@dataclasses.dataclass(frozen=True)
class DemoSettings:
    """What the demo runs (defaults: the embedded default)."""

    net: str = "binarynet"
    epochs: int | None = None      # None: the network's default
    seed: int = 0
    images: int = 4                # test images through the RTL simulation
    backend: str = "amaranth"
    rows: int = 2                  # 2x1: its accelerator fits the iCEBreaker (iCE40UP5K)
    cols: int = 1                  # behind the host link
    lanes: int = 1
    spad: int = 32
    counter_bits: int | None = None  # None: just wide enough for the layers
    board: str = "icebreaker"      # for the synthesis estimate and --build
    synthesize: bool = True
    build: bool = False
    progress: bool = True
    engine_images: int | None = None  # whole network on the engine; None: every test image
    #                                   on Verilator when it is here, else one on Amaranth
    engine_rows: int = 1           # 1x3: the largest network engine for the demo's network
    engine_cols: int = 3           # that fits the iCEBreaker (docs/engine.md)


def check_net(name: str) -> str:
    """``name`` if the demo can run that network (quantized, no grouped layers), else a
    ``ValueError`` line saying why not."""
    from model import nets
    if name not in nets.NETS:
        raise ValueError(f"unknown network {name!r}; allowed: {', '.join(nets.ARRAY_NETS)}")
    if name not in nets.QUANTIZED_NETS:
        raise ValueError(f"network {name!r} is a float network; the demo needs a quantized "
                         f"one: {', '.join(nets.ARRAY_NETS)}")
    if name not in nets.ARRAY_NETS:
        raise ValueError(f"network {name!r} has grouped (depthwise) layers, which the demo "
                         f"does not run yet (the array runs a grouped layer alone: mulfree "
                         f"run-layer); the demo runs {', '.join(nets.ARRAY_NETS)}")
    return name


# --- stages --------------------------------------------------------------------------------------

def preflight(settings: DemoSettings) -> float:
    """Everything that can be checked before training, checked: the network, the board (it
    must be one whose toolchain runs here when the synthesis estimate or the bitstream is
    asked for), the number of test images, and the accelerator for the network's layers (the
    untrained network folds into the same layer shapes): every layer maps on the array and
    fits its configuration limits. Returns the predicted wall time of the RTL simulation;
    ``ValueError`` (one line) on anything wrong."""
    from boards.platforms import find_board
    from model import data, deploy, nets
    from sim.cycle_model import check_mappable, predict
    from sim.run_layer import (accelerator_config, check_job, counter_bits_needed, layer_shape,
                               plan)
    from sim.sim_time import simulation_seconds

    check_net(settings.net)
    board = find_board(settings.board)
    if settings.synthesize or settings.build:
        described = board.describe()
        if not described["open_toolchain"]:
            raise ValueError(f"board {board.name!r} needs {described['needs']}, which mulfree "
                             "does not run; the synthesis estimate and --build need an iCE40 "
                             "or ECP5 board (e.g. icebreaker, ulx3s-85f), or use "
                             "--no-synthesis")
    ds = data.load_digits()
    if not 1 <= settings.images <= len(ds.y_test):
        raise ValueError(f"images must be in [1, {len(ds.y_test)}] (the test images of "
                         f"{ds.name}), not {settings.images}")
    net = nets.build(settings.net, ds.input_shape, ds.classes, pixel_max=ds.pixel_max,
                     seed=settings.seed)
    model = deploy.fold(net, input_shape=ds.input_shape, pixel_max=ds.pixel_max,
                        classes=ds.classes)
    seconds = 0.0
    by_key = {}
    for k, il in enumerate(model.layers):
        layer = Layer(il.scheme, il.weights, np.zeros(il.in_shape, dtype=np.int64),
                      stride=il.stride, padding=il.padding, a_bits=il.a_bits, w_bits=il.w_bits)
        by_key.setdefault((il.scheme, il.a_bits, il.w_bits), []).append((k, layer))
    for (scheme, a_bits, _), group in by_key.items():
        params = _params(settings, a_bits if scheme == "xnor" else 1)
        cycles = 0
        for k, layer in group:
            shape = layer_shape(layer)
            try:
                check_mappable(shape, params)
            except ValueError as exc:
                raise ValueError(f"layer {k} of {settings.net} cannot run on a "
                                 f"{params.rows}x{params.cols} array: {exc}") from None
            counts = predict(shape, params)
            cycles += (counts["cycles"] + counts["offchip_words"]) * settings.images
        layers = [layer for _, layer in group]
        jobs = [plan(layer, params)[2] for layer in layers]
        config = accelerator_config(layers, params, counter_bits=settings.counter_bits
                                    or counter_bits_needed(jobs))
        for (k, _), job in zip(group, jobs):
            check_job(config, job, f"layer {k} of {settings.net}")
        seconds += simulation_seconds(settings.backend, cycles, params.pes)
    if engine_plan(settings, len(ds.y_test))[1]:
        try:
            demo_engine(model, settings)
        except ValueError as exc:
            raise ValueError(f"the {settings.engine_rows}x{settings.engine_cols} network engine "
                             f"cannot run {settings.net}: {exc} (--engine-images 0 skips "
                             "it)") from None
    return seconds


def train_and_fold(settings: DemoSettings, say):
    """Train the network, fold it; the data set, the integer model and the accuracies."""
    from model import data, deploy, nets
    from model import train as training
    from mulfree.commands.train import one_blas_thread

    ds = data.load_digits()
    spec = nets.NETS[settings.net]
    if not spec.quantized:
        raise ValueError(f"network {settings.net!r} is a float network; the demo needs a "
                         f"quantized one ({', '.join(nets.QUANTIZED_NETS)})")
    epochs = spec.epochs if settings.epochs is None else settings.epochs
    net = nets.build(settings.net, ds.input_shape, ds.classes, pixel_max=ds.pixel_max,
                     seed=settings.seed)
    say(f"training {settings.net} on {ds.name} ({len(ds.y_train)} train / {len(ds.y_test)} "
        f"test images) for {epochs} epochs")
    x_train, x_test = ds.x_train.astype(np.float64), ds.x_test.astype(np.float64)
    with one_blas_thread():
        history = training.train(net, x_train, ds.y_train, epochs=epochs,
                                 batch_size=spec.batch_size, lr=spec.lr, lr_end=spec.lr_end,
                                 seed=settings.seed, progress=settings.progress,
                                 desc=settings.net)
        float_pred = training.predict(net, x_test)
        model = deploy.fold(net, input_shape=ds.input_shape, pixel_max=ds.pixel_max,
                            classes=ds.classes)
        int_pred = deploy.predict(model, ds.x_test)
    accuracy = {
        "trained_model": float(np.mean(float_pred == ds.y_test)),
        "integer_model": float(np.mean(int_pred == ds.y_test)),
        "agreement": float(np.mean(int_pred == float_pred)),
        "test_images": int(len(ds.y_test)),
    }
    model.meta = {"net": settings.net, "dataset": ds.spec(), "seed": settings.seed,
                  "epochs": epochs, "train_seconds": round(history.seconds, 2),
                  "accuracy": accuracy}
    say(f"trained in {history.seconds:.0f} s: test accuracy {100 * accuracy['trained_model']:.2f}"
        f" %, integer model {100 * accuracy['integer_model']:.2f} %, agreement "
        f"{100 * accuracy['agreement']:.2f} %")
    return ds, model, accuracy


@dataclasses.dataclass
class LayerOnArray:
    """One layer of the network as the RTL ran it (first image's counters)."""

    index: int
    scheme: str
    shape: tuple
    counters: dict
    utilisation: float
    exact_images: int
    images: int
    counters_match_model: bool


@dataclasses.dataclass
class HardwareGroup:
    """Layers that share one accelerator (one scheme and width), on every image."""

    indices: list           # layer indices of the model
    layers: list            # model.layer_file.Layer per (layer, image), layer-major
    config: object          # sim.run_layer.accelerator_config (hw.schedule.AcceleratorConfig)
    macs: int               # per image, from the cycle model
    params: object          # sim.cycle_model.ArrayParams of the accelerator


def plan_hardware(model, trace, images: int, settings: DemoSettings) -> list[HardwareGroup]:
    """Group the layers by scheme and width and size one accelerator per group."""
    from model.layer_file import Layer
    from sim.cycle_model import check_mappable, predict
    from sim.run_layer import accelerator_config, counter_bits_needed, layer_shape, plan

    by_key = {}
    for k, il in enumerate(model.layers):
        by_key.setdefault((il.scheme, il.a_bits, il.w_bits), []).append(k)
    groups = []
    for (scheme, a_bits, _), indices in by_key.items():
        params = _params(settings, a_bits if scheme == "xnor" else 1)
        layers, macs = [], 0
        for k in indices:
            il = model.layers[k]
            mine = [Layer(il.scheme, il.weights, trace.layers[k].inputs[i], stride=il.stride,
                          padding=il.padding, a_bits=il.a_bits, w_bits=il.w_bits)
                    for i in range(images)]
            shape = layer_shape(mine[0])
            check_mappable(shape, params)
            macs += predict(shape, params)["macs"]
            layers += mine
        bits = settings.counter_bits or counter_bits_needed([plan(ly, params)[2]
                                                             for ly in layers])
        config = accelerator_config(layers, params, counter_bits=bits)
        groups.append(HardwareGroup(indices, layers, config, macs, params))
    return groups


def _params(settings: DemoSettings, packed: int = 1):
    """The array of the demo; ``xnor`` layers (words of ``packed`` channels in the model)
    get at least that many lanes."""
    from sim.cycle_model import ArrayParams
    from sim.run_layer import lanes_for_words
    return ArrayParams(settings.rows, settings.cols, lanes_for_words(packed, settings.lanes),
                       settings.spad, settings.spad)


def simulate(model, trace, groups: list[HardwareGroup], images: int, settings: DemoSettings,
             say):
    """Every layer of every image on its group's accelerator; returns the per-layer results
    and the number of accumulators compared with the golden model."""
    from sim.cycle_model import predict
    from sim.run_layer import layer_codes, layer_shape, run_layers

    results, compared = {}, 0
    for group in groups:
        c, params = group.config, group.params
        say(f"RTL simulation ({settings.backend}): layers "
            f"{', '.join(map(str, group.indices))} ({c.scheme}, A{c.a_bits} "
            f"W{c.w_bits}) on a {params.rows}x{params.cols}x{params.lanes} array, {images} "
            "images")
        runs = run_layers(group.layers, backend=settings.backend, params=params,
                          progress=settings.progress and on_terminal(),  # a bar, or
                          counter_bits=c.counter_bits)                   # say's line above
        for j, k in enumerate(group.indices):
            mine = runs[j * images:(j + 1) * images]
            exact = sum(int(np.array_equal(run.outputs, trace.layers[k].accumulators[i]))
                        for i, run in enumerate(mine))
            compared += sum(run.outputs.size for run in mine)
            il = model.layers[k]
            first = group.layers[j * images]
            predicted = predict(layer_shape(first), params, mine[0].mapping,
                                weights=layer_codes(first)[0], scheme=il.scheme,
                                w_bits=il.w_bits)
            match = all(run.counters[name] == predicted[name]
                        for run in mine for name in run.counters)
            counters = mine[0].counters
            results[k] = LayerOnArray(
                k, il.scheme, tuple(int(v) for v in il.weights.shape), counters,
                counters["macs"] / (params.macs_per_cycle * counters["cycles"]), exact, images,
                match)
    return [results[k] for k in sorted(results)], compared


def energy_views(model_path: Path, on_array, settings: DemoSettings, out: Path, say):
    """Energy of the run on our array (45 nm, from the RTL counters), of the network by
    dataflow (the paper's six at equal area) and by scheme (RS); writes two plots."""
    from sim import energy

    layers, name, schemes, sparsity = energy.resolve_network(str(model_path))
    say("energy: our array from the RTL counters, the dataflows, the schemes")
    names = [ly.name for ly in layers]
    measured = []
    widest = max(schemes[n].layer_acc_bits(ly) for n, ly in zip(names, layers))
    glb_words = max(r.counters["offchip_words"] for r in on_array)
    for ly, r in zip(layers, on_array):
        sc = schemes[ly.name]
        params = _params(settings, sc.a_bits if sc.name == "xnor" else 1)
        counters = dict(r.counters, by_type=energy.shape_counters(ly, params, scheme=sc)["by_type"])
        hw = energy.array_hardware(params, scheme=sc, acc_bits=widest, glb_words=glb_words)
        measured.append(energy.array_energy(ly, counters, hw, scheme=sc, costs="45nm",
                                            lanes=params.lanes))
    by_dataflow = energy.network_energy(layers, name=name, costs="45nm", scheme=schemes,
                                        sparsity=sparsity, batch=16)
    energy.plot_dataflows(by_dataflow, out / "energy_dataflows.png")
    by_scheme = {"as trained": by_dataflow.dataflows["rs"].layers}
    for label, scheme in (("int8", energy.Scheme("int", 8, 8)),
                          ("binary", energy.Scheme("binary", 8)),
                          ("ternary", energy.Scheme("ternary", 8)),
                          ("pow2", energy.Scheme("pow2", 8)),
                          ("dorefa W2A2", energy.Scheme("dorefa", 2, 2))):
        report = energy.network_energy(layers, name=name, dataflows=("rs",), costs="45nm",
                                       scheme=scheme, batch=16)
        by_scheme[label] = report.dataflows["rs"].layers
    energy.plot_schemes(by_scheme, out / "energy_schemes.png", unit="pJ",
                        title=f"{name}: row stationary, 45 nm, per inference")
    return measured, by_dataflow, by_scheme


def synthesis_estimate(args, settings: DemoSettings, say):
    """The accelerator ``args`` behind the host link, synthesized and packed for the board
    (Yosys and nextpnr, no placement): what it needs, what the device has, whether it fits."""
    from boards.accelerator import AcceleratorTarget
    from boards.build import DoesNotFit, check_fit, estimate
    from boards.platforms import find_board
    from boards.top import BoardTop

    board = find_board(settings.board)
    device = board.describe()["device"]
    say(f"synthesis estimate for the {board.name} ({device}): Yosys and nextpnr's packer on "
        f"the {accelerator_name(args)} accelerator behind the host link")
    packed = estimate(board, BoardTop(lambda: AcceleratorTarget(args)))
    try:
        check_fit(packed, device, board.name)
        verdict = "fits"
    except DoesNotFit as exc:
        verdict = f"does not fit ({exc.needed:,} > {exc.available:,} {exc.resource})"
    return {"board": board.name, "device": device, "accelerator": args.to_dict(),
            "needed": {u.resource: u.used for u in packed},
            "capacity": {u.resource: u.available for u in packed}, "verdict": verdict}


def build_bitstream(args, settings: DemoSettings, out: Path, say,
                    final: Path | None = None):
    """The bitstream of the accelerator ``args`` behind the host link for the board (or why
    not), built in ``out``; its report names the folder ``final`` it ends up in."""
    from boards.accelerator import AcceleratorTarget
    from boards.build import DoesNotFit, build
    from boards.top import BoardTop

    try:
        report = build(settings.board, BoardTop(lambda: AcceleratorTarget(args)),
                       out / "bitstream", progress=say)
    except DoesNotFit as exc:
        return {"built": False, "refused": str(exc)}
    lines = report.lines()
    if final is not None:
        lines = [line.replace(str(out), str(final)) for line in lines]
    return {"built": report.built, "lines": lines, **report.to_json()}


# --- the whole run -------------------------------------------------------------------------------

def engine_plan(settings: DemoSettings, test_images: int) -> tuple[str, int]:
    """(backend, images) of the whole-network stage: ``engine_images`` test images (all of
    them by default) on Verilator when it is here, else on the Amaranth simulator (one image
    by default: a whole network takes a minute or two there)."""
    from sim import toolchain
    backend = "verilator" if toolchain.verilator_available()[0] else "amaranth"
    default = test_images if backend == "verilator" else 1
    images = default if settings.engine_images is None else settings.engine_images
    return backend, min(images, test_images)


def demo_engine(model, settings: DemoSettings):
    """The network engine ``mulfree build --model`` makes for the demo's board at the demo's
    engine array (``boards.engine.engine_options``: on the iCE40 the program built in and no
    per-layer counters)."""
    from boards.engine import engine_options
    from boards.platforms import find_board
    from sim.program import engine_for_model
    device = find_board(settings.board).describe()["device"]
    return engine_for_model(model, rows=settings.engine_rows, cols=settings.engine_cols,
                            **engine_options(device))


def run_engine(model, ds, settings: DemoSettings, say) -> dict | None:
    """The whole network on the board's network engine (``demo_engine``; ``sim.program``,
    ``hw.engine``): test images in, scores out, every score checked against the integer
    model, every image's cycles (and every layer's counters, when the engine has them)
    against the cycle model; and the images/s the engine gives at the board's clock."""
    from boards.platforms import find_board
    from model import deploy
    from sim.program import compile_program, image_cycles, predict_program
    from sim.run_model import EngineJob, engine_backend

    backend, n = engine_plan(settings, len(ds.x_test))
    if n == 0:
        return None
    engine = demo_engine(model, settings)
    program = compile_program(model, engine)
    a = engine.accelerator
    say(f"whole network on the {a.rows}x{a.cols} network engine: {n} test images on {backend}")
    x, labels = ds.x_test[:n], ds.y_test[:n]
    trace = deploy.run_integer(model, x)
    want = trace.layers[-1].accumulators.reshape(n, -1)
    job = EngineJob.of(program, [program.input_words(img) for img in x])
    started = time.monotonic()
    results = engine_backend(backend).run(engine, job, progress=on_terminal(settings.progress))
    seconds = time.monotonic() - started
    scores = np.stack([program.decode_scores(r.scores).reshape(-1) for r in results])
    expected = predict_program(program)
    cycles = image_cycles(program) + program.header["input_words"]
    last = model.layers[-1]
    predictions = np.argmax(scores * last.score_gain + last.score_offset, axis=1)
    clock = find_board(settings.board).describe()["clock_hz"]
    return {"images": n, "backend": backend, "seconds": round(seconds, 1),
            "array": f"{a.rows}x{a.cols}", "modes": [f"{m.scheme} A{m.a_bits} x{m.lanes}"
                                                     for m in a.modes],
            "bit_exact": int(sum(np.array_equal(scores[i], want[i]) for i in range(n))),
            "counters_equal": None if not engine.counters else int(sum(
                len(r.layer_counters()) == len(expected) and
                all(got[k] == e[k] for got, e in zip(r.layer_counters(), expected)
                    for k in got) for r in results)),
            "cycles_equal": int(sum(r.cycles + program.header["input_words"] == cycles
                                    for r in results)),
            "accuracy": float(np.mean(predictions == labels)),
            "agree_with_integer_model": int(np.sum(predictions == trace.predictions)),
            "cycles_per_image": cycles, "board": settings.board, "clock_hz": clock,
            "images_per_s": clock / cycles if clock else None}


def run_demo(settings: DemoSettings, out_dir, *, force: bool = False, say=print) -> dict:
    """Run every stage and write the report folder ``out_dir``; returns the summary."""
    from concurrent.futures import ThreadPoolExecutor

    from hw.generate import to_verilog
    from model import deploy
    from sim.run_layer import build_accelerator

    out_dir = Path(out_dir)
    if settings.images < 1:
        raise ValueError(f"images must be at least 1, not {settings.images}")
    started = time.monotonic()
    with staged_folder(out_dir, force=force) as work:
        ds, model, accuracy = train_and_fold(settings, say)
        deploy.save(model, work / "model.npz")
        trace = deploy.run_integer(model, ds.x_test[:settings.images])
        groups = plan_hardware(model, trace, settings.images, settings)
        main = max(groups, key=lambda g: g.macs).config    # the accelerator doing most work
        accelerators = [{"layers": g.indices, **g.config.to_dict()} for g in groups]
        # Yosys runs in its own process beside the simulation (two cores).
        with ThreadPoolExecutor(max_workers=1) as pool:
            synthesis = pool.submit(synthesis_estimate, main, settings, say) \
                if settings.synthesize else None
            on_array, compared = simulate(model, trace, groups, settings.images, settings,
                                          say)
            (work / "verilog").mkdir()
            for a in (g.config for g in groups):
                name = f"accelerator_{a.scheme}_a{a.a_bits}_w{a.w_bits}_l{a.lanes}"
                (work / "verilog" / f"{name}.v").write_text(
                    to_verilog(build_accelerator(a), name=name))
            measured, by_dataflow, by_scheme = energy_views(work / "model.npz", on_array,
                                                            settings, work, say)
            on_engine = run_engine(model, ds, settings, say)
            if synthesis is not None:
                say("waiting for the synthesis estimate")
                synthesis = synthesis.result()
        bitstream = build_bitstream(main, settings, work, say, out_dir) if settings.build \
            else None
        summary = _summary(settings, model, accuracy, on_array, accelerators, compared,
                           measured, by_dataflow, by_scheme, synthesis, bitstream,
                           time.monotonic() - started)
        summary["engine"] = on_engine
        (work / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        (work / "report.md").write_text(_markdown(summary, model))
    return summary


def _summary(settings, model, accuracy, on_array, accelerators, compared, measured,
             by_dataflow, by_scheme, synthesis, bitstream, seconds) -> dict:
    from sim.energy import DATAFLOWS

    exact = all(r.exact_images == r.images for r in on_array)
    per_scheme = {label: sum(le.total / le.batch for le in les) for label, les in
                  by_scheme.items()}
    return {
        "settings": dataclasses.asdict(settings),
        "model": model.summary(),
        "accuracy": accuracy,
        "rtl": {
            "images": settings.images, "accumulators_compared": compared,
            "bit_exact": exact,
            "counters_equal_cycle_model": all(r.counters_match_model for r in on_array),
            "layers": [{"layer": r.index, "scheme": r.scheme, "weights": list(r.shape),
                        "cycles": r.counters["cycles"], "macs": r.counters["macs"],
                        "skipped": r.counters["skipped"],
                        "utilisation": round(r.utilisation, 4),
                        "exact_images": r.exact_images} for r in on_array],
            "accelerators": accelerators,
        },
        "energy_pj": {
            "our_array_per_image": {"total": sum(le.total for le in measured),
                                    "compute": sum(le.energy["alu"] for le in measured),
                                    "by_level": {lv: sum(le.energy[lv] for le in measured)
                                                 for lv in measured[0].energy}},
            "by_dataflow_per_image": {DATAFLOWS[df].label: d.total / by_dataflow.batch
                                      for df, d in by_dataflow.dataflows.items()},
            "by_scheme_per_image": per_scheme,
        },
        "synthesis": synthesis,
        "bitstream": bitstream,
        "seconds": round(seconds, 1),
    }


def accelerator_name(args) -> str:
    """``2x1x1 binary A6 W1, 11-bit sums, 20-bit counters``: what an accelerator is (an
    ``AcceleratorConfig`` or its ``to_dict()``)."""
    a = args if isinstance(args, dict) else args.to_dict()
    return (f"{a['rows']}x{a['cols']}x{a['lanes']} {a['scheme']} A{a['a_bits']} "
            f"W{a['w_bits']}, {a['acc_bits']}-bit sums, {a['counter_bits']}-bit counters")


def engine_ok(eng: dict) -> bool:
    """The engine stage's scores and cycles (and counters, if the engine has them) all
    equal the models'."""
    n = eng["images"]
    return eng["bit_exact"] == eng["cycles_equal"] == n and eng["counters_equal"] in (None, n)


def summary_lines(summary: dict) -> list[str]:
    """The summary table printed at the end (one fact per line, every number from the run)."""
    acc, rtl, e = summary["accuracy"], summary["rtl"], summary["energy_pj"]
    cycles = sum(layer["cycles"] for layer in rtl["layers"])
    macs = sum(layer["macs"] for layer in rtl["layers"])
    s = summary["settings"]
    rows = [
        ("network", f"{s['net']} on the 8x8 digits"),
        ("test accuracy", f"{100 * acc['trained_model']:.2f} % trained, "
                          f"{100 * acc['integer_model']:.2f} % integer model "
                          f"({acc['test_images']} images)"),
        ("RTL simulation", f"{rtl['images']} images, {rtl['accumulators_compared']:,} "
                           f"accumulators: {'bit-exact' if rtl['bit_exact'] else 'MISMATCH'}"),
        ("cycles per image", f"{cycles:,} on a {s['rows']}x{s['cols']}x{s['lanes']} array "
                             f"({macs / (s['rows'] * s['cols'] * s['lanes'] * cycles):.1%} "
                             "utilisation)"),
        ("counters", "equal the cycle model" if rtl["counters_equal_cycle_model"]
         else "DIFFER from the cycle model"),
        ("energy, our array", f"{e['our_array_per_image']['total'] / 1e3:.2f} nJ per image "
                              f"(45 nm; compute {e['our_array_per_image']['compute']:.1f} pJ)"),
        ("energy by dataflow", ", ".join(f"{k} {v / 1e3:.2f} nJ"
                                         for k, v in e["by_dataflow_per_image"].items())),
        ("energy by scheme (RS)", ", ".join(f"{k} {v / 1e3:.2f} nJ"
                                            for k, v in e["by_scheme_per_image"].items())),
    ]
    eng = summary.get("engine")
    if eng:
        ok = engine_ok(eng)
        rows.append(("whole network, engine",
                     f"{eng['images']} images on {eng['backend']} ({eng['seconds']:.0f} s), "
                     f"{eng['array']} engine: scores {'bit-exact' if ok else 'MISMATCH'}, "
                     f"accuracy {100 * eng['accuracy']:.2f} %, {eng['cycles_per_image']:,} "
                     "cycles per image"
                     + (f" = {eng['images_per_s']:,.0f} images/s at the {eng['board']}'s "
                        f"{eng['clock_hz'] / 1e6:g} MHz" if eng["images_per_s"] else "")))
    syn = summary["synthesis"]
    if syn:
        main = next(iter(syn["needed"]))
        available = syn["capacity"].get(main)
        rows.append((f"synthesis, {syn['board']}",
                     f"{accelerator_name(syn['accelerator'])} behind the host link: "
                     f"{syn['needed'][main]:,} {main} needed, "
                     f"{'?' if available is None else f'{available:,}'} available: "
                     f"{syn['verdict']}"))
    bit = summary["bitstream"]
    if bit is not None:
        rows.append(("bitstream", bit.get("refused") or
                     f"{bit.get('bitstream')} ({'meets' if bit.get('meets_timing') else 'fails'}"
                     " timing)"))
    rows.append(("time", f"{summary['seconds']:.0f} s"))
    width = max(len(k) for k, _ in rows)
    return [f"{k:<{width}}  {v}" for k, v in rows]


def _markdown(summary: dict, model) -> str:
    rtl, e = summary["rtl"], summary["energy_pj"]
    lines = ["# mulfree demo", "", "Every number below was computed in this run "
             f"({summary['seconds']:.0f} s).", "", "## Summary", "", "```",
             *summary_lines(summary), "```", "", "## The integer model", "", "```",
             *model.summary(), "```", "", "## RTL simulation, layer by layer", "",
             "| layer | scheme | weights | cycles | MACs | skipped | utilisation | "
             "exact images |", "|---|---|---|---|---|---|---|---|"]
    for layer in rtl["layers"]:
        lines.append(f"| {layer['layer']} | {layer['scheme']} | {layer['weights']} | "
                     f"{layer['cycles']:,} | {layer['macs']:,} | {layer['skipped']:,} | "
                     f"{100 * layer['utilisation']:.1f} % | {layer['exact_images']}/"
                     f"{rtl['images']} |")
    eng = summary.get("engine")
    if eng:
        lines += ["", "## The whole network on the network engine", "",
                  f"The {eng['array']} network engine (datapath modes: "
                  f"{', '.join(eng['modes'])}) ran {eng['images']} test images on "
                  f"{eng['backend']} in {eng['seconds']:.0f} s: scores bit-exact on "
                  f"{eng['bit_exact']}/{eng['images']}, "
                  + ("per-layer counters: none in this engine; " if eng["counters_equal"] is None
                     else f"counters equal to the cycle model on {eng['counters_equal']}/"
                          f"{eng['images']}, ")
                  + f"cycles equal to the cycle model on "
                  f"{eng['cycles_equal']}/{eng['images']}; accuracy "
                  f"{100 * eng['accuracy']:.2f} %, predictions equal to the integer model's "
                  f"on {eng['agree_with_integer_model']}/{eng['images']}. "
                  f"{eng['cycles_per_image']:,} cycles per image"
                  + (f": {eng['images_per_s']:,.0f} images/s at the {eng['board']}'s "
                     f"{eng['clock_hz'] / 1e6:g} MHz clock." if eng["images_per_s"] else ".")]
    lines += ["", "The Verilog of each accelerator is in `verilog/`.", "",
              "## Energy (45 nm)", "",
              "| | pJ per image |", "|---|---|",
              f"| our array, from the RTL counters | "
              f"{e['our_array_per_image']['total']:,.0f} |"]
    for k, v in e["by_dataflow_per_image"].items():
        lines.append(f"| {k}, equal area (256 PEs) | {v:,.0f} |")
    for k, v in e["by_scheme_per_image"].items():
        lines.append(f"| RS, {k} | {v:,.0f} |")
    lines += ["", "![energy by dataflow](energy_dataflows.png)", "",
              "![energy by scheme](energy_schemes.png)", ""]
    syn = summary["synthesis"]
    if syn:
        lines += [f"## Synthesis estimate: {syn['board']} ({syn['device']})", "",
                  f"The {accelerator_name(syn['accelerator'])} accelerator behind the host "
                  "link, synthesized and packed (no placement).", "",
                  "| resource | needed | available |", "|---|---|---|"]
        for k, v in syn["needed"].items():
            lines.append(f"| {k} | {v:,} | {syn['capacity'].get(k, '?')} |")
        lines += ["", f"Verdict: {syn['verdict']}.", ""]
    bit = summary["bitstream"]
    if bit is not None:
        lines += ["## Bitstream", "", *(["```", *bit["lines"], "```"] if bit.get("lines")
                                        else [bit.get("refused", "")]), ""]
    return "\n".join(lines) + "\n"
