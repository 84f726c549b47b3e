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
    return make_config("loss=custom", f"custom_loss.fn={fn}", *more)


@pytest.mark.parametrize("fn, words", [
    ("examples.my_losses:mean_ce", "custom_loss.fn=examples.my_losses:mean_ce returns a scalar on a probe batch "
                                   "(predictions [2, 6, 3], softmax outputs): it reduced over the batch"),
    ("examples.my_losses:log_of_zero", "custom_loss.fn=examples.my_losses:log_of_zero returns NaN or inf for 12 of 12"),
    ("examples.my_losses:via_numpy", "custom_loss.fn=examples.my_losses:via_numpy is not differentiable"),
    ("examples.my_losses:error_rate", "custom_loss.fn=examples.my_losses:error_rate has a zero gradient everywhere"),
    ("no_such_module:f", "custom_loss.fn=no_such_module:f: module 'no_such_module' does not import "
                         "(ModuleNotFoundError: No module named 'no_such_module')"),
    ("examples.my_losses:nope", "custom_loss.fn=examples.my_losses:nope: module 'examples.my_losses' has no 'nope'; "
                                "its functions: error_rate, log_of_zero, mean_ce, taylor_ce, via_numpy"),
    ("examples.my_losses:torch", "custom_loss.fn=examples.my_losses:torch: 'torch' is a module, not a function"),
    ("examples.my_losses", "custom_loss.fn='examples.my_losses' is not an import path; write it as module:function"),
])
def test_every_bad_user_loss_is_one_line(make_config, fn, words):
    with pytest.raises(UserError) as error:
        validate(custom(make_config, fn))
    assert str(error.value).startswith(words), str(error.value)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("overrides, words", [
    (["custom_loss.activations=[sofmax]"], "custom_loss.activations='sofmax' is not allowed; choose one of: linear, sigmoid"),
    (["custom_loss.tasks=[classification]"], "custom_loss.tasks='classification' is not allowed; choose one of: regression"),
    (["custom_loss.tasks=[regression]"], "invalid pairing task=multiclass activation=auto (softmax) loss=custom: "
                                  "loss=custom (examples.my_losses:taylor_ce) declares tasks=[regression]"),
    (["activation=sigmoid"], "invalid pairing task=multiclass activation=sigmoid loss=custom: loss=custom "
                             "(examples.my_losses:taylor_ce) declares activations=[softmax]; use activation=softmax"),
    (["custom_loss.params={power:2}"], "custom_loss.fn=examples.my_losses:taylor_ce with custom_loss.params={'power': 2} raised "
                                "TypeError"),
    (["+loss.order=2"], "loss.order is not a setting of a user's loss; its settings are: name, fn, label"),
    (["+custom_loss.order=2"], "custom_loss.order is not a config key; the keys here are: fn, label, tasks"),
])
def test_declared_tasks_activations_and_parameters_are_checked(make_config, overrides, words):
    with pytest.raises(UserError) as error:
        validate(custom(make_config, "examples.my_losses:taylor_ce", *overrides))
    assert str(error.value).startswith(words), str(error.value)


def test_a_bad_user_loss_exits_2_with_one_line_and_writes_nothing(cli_inline, tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT))  # cli_inline runs in tmp_path: examples/ from the checkout
    code, out, err = cli_inline(["loss=custom", "custom_loss.fn=examples.my_losses:mean_ce", "results_dir=res"])
    assert code == 2
    assert err.startswith("error: custom_loss.fn=examples.my_losses:mean_ce returns a scalar") and err.count("\n") == 1
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
    a = validate(custom(make_config, "examples.my_losses:taylor_ce", "custom_loss.params={order:2}"))
    b = validate(custom(make_config, "examples.my_losses:taylor_ce", "custom_loss.params={order:3}"))
    c = validate(custom(make_config, "examples.my_losses:taylor_ce", "custom_loss.params={order:2}", "custom_loss.label=tce2"))
    assert a.path != b.path and a.summary_facts["loss"] == "taylor_ce" and c.summary_facts["loss"] == "tce2"
    assert a.loss_params == {"order": 2} and a.activation == "softmax"
    assert "custom" not in CLASSIFICATION_LOSSES  # the built-in lists stay the built-ins


@pytest.mark.slow
def test_the_builtin_cce_as_a_user_loss_trains_like_the_builtin(make_config):
    from bench.run import run

    builtin = run(make_config("loss=cce"))
    user = run(custom(make_config, "bench.losses:cce", "custom_loss.label=my_cce"))
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


def test_the_custom_node_is_no_part_of_a_builtin_runs_config_or_id(make_config):
    plain = validate(make_config("loss=cce"))
    beside = validate(make_config("loss=cce", "custom_loss.fn=examples.my_losses:taylor_ce"))
    assert beside.path == plain.path and "custom_loss" not in plain.config
    # a loss=custom run is identified by its loss node: custom_loss.* and loss.* give the same run
    a = validate(custom(make_config, "examples.my_losses:taylor_ce", "custom_loss.params={order:2}"))
    b = validate(make_config("loss=custom", "loss.fn=examples.my_losses:taylor_ce", "loss.params={order:2}"))
    assert a.path == b.path and a.config["loss"]["fn"] == "examples.my_losses:taylor_ce"


def test_loss_custom_without_a_function_is_one_line(make_config):
    with pytest.raises(UserError, match=r"^loss=custom needs its function: custom_loss.fn=module:function, e.g."):
        validate(make_config("loss=custom"))


@pytest.mark.slow
def test_loss_cce_custom_in_one_sweep_is_ranked_by_the_report(cli_inline, tmp_path, monkeypatch):
    """README's one-command form: -m loss=cce,custom custom_loss.fn=... composes, both train, the
    report ranks the user's loss (named by its function) beside softmax+cce."""
    import shutil

    import pandas as pd

    from bench.report.__main__ import main as report

    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    monkeypatch.syspath_prepend(str(tmp_path))  # as `python -m` in tmp_path would find examples/
    code, out, err = cli_inline(["-m", "loss=cce,custom", "custom_loss.fn=examples.my_losses:taylor_ce",
                                 "seeds=[0,1]", "trainer.epochs=2", "progress=false", "results_dir=res",
                                 "group=my_loss"], exact=True)
    assert code == 0, out + err
    assert "loss=custom: done" in out and "loss=cce: done" in out
    report([str(tmp_path / "res")])  # exits 2 on a user error
    ranked = pd.read_csv(tmp_path / "res" / "report" / "ranking.csv")
    assert sorted(ranked["config"]) == ["softmax+cce", "softmax+taylor_ce"]
    assert set(ranked["rank"]) == {1, 2} and (ranked["seeds"] == 2).all()


def test_a_sweep_with_a_user_loss_that_does_not_import_starts_no_job(cli_inline, tmp_path):
    code, out, err = cli_inline(["-m", "loss=cce,custom", "custom_loss.fn=no_such_module:f", "results_dir=res"],
                                exact=True)
    assert code == 2 and not (tmp_path / "res").exists()
    assert err.startswith("error: custom_loss.fn=no_such_module:f: module 'no_such_module' does not import") \
        and err.count("\n") == 1, err
