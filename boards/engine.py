"""The network engine behind the host link: the board-side adapter and the host-side backend.

On the board, ``EngineTarget`` puts ``hw.engine.NetworkEngine`` behind the link's byte
streams: ``WRITE_CONFIG`` carries the program's beats (``hw.program.program_beat_bits``
each), ``WRITE_WEIGHTS`` the weight words and threshold entries, ``WRITE_INPUTS`` an image's
activation words; ``READ_OUTPUTS`` gives its scores and ``READ_COUNTERS`` its counter words
(per layer ``hw.schedule.COUNTERS``, then the image's cycles), every word as little-endian
bytes (``boards.protocol.pack_words``). ``IDENTIFY`` ends with ``engine_info``: a magic, the
engine's fingerprint (``hw.program.engine_fingerprint``), its array's size and whether it has
per-layer counters and a built-in program, so the host refuses to send a program compiled
for another engine (and sets up the engine it talks to).

On the host, ``BoardEngineBackend`` has the interface of ``sim.run_model``'s backends and
drives a board through ``boards.host.BoardClient``: over a serial port on hardware, over
``boards.simulated.SimulatedSerial`` in the tests.
"""

from __future__ import annotations

import struct

from amaranth import Module
from amaranth.lib import wiring

from boards.adapters import BytesToWords, WordsToBytes, connect_target
from boards.host import BoardClient, BoardError, SerialTransport
from boards.link import DEFAULT_BAUD
from boards.protocol import pack_words, unpack_words, word_bytes
from boards.top import TARGET_SIGNATURE

__all__ = ["EngineTarget", "BoardEngineBackend", "engine_info", "decode_engine_info",
           "engine_options"]

_INFO_MAGIC = b"MFE2"
_INFO_FORMAT = "<4sHBBBBB"
_INFO_FIELDS = ("fingerprint", "rows", "cols", "lanes", "max_layers", "flags")
_COUNTERS, _BUILTIN = 1, 2        # bits of ``flags``


def engine_options(device: str) -> dict:
    """A board's default network engine (``sim.program.engine_for_model``'s ``builtin`` and
    ``counters``): on the iCE40 the program is built into the logic and there are no per-layer
    counters (each image's cycles are still counted), which leaves room for a larger array;
    elsewhere programs load at run time and every layer's counters are read."""
    small = str(device).upper().startswith("ICE40")
    return {"builtin": small, "counters": not small}


def engine_info(engine) -> bytes:
    """The engine's description for ``IDENTIFY``: magic, fingerprint, rows, cols, lanes,
    max_layers, flags (per-layer counters 1, built-in program 2)."""
    from hw.program import engine_fingerprint
    a = engine.accelerator
    flags = (_COUNTERS if engine.counters else 0) | (_BUILTIN if engine.builtin else 0)
    return struct.pack(_INFO_FORMAT, _INFO_MAGIC, engine_fingerprint(engine), a.rows, a.cols,
                       a.lanes, engine.max_layers, flags)


def decode_engine_info(info: bytes) -> dict:
    """Inverse of ``engine_info`` (``flags`` as ``counters`` and ``builtin``, booleans);
    ``BoardError`` if the board holds no network engine."""
    info = bytes(info)
    if info[:4] != _INFO_MAGIC or len(info) != struct.calcsize(_INFO_FORMAT):
        raise BoardError(f"the board's design is not a network engine of this version (it "
                         f"says {info[:24]!r}); build one with mulfree build --model")
    fields = dict(zip(_INFO_FIELDS, struct.unpack(_INFO_FORMAT, info)[1:]))
    flags = fields.pop("flags")
    return {**fields, "counters": bool(flags & _COUNTERS), "builtin": bool(flags & _BUILTIN)}


