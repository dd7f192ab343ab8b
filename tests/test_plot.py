"""`charrnn plot`: the loss curves of a run as a PNG, and its errors and warnings."""
import shutil

import pytest

from clihelp import one_line_error, run, without_package


def test_plot_writes_a_png(tiny_run, tmp_path):
    pytest.importorskip("matplotlib")
    out, _ = tiny_run
    result = run("plot", out, "-o", tmp_path / "loss.png")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    default = run("plot", out)
    assert default.exit_code == 0 and (out / "loss.png").exists()


def test_plot_without_matplotlib_says_how_to_install_it(tiny_run, tmp_path, monkeypatch):
    without_package(monkeypatch, "matplotlib")
    result = run("plot", tiny_run[0], "-o", tmp_path / "loss.png")
    one_line_error(result, "pip install 'charrnn[plot]'")
    assert not (tmp_path / "loss.png").exists()


def test_plot_errors(tmp_path):
    one_line_error(run("plot", tmp_path / "none"), "does not exist")
    one_line_error(run("plot", tmp_path), "holds no metrics.jsonl")
    (tmp_path / "metrics.jsonl").write_text("")
    one_line_error(run("plot", tmp_path), "no evaluations")
    (tmp_path / "metrics.jsonl").write_bytes(b'{"step": 1}\n\xff\xfe{"step": 2}\n')
    one_line_error(run("plot", tmp_path), "2 damaged lines skipped (line 1, 2)")


def test_plot_reads_the_run_of_a_checkpoint_and_skips_damaged_lines(tiny_run, tmp_path):
    """`charrnn plot RUN/best.npz` is RUN; a line cut short or not UTF-8 is skipped with one
    warning, as resuming skips it (rundir reads metrics.jsonl for both)."""
    pytest.importorskip("matplotlib")
    out, _ = tiny_run
    folder = tmp_path / "copy"
    shutil.copytree(out, folder)
    with open(folder / "metrics.jsonl", "ab") as f:
        f.write(b'{"step": 9, "chars": \xff\n{"step": 10, "ch')
    result = run("plot", folder / "best.npz", "-o", tmp_path / "loss.png")
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.stderr.splitlines() if line.startswith("Warning")]
    assert len(warnings) == 1 and "2 damaged lines skipped" in warnings[0], result.stderr
    assert (tmp_path / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
