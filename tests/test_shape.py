"""The code's shape, as the developers' guide sets it: each module and function reads in one sitting."""

import ast
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MAX_MODULE_LINES, MAX_FUNCTION_LINES, MAX_SGN_LINES = 600, 80, 300


def _modules():
    for package in ("sgn", "models"):
        for folder, _, files in os.walk(os.path.join(ROOT, package)):
            for name in sorted(files):
                if name.endswith(".py"):
                    yield os.path.relpath(os.path.join(folder, name), ROOT)


@pytest.mark.parametrize("path", sorted(_modules()))
def test_modules_and_functions_read_in_one_sitting(path):
    text = open(os.path.join(ROOT, path), encoding="utf-8").read()
    assert text.count("\n") <= MAX_MODULE_LINES, f"{path}: {text.count(chr(10))} lines"
    long = [(node.name, node.end_lineno - node.lineno + 1) for node in ast.walk(ast.parse(text))
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
            and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES]
    assert not long, f"{path}: functions over {MAX_FUNCTION_LINES} lines: {long}"


def test_the_sgn_class_reads_as_the_algorithm():
    tree = ast.parse(open(os.path.join(ROOT, "sgn", "optim", "sgn.py"), encoding="utf-8").read())
    (cls,) = [n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "SGN"]
    assert cls.end_lineno - cls.lineno + 1 < MAX_SGN_LINES
    step = next(n for n in cls.body if isinstance(n, ast.FunctionDef) and n.name == "step")
    # The step asks its rules, not a list of flags: no branch on a hyperparameter key inside it.
    keys = {node.slice.value for node in ast.walk(step) if isinstance(node, ast.Subscript)
            and isinstance(node.slice, ast.Constant) and isinstance(node.slice.value, str)}
    assert keys <= {"ALPHA", "seconds_other", "budget", "damping"}, keys  # the rules' states by piece


def _imports(path):
    tree = ast.parse(open(os.path.join(ROOT, path), encoding="utf-8").read())
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            yield ("." * node.level) + (node.module or "")
        elif isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)


@pytest.mark.parametrize("path", [p for p in sorted(_modules()) if not p.startswith(os.path.join("sgn", "experiments"))
                                  and os.path.basename(p) not in ("experiment.py", "results.py")])
def test_the_method_does_not_import_the_scripts_code(path):
    # The scripts' flags and results files sit apart: a reader of the method never meets them.
    found = [name for name in _imports(path) if "experiment" in name or name.endswith("results")]
    assert not found, f"{path} imports {found}"


@pytest.mark.parametrize("old, new", [("sgn.experiment", "sgn.experiments"),
                                      ("sgn.results", "sgn.experiments.results")])
def test_the_moved_modules_warn_and_still_work(old, new):
    import importlib
    import sys
    sys.modules.pop(old, None)
    with pytest.warns(DeprecationWarning, match=new.replace(".", r"\.")):
        module = importlib.import_module(old)
    assert set(module.__all__) == set(importlib.import_module(new).__all__)
    assert all(getattr(module, name) is getattr(importlib.import_module(new), name) for name in module.__all__)