class EngineTarget(wiring.Component):
    """``hw.engine.NetworkEngine`` on the host link's byte streams (``TARGET_SIGNATURE``).

    Latency and throughput: those of the engine; each word costs ``word_bytes(bits)`` cycles
    on the byte streams (the serial line is far slower).
    Model: ``model.deploy.run_integer`` and ``sim.program.predict_program``.

    Parameters
    ----------
    engine : hw.program.EngineConfig
    """

    def __init__(self, engine, *, weight_ram: str = "memory"):
        from hw.engine import NetworkEngine
        self._engine = engine
        self.network = NetworkEngine(engine, weight_ram=weight_ram)
        self.target_info = engine_info(engine)
        super().__init__(TARGET_SIGNATURE)

    @property
    def engine(self):
        return self._engine

    def elaborate(self, platform):
        from hw.program import program_beat_bits
        m = Module()
        net = m.submodules.engine = self.network
        a = self._engine.accelerator
        m.submodules.program = program = BytesToWords(program_beat_bits(self._engine))
        m.submodules.weights = weights = BytesToWords(a.w_word_bits)
        m.submodules.inputs = inputs = BytesToWords(a.a_word_bits)
        m.submodules.outputs = outputs = WordsToBytes(a.acc_bits)
        m.submodules.counters = counters = WordsToBytes(a.counter_bits)
        connect_target(m, self, config=program, weights=weights, inputs=inputs,
                       outputs=outputs, counters=counters, config_port=net.program_stream,
                       weight_port=net.weight_stream, input_port=net.input_stream)
        for port, words in ((net.output_stream, outputs.i_stream),
                            (net.counter_stream, counters.i_stream)):
            m.d.comb += [words.payload.eq(port.payload.as_unsigned()),
                         words.valid.eq(port.valid), port.ready.eq(words.ready)]
        return m


class BoardEngineBackend:
    """Run images on a board's network engine: ``sim.run_model``'s backend interface over the
    host link.

    Parameters
    ----------
    port : str or transport
        A serial port name or pyserial URL, or a transport (``boards.host``).
    baud : int
    timeout : float
        Seconds to wait for each response.
    """

    name = "board"

    def __init__(self, port, *, baud: int = DEFAULT_BAUD, timeout: float = 10.0):
        transport = SerialTransport(port, baud) if isinstance(port, str) else port
        self.client = BoardClient(transport, timeout=timeout)

    def available(self) -> tuple[bool, str]:
        return True, ""

    def info(self) -> dict:
        """The board's engine: ``engine_info``'s fields."""
        return decode_engine_info(self.client.identify().target_info)

    def check(self, engine) -> None:
        """``ValueError`` unless the board's engine is ``engine`` (same fingerprint)."""
        from hw.program import engine_fingerprint
        info = self.info()
        want = engine_fingerprint(engine)
        if info["fingerprint"] != want:
            a = engine.accelerator
            counters = "" if info["counters"] else ", no per-layer counters"
            raise ValueError(
                f"the board's engine (fingerprint {info['fingerprint']:04x}, "
                f"{info['rows']}x{info['cols']}x{info['lanes']}{counters}) is not the one this "
                f"model compiles for (fingerprint {want:04x}, {a.rows}x{a.cols}x{a.lanes}); "
                f"build it with mulfree build --model and the same sizes")

    def run(self, engine, job, progress: bool = False):
        from hw.program import program_beat_bits
        from sim.run_model import ImageResult, _bar
        a = engine.accelerator
        self.check(engine)
        self.client.write_config(pack_words(job.beats, program_beat_bits(engine)))
        self.client.write_weights(pack_words(job.weights, a.w_word_bits))
        bar = _bar(progress, len(job.images))
        results = []
        for words in job.images:
            self.client.write_inputs(pack_words(words, a.a_word_bits))
            raw = self.client.read_outputs(job.n_scores * word_bytes(a.acc_bits))
            scores = unpack_words(raw, a.acc_bits, signed=True)
            raw = self.client.read_counters(job.n_counter_words * word_bytes(a.counter_bits))
            results.append(ImageResult(list(scores), list(unpack_words(raw, a.counter_bits))))
            if bar is not None:
                bar.update(1)
        if bar is not None:
            bar.close()
        return results

    def close(self) -> None:
        self.client.close()
