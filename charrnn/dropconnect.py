"""Recurrent DropConnect (`weight_drop`, AWD-LSTM): a cell run on Wh' = Wh * M, M a mask of 0
and 1 / (1 - weight_drop) of Wh's shape drawn once per window (model.dropout_masks), so the
cells themselves never change: forward gives them Wh', and dWh = dWh' * M."""
from .cells import CELLS


def has_recurrent_weights(cell):
    """Whether the cell named cell has hidden-to-hidden weights Wh for weight_drop to drop
    (mingru and minlstm, whose gates read the input only, have none)."""
    return "Wh" in CELLS[cell].param_shapes(1, 1)


def drop_weights(p, mask):
    """A cell's parameters p with Wh * mask in place of Wh (p itself when mask is None)."""
    return p if mask is None else {**p, "Wh": p["Wh"] * mask}


def drop_weights_grads(g, mask):
    """The gradients with respect to drop_weights(p, mask) -> those with respect to p, in
    place: dWh = dWh' * mask (g itself when mask is None)."""
    if mask is not None:
        g["Wh"] = g["Wh"] * mask
    return g
