"""The bad-input matrix: every user mistake is one line on stderr naming the problem, exit code 2,
no traceback, nothing written. Most cases call the real CLI entry (`bench.run.cli`, Hydra and all)
in-process for speed; a few go through a real `python -m bench.run` subprocess."""

import sys
from pathlib import Path

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


# (case id, overrides or a function of tmp_path giving them, words the error line must contain: a string
# or a tuple of strings)
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
    ("packing neither auto nor a boolean", ["pack.enabled=maybe"], "pack.enabled"),
    ("zero clock epochs", ["pack.clock_epochs=0"], "pack.clock_epochs"),
    ("pack members a fraction", ["pack.max_members=0.5"], "pack.max_members"),
    ("a pack key that does not exist", ["+pack.size=3"], "pack.size"),
    ("train curve rows a fraction", ["trainer.train_curve_rows=0.5"], "trainer.train_curve_rows"),
    ("zero lr", ["optimizer.lr=0"], "optimizer.lr"),
    ("negative lr", ["optimizer.lr=-0.1"], "optimizer.lr"),
    ("lr not a number", ["optimizer.lr=fast"], "optimizer.lr='fast'"),
    ("empty lr grid", ["optimizer.lr=[]"], "optimizer.lr=[]"),
    ("lr grid with a zero", ["optimizer.lr=[0.1,0]"], "optimizer.lr=[0.1, 0]"),
    ("lr grid with a negative", ["optimizer.lr=[-0.1,0.1]"], "optimizer.lr"),
    ("lr grid not numeric", ["optimizer.lr=[0.1,fast]"], "optimizer.lr"),
    ("lr grid nested", ["optimizer.lr=[[0.1,1]]"], "optimizer.lr"),
    ("lr grid with a repeat", ["optimizer.lr=[0.1,0.1]"], "optimizer.lr"),
    ("lr_grid a number", ["optimizer.lr_grid=0.1"], "optimizer.lr_grid=0.1"),
    ("momentum a list", ["optimizer.momentum=[0.9,0.5]"], "optimizer.momentum=[0.9, 0.5]"),
    ("weight decay a list", ["optimizer=adam", "optimizer.weight_decay=[0.1]"], "optimizer.weight_decay"),
    ("nesterov without momentum", ["+optimizer.nesterov=true"], "nesterov"),
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
    ("unknown demand distribution", ["dataset=demand", "dataset.distribution=gamma"], "dataset.distribution='gamma'"),
    # what each loss forecasts: its levels, its power, its link; MASE's scale
    ("pinball level above one", ["dataset=demand", "loss=pinball", "loss.quantiles=[0.5,1.2]"],
     "loss.quantiles=[0.5, 1.2] is not allowed; it must be a non-empty list of levels in (0, 1)"),
    ("pinball level of zero", ["dataset=demand", "loss=pinball", "loss.quantiles=[0,0.5]"], "loss.quantiles=[0, 0.5]"),
    ("pinball levels not increasing", ["dataset=demand", "loss=pinball", "loss.quantiles=[0.9,0.1]"], "increasing"),
    ("tweedie power of two", ["dataset=demand", "loss=tweedie", "loss.power=2"], "loss.power=2 is not allowed"),
    ("tweedie power below one", ["dataset=demand", "loss=tweedie", "loss.power=0.5"], "in (1, 2)"),
    ("tweedie on a linear output", ["dataset=demand", "loss=tweedie", "activation=linear"], "log link"),
    ("constant targets: MASE's scale is 0", lambda tmp: csv_case(
        tmp, "c.csv", good_rows(target=lambda i: 5.0), "regression"), "MASE's scale"),
    ("loss parameter the auto loss does not take", ["dataset=diabetes", "loss.label_smoothing=0.1"],
     "loss.label_smoothing"),
    # the metric and its target (refused before any data loads: they used to fail after training)
    ("accuracy on a regression dataset", ["dataset=diabetes", "loss=mse", "dataset.metric=accuracy"],
     "dataset.metric='accuracy' is not a metric of dataset=diabetes"),
    ("rmse on a classification dataset", ["dataset.metric=rmse"], "dataset.metric='rmse'"),
    ("accuracy on a regression csv", lambda tmp: csv_case(
        tmp, "g.csv", good_rows(target=lambda i: i * 0.5), "regression", ["dataset.metric=accuracy"]),
     "dataset.metric='accuracy'"),
    ("a test-only figure as the metric", ["dataset.metric=roc_auc"], "dataset.metric='roc_auc'"),
    ("no such metric", ["dataset.metric=nope"], "choose one of: accuracy"),
    ("target not a number", ["dataset.target=abc"], "dataset.target='abc'"),
    ("accuracy target above one", ["dataset.target=1.5"], "in [0, 1]"),
    ("accuracy target below zero", ["dataset=moons", "dataset.target=-0.2"], "dataset.target=-0.2"),
    ("negative rmse target", ["dataset=diabetes", "dataset.target=-5"], ">= 0"),
    ("r2 target above one", ["dataset=diabetes", "dataset.metric=r2", "dataset.target=2"], "<= 1"),
    ("task changed on a dataset that fixes it", ["dataset.task=regression"], "dataset.task='regression'"),
    ("unknown csv task", lambda tmp: csv_case(tmp, "k.csv", good_rows(), "ranking"), "dataset.task='ranking'"),
    ("device with a bad index", ["device=cuda:x"], "device='cuda:x'"),
    ("negative huber delta", ["dataset=diabetes", "loss=huber", "loss.delta=-1"], "delta"),
    ("label smoothing above one", ["loss=cce", "loss.label_smoothing=1.5"], "loss.label_smoothing=1.5"),
    ("label smoothing of one", ["loss=cce", "loss.label_smoothing=1.0"], "[0, 1)"),
    ("negative label smoothing", ["loss=cce", "loss.label_smoothing=-0.1"], "loss.label_smoothing=-0.1"),
    ("zero calibration bins", ["trainer.calibration_bins=0"], "trainer.calibration_bins=0"),
    ("calibration bins a fraction", ["trainer.calibration_bins=2.5"], "trainer.calibration_bins"),
    ("negative focal gamma", ["loss=categorical_focal", "loss.gamma=-1"], "loss.gamma=-1"),
    ("a gamma flsd53 does not take", ["loss=flsd53", "+loss.gamma=2"], "gamma"),
    ("a test-only calibration error as the metric", ["dataset.metric=ece"], "dataset.metric='ece'"),
    ("negative dataset noise", ["dataset=moons", "dataset.noise=-1"], "dataset.noise"),
    # messages that say what is wrong
    ("csv header only", lambda tmp: csv_case(tmp, "h.csv", "a,b,y\n"), "has no data rows"),
    ("csv float target for classes", lambda tmp: csv_case(
        tmp, "f.csv", good_rows(n=300, target=lambda i: i * 0.37), "multiclass"), "non-integer numbers"),
    ("csv single class names the value", lambda tmp: csv_case(tmp, "o.csv", good_rows(target=lambda i: 1)),
     "single class (1) in"),
    # values that pass a "> 0" test but are no finite number (1e400 parses as inf)
    ("lr infinite", ["optimizer.lr=inf"], "optimizer.lr=inf is not allowed (not a finite number)"),
    ("lr grid with an overflowing rate", ["optimizer.lr=[0.1,1e400]"], "optimizer.lr=[0.1, inf] is not allowed"),
    ("output init scale infinite", ["model.out_init_scale=inf"], "model.out_init_scale=inf is not allowed"),
    ("output bias offset minus infinity", ["model.out_bias_offset=-inf"], "model.out_bias_offset=-inf"),
    ("huber delta nan", ["dataset=diabetes", "loss=huber", "loss.delta=nan"], "loss.delta=nan is not allowed"),
    ("target infinite", ["dataset=diabetes", "dataset.target=inf"], "dataset.target=inf"),
    ("dataset noise infinite", ["dataset=moons", "dataset.noise=1e400"], "dataset.noise=inf"),
    ("momentum infinite", ["optimizer.momentum=inf"], "optimizer.momentum=inf"),
    # paths: group a plain name inside results_dir, the group folder usable before anything runs
    ("group a path out of results_dir", ["group=../escaped"], "group='../escaped' is not allowed"),
    ("group an absolute path", ["group=/tmp/elsewhere"], "group='/tmp/elsewhere'"),
    ("group the report's folder", ["group=report"], "not 'report'"),
    ("group a hidden folder", ["group=.locks"], "group='.locks'"),
    ("group empty", ["group="], "group"),
    ("group folder is a file", lambda tmp: [f"results_dir={(tmp / 'r').mkdir() or tmp / 'r'}",
                                            f"group={write_csv(tmp / 'r' / 'g', 'x') and 'g'}"],
     "(group=g) is not usable"),
    ("results_dir is a file", lambda tmp: [f"results_dir={write_csv(tmp / 'f', 'x')}"], "is a file, not a directory"),
    # Hydra's own words pointed the wrong way: `+foo=1` (refused next) and `+hydra.launcher.n_jobs=2`
    ("top-level key that does not exist", ["foo=1"], "foo is not a config key; the keys are: dataset"),
    ("launcher setting on the basic launcher", ["hydra.launcher.n_jobs=2"],
     "hydra.launcher.n_jobs is a setting of the parallel launcher, not of the basic one; choose the launcher "
     "too: -m hydra/launcher=parallel"),
    ("slurm setting on the basic launcher", ["hydra.launcher.partition=gpu"], "hydra/launcher=slurm"),
    # what only the data can tell
    ("csv path a directory", lambda tmp: csv_case(tmp, "d.csv", good_rows())[:1] + [
        f"dataset.path={(tmp / 'folder').mkdir() or tmp / 'folder'}", "dataset.target_column=y", "dataset.task=binary",
        "dataset.metric=accuracy", "dataset.target=0.9"], "is a directory, not a file"),
    ("csv column with a blank is named as it is", lambda tmp: csv_case(
        tmp, "b.csv", good_rows().replace(",y\n", ", y\n", 1)), "columns are: a, b, ' y'"),
    ("csv feature whose std overflows", lambda tmp: csv_case(
        tmp, "x.csv", "a,b,y\n" + "".join(f"{i * 1e300 - 3e301},{i},{i * 0.5}\n" for i in range(30)), "regression"),
     ("feature 'a' (values up to ", ") cannot be standardised: its standard deviation overflows float64")),
    ("csv target whose squared errors overflow", lambda tmp: csv_case(
        tmp, "y.csv", "a,b,y\n" + "".join(f"{i},{i % 7},{(i + 1) * 1e299}\n" for i in range(30)), "regression"),
     "target 'y' (values up to 3e+300) is too large for the metrics"),
    ("override Hydra cannot parse, named with its character", ["results_dir=~/r"],
     "the override 'results_dir=~/r' cannot be parsed at '~'; quote a value"),
    ("override cut short, named", ["loss=mse,"], "the override 'loss=mse,' cannot be parsed: mismatched input"),
    ("results_dir empty (the working directory)", ["results_dir="], "results_dir='' is not allowed"),
    ("results_dir starting with ~ (never expanded)", ['results_dir="~/r"'], "not starting with ~"),
    ("memory error counts members", ["model.hidden=[1099511627776]", "seeds=[0,1]", "optimizer.lr=[0.1,0.2,0.3,0.4]"],
     "with 8 members (2 seeds x 4 learning rates) does not fit"),
]


