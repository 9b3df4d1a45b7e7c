"""The accelerator behind the host link: the board-side adapter and the host-side backend.

On the board, ``AcceleratorTarget`` puts ``hw.accelerator.Accelerator`` behind the link's byte
streams: ``WRITE_CONFIG`` carries the configuration fields (one ``config_stream`` beat of
``hw.accelerator.config_beat_bits`` per field, ``hw.schedule.CONFIG_FIELDS`` order),
``WRITE_WEIGHTS``/``WRITE_INPUTS`` the weight and activation words (``lanes`` codes each),
``READ_OUTPUTS`` the output sums and ``READ_COUNTERS`` the ``counter_bits``-bit counters
(``hw.schedule.COUNTERS``; read through a byte multiplexer while the accelerator is idle, so
no copy is kept), every word as little-endian bytes (``boards.protocol.pack_words``).
``IDENTIFY`` ends with the accelerator's parameters (``encode_accelerator_info`` of its
``hw.schedule.AcceleratorConfig``), so the host can check that a layer runs on the board
before sending it (``check_runs_on``, then ``sim.run_layer.check_job`` for its configuration
fields and counters).

On the host, ``BoardBackend`` has the interface of ``sim.run_layer``'s backends
(``run(config, jobs, progress) -> [(output words, counters)]``) and drives a board
through ``boards.host.BoardClient``: over a serial port on hardware, over
``boards.simulated.SimulatedSerial`` in the tests.
"""

from __future__ import annotations

import struct

from amaranth import Module, Value
from amaranth.lib import wiring

from boards.adapters import BytesToWords, WordMuxToBytes, WordsToBytes, connect_target
from boards.host import BoardClient, BoardError, SerialTransport
from boards.link import DEFAULT_BAUD
from boards.protocol import pack_words, unpack_words, word_bytes
from boards.top import TARGET_SIGNATURE
from hw.schedule import COUNTERS, AcceleratorConfig
from model.quant import SCHEMES

__all__ = ["AcceleratorTarget", "BoardBackend", "encode_accelerator_info",
           "decode_accelerator_info", "check_runs_on", "register_board_backend",
           "run_layers_on_board", "widen_words"]

_INFO_MAGIC = b"RSA4"
_INFO_FORMAT = "<4sBBBBBBBHHIIIBB"
_INFO_FIELDS = ("scheme", "rows", "cols", "lanes", "a_bits", "w_bits", "acc_bits",
                "filter_spad", "ifmap_spad", "in_depth", "wb_depth", "pb_depth",
                "tree_stages", "counter_bits")
_MODE_FORMAT = "<BBBB"          # scheme, lanes, a_bits, w_bits of a further mode
#: Fields a layer's accelerator must match exactly, and fields the board's may exceed.
_SAME = ("scheme", "rows", "cols", "lanes", "a_bits", "w_bits", "filter_spad", "ifmap_spad",
         "tree_stages", "codebook", "more_modes")
_AT_LEAST = ("acc_bits", "in_depth", "wb_depth", "pb_depth")
#: Schemes whose activations are signed integers: a narrower code runs on a wider board
#: (sign-extended lane by lane by the host).
_SIGNED_ACTIVATIONS = ("binary", "ternary", "pow2", "int")


def _codebook_bytes(codebook) -> bytes:
    codebook = codebook or ()
    return struct.pack(f"<B{len(codebook)}i", len(codebook), *codebook)


def encode_accelerator_info(config: AcceleratorConfig) -> bytes:
    """The accelerator's parameters as ``IDENTIFY`` target bytes: the fixed fields, the
    codebook's length and levels (int32 each), then the number of further modes and per mode
    its scheme, lanes, a_bits, w_bits and codebook (``hw.schedule.Datapath``)."""
    values = config.to_dict()
    out = (struct.pack(_INFO_FORMAT, _INFO_MAGIC, SCHEMES.index(config.scheme),
                       *(values[name] for name in _INFO_FIELDS[1:]))
           + _codebook_bytes(config.codebook) + struct.pack("<B", len(config.more_modes)))
    for d in config.more_modes:
        out += (struct.pack(_MODE_FORMAT, SCHEMES.index(d.scheme), d.lanes, d.a_bits, d.w_bits)
                + _codebook_bytes(d.codebook))
    return out


