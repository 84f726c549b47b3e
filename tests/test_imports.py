"""Each module of bench imports only downward: the graph of imports between bench's modules has no
circle (nor with the launcher bench registers with Hydra, hydra_plugins/lossbench_slurm).

Every import statement counts, wherever it stands: at module level, inside a function (a lazy import
upward is still a circle in the design's sense, only a deferred one), in a module `__getattr__`, under
`if __name__ == "__main__"`. `from bench.x import y` is an edge to bench.x.y when that is a module,
else to bench.x; a package's own `__init__` is not implied by importing one of its modules (Python
runs it first, but that is how packages work, not a design choice). Run this file to print the
circles: `python tests/test_imports.py`.
"""
import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# the project's own code: bench, and the launcher it registers with Hydra (which imports bench.slurm)
PACKAGES = ("bench", "hydra_plugins/lossbench_slurm")


def modules(root: Path, packages: tuple) -> dict:
    """{dotted module name: its file} of every .py file under the packages (folders below `root`)."""
    found = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def import_graph(root: Path = ROOT, packages: tuple = PACKAGES) -> dict:
    """{module: set of the packages' modules it imports anywhere in its text}."""
    known = modules(root, packages)

    def nearest(name: str) -> str | None:  # the module a dotted name lies in (bench.x.f -> bench.x)
        while name and name not in known:
            name = name.rpartition(".")[0]
        return name or None

    graph = {}
    for name, path in known.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets.update(nearest(alias.name) for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # from . import x, from ..y import z
                    up = package.split(".")[:len(package.split(".")) - node.level + 1]
                    base = ".".join(up + ([node.module] if node.module else []))
                for alias in node.names:
                    full = f"{base}.{alias.name}"
                    targets.add(full if full in known else nearest(base))
        graph[name] = {t for t in targets if t is not None and t != name}
    return graph


def circles(graph: dict) -> list:
    """The import circles: each strongly connected set of two or more modules, sorted (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(found)


def describe(graph: dict, circle: list) -> str:
    return "; ".join(f"{m} -> {', '.join(sorted(graph[m] & set(circle)))}" for m in circle)


def test_bench_has_no_import_circles():
    graph = import_graph()
    assert "bench.run" in graph and "bench.report.page" in graph  # the walk saw the whole tree
    found = circles(graph)
    assert not found, "import circles: " + " | ".join(describe(graph, c) for c in found)


def test_imports_anywhere_in_a_module_are_edges():
    """What the graph sees, on bench itself: a module-level import, a function-level one, a package's
    module named through the package, and a relative-free `from bench import x`."""
    graph = import_graph()
    assert "bench.optim" in graph["bench.step"]  # module level: from bench.optim import PlainSGD
    assert "bench.datasets" in graph["bench.run"]  # inside run(): from bench.datasets import load_dataset
    assert "bench.store" in graph["bench.run"]  # from bench import machine, store
    assert "bench.report.tables" in graph["bench.report"]  # the package's __init__ imports its module
    assert "bench.slurm" in graph["hydra_plugins.lossbench_slurm"]  # the launcher Hydra instantiates


def test_a_lazy_import_upward_is_found_as_a_circle(tmp_path):
    """The check itself: a package whose lower module imports the upper one inside a function, in a
    module __getattr__ or under __main__ has a circle, each; the same package without them has none."""
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "sub" / "__init__.py").write_text("")
    (package / "low.py").write_text("import math\n")
    (package / "high.py").write_text("from pkg import low\nfrom pkg.sub.leaf import f\n")
    (package / "sub" / "leaf.py").write_text("from .. import low\n\ndef f():\n    return low\n")
    assert circles(import_graph(tmp_path, ("pkg",))) == []
    upward = {
        "a function": "def g():\n    from pkg.high import f\n",
        "a module __getattr__": "def __getattr__(name):\n    import pkg.high\n    return pkg.high\n",
        "__main__": "if __name__ == '__main__':\n    from pkg import high\n",
    }
    for where, text in upward.items():
        (package / "low.py").write_text(text)
        assert circles(import_graph(tmp_path, ("pkg",))) == [["pkg.high", "pkg.low", "pkg.sub.leaf"]], where  # leaf -> low too
    (package / "low.py").write_text("from .sub import leaf\n")
    assert circles(import_graph(tmp_path, ("pkg",))) == [["pkg.low", "pkg.sub.leaf"]]  # relative imports count too


if __name__ == "__main__":
    graph = import_graph()
    found = circles(graph)
    for circle in found:
        print(describe(graph, circle))
    print(f"{len(found)} import circle(s) among {len(graph)} modules of {', '.join(PACKAGES)}")
    sys.exit(1 if found else 0)