@pytest.mark.slow
@pytest.mark.parametrize("name, args, named", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_exit_2_nothing_written(name, args, named, tmp_path, cli_inline):
    args = args(tmp_path) if callable(args) else args
    before = sorted(p.name for p in tmp_path.iterdir())
    code, out, err = cli_inline(args)
    lines = err.strip().splitlines()
    assert code == 2, (code, out, err)
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert all(word in lines[0] for word in (named if isinstance(named, tuple) else (named,))), lines[0]
    assert "Traceback" not in out + err
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing written
    assert "np.int64" not in lines[0]


# a value no run can take, in a sweep: a user error before any job starts (not `invalid` runs)
SWEEP_CASES = [
    ("sweep with negative epochs", ["-m", "loss=mse,cce", "trainer.epochs=-1"], "trainer.epochs=-1"),
    ("sweep with a metric one dataset lacks", ["-m", "dataset=digits,diabetes", "dataset.metric=accuracy"],
     "dataset=diabetes"),
    ("sweep with one bad swept value", ["-m", "dataset=moons", "trainer.batch_size=8,0"], "trainer.batch_size=0"),
    ("sweep with an unknown option", ["-m", "loss=mse,nope"], "loss='nope'"),
    ("sweep with packing neither auto nor a boolean", ["-m", "loss=mse,cce", "pack.enabled=2"], "pack.enabled"),
    ("-m after an override", ["dataset=diabetes", "-m", "loss=mse,mae"], "-m must come first"),
    ("sweep giving the basic launcher a setting", ["-m", "loss=mse,bce", "+hydra.launcher.n_jobs=2"],
     "hydra.launcher.n_jobs is a setting of the parallel launcher"),
    ("sweep with workers that are no number", ["-m", "loss=mse,bce", "hydra/launcher=parallel",
                                              "hydra.launcher.n_jobs=abc"], "hydra.launcher.n_jobs='abc'"),
    ("sweep out of results_dir", ["-m", "loss=mse,bce", "group=../escaped"], "group='../escaped'"),
    ("sweep into a group folder that is a file", lambda tmp: [
        "-m", "loss=mse,bce", f"results_dir={(tmp / 'r').mkdir() or tmp / 'r'}",
        f"group={(tmp / 'r' / 'g').write_text('x') and 'g'}"], "(group=g) is not usable"),
    ("sweep with an infinite learning rate", ["-m", "loss=mse,bce", "optimizer.lr=1e400"], "optimizer.lr=inf"),
]


@pytest.mark.parametrize("name, argv, named", SWEEP_CASES, ids=[c[0] for c in SWEEP_CASES])
def test_bad_sweep_is_one_line_exit_2_before_any_job(name, argv, named, tmp_path, cli_inline):
    argv = argv(tmp_path) if callable(argv) else argv
    before = sorted(str(p) for p in tmp_path.rglob("*"))
    code, out, err = cli_inline(argv, exact=True)
    lines = err.strip().splitlines()
    assert code == 2, (code, out, err)
    assert len(lines) == 1 and lines[0].startswith("error: ") and named in lines[0], err
    assert "Traceback" not in out + err and "sweep: " not in out  # no job started
    assert sorted(str(p) for p in tmp_path.rglob("*")) == before  # nothing written: no results, .hydra, lock


def test_explain_shows_what_auto_resolves_to(tmp_path, cli_inline):
    code, out, err = cli_inline(["--explain", "dataset=moons"], exact=True)
    assert code == 0 and err == ""
    assert out.startswith("# activation=auto -> sigmoid, loss=auto -> bce (dataset=moons, task binary)")
    assert "name: sigmoid" in out and "name: bce" in out and list(tmp_path.iterdir()) == []


def test_config_and_errors_import_no_torch():
    """A rejected command must not wait for torch: the validation modules import it only when the
    torch-free checks have passed."""
    import subprocess

    code = ("import sys, bench.config, bench.errors, bench.metric_facts, bench.run, bench.sweep, bench.results; "
            "print('torch' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.stdout.strip() == "False", result.stderr


def results_with_one_run(tmp_path):
    run = tmp_path / "results" / "default" / "abc123"
    (run / "empty").mkdir(parents=True)
    (run / "summary.json").write_text('{"status": "invalid", "per_seed": []}')
    return tmp_path / "results"


# bench.report: a folder that is not a results folder, one without runs, an output that can't be written
REPORT_CASES = [
    ("group folder", lambda r: [str(r / "default")], "is a group folder"),
    ("a run folder", lambda r: [str(r / "default" / "abc123")], "is a run folder; pass the results folder two"),
    ("folder without runs", lambda r: [str(r / "default" / "abc123" / "empty")], "holds no runs"),
    ("absent folder", lambda r: [str(r / "nope")], "does not exist"),
    ("--out under a file", lambda r: [str(r), "--out", str(r / "default" / "abc123" / "summary.json" / "x")],
     "--out="),
    ("--runs not a number", lambda r: ["--benchmark", "--runs", "x"], "argument --runs: invalid int value: 'x'"),
    ("an option that does not exist", lambda r: [str(r), "--nope"], "unrecognized arguments: --nope"),
]


def exit_code(main, args):
    """The exit code of a CLI's main(args): its return value or its SystemExit's code."""
    try:
        return main(args) or 0
    except SystemExit as stop:
        return stop.code


@pytest.mark.parametrize("name, args, named", REPORT_CASES, ids=[c[0] for c in REPORT_CASES])
def test_report_cli_mistakes_are_one_line_exit_2(name, args, named, tmp_path, capsys):
    results = results_with_one_run(tmp_path)
    before = sorted(str(p) for p in tmp_path.rglob("*"))
    code = exit_code(report_main, args(results))
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and named in err, err
    assert sorted(str(p) for p in tmp_path.rglob("*")) == before  # nothing written


def perf_main(args):
    from bench.perf import main

    return main(args)


def results_main(args):
    from bench.results import main

    return main(args)


def matrix_main(args):
    from bench.matrix import main

    return main(args)


def report_main(args):
    from bench.report.__main__ import main

    return main(args)


# the other entry points, as careful as bench.run: one line naming the value, exit 2, before any work
ENTRY_CASES = [
    ("perf: unknown dataset", perf_main, lambda tmp: ["dataset=nope"], "dataset='nope' is not allowed; choose one of"),
    ("perf: an output under a file", perf_main, lambda tmp: [f"out={write_csv(tmp / 'f', 'x')}/x.json"],
     "/f is a file, not a directory"),
    ("perf: an output that is a folder", perf_main, lambda tmp: [f"out={tmp}"], "is a folder; give the file"),
    ("perf: seeds not integers", perf_main, lambda tmp: ["seeds=1,x"],
     "seeds='1,x' is not allowed; it must be integers > 0"),
    ("perf: hidden zero", perf_main, lambda tmp: ["hidden=64,0"], "hidden='64,0' is not allowed"),
    ("perf: epochs not a number", perf_main, lambda tmp: ["epochs=abc"],
     "epochs='abc' is not allowed; it must be an integer"),
    ("perf: unknown device", perf_main, lambda tmp: ["device=tpu"], "device='tpu' is not allowed"),
    ("perf: not key=value", perf_main, lambda tmp: ["fast"], "argument 'fast' is not key=value"),
    ("results: two folders", results_main, lambda tmp: ["a", "b"], "arguments 'a b' are not allowed; usage"),
    ("results: an option", results_main, lambda tmp: ["--nope"], "arguments '--nope' are not allowed"),
    ("results: absent folder", results_main, lambda tmp: [str(tmp / "nope")], "is not a directory"),
    ("results: a group folder", results_main, lambda tmp: [str(results_with_one_run(tmp) / "default")],
     "is a group folder"),
    ("matrix: no such README", matrix_main, lambda tmp: [str(tmp / "nope.md")], "nope.md is not a file"),
    ("matrix: a README without the markers", matrix_main, lambda tmp: [write_csv(tmp / "R.md", "# hi\n")],
     "has no validity-matrix markers"),
    ("matrix: two arguments", matrix_main, lambda tmp: ["a", "b"], "arguments 'a b' are not allowed"),
]


@pytest.mark.parametrize("name, main, args, named", ENTRY_CASES, ids=[c[0] for c in ENTRY_CASES])
def test_every_entry_point_says_a_mistake_in_one_line_exit_2(name, main, args, named, tmp_path, capsys):
    args = args(tmp_path)
    before = sorted(str(p) for p in tmp_path.rglob("*"))
    code = exit_code(main, args)
    out, err = capsys.readouterr()
    assert code == 2 and len(err.strip().splitlines()) == 1 and err.startswith("error: ") and named in err, (code, err)
    assert "Traceback" not in out + err
    assert sorted(str(p) for p in tmp_path.rglob("*")) == before  # nothing written


@pytest.mark.parametrize("main, says", [(perf_main, "options (key=value)"),
                                        (results_main, "usage: python -m bench.results"),
                                        (matrix_main, "usage: python -m bench.matrix"),
                                        (report_main, "usage: python -m bench.report")])
def test_every_entry_point_has_a_working_help(main, says, capsys):
    assert exit_code(main, ["--help"]) == 0
    out, err = capsys.readouterr()
    assert says in out and err == ""


def test_make_checks_its_variables_before_anything_runs(tmp_path):
    """make sweep: JOBS and SWEEP are refused in one line before any job (no .hydra, no results);
    RESULTS is quoted (a folder with a space reaches bench as one argument); an empty RESULTS is refused
    by `make clean` (find without a folder would start from the clone itself)."""
    import subprocess

    root = Path(__file__).resolve().parents[1]
    results = tmp_path / "with space"

    def make(*args):
        return subprocess.run(["make", "--no-print-directory", "-C", str(root), *args], capture_output=True,
                              text=True, timeout=120)

    for jobs in ("0", "abc", "-1", "01", ""):
        result = make("sweep", f"JOBS={jobs}", "SWEEP=saturation", f"RESULTS={results}")
        assert result.returncode == 2 and f"error: JOBS={jobs} is not allowed" in result.stderr, result.stderr
    result = make("sweep", "SWEEP=nope", f"RESULTS={results}")
    assert result.returncode == 2 and "SWEEP=nope is not a preset" in result.stderr
    for target in ("sweep", "clean"):
        result = make(target, "RESULTS=", "SWEEP=saturation")
        assert result.returncode == 2 and "error: RESULTS is empty" in result.stderr, result.stderr
    assert not results.exists() and (root / "bench").is_dir()
    results.mkdir()
    result = make("report", f"RESULTS={results}")  # one argument: bench.report says it holds no runs
    assert result.returncode != 0 and f"results_dir='{results}' holds no runs" in result.stderr, result.stderr


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


# derandomized: the same 40 examples on every CI run (4,500 random ones passed when this was last
# widened; raise max_examples and drop derandomize to explore again)
@pytest.mark.slow
@settings(max_examples=40, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(overrides=st.lists(st.tuples(st.sampled_from(KEYS), VALUE).map("=".join), min_size=1, max_size=3))
def test_random_overrides_never_give_a_traceback(overrides, tmp_path, cli_inline):
    # a tiny valid base, so that overrides which happen to be valid train in milliseconds
    base = ["dataset=moons", "loss=bce", "seeds=[0]", "trainer.epochs=1", f"results_dir={tmp_path}/r"]
    code, out, err = cli_inline([*base, *overrides])
    assert "Traceback" not in out + err
    assert code in (0, 2), (overrides, code, err)
    if code == 2:
        assert len(err.strip().splitlines()) == 1 and err.startswith("error: "), (overrides, err)