def decode_accelerator_info(info: bytes) -> AcceleratorConfig:
    """Inverse of ``encode_accelerator_info``; ``BoardError`` if the board holds no
    accelerator."""
    info = bytes(info)
    size = struct.calcsize(_INFO_FORMAT)

    def refuse():
        return BoardError(f"the board's design is not an accelerator (it says {info[:24]!r})")

    def codebook_at(at):
        if len(info) < at + 1 or len(info) < at + 1 + 4 * info[at]:
            raise refuse()
        levels = struct.unpack(f"<{info[at]}i", info[at + 1:at + 1 + 4 * info[at]])
        return (tuple(levels) if levels else None), at + 1 + 4 * info[at]

    if info[:4] != _INFO_MAGIC or len(info) < size + 1:
        raise refuse()
    values = dict(zip(_INFO_FIELDS, struct.unpack(_INFO_FORMAT, info[:size])[1:]))
    values["codebook"], at = codebook_at(size)
    if len(info) < at + 1:
        raise refuse()
    count, at = info[at], at + 1
    mode_size = struct.calcsize(_MODE_FORMAT)
    more = []
    try:
        values["scheme"] = SCHEMES[values["scheme"]]
        for _ in range(count):
            if len(info) < at + mode_size:
                raise refuse()
            scheme, lanes, a_bits, w_bits = struct.unpack(_MODE_FORMAT, info[at:at + mode_size])
            codebook, at = codebook_at(at + mode_size)
            more.append(dict(scheme=SCHEMES[scheme], lanes=lanes, a_bits=a_bits,
                             w_bits=w_bits, codebook=codebook))
    except IndexError:
        raise refuse() from None
    if at != len(info):
        raise refuse()
    values["more_modes"] = tuple(more)
    try:
        return AcceleratorConfig(**values)
    except ValueError as exc:
        raise BoardError(f"the board describes an impossible accelerator: {exc}") from None


def check_runs_on(needed: AcceleratorConfig, board: AcceleratorConfig) -> None:
    """``ValueError`` naming the first parameter in which the board's accelerator cannot run
    what ``needed`` (``sim.run_layer.accelerator_config`` of the layers) asks for. Its
    buffers and sums may be larger; signed activations (binary, ternary, pow2, int) may be
    narrower than its own."""
    need = {name: getattr(needed, name) for name in _SAME + _AT_LEAST}
    have = {name: getattr(board, name) for name in _SAME + _AT_LEAST}
    if needed.scheme in _SIGNED_ACTIVATIONS and needed.a_bits < board.a_bits and \
            needed.scheme == board.scheme:
        need["a_bits"] = board.a_bits   # sign-extended by BoardBackend.run
    for name in _SAME:
        if need[name] != have[name]:
            raise ValueError(f"the layers need an accelerator with {name} = {need[name]}, "
                             f"the board's has {have[name]} (its array: {board.rows}x"
                             f"{board.cols}x{board.lanes} {board.scheme}, a_bits "
                             f"{board.a_bits}, scratchpads {board.filter_spad}/"
                             f"{board.ifmap_spad})")
    for name in _AT_LEAST:
        if need[name] > have[name]:
            raise ValueError(f"the layers need {name} >= {need[name]}, the board's "
                             f"accelerator has {have[name]}")


def widen_words(words, *, lanes: int, bits: int, to_bits: int) -> list[int]:
    """Words of ``lanes`` signed ``bits``-bit codes as words of ``to_bits``-bit codes (each
    lane sign-extended)."""
    out = []
    mask = (1 << bits) - 1
    for word in words:
        wide = 0
        for lane in range(lanes):
            code = (word >> (lane * bits)) & mask
            if code >> (bits - 1):
                code -= 1 << bits
            wide |= (code & ((1 << to_bits) - 1)) << (lane * to_bits)
        out.append(wide)
    return out


