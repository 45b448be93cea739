"""The documentation: the Sphinx build (warnings are errors) and every Python snippet in it."""

import ast
import os
import re
import subprocess
import sys

import numpy as np
import pytest
from conftest import require_dataset

from sgn.optimizers import ADAM_DEFAULTS, SGD_DEFAULTS, SGN_DEFAULTS

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS = os.path.join(ROOT, "docs")
FENCE = re.compile(r"^```python\n(.*?)^```$", re.S | re.M)


def _pages_with_snippets():
    pages = [os.path.join(DOCS, f) for f in sorted(os.listdir(DOCS)) if f.endswith(".md")]
    pages.append(os.path.join(ROOT, "README.md"))
    return [p for p in pages if FENCE.search(open(p, encoding="utf-8").read())]


def test_sphinx_build_has_no_warnings(tmp_path):
    # The same command as `make docs`.
    proc = subprocess.run([sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html", DOCS,
                           str(tmp_path / "html")], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for page in ("index", "installation", "method", "hyperparameters", "models", "datasets", "examples",
                 "results", "performance", "differences", "distributed", "api"):
        assert (tmp_path / "html" / f"{page}.html").is_file(), page
    api = (tmp_path / "html" / "api.html").read_text(encoding="utf-8")
    for name in ("sgn.SGN.step", "sgn.SGD", "sgn.models.mlp", "sgn.models.vgg", "sgn.datasets.load_cifar10",
                 "sgn.gauss_newton.gauss_newton_product", "sgn.cg.conjugate_gradient",
                 "sgn.distributed.shard_slice"):
        assert f'id="{name}"' in api, f"{name} missing from the API reference"


def test_makefile_docs_target_treats_warnings_as_errors():
    makefile = open(os.path.join(ROOT, "Makefile"), encoding="utf-8").read()
    assert re.search(r"^docs:.*\n\t\$\(PY\) -m sphinx -W --keep-going -b html docs ", makefile, re.M)


# A page's snippets that call these loaders need that dataset (found as a user's would be).
_LOADER_DATASETS = {"load_mnist(": "mnist", "load_boston(": "boston", "fashion=True": "fashion_mnist",
                    "load_cifar10(": "cifar10"}


@pytest.mark.parametrize("page", _pages_with_snippets(), ids=os.path.basename)
def test_python_snippets_run(page, tmp_path, monkeypatch, capsys):
    """Each page's ```python blocks run in order, in one namespace, as a reader would paste them."""
    blocks = FENCE.findall(open(page, encoding="utf-8").read())
    code_text = "".join(blocks)
    data_root = tmp_path / "data"
    data_root.mkdir()
    for call, name in _LOADER_DATASETS.items():
        if call in code_text:
            # The loaders find the dataset in $SGN_DATA_DIR/<name>, as an offline user's would.
            os.symlink(require_dataset(name), data_root / name)
    monkeypatch.setenv("SGN_DATA_DIR", str(data_root))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    namespace = {"__name__": "__docs__"}
    for i, code in enumerate(blocks):
        exec(compile(code, f"{os.path.basename(page)}[block {i}]", "exec"), namespace)
    out = capsys.readouterr().out
    if os.path.basename(page) == "installation.md":
        # The quickstart trains the paper's MNIST MLP for three epochs: it must actually learn.
        assert namespace["accuracy"] > 0.9, out
        assert out.count("test accuracy") == 3
    if os.path.basename(page) == "distributed.md":  # one process: COMM_WORLD has one rank
        opt, h = namespace["opt"], namespace["opt"].history
        calls = sum(1 + c + e for c, e in zip(h["max_cg_iters"], h["ls_evals"]))
        assert opt.reduction_stats.calls == calls and f"after 5 steps, {calls} all-reduces" in out, out
    if os.path.basename(page) == "models.md":
        assert "16750" in out and "44426" in out


def _table_rows(text, heading):
    section = text.split(heading, 1)[1].split("\n## ", 1)[0]
    return {m.group(1): m.group(2) for m in re.finditer(r"^\| `(\w+)` \| `([^`]*)` \|", section, re.M)}


@pytest.mark.parametrize("heading, defaults", [("## SGN", SGN_DEFAULTS), ("## SGD", SGD_DEFAULTS),
                                                 ("## Adam", ADAM_DEFAULTS)])
def test_hyperparameter_reference_lists_every_key_with_its_default(heading, defaults):
    rows = _table_rows(open(os.path.join(DOCS, "hyperparameters.md"), encoding="utf-8").read(), heading)
    assert sorted(rows) == sorted(defaults)
    for key, value in defaults.items():
        documented = ast.literal_eval(rows[key])
        assert documented == value and type(documented) is type(value), \
            f"{key}: documented {rows[key]}, default {value!r}"


def test_dataset_page_names_every_loader():
    from sgn import datasets
    text = open(os.path.join(DOCS, "datasets.md"), encoding="utf-8").read()
    for name in datasets.__all__:
        if name.startswith("load_"):
            assert f"`{name}(" in text, name
    for folder in ("boston", "mnist", "fashion_mnist", "cifar10"):
        assert f"| `{folder}` |" in text, folder
    assert np.all([f in text for f in ("SGN_DATA_DIR", "~/.cache/sgn")])
