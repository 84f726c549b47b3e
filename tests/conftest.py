"""Shared fixtures: compose the real Hydra config (conf/) and shrink it for fast tests."""
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"
# small and fast: 2 seeds, few epochs, no progress bar
SMALL = ["seeds=[0,1]", "trainer.epochs=3", "progress=false"]


def pytest_collection_modifyitems(config, items):
    """The slow-marked tests first (otherwise in file order): `make test` runs one xdist worker per core,
    and a long test handed out last keeps one core busy while the others have nothing left to do."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


@pytest.fixture
def make_config(tmp_path):
    """make_config(*overrides) -> the composed config, results under this test's tmp_path."""

    def make(*overrides, small=True):
        with initialize_config_dir(config_dir=str(CONF), version_base=None):
            return compose("config", overrides=[f"results_dir={tmp_path / 'results'}",
                                                *(SMALL if small else []), *overrides])

    return make


@pytest.fixture
def cli(tmp_path):
    """cli(*args) -> CompletedProcess of `python -m bench.run ...` run in tmp_path (text output)."""

    def call(*args, module="bench.run", timeout=300):
        return subprocess.run([sys.executable, "-m", module, *args], cwd=tmp_path, capture_output=True,
                              text=True, timeout=timeout)

    return call


@pytest.fixture
def cli_inline(tmp_path, capsys, monkeypatch):
    """cli_inline(args) -> (exit code, stdout, stderr) of the real CLI entry (`bench.run.cli`, Hydra
    and all) called in-process from tmp_path: as `python -m bench.run progress=false ARGS` (as given
    with exact=True), without the start-up."""
    from bench.run import cli

    def call(args, exact=False):
        monkeypatch.chdir(tmp_path)
        monkeypatch.setattr(sys, "argv", ["bench.run", *([] if exact else ["progress=false"]), *args])
        try:
            cli()
            code = 0
        except SystemExit as exit:
            code = exit.code
        out = capsys.readouterr()
        return code, out.out, out.err

    return call


def built_once(tmp_path_factory, worker_id, name, make) -> Path:
    """The folder `make(folder)` fills, made once for the test session: under pytest-xdist the workers
    share it (in the session's base folder, under a file lock), so a report that takes ~10 s to build
    is not built once per worker; the tests only read it."""
    import fcntl
    import shutil

    if worker_id == "master":  # no xdist: a folder of this module's own
        folder = tmp_path_factory.mktemp(name)
        make(folder)
        return folder
    folder = tmp_path_factory.getbasetemp().parent / name  # the session's, shared by the workers
    done = folder.with_name(f"{name}.done")
    with open(f"{folder}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if not done.exists():
            shutil.rmtree(folder, ignore_errors=True)  # a worker that died mid-build
            folder.mkdir(parents=True)
            make(folder)
            done.touch()
    return folder