class AcceleratorTarget(wiring.Component):
    """``hw.accelerator.Accelerator`` on the host link's byte streams (``TARGET_SIGNATURE``).

    Latency and throughput: those of the accelerator; each word costs ``word_bytes(bits)``
    cycles on the byte streams (the serial line is far slower).
    Model: ``model.ops.conv2d``/``dense`` and ``sim.cycle_model.predict`` (the accelerator's).

    Parameters
    ----------
    config : hw.schedule.AcceleratorConfig
        The accelerator to build.
    """

    def __init__(self, config: AcceleratorConfig):
        from hw.accelerator import Accelerator

        self._config = config
        self.accelerator = Accelerator(config)
        self.target_info = encode_accelerator_info(config)
        super().__init__(TARGET_SIGNATURE)

    @property
    def config(self) -> AcceleratorConfig:
        return self._config

    def elaborate(self, platform):
        from hw.accelerator import config_beat_bits

        m = Module()
        acc = m.submodules.accelerator = self.accelerator
        c = self._config
        m.submodules.config = config = BytesToWords(config_beat_bits(c))
        m.submodules.weights = weights = BytesToWords(c.w_word_bits)
        m.submodules.inputs = inputs = BytesToWords(c.a_word_bits)
        m.submodules.outputs = outputs = WordsToBytes(c.acc_bits)
        m.submodules.counters = counters = WordMuxToBytes(len(COUNTERS), c.counter_bits)

        connect_target(m, self, config=config, weights=weights, inputs=inputs,
                       outputs=outputs, counters=counters, config_port=acc.config_stream,
                       weight_port=acc.weight_stream, input_port=acc.input_stream)
        m.d.comb += [outputs.i_stream.payload.eq(acc.output_stream.payload.as_unsigned()),
                     outputs.i_stream.valid.eq(acc.output_stream.valid),
                     acc.output_stream.ready.eq(outputs.i_stream.ready),
                     counters.values.eq(Value.cast(acc.counters))]
        return m


class BoardBackend:
    """Run layers on a board: the ``sim.run_layer`` backend interface over the host link.

    Parameters
    ----------
    port : str or transport
        A serial port name or pyserial URL, or a transport (``boards.host``).
    baud : int
        Baud rate of the port.
    timeout : float
        Seconds to wait for each response (generous: a stalled board answers after its own
        one-second timeout, a simulated one is slow).
    """

    name = "board"

    def __init__(self, port, *, baud: int = DEFAULT_BAUD, timeout: float = 10.0):
        transport = SerialTransport(port, baud) if isinstance(port, str) else port
        self.client = BoardClient(transport, timeout=timeout)

    def accelerator(self) -> AcceleratorConfig:
        """The parameters of the board's accelerator."""
        return decode_accelerator_info(self.client.identify().target_info)

    def run(self, config: AcceleratorConfig, jobs, progress: bool = False):
        from hw.accelerator import config_beat_bits
        from sim.run_layer import check_job

        board = self.accelerator()
        check_runs_on(config, board)
        for index, job in enumerate(jobs):
            check_job(board, job, f"layer {index}" if len(jobs) > 1 else "the layer")
        widen = config.a_bits != board.a_bits   # signed codes, sign-extended
        beat_bits = config_beat_bits(board)
        counter_bits = board.counter_bits
        bar = None
        if progress:
            from tqdm import tqdm
            bar = tqdm(total=len(jobs), unit="layer", desc="on the board", leave=False)
        results = []
        for job in jobs:
            self.client.write_config(pack_words(job.config, beat_bits))
            self.client.write_weights(pack_words(job.weights, board.w_word_bits))
            inputs = job.inputs
            if widen:
                inputs = widen_words(inputs, lanes=board.lanes, bits=config.a_bits,
                                     to_bits=board.a_bits)
            self.client.write_inputs(pack_words(inputs, board.a_word_bits))
            raw = self.client.read_outputs(job.n_outputs * word_bytes(board.acc_bits))
            words = unpack_words(raw, board.acc_bits, signed=True)
            raw = self.client.read_counters(len(COUNTERS) * word_bytes(counter_bits))
            counters = dict(zip(COUNTERS, unpack_words(raw, counter_bits)))
            results.append((words, counters))
            if bar is not None:
                bar.update(1)
        if bar is not None:
            bar.close()
        return results

    def close(self) -> None:
        self.client.close()


def register_board_backend(port, *, baud: int = DEFAULT_BAUD, timeout: float = 10.0):
    """Make ``backend="board"`` of ``sim.run_layer.run_layers`` talk to the board on ``port``
    (a port name, pyserial URL or transport); returns the ``BoardBackend``."""
    from sim.run_layer import BACKENDS

    backend = port if isinstance(port, BoardBackend) else BoardBackend(port, baud=baud,
                                                                       timeout=timeout)
    BACKENDS["board"] = lambda: backend
    return backend


def run_layers_on_board(layers, backend: BoardBackend, params, *, progress: bool = False):
    """``sim.run_layer.run_layers`` on the board behind ``backend``."""
    from sim.run_layer import run_layers

    register_board_backend(backend)
    return run_layers(layers, backend="board", params=params, progress=progress)
