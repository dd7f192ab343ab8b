"""What tests/test_mpi.py runs under `mpiexec -n P python tests/mpi_worker.py TASK JSON`, so
that one launch does several runs (each launch costs a second of start-up).

train: charrnn.train for each keyword dict in the JSON list, as a user's script under mpiexec
would call it; rank 0's log goes to each run's folder (log.txt).
score: the validation loss of a Run of the JSON config, written by rank 0 to JSON's "out".
fail: charrnn.train of the JSON config, with rank 1's step 3 raising an error no other rank
sees (a bug, say): the job must end, not hang.
"""
import json
import os
import sys

import charrnn
from charrnn import corpus as corpus_mod, distributed, training


def train(runs):
    for kwargs in runs:
        lines = []
        charrnn.train(progress=False, log=lines.append, **kwargs)
        if distributed.world().leader:
            with open(os.path.join(kwargs["out"], "log.txt"), "w", encoding="utf-8") as f:
                f.write("\n".join(lines) + "\n")


def score(kwargs):
    out = kwargs.pop("out")
    corpus = corpus_mod.open_corpus([kwargs.pop("corpus")])
    cfg = charrnn.TrainConfig(**kwargs)
    run = training.Run(cfg, corpus, group=distributed.world())
    val = run.validation_loss()
    if distributed.world().leader:
        with open(out, "w", encoding="utf-8") as f:
            json.dump({"val_loss": val}, f)


def fail(kwargs):
    real = training.Run.train_step

    def fails_on_rank_1(self, *votes):
        if self.group.rank == 1 and self.state.step == 3:
            raise RuntimeError("a fault only rank 1 meets")
        return real(self, *votes)
    training.Run.train_step = fails_on_rank_1
    charrnn.train(progress=False, **kwargs)


if __name__ == "__main__":
    task, arg = sys.argv[1], json.loads(sys.argv[2])
    {"train": train, "score": score, "fail": fail}[task](arg)
