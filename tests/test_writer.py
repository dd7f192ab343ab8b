"""The writer of a training run (writer.py): an evaluation's checkpoints are on disk before its
metrics line and its log lines, best.npz only for a new best, the periodic checkpoints pruned,
and a resumed run's folder cut back to its checkpoint."""
import json
import math

from charrnn import checkpoint, config, corpus as corpus_mod, rundir, training
from charrnn.writer import RunWriter
from clihelp import TINY


def test_an_evaluation_is_saved_then_logged(corpus, tmp_path):
    cfg = config.load(TINY, {"out": str(tmp_path), "keep_last": 1, "eval_every": 5,
                             "sample_length": 4})
    lines, heard = [], []
    writer = RunWriter(rundir.RunDir(tmp_path), lines.append, heard.append)
    assert writer.start(["first line"], cfg) == math.inf  # a fresh run: no floor
    assert lines == ["first line"] and (tmp_path / "config.yaml").exists()
    run = training.Run(cfg, corpus_mod.load(str(corpus)))
    for step, new_best in ((5, True), (10, False)):
        run.state.step = step
        rec, _ = run.evaluate(1e-3)
        ck = run.checkpoint(cfg, {k: v for k, v in rec.items() if k != "elapsed"})
        writer.evaluation(ck, rec, new_best, lambda: "text")
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["best.npz", "config.yaml", "last.npz", "metrics.jsonl", "step-000010.npz"]
    assert checkpoint.load(tmp_path / "best.npz").step == 5  # the second was no better
    assert checkpoint.load(tmp_path / "last.npz").step == 10
    assert [json.loads(line)["step"] for line in open(tmp_path / "metrics.jsonl")] == [5, 10]
    assert [r["step"] for r in heard] == [5, 10]
    assert lines[1].startswith("step 5:") and lines[1].endswith("(best)")
    assert lines[2] == "---\ntext\n---" and lines[3].startswith("step 10:")


def test_a_resumed_run_keeps_its_log_up_to_its_checkpoint(corpus, tmp_path):
    cfg = config.load(TINY, {"out": str(tmp_path), "eval_every": 5, "sample_length": 0})
    writer = RunWriter(rundir.RunDir(tmp_path), lambda text: None)
    run = training.Run(cfg, corpus_mod.load(str(corpus)))
    for step in (5, 10):
        run.state.step = step
        rec, _ = run.evaluate(1e-3)
        writer.evaluation(run.checkpoint(cfg, {k: v for k, v in rec.items() if k != "elapsed"}),
                          rec, False, None)
        if step == 5:
            checkpoint.save(tmp_path / "five.npz", run.checkpoint(cfg, {
                k: v for k, v in rec.items() if k != "elapsed"}))
    writer.start([], cfg, checkpoint.load(tmp_path / "five.npz"))
    assert [json.loads(line)["step"] for line in open(tmp_path / "metrics.jsonl")] == [5]
