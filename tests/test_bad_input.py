"""The bad-input matrix: every user mistake is one line on stderr naming the problem, exit code 2,
no traceback, nothing written. Most cases call the real CLI entry (`bench.run.cli`, Hydra and all)
in-process for speed; a few go through a real `python -m bench.run` subprocess."""

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st



def write_csv(path, text):
    path.write_text(text)
    return str(path)


def good_rows(n=30, target=lambda i: i % 2):
    return "a,b,y\n" + "".join(f"{i},{i * 0.5 + 1},{target(i)}\n" for i in range(n))


def csv_case(tmp_path, name, text, task="binary", extra=()):
    path = write_csv(tmp_path / name, text)
    metric, target = ("rmse", 1.0) if task == "regression" else ("accuracy", 0.9)
    return ["dataset=csv", f"dataset.path={path}", "dataset.target_column=y", f"dataset.task={task}",
            f"dataset.metric={metric}", f"dataset.target={target}", *extra]


# (case id, overrides or a function of tmp_path giving them, a word the error line must contain)
CASES = [
    ("unknown dataset", ["dataset=nope"], "dataset"),
    ("unknown model", ["model=nope"], "model"),
    ("unknown activation", ["activation=nope"], "activation"),
    ("unknown loss", ["loss=nope"], "loss"),
    ("unknown optimizer", ["optimizer=nope"], "optimizer"),
    ("zero epochs", ["trainer.epochs=0"], "trainer.epochs"),
    ("negative epochs", ["trainer.epochs=-3"], "trainer.epochs"),
    ("epochs not a number", ["trainer.epochs=abc"], "trainer.epochs"),
    ("zero batch size", ["trainer.batch_size=0"], "trainer.batch_size"),
    ("zero eval_every", ["trainer.eval_every=0"], "trainer.eval_every"),
    ("negative threads", ["trainer.threads=-1"], "trainer.threads"),
    ("train curve rows below -1", ["trainer.train_curve_rows=-2"], "trainer.train_curve_rows"),
    ("train curve rows a fraction", ["trainer.train_curve_rows=0.5"], "trainer.train_curve_rows"),
    ("zero lr", ["optimizer.lr=0"], "optimizer.lr"),
    ("negative lr", ["optimizer.lr=-0.1"], "optimizer.lr"),
    ("negative momentum", ["optimizer.momentum=-0.5"], "momentum=-0.5"),
    ("momentum not a number", ["optimizer.momentum=fast"], "momentum='fast'"),
    ("adam betas out of range", ["optimizer=adam", "optimizer.betas=[0.9,1.5]"], "betas"),
    ("empty seeds", ["seeds=[]"], "seeds"),
    ("duplicate seeds", ["seeds=[1,1]"], "seeds"),
    ("negative seed", ["seeds=[-1]"], "seeds"),
    ("seeds not a list", ["seeds=abc"], "seeds"),
    ("unknown device", ["device=tpu"], "device"),
    ("unknown dtype", ["trainer.dtype=float8"], "trainer.dtype"),
    ("bfloat16 on cpu", ["device=cpu", "trainer.dtype=bfloat16"], "bfloat16"),
    ("bad progress", ["progress=maybe"], "progress"),
    ("key that does not exist", ["trainer.foo=1"], "trainer.foo"),
    ("added optimizer setting that does not exist", ["+optimizer.foo=1"], "optimizer.foo"),
    ("added trainer key that does not exist", ["+trainer.foo=1"], "trainer.foo"),
    ("added top-level key that does not exist", ["+foo=1"], "foo"),
    ("added model setting that does not exist", ["+model.foo=1"], "model.foo"),
    ("cnn setting on the mlp", ["+model.channels=[8]"], "model.channels"),
    ("added loss setting that does not exist", ["+loss.foo=1"], "foo"),
    ("malformed override", ["loss="], "loss"),
    ("fraction above one", ["dataset.val_fraction=1.5"], "val_fraction"),
    ("regression with cce", ["dataset=diabetes", "loss=cce"], "cce"),
    ("results_dir under a file", lambda tmp: [f"results_dir={write_csv(tmp / 'f', 'x')}/sub"], "results_dir"),
    ("csv missing file", lambda tmp: csv_case(tmp, "x.csv", "a,y\n1,0\n") [:1] + [
        f"dataset.path={tmp / 'absent.csv'}", "dataset.target_column=y", "dataset.task=binary",
        "dataset.metric=accuracy", "dataset.target=0.9"], "absent.csv"),
    ("csv missing target column", lambda tmp: csv_case(tmp, "t.csv", good_rows().replace(",y\n", ",z\n", 1)),
     "y"),
    ("csv non-numeric feature", lambda tmp: csv_case(
        tmp, "n.csv", "a,b,y\n" + "".join(f"{i},w{i},{i % 2}\n" for i in range(30))), "b"),
    ("csv missing values", lambda tmp: csv_case(
        tmp, "m.csv", "a,b,y\n" + "".join(f"{i},{'' if i < 3 else i},{i % 2}\n" for i in range(30))), "3 missing"),
    ("csv single class", lambda tmp: csv_case(tmp, "s.csv", good_rows(target=lambda i: 1)), "single class"),
    ("csv too few rows", lambda tmp: csv_case(tmp, "r.csv", good_rows(n=4)), "too few"),
    ("mape on zero targets", lambda tmp: csv_case(
        tmp, "z.csv", good_rows(target=lambda i: float(i % 5)), "regression", ["loss=mape"]), "are 0"),
    ("cnn on tabular data", ["model=cnn", "dataset=breast_cancer", "loss=bce"], "tabular"),
    ("hidden widths not a list", ["model.hidden=0"], "model.hidden"),
    ("hidden widths a string", ["model.hidden=abc"], "model.hidden"),
    ("output init scale a string", ["model.out_init_scale=big"], "model.out_init_scale"),
    ("output bias offset a string", ["model.out_bias_offset=big"], "model.out_bias_offset"),
    ("even cnn kernel size", ["model=cnn", "dataset=mnist", "model.kernel_size=4"], "model.kernel_size"),
    ("demand max level below min level", ["dataset=demand", "dataset.max_level=0.5"], "dataset.max_level"),
    ("loss parameter the auto loss does not take", ["dataset=diabetes", "loss.label_smoothing=0.1"],
     "loss.label_smoothing"),
]


