"""A user's own losses for lossbench: plain functions with the built-ins' contract.

    f(y_pred, y_true, **params) -> Tensor[..., B]

y_pred: the activated outputs [..., B, C] (softmax probabilities here); y_true: the targets encoded as
for the built-ins (one-hot 0/1 [..., B, C]); return one value per example: reduce over the last axis
(the classes), never over the batch. Run from the repository root (README "Bring your own loss"):

    python -m bench.run loss=custom custom_loss.fn=examples.my_losses:taylor_ce custom_loss.params={order:2}
"""
import torch


def taylor_ce(y_pred, y_true, order=2):
    """Taylor cross-entropy (Feng et al., IJCAI 2020): the order-t Taylor series of -log p_t around
    p_t = 1, sum_{k=1..t} (1 - p_t)^k / k. Order 1 is MAE on the probabilities (robust, slow); as the
    order grows it tends to the cross-entropy (fast, fits wrong labels)."""
    p_t = (y_true * y_pred).sum(-1)  # [..., B]: the probability given to the labelled class
    return sum((1 - p_t) ** k / k for k in range(1, int(order) + 1))


# ---------------------------------------------------------------------------------------------
# the mistakes bench.config catches before any data loads (tests/test_custom_loss.py runs each)

def mean_ce(y_pred, y_true):
    """WRONG: reduces over the batch too (a scalar), as torch's own losses do by default."""
    return -(y_true * y_pred.log()).sum(-1).mean()


def log_of_zero(y_pred, y_true):
    """WRONG: log of the other classes' target 0 is -inf, so the loss is NaN."""
    return -(y_pred * y_true.log()).sum(-1) * 0 + (y_true.log() * y_pred).sum(-1)


def via_numpy(y_pred, y_true):
    """WRONG: computed in numpy, so no gradient reaches the network."""
    import numpy as np

    p = y_pred.detach().numpy()
    return torch.as_tensor(-(y_true.numpy() * np.log(p)).sum(-1))


def error_rate(y_pred, y_true):
    """WRONG: the 0/1 error has a zero gradient almost everywhere."""
    return 1 - (y_pred.argmax(-1) == y_true.argmax(-1)).float() + 0 * y_pred.sum(-1)
