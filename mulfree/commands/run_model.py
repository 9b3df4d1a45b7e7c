"""``mulfree run-model``: a whole network on the network engine, image by image, checked bit
for bit against the integer model."""

from __future__ import annotations

import sys
import time

import numpy as np

from model import deploy
from model.files import check_new_file
from mulfree.commands.evaluate import load_matching_dataset
from mulfree.errors import UsageError
from mulfree.flags import integer, power_of_two
from sim.program import DEFAULT_ARRAY

DEFAULT_ROWS, DEFAULT_COLS = DEFAULT_ARRAY
DEFAULT_IMAGES = {"amaranth": 4, "verilator": "all", "icarus": 16, "board": "all"}


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "run-model", help="run a whole network on the network engine (RTL or board)",
        description="Compile MODEL.npz into a layer program for the network engine, load it "
                    "with its weights and thresholds once, then run test images through the "
                    "engine (Amaranth simulator, the generated Verilog on Verilator or Icarus, "
                    "or a board built with mulfree build --model). Every image's scores and "
                    "every layer's counters are checked against the integer model and the "
                    "cycle model; exit status 1 on any mismatch.")
    parser.add_argument("model", metavar="MODEL.npz")
    parser.add_argument("-o", "--output", required=True, metavar="OUT.npz",
                        help="write scores [N, classes], predictions, labels and cycles [N]")
    parser.add_argument("--images", default=None, metavar="N|all",
                        help="test images to run (default: 4 on amaranth, 16 on icarus, all "
                             "on verilator and board)")
    parser.add_argument("--backend", default="amaranth",
                        choices=("amaranth", "verilator", "icarus", "board"),
                        help="where the engine runs (default amaranth)")
    parser.add_argument("--port", default=None, metavar="PORT",
                        help="serial port or pyserial URL of the board (with --backend board)")
    parser.add_argument("--baud", type=integer(300, 12_000_000), default=None, metavar="BAUD",
                        help="baud rate of the board's link")
    parser.add_argument("--rows", type=integer(1, 64), default=DEFAULT_ROWS, metavar="R",
                        help=f"PE rows (default {DEFAULT_ROWS})")
    parser.add_argument("--cols", type=integer(1, 64), default=DEFAULT_COLS, metavar="C",
                        help=f"PE columns (default {DEFAULT_COLS})")
    parser.add_argument("--lanes", type=power_of_two(1, 64), default=None, metavar="L",
                        help="lanes per PE (default: as the engine sizes it for the model)")
    parser.add_argument("--no-counters", action="store_true",
                        help="an engine without per-layer counters (only each image's cycles "
                             "are checked), as mulfree build --no-counters builds")
    parser.add_argument("--builtin", action="store_true",
                        help="an engine with the model's program built in (no program "
                             "memory), as mulfree build --program builtin builds")
    parser.add_argument("--dataset", default=None, metavar="SPEC",
                        help="digits or mnist:PATH (default: the model's own)")
    parser.add_argument("--force", action="store_true", help="overwrite OUT.npz")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)


def _image_count(text: str | None, backend: str, available: int) -> int:
    text = text if text is not None else str(DEFAULT_IMAGES[backend])
    if text == "all":
        return available
    try:
        count = int(text)
    except ValueError:
        count = 0
    if not 1 <= count <= available:
        raise UsageError(f"--images must be 'all' or an integer in [1, {available}], "
                         f"not {text!r}")
    return count


def engine_for(model, args, *, counters: bool = True, builtin: bool = False):
    """The engine configuration and the compiled program for ``model`` (``UsageError``
    naming what does not fit)."""
    from sim.program import compile_program, engine_for_model
    try:
        engine = engine_for_model(model, rows=args.rows, cols=args.cols, lanes=args.lanes,
                                  counters=counters, builtin=builtin)
        program = compile_program(model, engine)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    return engine, program


