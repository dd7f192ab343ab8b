"""The one writer of a training run: its log lines, and every file it writes in its folder
(config.yaml, metrics.jsonl, last.npz, best.npz and the periodic step-NNNNNN.npz)."""
import math

from . import atomic, checkpoint, config as config_mod, resume as resume_mod, rundir


def log_line(rec):
    """The log's line of an evaluation's metrics line."""
    return (f"step {rec['step']}: train {rec['train_loss']:.4f} nats ({rec['train_bpc']:.3f} bpc), "
            f"val {rec['val_loss']:.4f} nats ({rec['val_bpc']:.3f} bpc), "
            f"{rec['chars'] / max(rec['elapsed'], 1e-9):,.0f} chars/s")


class RunWriter:
    """Writes a run into run_dir (a rundir.RunDir this process has claimed) and its log to
    echo(text); on_eval(record), when given, hears of each evaluation once it is saved."""

    def __init__(self, run_dir, echo, on_eval=None):
        self.run_dir, self.echo, self.on_eval = run_dir, echo, on_eval

    def start(self, lines, cfg, resume_ck=None):
        """The first lines of the log, and the folder made ready: a fresh run's old files gone,
        or a resumed run's log cut back to its checkpoint (resume_ck); config.yaml written.
        Returns the validation loss a resumed run's best.npz must beat (resume.best_floor)."""
        for line in lines:
            self.echo(line)
        floor = math.inf
        if resume_ck is None:
            self.run_dir.start_fresh()
        else:
            ck = resume_ck
            floor = resume_mod.best_floor(ck, self.run_dir.best, self.echo)
            record = None if ck.record is None else {**ck.record, "elapsed": round(ck.elapsed, 3)}
            self.run_dir.resume_metrics(ck.step, ck.config.eval_every, record)
        self.write_config(cfg)
        return floor

    def write_config(self, cfg):
        """config.yaml: the resolved config, which reproduces the run."""
        atomic.write_text_atomic(self.run_dir.file(rundir.CONFIG), config_mod.dump(cfg))

    def evaluation(self, ck, rec, new_best, sample):
        """The checkpoints of an evaluation, then its metrics line and log lines, so the log
        never shows an evaluation whose model is not on disk; sample() the text to show when
        the config asks for one. The checkpoint carries its line without the timing (so that
        checkpoints stay bit-identical run to run), and a resume restores a line that a crash
        between the two writes left out."""
        run_dir = self.run_dir
        checkpoint.save(run_dir.last, ck)
        if new_best:
            checkpoint.save(run_dir.best, ck)
        if ck.step % ck.config.eval_every == 0 and ck.config.keep_last:
            checkpoint.save(run_dir.periodic(ck.step), ck)
            run_dir.prune_periodic(ck.step, ck.config.keep_last)
        run_dir.append_metrics(rec)
        self.echo(log_line(rec) + ("  (best)" if new_best else ""))
        if ck.config.sample_length:
            self.echo("---\n" + sample() + "\n---")
        if self.on_eval is not None:
            self.on_eval(dict(rec))

    def stopped(self, ck):
        """last.npz of a run a signal stopped: everything a resume needs, no evaluation."""
        checkpoint.save(self.run_dir.last, ck)
