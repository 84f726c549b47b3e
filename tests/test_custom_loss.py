"""A user's own loss (bench.custom_loss, conf/loss/custom.yaml, examples/): it trains like a built-in,
is identified by its import path and parameters, and every mistake is one line before any data loads."""
import math
from pathlib import Path

import pytest
import torch

from bench.config import validate
from bench.errors import UserError
from bench.losses import CLASSIFICATION_LOSSES, LOSSES

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def at_root(monkeypatch):
    """Import paths like examples.my_losses resolve from the repository root; LOSSES is left as found."""
    monkeypatch.chdir(ROOT)
    before = dict(LOSSES)
    yield
    LOSSES.clear()
    LOSSES.update(before)


def custom(make_config, fn, *more):
    return make_config("loss=custom", f"loss.fn={fn}", *more)


@pytest.mark.parametrize("fn, words", [
    ("examples.my_losses:mean_ce", "loss.fn=examples.my_losses:mean_ce returns a scalar on a probe batch "
                                   "(predictions [2, 6, 3], softmax outputs): it reduced over the batch"),
    ("examples.my_losses:log_of_zero", "loss.fn=examples.my_losses:log_of_zero returns NaN or inf for 12 of 12"),
    ("examples.my_losses:via_numpy", "loss.fn=examples.my_losses:via_numpy is not differentiable"),
    ("examples.my_losses:error_rate", "loss.fn=examples.my_losses:error_rate has a zero gradient everywhere"),
    ("no_such_module:f", "loss.fn=no_such_module:f: module 'no_such_module' does not import "
                         "(ModuleNotFoundError: No module named 'no_such_module')"),
    ("examples.my_losses:nope", "loss.fn=examples.my_losses:nope: module 'examples.my_losses' has no 'nope'; "
                                "its functions: error_rate, log_of_zero, mean_ce, taylor_ce, via_numpy"),
    ("examples.my_losses:torch", "loss.fn=examples.my_losses:torch: 'torch' is a module, not a function"),
    ("examples.my_losses", "loss.fn='examples.my_losses' is not an import path; write it as module:function"),
])
def test_every_bad_user_loss_is_one_line(make_config, fn, words):
    with pytest.raises(UserError) as error:
        validate(custom(make_config, fn))
    assert str(error.value).startswith(words), str(error.value)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("overrides, words", [
    (["loss.activations=[sofmax]"], "loss.activations='sofmax' is not allowed; choose one of: linear, sigmoid"),
    (["loss.tasks=[classification]"], "loss.tasks='classification' is not allowed; choose one of: regression"),
    (["loss.tasks=[regression]"], "invalid pairing task=multiclass activation=auto (softmax) loss=custom: "
                                  "loss=custom (examples.my_losses:taylor_ce) declares loss.tasks=[regression]"),
    (["activation=sigmoid"], "invalid pairing task=multiclass activation=sigmoid loss=custom: loss=custom "
                             "(examples.my_losses:taylor_ce) declares loss.activations=[softmax]; use activation=softmax"),
    (["loss.params={power:2}"], "loss.fn=examples.my_losses:taylor_ce with loss.params={'power': 2} raised "
                                "TypeError"),
    (["+loss.order=2"], "loss.order is not a setting of a user's loss; its settings are: name, fn, label"),
])
def test_declared_tasks_activations_and_parameters_are_checked(make_config, overrides, words):
    with pytest.raises(UserError) as error:
        validate(custom(make_config, "examples.my_losses:taylor_ce", *overrides))
    assert str(error.value).startswith(words), str(error.value)


def test_a_bad_user_loss_exits_2_with_one_line_and_writes_nothing(cli_inline, tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT))  # cli_inline runs in tmp_path: examples/ from the checkout
    code, out, err = cli_inline(["loss=custom", "loss.fn=examples.my_losses:mean_ce", "results_dir=res"])
    assert code == 2
    assert err.startswith("error: loss.fn=examples.my_losses:mean_ce returns a scalar") and err.count("\n") == 1
    assert not (tmp_path / "res").exists()


def test_taylor_ce_matches_its_series_and_tends_to_cross_entropy():
    from examples.my_losses import taylor_ce

    p = torch.tensor([[0.7, 0.2, 0.1], [0.05, 0.9, 0.05]], dtype=torch.float64)
    y = torch.tensor([[1.0, 0, 0], [0, 0, 1.0]], dtype=torch.float64)
    p_t = torch.tensor([0.7, 0.05], dtype=torch.float64)
    torch.testing.assert_close(taylor_ce(p, y, order=1), 1 - p_t)
    torch.testing.assert_close(taylor_ce(p, y, order=2), (1 - p_t) + (1 - p_t) ** 2 / 2)
    torch.testing.assert_close(taylor_ce(p, y, order=400), -p_t.log(), rtol=1e-6, atol=1e-6)


def test_user_loss_is_identified_by_path_and_params_and_named_by_its_function(make_config):
    a = validate(custom(make_config, "examples.my_losses:taylor_ce", "loss.params={order:2}"))
    b = validate(custom(make_config, "examples.my_losses:taylor_ce", "loss.params={order:3}"))
    c = validate(custom(make_config, "examples.my_losses:taylor_ce", "loss.params={order:2}", "loss.label=tce2"))
    assert a.path != b.path and a.summary_facts["loss"] == "taylor_ce" and c.summary_facts["loss"] == "tce2"
    assert a.loss_params == {"order": 2} and a.activation == "softmax"
    assert "custom" not in CLASSIFICATION_LOSSES  # the built-in lists stay the built-ins


@pytest.mark.slow
def test_the_builtin_cce_as_a_user_loss_trains_like_the_builtin(make_config):
    from bench.run import run

    builtin = run(make_config("loss=cce"))
    user = run(custom(make_config, "bench.losses:cce", "loss.label=my_cce"))
    assert user["loss"] == "my_cce" and user["activation"] == "softmax"
    for a, b in zip(builtin["per_seed"], user["per_seed"]):
        assert math.isclose(a["test"]["accuracy"], b["test"]["accuracy"], abs_tol=1 / 360)
        assert math.isclose(a["best_val"], b["best_val"], abs_tol=1 / 360)


@pytest.mark.slow
def test_an_own_yaml_on_the_search_path_joins_a_sweep(cli_inline, tmp_path, monkeypatch):
    import shutil

    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    monkeypatch.syspath_prepend(str(tmp_path))  # as `python -m` in tmp_path would find examples/
    code, out, err = cli_inline(["-m", "loss=cce,taylor_ce", "hydra.searchpath=[file://examples/conf]", "seeds=[0,1]",
                                 "trainer.epochs=1", "progress=false", "results_dir=res"], exact=True)
    assert code == 0, out + err
    # one progress line per finished run: its varying knob, then its status
    assert "loss=taylor_ce: done" in out and "loss=cce: done" in out
