"""charrnn: character-level RNN, LSTM and GRU language models in NumPy, as a library.

    import charrnn
    model = charrnn.load("runs/rnn/best.npz")
    print(model.sample(300, prime="ROMEO:", temperature=0.8, seed=1))
    print(model.score("To be, or not to be")["bits_per_char"])
    result = charrnn.train("data/tinyshakespeare.txt", "configs/tiny.yaml", out="runs/tiny")
    charrnn.export("runs/rnn/best.npz", "model.onnx")  # for ONNX Runtime, in any language

Everything the `charrnn` command does is a call here first: the CLI parses, calls one of these,
prints. Errors a user can fix raise CharrnnError with the one-line message the CLI prints. A call
leaves the process as it found it (signal handlers are put back; the CLI alone changes malloc).
"""
from .api import Model, Plan, Trace, export, load, plan, train
from .config import TrainConfig
from .errors import CharrnnError
from .training import Result, Stopped

__all__ = ["load", "train", "plan", "export", "Model", "Trace", "Plan", "TrainConfig", "Result",
           "Stopped", "CharrnnError"]