def _backend(args):
    if args.backend == "board":
        if not args.port:
            raise UsageError("--backend board needs --port PORT")
        from boards.engine import BoardEngineBackend
        from boards.link import DEFAULT_BAUD
        return BoardEngineBackend(args.port, baud=args.baud or DEFAULT_BAUD)
    if args.port:
        raise UsageError("--port is for --backend board")
    from sim.run_model import engine_backend
    backend = engine_backend(args.backend)
    ok, why = backend.available()
    if not ok:
        raise UsageError(f"backend {args.backend!r} is unavailable: {why}")
    return backend


def _counters_equal(got: list[dict], expected: list[dict]) -> bool:
    """Each layer's counters equal the cycle model's (``expected`` is empty for an engine
    without per-layer counters)."""
    from hw.schedule import COUNTERS
    return len(got) == len(expected) and all(
        g[name] == e[name] for g, e in zip(got, expected) for name in COUNTERS)


def run(args) -> int:
    from sim.program import image_cycles, predict_program
    from sim.run_model import EngineJob

    out = check_new_file(args.output, force=args.force)
    loaded = deploy.load(args.model)
    if not isinstance(loaded, deploy.IntegerModel):
        raise UsageError(f"{args.model} is a float checkpoint; run-model needs an integer "
                         "model (mulfree quantize or train a quantized net)")
    ds, _ = load_matching_dataset(loaded, args.dataset)
    count = _image_count(args.images, args.backend, len(ds.x_test))
    x, labels = ds.x_test[:count], ds.y_test[:count]
    backend = _backend(args)
    counters, builtin = not args.no_counters, args.builtin
    if args.backend == "board":     # the engine the board holds
        info = backend.info()
        counters, builtin = info["counters"], info["builtin"]
    engine, program = engine_for(loaded, args, counters=counters, builtin=builtin)
    a = engine.accelerator
    print(f"engine: {a.rows}x{a.cols} PEs, {a.lanes} lanes, {len(program.layers)} layers, "
          f"{program.header['bank_words']} weight words per bank; {count} images on "
          f"{args.backend}")
    trace = deploy.run_integer(loaded, x)
    want = trace.layers[-1].accumulators.reshape(count, -1)
    job = EngineJob.of(program, [program.input_words(img) for img in x])
    started = time.perf_counter()
    results = backend.run(engine, job, progress=not args.no_progress and sys.stderr.isatty())
    seconds = time.perf_counter() - started
    scores = np.stack([program.decode_scores(r.scores) for r in results])
    last = loaded.layers[-1]
    head = scores * last.score_gain + last.score_offset
    predictions = np.argmax(head, axis=1)
    expected = predict_program(program) if engine.counters else []
    want_cycles = image_cycles(program)
    bad_scores = [i for i in range(count) if not np.array_equal(scores[i], want[i])]
    bad_counters = [i for i, r in enumerate(results) if r.cycles != want_cycles
                    or not _counters_equal(r.layer_counters(), expected)]
    cycles = np.array([r.cycles for r in results], dtype=np.int64)
    from model.layer_file import save_arrays
    save_arrays(out, {"scores": scores.astype(np.int64), "predictions": predictions,
                      "labels": np.asarray(labels, dtype=np.int64), "cycles": cycles},
                force=args.force)
    correct = int(np.sum(predictions == labels))
    agree = int(np.sum(predictions == trace.predictions))
    print(f"accuracy {100 * correct / count:.2f} % ({correct}/{count}); predictions agree "
          f"with the integer model on {agree}/{count}; scores bit-exact on "
          f"{count - len(bad_scores)}/{count}; "
          f"{'counters and cycles' if engine.counters else 'cycles'} equal the cycle model "
          f"on {count - len(bad_counters)}/{count}")
    print(f"cycles per image: {int(cycles.min())}..{int(cycles.max())} (mean "
          f"{cycles.mean():.0f}); {count / seconds:.1f} images/s on {args.backend} "
          f"({seconds:.1f} s)")
    print(f"wrote {out}")
    if bad_scores or bad_counters:
        first = (bad_scores or bad_counters)[0]
        print(f"MISMATCH: image {first} (scores differ on {len(bad_scores)} images, counters "
              f"on {len(bad_counters)})", file=sys.stderr)
        return 1
    return 0
