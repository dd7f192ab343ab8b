"""One training per run directory: two `charrnn train` processes started into one folder at the
same instant, many times over. Exactly one trains; the other is refused by name; every file the
folder ends with belongs to the one that trained."""
import json
import os
import select
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ROUNDS = 20
SEEDS = (1, 2)

# A process that imports charrnn once, then for each line "OUT SEED SEED" on stdin forks two
# children that run `python -m charrnn train ... --out OUT --seed SEED` (runpy, as -m does),
# releases both at once through one pipe, and answers with a JSON line of their pids, exit codes
# and stderr. Forking the imported interpreter keeps 20 rounds to seconds where 40 fresh
# interpreters took a minute on a busy machine; each child is still its own process, with its
# own open file of the lock, exactly as two commands typed in two shells.
PAIRS = """
import json, os, runpy, sys
import charrnn.cli
corpus, tmp = sys.argv[1], sys.argv[2]
for line in sys.stdin:
    out, *seeds = line.split()
    r, w = os.pipe()
    pids = []
    for k, seed in enumerate(seeds):
        err = os.path.join(tmp, f"stderr{k}")
        pid = os.fork()
        if pid == 0:
            os.close(w)
            fd = os.open(err, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
            os.dup2(fd, 2)
            os.dup2(os.open(os.devnull, os.O_WRONLY), 1)  # stdout carries the answers
            os.read(r, 1)  # held here until both children exist
            sys.argv = ["charrnn", "train", corpus, "--out", out, "--seed", seed, *ARGS]
            code = 1
            try:
                runpy.run_module("charrnn", run_name="__main__")
            except SystemExit as e:
                code = e.code if isinstance(e.code, int) else 1
            finally:
                sys.stderr.flush()
                os._exit(code)
        pids.append((pid, err))
    os.close(r)
    os.write(w, b"gg")
    os.close(w)
    results = []
    for pid, err in pids:
        _, status = os.waitpid(pid, 0)
        results.append({"pid": pid, "code": os.waitstatus_to_exitcode(status),
                        "stderr": open(err, encoding="utf-8").read()})
    print(json.dumps(results), flush=True)
"""
ARGS = ["--hidden-size", "8", "--batch-size", "4", "--seq-len", "10", "--steps", "4",
        "--eval-every", "2", "--sample-length", "0", "--val-frac", "0.1"]


def arrays(path):
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def without_timing(rec):
    return {k: v for k, v in rec.items() if k != "elapsed"}


def check_round(out, results):
    codes = [r["code"] for r in results]
    assert sorted(codes) == [0, 1], results
    winner = codes.index(0)
    loser_err = results[1 - winner]["stderr"]
    lines = [line for line in loser_err.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in loser_err, loser_err
    # refused under the lock while the winner trains, or, had the winner already finished,
    # by the run it left; never anything else
    assert lines[0] == f"Error: {out} is in use by process {results[winner]['pid']}" or (
        lines[0].startswith(f"Error: {out} already holds a run")), lines[0]
    seed = SEEDS[winner]
    assert sorted(os.listdir(out)) == ["best.npz", "config.yaml", "last.npz", "metrics.jsonl"]
    with open(out / "metrics.jsonl", encoding="utf-8") as f:
        records = [json.loads(line) for line in f]
    assert [r["step"] for r in records] == [2, 4]  # each evaluation once
    last, best = arrays(out / "last.npz"), arrays(out / "best.npz")
    for ck in (last, best):
        assert json.loads(str(ck["config"]))["seed"] == seed
    assert "seed: %d\n" % seed in (out / "config.yaml").read_text()
    # the log is the winner's: its lines are the ones its checkpoints carry
    assert json.loads(str(last["record"])) == without_timing(records[-1])
    best_rec = min(records, key=lambda r: r["val_loss"])
    assert json.loads(str(best["record"])) == without_timing(best_rec)


@pytest.fixture(scope="module")
def corpus(shakespeare_excerpt):
    return shakespeare_excerpt(3000)


def test_two_trainings_started_together_into_one_folder(corpus, tmp_path):
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    code = PAIRS.replace("*ARGS", "*" + repr(ARGS))
    server = subprocess.Popen([sys.executable, "-c", code, str(corpus), str(tmp_path)], cwd=ROOT,
                              env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        for k in range(ROUNDS):
            out = tmp_path / f"run{k}"
            server.stdin.write(f"{out} {SEEDS[0]} {SEEDS[1]}\n")
            server.stdin.flush()
            ready, _, _ = select.select([server.stdout], [], [], 120)
            assert ready, "a pair of trainings did not finish in 120 s"
            line = server.stdout.readline()
            assert line, "the process that starts the pairs died"
            check_round(out, json.loads(line))
    finally:
        server.stdin.close()
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
