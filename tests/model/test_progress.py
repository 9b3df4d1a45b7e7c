"""Progress: a bar on a terminal, a line per stage otherwise, nothing when switched off."""

import io
import logging

from model.progress import LOGGER, progress_bar, report, stage


class Terminal(io.StringIO):
    def isatty(self):
        return True


def run_bar(stream, enabled=True):
    with progress_bar(6, desc="mlp", unit="batch", file=stream, enabled=enabled) as bar:
        for epoch in (1, 2):
            bar.set_description(f"mlp epoch {epoch}/2")
            for _ in range(3):
                bar.update(1)
                bar.set_postfix(loss="0.123")


def test_without_a_terminal_a_line_per_stage():
    log = io.StringIO()
    run_bar(log)
    lines = log.getvalue().splitlines()
    assert lines[0] == "mlp: started (6 batches)"
    assert lines[1].startswith("mlp epoch 1/2: 3/6 batches, loss=0.123, ")
    assert lines[2].startswith("mlp epoch 2/2: done, 6/6 batches, loss=0.123, ")
    assert len(lines) == 3


def test_on_a_terminal_a_bar_that_redraws():
    screen = Terminal()
    run_bar(screen)
    assert "\r" in screen.getvalue() and "mlp epoch 2/2" in screen.getvalue()


def test_switched_off_nothing():
    for stream in (io.StringIO(), Terminal()):
        run_bar(stream, enabled=False)
        assert stream.getvalue() == ""


def test_library_stages_are_lines_on_the_mulfree_logger(caplog):
    with caplog.at_level(logging.INFO, logger=LOGGER.name):
        with stage("verilator: building"):
            report("half way")
    assert [r.getMessage().split(": done")[0] for r in caplog.records] == [
        "verilator: building ...", "half way", "verilator: building"]


def test_a_redirected_run_layer_logs_stages_not_a_bar(tmp_path, capsys):
    import numpy as np

    from model.layer_file import Layer, save_layer
    from mulfree.cli import main
    layer = Layer("ternary", np.ones((2, 1, 3, 3), dtype=np.int64),
                  np.ones((1, 6, 6), dtype=np.int64), 1, 1, a_bits=2)
    save_layer(tmp_path / "l.npz", layer)
    assert main(["run-layer", str(tmp_path / "l.npz"), "-o", str(tmp_path / "o.npz")]) == 0
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("running the layer on amaranth: ")
    assert err[1].startswith("ran in ") and len(err) == 2
    assert main(["run-layer", str(tmp_path / "l.npz"), "-o", str(tmp_path / "o.npz"),
                 "--force", "--quiet"]) == 0
    assert capsys.readouterr().err == ""
