"""LSTM, GRU, minGRU and minLSTM (and the residual stack) through the whole product path:
train, checkpoint, sample, eval; and a checkpoint whose keys do not match its cell."""
import json

import numpy as np
import pytest

from charrnn import checkpoint
from clihelp import SHAKESPEARE as CORPUS, TINY, run



@pytest.mark.parametrize("cell, stack", [("lstm", []), ("gru", []), ("mingru", []), ("minlstm", []),
                                         ("mingru", ["--stack", "residual", "--expand", 2,
                                                     "--mlp", 2])],
                         ids=["lstm", "gru", "mingru", "minlstm", "mingru-residual"])
def test_cell_trains_samples_and_evaluates(cell, stack, tmp_path, shakespeare_excerpt):
    result = run("train", CORPUS, "--config", TINY, "--cell", cell, "--layers", 2,
                 "--dropout", 0.2, "--steps", 20, "--eval-every", 10, "--out", tmp_path, *stack)
    assert result.exit_code == 0, result.output
    ck = checkpoint.load(tmp_path / "best.npz")
    assert ck.config.cell == cell and ck.config.layers == 2
    assert ck.carried_state[0][0].shape == (ck.config.batch_size, ck.spec.cell_size)
    assert len(ck.carried_state[0]) == (2 if cell == "lstm" else 1)
    sample = run("sample", "--ckpt", tmp_path / "best.npz", "--length", 100, "--seed", 3)
    assert sample.exit_code == 0 and len(sample.stdout) == 101
    # a slice scores through the same path as the whole corpus (which took 19 s at batch 1)
    ev = run("eval", "--ckpt", tmp_path / "best.npz", shakespeare_excerpt(20_000), "--json")
    assert ev.exit_code == 0
    assert json.loads(ev.stdout)["chars"] == 19_999
    assert json.loads(ev.stdout)["loss_nats"] < np.log(65)


def test_checkpoint_whose_keys_do_not_match_its_cell(tmp_path):
    assert run("train", CORPUS, "--config", TINY, "--steps", 5, "--eval-every", 5,
               "--out", tmp_path).exit_code == 0
    with np.load(tmp_path / "best.npz", allow_pickle=False) as z:
        arrays = dict(z)
    cfg = json.loads(str(arrays["config"]))
    cfg["cell"] = "gru"  # an rnn's weights under a gru's name: every Wx has the wrong width
    arrays["config"] = np.array(json.dumps(cfg))
    np.savez(tmp_path / "mixed.npz", **arrays)
    result = run("sample", "--ckpt", tmp_path / "mixed.npz")
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: ") and "does not match its model" in result.stderr
