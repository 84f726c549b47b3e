"""bench.optim: one learning rate per member, each member exactly a one-member run at its rate."""
import pytest
import torch

from bench.optim import EnsembleOptimizer

CASES = [
    ("sgd", {}),
    ("sgd", {"momentum": 0.9}),
    ("sgd", {"momentum": 0.9, "nesterov": True, "weight_decay": 1e-3}),
    ("sgd", {"momentum": 0.5, "dampening": 0.3}),
    ("adam", {}),
    ("adam", {"weight_decay": 1e-2, "betas": (0.8, 0.99)}),
    ("adamw", {}),
    ("adamw", {"weight_decay": 0.1, "eps": 1e-6, "maximize": True}),
]
TORCH = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "adamw": torch.optim.AdamW}
SHAPES = [(5, 3), (3,), (1, 7)]  # per member: a weight, a bias, a row


def _train(lrs, name, settings, steps=25, member_seeds=None):
    """Members [K, ...] started and driven by their own seeded gradients; the final parameters."""
    member_seeds = member_seeds or list(range(len(lrs)))
    gens = [torch.Generator().manual_seed(s) for s in member_seeds]
    params = [torch.stack([torch.randn(shape, generator=g) for g in gens]).requires_grad_() for shape in SHAPES]
    opt = EnsembleOptimizer(params, name, lrs, **settings)
    for _ in range(steps):
        for p in params:  # a gradient that depends on the parameters, as a real one does
            noise = torch.stack([torch.randn(p.shape[1:], generator=g) for g in gens])
            p.grad = (p.detach() * 0.5 + noise).contiguous()
        opt.step()
    return [p.detach() for p in params]


@pytest.mark.parametrize("name, settings", CASES)
def test_each_member_follows_torch_optim_at_its_own_learning_rate(name, settings):
    lrs = [0.003, 0.03, 0.3]
    ours = _train(lrs, name, settings)
    for k, lr in enumerate(lrs):
        g = torch.Generator().manual_seed(k)
        params = [torch.randn(shape, generator=g).requires_grad_() for shape in SHAPES]
        opt = TORCH[name](params, lr=lr, **settings)
        for _ in range(25):
            for p in params:
                p.grad = p.detach() * 0.5 + torch.randn(p.shape, generator=g)
            opt.step()
        for mine, theirs in zip(ours, params):
            torch.testing.assert_close(mine[k], theirs.detach(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name, settings", CASES)
def test_a_member_is_bitwise_the_same_whatever_its_neighbours_and_position(name, settings):
    alone = _train([0.1], name, settings, member_seeds=[7])
    # 9 members (past one AVX-512 vector of floats), the member of interest in the middle
    crowd = _train([1.0, 0.001, 0.5, 0.2, 0.1, 0.3, 3.0, 0.01, 0.05], name, settings,
                   member_seeds=[0, 1, 2, 3, 7, 5, 6, 8, 9])
    for a, c in zip(alone, crowd):
        assert torch.equal(a[0], c[4])


def test_state_dict_restores_the_state_exactly():
    params = [torch.ones(2, 3, requires_grad=True)]
    opt = EnsembleOptimizer(params, "adam", [0.1, 0.2])
    params[0].grad = torch.full((2, 3), 0.5)
    opt.step()
    saved, before = opt.state_dict(), params[0].detach().clone()
    params[0].grad = torch.full((2, 3), -1.0)
    opt.step()
    after = params[0].detach().clone()
    with torch.no_grad():
        params[0].copy_(before)
    opt.load_state_dict(saved)
    opt.step()
    assert torch.equal(params[0].detach(), after)
