"""The robust classification losses (GCE, SCE, Poly-1, NCE+RCE) against hand formulas in numpy and
torch's cross_entropy, in both forms (probabilities and the fused logits form training uses)."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from bench import robust_losses
from bench.losses import EPS, LOSSES, VALIDITY, objective, resolve_pairing
from bench.errors import UserError

RNG = np.random.default_rng(0)
Z = RNG.normal(scale=3.0, size=(2, 7, 5))  # [K, B, C] logits
LABELS = RNG.integers(0, 5, size=(2, 7))
P = np.exp(Z) / np.exp(Z).sum(-1, keepdims=True)  # numpy softmax
P_Y = np.take_along_axis(P, LABELS[..., None], -1)[..., 0]  # [K, B]: probability of the label
CE = -np.log(P_Y)


def both_forms(name, **params):
    """(loss on softmax probabilities, fused loss on logits) as numpy [K, B], float64."""
    z = torch.tensor(Z)
    y = F.one_hot(torch.tensor(LABELS), 5).double()
    return (LOSSES[name](torch.softmax(z, -1), y, **params).numpy(),
            objective(name, "softmax", **params)(z, y).numpy())


@pytest.mark.parametrize("q", [0.1, 0.7, 1.0])
def test_gce_is_the_box_cox_of_the_label_probability(q):
    for value in both_forms("gce", q=q):
        np.testing.assert_allclose(value, (1 - P_Y ** q) / q, rtol=1e-9)


def test_gce_limits_are_cce_and_mae():
    np.testing.assert_allclose(both_forms("gce", q=1.0)[1], 1 - P_Y, rtol=1e-12)
    # q -> 0: (1 - p^q) / q -> -log p (first order in q: error ~ q log(p)^2 / 2)
    np.testing.assert_allclose(both_forms("gce", q=1e-6)[1], CE, rtol=1e-4)


@pytest.mark.parametrize("alpha, beta", [(0.1, 1.0), (1.0, 0.0), (0.0, 1.0)])
def test_sce_is_ce_plus_reverse_ce_with_log_zero_minus_four(alpha, beta):
    reference = alpha * CE + beta * 4 * (1 - P_Y)  # RCE of a one-hot target: -A (1 - p_y), A = -4
    for value in both_forms("sce", alpha=alpha, beta=beta):
        np.testing.assert_allclose(value, reference, rtol=1e-6, atol=1e-9)


def test_sce_ce_term_matches_torch_cross_entropy():
    torch_ce = F.cross_entropy(torch.tensor(Z).reshape(-1, 5), torch.tensor(LABELS).reshape(-1),
                               reduction="none").reshape(2, 7).numpy()
    np.testing.assert_allclose(both_forms("sce", alpha=1.0, beta=0.0)[1], torch_ce, rtol=1e-12)


@pytest.mark.parametrize("epsilon", [-1.0, 0.0, 1.0, 2.5])
def test_poly1_is_cross_entropy_plus_epsilon_times_one_minus_pt(epsilon):
    torch_ce = F.cross_entropy(torch.tensor(Z).reshape(-1, 5), torch.tensor(LABELS).reshape(-1),
                               reduction="none").reshape(2, 7).numpy()
    for value in both_forms("poly1", epsilon=epsilon):
        np.testing.assert_allclose(value, torch_ce + epsilon * (1 - P_Y), rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("alpha, beta", [(1.0, 1.0), (10.0, 0.1)])
def test_nce_rce_is_normalised_ce_plus_reverse_ce(alpha, beta):
    nce = CE / -np.log(P).sum(-1)  # -log p_y / sum_j -log p_j
    for value in both_forms("nce_rce", alpha=alpha, beta=beta):
        np.testing.assert_allclose(value, alpha * nce + beta * 4 * (1 - P_Y), rtol=1e-6, atol=1e-9)
    # NCE lies in [0, 1] (a normalised loss, Ma et al. lemma 1)
    assert (nce >= 0).all() and (nce <= 1).all()


def test_published_values_at_a_hand_picked_point():
    # two classes, p = (0.8, 0.2), label 0: CE = log 1.25; GCE(q=0.7) = (1 - 0.8^0.7) / 0.7
    p = torch.tensor([[0.8, 0.2]], dtype=torch.float64)
    y = torch.tensor([[1.0, 0.0]], dtype=torch.float64)
    assert LOSSES["gce"](p, y).item() == pytest.approx((1 - 0.8 ** 0.7) / 0.7, rel=1e-12)
    assert LOSSES["sce"](p, y).item() == pytest.approx(0.1 * np.log(1.25) + 4 * 0.2, rel=1e-9)
    assert LOSSES["poly1"](p, y).item() == pytest.approx(np.log(1.25) + 0.2, rel=1e-9)
    assert LOSSES["nce_rce"](p, y).item() == pytest.approx(np.log(0.8) / (np.log(0.8) + np.log(0.2)) + 0.8,
                                                           rel=1e-9)


def test_fused_forms_keep_a_finite_gradient_where_the_probability_underflows():
    z = torch.tensor([[60.0, -60.0, 0.0]], dtype=torch.float64, requires_grad=True)  # the label (1) at p ~ e^-120
    y = torch.tensor([[0.0, 1.0, 0.0]], dtype=torch.float64)
    for name in ("gce", "sce", "poly1", "nce_rce"):
        (grad,) = torch.autograd.grad(objective(name, "softmax")(z, y).sum(), z)
        assert torch.isfinite(grad).all(), name
    (grad,) = torch.autograd.grad(objective("poly1", "softmax")(z, y).sum(), z)
    assert grad[0, 1].item() == pytest.approx(-1.0, abs=1e-6)  # CE's p - y at the label: the signal stays


def test_robust_losses_take_softmax_only_and_check_their_parameters():
    assert robust_losses.EPS == EPS
    for name in ("gce", "sce", "poly1", "nce_rce"):
        assert VALIDITY[("multiclass", "softmax", name)] is None
        assert "distribution" in VALIDITY[("multiclass", "sigmoid", name)]
        assert "needs class targets" in VALIDITY[("regression", "linear", name)]
    for name, key, bad in (("gce", "q", 0.0), ("gce", "q", 1.5), ("sce", "alpha", -1.0),
                           ("poly1", "epsilon", -2.0), ("nce_rce", "beta", -0.1)):
        with pytest.raises(UserError, match=f"loss.{key}={bad}"):
            resolve_pairing("multiclass", "softmax", name, {key: bad})
