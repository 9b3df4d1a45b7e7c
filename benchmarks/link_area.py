"""Area of the host link and the byte/word adapters on the iCE40UP5K, part by part.

Synthesises each part on its own with Yosys (``synth_ice40``, YoWASP) and packs it with
nextpnr-ice40 (``--pack-only`` on the UP5K), and prints one Markdown table: packed logic
cells, LUT4s, flip-flops, carry cells and block RAMs per part. The parts are the host link
(``boards.link.HostLink``) and its UART receiver, transmitter and command dispatcher, the
link self-test design (``BoardCore(LinkLoopback)``: the link with its loopback FIFOs), the
board's LED heartbeat, and the adapters of ``boards.accelerator.AcceleratorTarget`` for a
ternary 3x4 accelerator with 2 lanes and 20-bit counters (the ``mulfree build --scheme``
default; ``--counter-bits 48`` adds the 48-bit counter multiplexer of ``generate``).
A part measured on its own keeps all its ports, so the sum of the parts can differ a little
from the whole.

With ``--build DIR`` it also places and routes the link self-test for the iCEBreaker
(``mulfree build --board icebreaker --link-test``) and prints its logic cells and fmax.

Usage: ``python benchmarks/link_area.py [--clk-freq HZ] [--baud BAUD] [--build DIR]
[--json FILE]`` (about a minute and a half on two cores, the build included).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from amaranth.back import verilog  # noqa: E402

from sim.synth import synthesize  # noqa: E402


def parts(clk_freq: float, baud: float, counter_bits: tuple[int, ...]) -> list:
    """(label, top module name, component) for every part measured."""
    from boards.accelerator import encode_accelerator_info
    from boards.adapters import BytesToWords, WordMuxToBytes, WordsToBytes
    from boards.dispatcher import CommandDispatcher
    from boards.link import HostLink
    from boards.top import BoardCore, Heartbeat, LinkLoopback
    from boards.uart import UARTReceiver, UARTTransmitter
    from hw.accelerator import config_beat_bits
    from hw.schedule import COUNTERS, AcceleratorConfig

    config = AcceleratorConfig(scheme="ternary", rows=3, cols=4, lanes=2, counter_bits=20)
    info = encode_accelerator_info(config)
    link = HostLink(clk_freq=clk_freq, baud=baud, target_info=info)
    out = [
        ("UART receiver", "uart_rx", UARTReceiver(clk_freq=clk_freq, baud=baud)),
        ("UART transmitter", "uart_tx", UARTTransmitter(clk_freq=clk_freq, baud=baud)),
        ("command dispatcher (frame buffer, CRC, identity ROM, timeouts)", "dispatcher",
         CommandDispatcher(identity=link.identity, frame_timeout=link.frame_timeout_cycles,
                           target_timeout=link.target_timeout_cycles)),
        ("**host link** (receiver + dispatcher + transmitter)", "host_link", link),
        ("link self-test: host link + loopback FIFOs", "link_loopback",
         BoardCore(LinkLoopback(), clk_freq=clk_freq, baud=baud)),
        ("LED heartbeat", "heartbeat", Heartbeat(clk_freq=clk_freq)),
        (f"adapter: configuration bytes -> {config_beat_bits(config)}-bit beats", "config_words",
         BytesToWords(config_beat_bits(config))),
        (f"adapter: weight bytes -> {config.w_word_bits}-bit words", "weight_words",
         BytesToWords(config.w_word_bits)),
        (f"adapter: input bytes -> {config.a_word_bits}-bit words", "input_words",
         BytesToWords(config.a_word_bits)),
        (f"adapter: {config.acc_bits}-bit output words -> bytes", "output_bytes",
         WordsToBytes(config.acc_bits)),
    ]
    for bits in counter_bits:
        out.append((f"adapter: {len(COUNTERS)} {bits}-bit counters -> bytes",
                    f"counter_bytes{bits}", WordMuxToBytes(len(COUNTERS), bits)))
    return out


def measure(clk_freq: float, baud: float, counter_bits: tuple[int, ...]) -> list[dict]:
    chosen = parts(clk_freq, baud, counter_bits)
    sources = {f"{name}.v": verilog.convert(component, name=name)
               for _, name, component in chosen}
    areas = synthesize(sources, [name for _, name, _ in chosen], "ice40", pack=True)
    rows = []
    for label, name, _ in chosen:
        area = areas[name]
        rows.append({"part": label, "module": name, "lcs": area.lcs, "luts": area.luts,
                     "ffs": area.ffs, "carries": area.carries,
                     "bram": area.cells.get("SB_RAM40_4K", 0)})
    return rows


def build_link_test(out: Path, baud: float) -> dict:
    """Place and route the link self-test for the iCEBreaker; its report."""
    command = [sys.executable, "-m", "mulfree", "build", "--board", "icebreaker",
               "--link-test", "--baud", str(int(baud)), "-o", str(out), "--force"]
    print("$ " + " ".join(["mulfree", *command[3:]]), file=sys.stderr, flush=True)
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return json.loads((out / "report.json").read_text())


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clk-freq", type=float, default=12e6,
                        help="clock frequency in Hz (default: the iCEBreaker's 12 MHz)")
    parser.add_argument("--baud", type=float, default=115200)
    parser.add_argument("--counter-bits", type=int, action="append", default=None,
                        metavar="BITS", help="counter widths of the counter multiplexer rows "
                                             "(repeatable; default 20)")
    parser.add_argument("--build", type=Path, default=None, metavar="DIR",
                        help="also place and route the link self-test into DIR")
    parser.add_argument("--json", type=Path, default=None, metavar="FILE",
                        help="also write the rows as JSON")
    args = parser.parse_args(argv)
    rows = measure(args.clk_freq, args.baud, tuple(args.counter_bits or [20]))
    lines = [f"Packed for the iCE40UP5K at {args.clk_freq / 1e6:g} MHz, {args.baud:g} baud:", "",
             "| part | logic cells | LUT4 | flip-flops | carry | block RAM |",
             "|---|---|---|---|---|---|"]
    lines += [f"| {r['part']} | {r['lcs']:,} | {r['luts']:,} | {r['ffs']:,} | {r['carries']:,} "
              f"| {r['bram']} |" for r in rows]
    result = {"rows": rows}
    if args.build:
        report = build_link_test(args.build, args.baud)
        used = {name: u["used"] for name, u in report["utilisation"].items()}
        (fmax,) = report["fmax_mhz"].values()
        lines += ["", (f"iCEBreaker link self-test placed and routed: "
                       f"{used.get('logic cells', 0):,} logic cells, "
                       f"{used.get('block RAM', 0)} block RAM, fmax {fmax:.1f} MHz")]
        result["build"] = {"utilisation": used, "fmax_mhz": fmax}
    print("\n".join(lines))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
