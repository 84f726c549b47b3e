"""Metrics: the torch curve metrics (batched over members) agree with scikit-learn on the same
predictions, the test summary carries both accuracies, the saturation diagnostic is the hand
formula, and the CLI reports what the loss matrix promises (both accuracies; one-line refusals)."""
import json
import math

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from sklearn import metrics as skm

from bench.heads import make_head
from bench.metrics import (CLASSIFICATION_METRICS, HIGHER_IS_BETTER, REGRESSION_METRICS, TEST_ONLY_METRICS,
                           Curves, convergence, final_metrics)

K = 3  # members


def curve_metrics(head, z, y, target_scale) -> dict:
    """The curves of one split by the run's own code (Curves): {"loss": [K], "out_grad": [K], metric: [K]}."""
    return {name: value[:, 0] for name, value in Curves(head, y, [len(y)], target_scale, z.dtype)(z).items()}


def output_gradient(head, z, y):
    """Mean |dloss_i/dz_ij| over examples i and output units j, per member [K]: the out_grad curve."""
    return curve_metrics(head, z, y, 1.0)["out_grad"]


def logits(shape, seed=0, scale=2.0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * scale


def labels_of(n, classes, seed=1):
    y = torch.randint(0, classes, (n,), generator=torch.Generator().manual_seed(seed))
    y[:classes] = torch.arange(classes)  # every class present
    return y


def sklearn_classification(y, proba, labels, bits, decisions):
    """The figures by scikit-learn from probabilities [N, C], labels [N], unit bits/decisions [N, O]."""
    classes = np.arange(proba.shape[1])
    auc = (skm.roc_auc_score(y, proba[:, 1]) if proba.shape[1] == 2 else
           skm.roc_auc_score(y, proba, multi_class="ovr", average="macro", labels=classes))
    return {"accuracy": skm.accuracy_score(y, labels),
            "binary_accuracy": skm.accuracy_score(bits.ravel(), decisions.ravel()),
            "log_loss": skm.log_loss(y, proba, labels=classes),
            "f1_macro": skm.f1_score(y, labels, average="macro", labels=classes, zero_division=0),
            "roc_auc": auc,
            "brier": skm.brier_score_loss(y, proba, labels=classes)}


# (task, classes, activation, loss, the class probabilities and unit decisions by hand)
HEADS = [
    ("binary", 2, "sigmoid", "bce",
     lambda z: torch.cat([1 - torch.sigmoid(z), torch.sigmoid(z)], -1), lambda z: (z > 0).double()),
    ("binary", 2, "softmax", "cce", lambda z: torch.softmax(z, -1), lambda z: (torch.softmax(z, -1) > 0.5).double()),
    ("multiclass", 5, "softmax", "cce", lambda z: torch.softmax(z, -1),
     lambda z: (torch.softmax(z, -1) > 0.5).double()),
    ("multiclass", 5, "sigmoid", "bce", lambda z: torch.sigmoid(z) / torch.sigmoid(z).sum(-1, keepdim=True),
     lambda z: (z > 0).double()),
    ("multiclass", 4, "linear", "hinge", None, lambda z: (z > 0).double()),
    ("binary", 2, "linear", "mse", lambda z: torch.cat([1 - z.clamp(0, 1), z.clamp(0, 1)], -1),
     lambda z: (z > 0.5).double()),
]


@pytest.mark.parametrize("task, classes, activation, loss, proba_of, decide", HEADS,
                         ids=[f"{h[0]}-{h[2]}-{h[3]}" for h in HEADS])
def test_classification_curves_agree_with_scikit_learn(task, classes, activation, loss, proba_of, decide):
    head = make_head(task, classes, 1, activation, loss)
    n = 120
    y = labels_of(n, classes)
    z = logits((K, n, head.n_outputs), scale=0.5 if loss == "mse" else 2.0)
    if loss == "mse":
        z = z + 0.5  # scores around the 0/1 midpoint
    curves = curve_metrics(head, z, y, 1.0)
    # every figure of the test summary is a curve but the test-only ones (roc_auc: a sort per evaluation)
    assert set(curves) == {"loss", "out_grad", *CLASSIFICATION_METRICS} - set(TEST_ONLY_METRICS)
    bits = F.one_hot(y, classes).numpy() if head.n_outputs > 1 else y.numpy()[:, None]
    for k in range(K):
        proba = (proba_of or head.class_probabilities)(z[k]).numpy()
        reference = sklearn_classification(y.numpy(), proba, proba.argmax(1), bits, decide(z[k]).numpy())
        for name, value in reference.items():
            if name in curves:
                assert math.isclose(curves[name][k].item(), value, rel_tol=1e-9, abs_tol=1e-12), (name, k)
        # the test summary (scikit-learn on the member's raw outputs) gives the same figures
        final = final_metrics(head, y, z[k])
        assert set(final) == set(CLASSIFICATION_METRICS)
        for name, value in reference.items():
            assert math.isclose(final[name], value, rel_tol=1e-9, abs_tol=1e-12), (name, k)
    # the loss curve is the objective's mean per member
    torch.testing.assert_close(curves["loss"], head.objective(z, head.encode(y)).mean(-1))
    # training's float32 outputs give the same figures to float32 rounding
    single = curve_metrics(head, z.float(), y, 1.0)
    for name, value in curves.items():
        torch.testing.assert_close(single[name].double(), value, rtol=1e-5, atol=1e-6, msg=name)


def test_binary_accuracy_is_inflated_for_sigmoid_units_on_ten_classes():
    # a model that says "no" on every unit: argmax accuracy is chance, element-wise accuracy 0.9
    head = make_head("multiclass", 10, 1, "sigmoid", "bce")
    y = torch.arange(10).repeat(10)  # 100 examples, balanced
    z = torch.full((1, 100, 10), -5.0, dtype=torch.float64)
    z[..., 0] = -4.0  # class 0 scores highest everywhere
    curves = curve_metrics(head, z, y, 1.0)
    assert curves["accuracy"].item() == pytest.approx(0.1)
    assert curves["binary_accuracy"].item() == pytest.approx(0.9)
    final = final_metrics(head, y, z[0])
    assert final["accuracy"] == pytest.approx(0.1) and final["binary_accuracy"] == pytest.approx(0.9)


def test_regression_curves_agree_with_scikit_learn_in_original_units():
    scale = 37.5
    n, t = 80, 2
    y = logits((n, t), seed=3).abs() + 0.2  # stored targets (y / scale), positive
    z = y + 0.3 * logits((K, n, t), seed=4) - 0.1  # predictions of 3 members, a little low
    head = make_head("regression", 0, t, "linear", "mse")
    curves = curve_metrics(head, z, y, scale)
    truth = y.numpy() * scale
    y_train = logits((50, t), seed=5).abs() + 0.1  # stored training targets, for MASE's scale
    train = y_train.numpy() * scale
    for k in range(K):
        pred = z[k].numpy() * scale
        err = pred - truth
        reference = {"rmse": math.sqrt(skm.mean_squared_error(truth, pred)),
                     "mae": skm.mean_absolute_error(truth, pred),
                     "mape": 100 * skm.mean_absolute_percentage_error(truth, pred),
                     "r2": skm.r2_score(truth, pred),
                     # by hand, each averaged over the targets: the mean signed error (target units) ...
                     "bias": float(np.mean([err[:, j].mean() for j in range(t)]))}
        test_only = {"bias_pct": float(np.mean([100 * err[:, j].mean() / truth[:, j].mean() for j in range(t)])),
                     "wape": float(np.mean([100 * np.abs(err[:, j]).sum() / np.abs(truth[:, j]).sum()
                                            for j in range(t)])),
                     "smape": float(np.mean(200 * np.abs(err) / (np.abs(truth) + np.abs(pred)))),
                     # MAE over the in-sample MAE of the training mean, per target
                     "mase": float(np.mean([np.abs(err[:, j]).mean() / np.abs(train[:, j] - train[:, j].mean()).mean()
                                            for j in range(t)]))}
        final = final_metrics(head, y, z[k], scale, y_train)
        assert set(final) == set(REGRESSION_METRICS)
        for name, value in reference.items():
            assert math.isclose(curves[name][k].item(), value, rel_tol=1e-9), (name, k)
            assert math.isclose(final[name], value, rel_tol=1e-9), (name, k)
        for name, value in test_only.items():
            assert math.isclose(final[name], value, rel_tol=1e-9), (name, k)
        assert reference["bias"] < 0 and test_only["bias_pct"] < 0  # the predictions were shifted down
    assert "mase" not in final_metrics(head, y, z[0], scale)  # no training targets: no scale


SPLIT_HEADS = [("multiclass", 5, "softmax", "cce"), ("binary", 2, "sigmoid", "bce"),
               ("multiclass", 4, "linear", "hinge"), ("regression", 0, "linear", "mse"),
               ("regression", 0, "softplus", "mape")]


@pytest.mark.parametrize("task, classes, activation, loss", SPLIT_HEADS, ids=["-".join(h[2:]) for h in SPLIT_HEADS])
def test_curves_of_two_splits_at_once_agree_with_scikit_learn_per_split(task, classes, activation, loss):
    """A run evaluates train and val in one pass (Curves over their rows one after the other, the
    outputs kept with the units outermost in memory): every figure of every split is scikit-learn's on
    that split's rows alone, and out_grad is autograd's on that split's objective."""
    sizes, scale = [70, 50], 12.0
    head = make_head(task, classes, 2 if task == "regression" else 1, activation, loss)
    n = sum(sizes)
    if task == "regression":
        y = logits((n, 2), seed=5).abs() + 0.3
    else:
        y = labels_of(n, classes)
        y[sizes[0]:] = y[sizes[0]:].clamp(max=classes - 2)  # the last class absent from the second split
    z = logits((K, n, head.n_outputs), seed=6)
    z = z.permute(2, 0, 1).contiguous().permute(1, 2, 0)  # the evaluation's layout (the same values)
    curves = Curves(head, y, sizes, scale, torch.float64)(z)
    starts = [0, sizes[0]]
    for s, (start, size) in enumerate(zip(starts, sizes)):
        ys, zs = y[start:start + size], z[:, start:start + size]
        leaf = zs.detach().clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(head.objective(leaf, head.encode(ys)).sum(), leaf)
        torch.testing.assert_close(curves["out_grad"][:, s], grad.abs().mean((-2, -1)))
        torch.testing.assert_close(curves["loss"][:, s], head.objective(zs, head.encode(ys)).mean(-1))
        for k in range(K):
            reference = final_metrics(head, ys, zs[k], scale)  # scikit-learn on this split's rows
            for name, value in reference.items():
                if name in curves:
                    assert math.isclose(curves[name][k, s].item(), value, rel_tol=1e-9, abs_tol=1e-12), (name, s, k)


def test_labels_are_the_first_maximum_even_with_ties_and_nan():
    from bench.heads import _first_argmax

    scores = torch.randint(0, 3, (6, 50, 7)).double()  # many ties
    assert torch.equal(_first_argmax(scores), scores.max(-1).indices)
    assert torch.equal(_first_argmax(scores.float().permute(2, 0, 1).contiguous().permute(1, 2, 0)),
                       scores.max(-1).indices)
    nan_row = torch.tensor([[float("nan"), 1.0, 2.0]])
    assert 0 <= _first_argmax(nan_row).item() < 3  # a valid index (the member is masked as diverged)


def test_output_gradient_is_the_hand_formula_per_member():
    n = 50
    y = labels_of(n, 2)
    z = logits((K, n, 1), seed=5, scale=4.0)
    s = torch.sigmoid(z)
    t = y.double()[:, None]
    expected = (2 * (s - t) * s * (1 - s)).abs().mean((-2, -1))  # sigmoid + MSE, one unit
    torch.testing.assert_close(output_gradient(make_head("binary", 2, 1, "sigmoid", "mse"), z, y), expected)
    torch.testing.assert_close(output_gradient(make_head("binary", 2, 1, "sigmoid", "bce"), z, y),
                               (s - t).abs().mean((-2, -1)))
    # softmax + CCE over 4 classes: |softmax(z) - onehot| averaged over examples and units
    y4 = labels_of(n, 4)
    z4 = logits((K, n, 4), seed=6)
    expected = (torch.softmax(z4, -1) - F.one_hot(y4, 4)).abs().mean((-2, -1))
    torch.testing.assert_close(output_gradient(make_head("multiclass", 4, 1, "softmax", "cce"), z4, y4), expected)
    # saturated sigmoid outputs: MSE's gradient vanishes, BCE's does not (the slow-learning story)
    wrong = torch.full((1, n, 1), 8.0, dtype=torch.float64)
    zeros = torch.zeros(n, dtype=torch.long)
    assert output_gradient(make_head("binary", 2, 1, "sigmoid", "mse"), wrong, zeros).item() < 1e-3
    assert output_gradient(make_head("binary", 2, 1, "sigmoid", "bce"), wrong, zeros).item() > 0.99


def test_undefined_figures_are_none_not_nan():
    head = make_head("multiclass", 3, 1, "softmax", "cce")
    final = final_metrics(head, torch.tensor([0, 1, 1, 0]), logits((4, 3)))  # class 2 absent
    assert final["roc_auc"] is None and final["accuracy"] is not None
    flat = make_head("regression", 0, 1, "linear", "mse")
    # targets of both signs (mean 0): the bias is 0 units, its share of the mean target undefined
    final = final_metrics(flat, torch.tensor([[1.0], [-1.0]]), torch.zeros(2, 1))
    assert final["bias"] == 0 and final["bias_pct"] is None
    # positive targets of mean 2, forecasts 1 unit low: -1 unit, -50 % of the mean
    final = final_metrics(flat, torch.tensor([[1.0], [3.0]]), torch.tensor([[0.0], [2.0]]))
    assert final["bias"] == -1 and final["bias_pct"] == -50


def test_every_main_metric_candidate_is_a_curve():
    cls = curve_metrics(make_head("binary", 2, 1, "sigmoid", "bce"), logits((1, 10, 1)), labels_of(10, 2), 1.0)
    reg = curve_metrics(make_head("regression", 0, 1, "linear", "mse"), logits((1, 10, 1)),
                        logits((10, 1)).abs() + 1, 1.0)
    assert set(HIGHER_IS_BETTER) <= set(cls) | set(reg)


def test_convergence_figures_by_hand():
    speed = convergence([0, 1, 2, 3], [0, 10, 20, 30], [0.0, 1.0, 2.0, 3.0], [0.2, 0.5, 0.9, 0.8], 0.85, True)
    assert speed["epochs_to_target"] == 2 and speed["steps_to_target"] == 20 and speed["seconds_to_target"] == 2.0
    assert speed["best_val"] == 0.9
    assert speed["auc"] == pytest.approx((0.35 + 0.7 + 0.85) / 3)  # trapezoids over 3 epochs
    never = convergence([0, 1], [0, 5], [0.0, 1.0], [9.0, float("nan")], 1.0, False)
    assert never["epochs_to_target"] is None and never["best_val"] == 9.0 and never["auc"] is None


# ---------------------------------------------------------------------------------------------
# through the CLI


def test_digits_with_sigmoid_bce_reports_both_accuracies(tmp_path, cli_inline):
    code, out, err = cli_inline(["dataset=digits", "loss=bce", "activation=sigmoid", "seeds=[0,1]",
                             "trainer.epochs=1"])
    assert code == 0, err
    (path,) = (tmp_path / "results" / "default").glob("*/summary.json")
    summary = json.loads(path.read_text())
    assert summary["activation"] == "sigmoid" and summary["task"] == "multiclass"
    for seed in summary["per_seed"]:
        test = seed["test"]
        assert set(CLASSIFICATION_METRICS) <= set(test)
        # 10 one-hot units: element-wise accuracy is at least 0.8 whatever argmax accuracy is
        assert 0 <= test["accuracy"] <= 1 and test["binary_accuracy"] >= 0.8
        assert test["binary_accuracy"] > test["accuracy"]
    history = pd.read_parquet(path.parent / "history.parquet")
    assert {"accuracy", "binary_accuracy", "log_loss", "brier", "out_grad"} <= set(history.columns)


def test_regression_with_cce_is_one_line_naming_the_regression_losses(cli_inline):
    code, _, err = cli_inline(["dataset=diabetes", "loss=cce"])
    assert code == 2, err
    (line,) = err.strip().splitlines()
    assert line.startswith("error: ") and "loss=cce" in line and "Traceback" not in err
    for loss in ("mse", "mae", "huber", "log_cosh", "mape", "msle", "poisson"):
        assert loss in line


@pytest.mark.slow
def test_mape_on_zero_targets_is_refused_with_the_reason(tmp_path, cli_inline):
    rows = "a,b,y\n" + "".join(f"{i},{(i * 7) % 5},{i % 4}\n" for i in range(40))  # y = 0 every 4th row
    (tmp_path / "zeros.csv").write_text(rows)
    args = ["dataset=csv", f"dataset.path={tmp_path / 'zeros.csv'}", "dataset.target_column=y",
            "dataset.task=regression", "dataset.metric=rmse", "dataset.target=1", "loss=mape"]
    code, out, err = cli_inline(args)
    (line,) = err.strip().splitlines()
    assert code == 2 and "loss=mape" in line and "are 0" in line, err
    assert not (tmp_path / "results").exists()
    # the same file trains with MAE, and its test MAPE is reported (huge where a target is 0, as scikit-learn)
    code, out, err = cli_inline([*args[:-1], "loss=mae", "seeds=[0]", "trainer.epochs=2"])
    assert code == 0, err


@pytest.mark.slow
def test_every_valid_triple_gives_finite_objective_gradient_and_metrics():
    from bench.losses import VALIDITY

    n = 40
    for (task, activation, loss), reason in VALIDITY.items():
        if reason is not None:
            continue
        classes = {"regression": 0, "binary": 2, "multiclass": 4}[task]
        head = make_head(task, classes, 2 if task == "regression" else 1, activation, loss)
        y = logits((n, 2), seed=7).abs() + 0.5 if task == "regression" else labels_of(n, classes)
        z = logits((2, n, head.n_outputs), seed=8)
        assert torch.isfinite(output_gradient(head, z, y)).all(), (task, activation, loss)
        curves = curve_metrics(head, z, y, 3.0)
        for name, value in curves.items():
            assert value.shape == (2,) and torch.isfinite(value).all(), (task, activation, loss, name)
        final = final_metrics(head, y, z[0], 3.0)
        assert all(v is not None and math.isfinite(v) for v in final.values()), (task, activation, loss)


@pytest.mark.parametrize("activation, loss, scale", [("sigmoid", "bce", 1.0), ("tanh", "mse", 0.5)])
def test_curves_equal_the_float64_test_metrics_at_saturation(activation, loss, scale):
    """One unit, z = +-20 (tanh: +-10, whose score is sigmoid(2 z)): log_loss ~20 on the wrong rows,
    from the logits (the float32 1 - p of the old curve saturated at 36.04); and z ~ 100, where every
    float32 and float64 score is 1 or 0: log_loss at scikit-learn's clip, labels from z."""
    head = make_head("binary", 2, 1, activation, loss)
    y = torch.tensor([0, 1] * 30)
    for z_abs, expected in ((20.0, 20.0 + math.log1p(math.exp(-20.0))), (100.0, -math.log(np.finfo(float).eps))):
        z = torch.full((60, 1), z_abs * scale)  # every row says class 1: the 30 rows of class 0 are wrong
        curve = curve_metrics(head, z[None], y, 1.0)
        test = final_metrics(head, y, z.double())
        proba = np.tile([math.exp(-expected), -math.expm1(-expected)], (60, 1))  # exact (p0, p1) of every row
        reference = skm.log_loss(y.numpy(), proba)
        assert test["log_loss"] == pytest.approx(reference, rel=1e-9) == pytest.approx(expected / 2, rel=1e-6)
        assert float(curve["log_loss"]) == pytest.approx(test["log_loss"], rel=1e-6)
        assert float(curve["accuracy"]) == test["accuracy"] == 0.5


def test_labels_come_from_the_logits_where_saturated_scores_tie():
    # 4 sigmoid units with |z| ~ 100: every float32/float64 score is exactly 1 or 0; the argmax of z is
    # the class (a first-index tie-break of the scores would say class 0 for every row)
    gen = torch.Generator().manual_seed(0)
    n, c = 300, 4
    z = 100 + torch.rand(n, c, generator=gen) * 5  # [N, C], all saturated
    y = torch.randint(0, c, (n,), generator=gen)
    head = make_head("multiclass", c, 1, "sigmoid", "bce")
    expected = skm.accuracy_score(y.numpy(), z.double().numpy().argmax(1))
    assert expected > 0.2  # chance, not the 1/4 of "always class 0" by construction
    curve = curve_metrics(head, z[None], y, 1.0)
    test = final_metrics(head, y, z.double())
    assert float(curve["accuracy"]) == test["accuracy"] == pytest.approx(expected)
    assert float(curve["f1_macro"]) == pytest.approx(test["f1_macro"], rel=1e-6)
    assert float(curve["log_loss"]) == pytest.approx(test["log_loss"], rel=1e-5)
