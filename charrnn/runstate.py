"""The state of a training run: every field it carries from step to step, the one list of them.
checkpoint.py saves and restores these fields by walking them, each through its row of one table
(checkpoint.FIELDS); a new field is one line here and its row there."""
import math
from dataclasses import dataclass, field
from typing import Optional

import numpy as np


@dataclass(kw_only=True)
class RunState:
    """What a run is at a step. Shape letters: N batch, H the cells' width (model.zero_state)."""
    params: dict  # name -> array, the weights (model.param_shapes)
    optim_state: dict = field(default_factory=dict)  # optim.init_state's slots ({}: none yet)
    carried_state: list = field(default_factory=list)  # per layer a tuple of (N, H) ([]: zeros)
    data_position: int = 0  # where the next window starts in the training streams
    rng: Optional[np.random.Generator] = None  # the dropout masks' generator (None: from seed)
    # the moving average of params (config key ema; None: off, or from params when resumed)
    ema_params: Optional[dict] = None
    step: int = 0  # updates taken
    chars: int = 0  # training characters seen
    elapsed: float = 0.0  # seconds spent in training steps, evaluations excluded
    best_val: float = math.inf  # best validation loss on the evaluation grid, nats/char
    # training loss summed since the last evaluation, so that a resumed run's next metrics line
    # averages the same steps as an uninterrupted run's
    loss_sum: float = 0.0
    loss_count: int = 0
    evals_since_best: int = 0  # evaluations without a new best, for `patience`
    # not saved: the last evaluation's loss (which the result reports when it is the best),
    # and the loss best.npz must beat, read from the run folder when a run resumes
    # (resume.best_floor)
    last_val: float = math.inf
    best_floor: float = math.inf