@pytest.mark.parametrize("name, args, named", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_exit_2_nothing_written(name, args, named, tmp_path, cli_inline):
    args = args(tmp_path) if callable(args) else args
    before = sorted(p.name for p in tmp_path.iterdir())
    code, out, err = cli_inline(args)
    lines = err.strip().splitlines()
    assert code == 2, (code, out, err)
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert named in lines[0], lines[0]
    assert "Traceback" not in out + err
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing written


def test_cuda_without_cuda_is_an_error_not_a_cpu_run(tmp_path, cli_inline):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA, so device=cuda is valid here")
    code, _, err = cli_inline(["device=cuda"])
    assert code == 2 and "CUDA is not available" in err and len(err.strip().splitlines()) == 1


# random override strings: keys that exist and keys that don't, values from a hostile alphabet
KEYS = ["dataset", "loss", "activation", "model", "optimizer", "seeds", "device", "trainer.epochs",
        "trainer.batch_size", "trainer.eval_every", "trainer.train_curve_rows", "trainer.dtype", "optimizer.lr", "loss.delta",
        "model.hidden", "model.channels", "model.kernel_size", "model.out_init_scale", "trainer.threads",
        "trainer.compile", "optimizer.momentum", "dataset.split_seed", "dataset.noise", "force", "nokey",
        "trainer.nokey", "+loss.nokey", "~trainer"]
VALUE = st.text(alphabet="ab0123-.,[]{}'\"$:=e ", max_size=8)


# derandomized: the same 100 examples on every CI run (4,500 random ones passed when this was last
# widened; raise max_examples and drop derandomize to explore again)
@settings(max_examples=100, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(overrides=st.lists(st.tuples(st.sampled_from(KEYS), VALUE).map("=".join), min_size=1, max_size=3))
def test_random_overrides_never_give_a_traceback(overrides, tmp_path, cli_inline):
    # a tiny valid base, so that overrides which happen to be valid train in milliseconds
    base = ["dataset=moons", "loss=bce", "seeds=[0]", "trainer.epochs=1", f"results_dir={tmp_path}/r"]
    code, out, err = cli_inline([*base, *overrides])
    assert "Traceback" not in out + err
    assert code in (0, 2), (overrides, code, err)
    if code == 2:
        assert len(err.strip().splitlines()) == 1 and err.startswith("error: "), (overrides, err)
