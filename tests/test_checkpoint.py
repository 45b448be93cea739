"""save/load: exact resume, model and format checks, atomic writes, corrupt files."""

import os

import numpy as np
import pytensor.tensor as pt
import pytest

from sgn import SGD, SGN, CheckpointError, losses
from sgn.checkpoint import load_checkpoint, save_checkpoint
from sgn.models import mlp

# Arithmetic against references, on PyTensor's Python implementations (tests/conftest.py).
pytestmark = pytest.mark.python_ops


HP = {"TR": True, "MAX_CG_ITERS": 3, "BETA": 0.5, "RHO_DECAY": "const", "PRINT_LEVEL": 0}


def _make(solver, hp, hs=(6,), seed=0, **rules):
    X, y = pt.matrix("X"), pt.ivector("y")
    net = mlp(X, y, 4, 3, {"hs": list(hs)}, seed=seed)
    return solver(X, y, net, losses.softmax_cross_entropy(net.out_sym, y), hp, **rules)


def _batches(n, seed=0):
    rng = np.random.default_rng(seed)
    w = rng.normal(size=(4, 3))
    out = []
    for _ in range(n):
        x = rng.normal(size=(30, 4))
        out.append((x, (x @ w).argmax(1)))
    return out


@pytest.mark.parametrize("solver,hp", [(SGN, HP), (SGD, {"LR0": 0.3, "MOMENTUM": 0.9, "SCHEDULER": "cos",
                                                         "K": 6})], ids=["SGN", "SGD"])
def test_resume_after_load_is_bit_identical(tmp_path, solver, hp):
    batches = _batches(6)
    ref = _make(solver, hp)
    ref_losses = [ref.step(*b)[0] for b in batches]

    first = _make(solver, hp)
    for b in batches[:3]:
        first.step(*b)
    path = tmp_path / "ckpt.npz"
    first.save(path)

    resumed = _make(solver, hp, seed=99)  # different initial θ: load must overwrite it
    resumed.load(path)
    resumed_losses = [resumed.step(*b)[0] for b in batches[3:]]
    assert resumed_losses == ref_losses[3:]
    assert np.array_equal(resumed.theta.get_value(), ref.theta.get_value())
    assert resumed.tot_iter == ref.tot_iter == 6
    # Everything the steps computed is identical; only the wall-clock seconds SGN records differ.  The
    # history is a log of this process's steps: a checkpoint does not carry it.
    def computed(history, first=0):
        return {k: v[first:] for k, v in history.items() if not k.startswith("seconds_")}
    assert computed(resumed.history) == computed(ref.history, 3)
    assert all(len(v) == 3 for v in resumed.history.values())


@pytest.mark.parametrize("solver,hp", [(SGN, HP), (SGD, {"LR0": 0.3})], ids=["SGN", "SGD"])
def test_checkpoint_size_does_not_grow_with_the_run(tmp_path, solver, hp):
    # 0.4 saved the per-step history in every checkpoint (64 KB after 140 sine steps, 180 KB after 560).
    opt = _make(solver, hp)
    sizes = []
    for batch in _batches(40):
        opt.step(*batch)
        if opt.tot_iter in (5, 40):
            opt.save(tmp_path / "c.npz")
            sizes.append(os.path.getsize(tmp_path / "c.npz"))
    assert sizes[1] <= sizes[0] + 16  # the same state; a number's digits may differ


def test_load_rejects_another_model_or_settings(tmp_path):
    path = tmp_path / "c.npz"
    opt = _make(SGN, HP)
    opt.step(*_batches(1)[0])
    opt.save(path)
    with pytest.raises(CheckpointError, match="n_params"):
        _make(SGN, HP, hs=(7,)).load(path)
    with pytest.raises(CheckpointError, match="optimizer"):
        _make(SGD, {}).load(path)
    with pytest.raises(CheckpointError, match=r"hyper_par \['MAX_CG_ITERS', 'MIN_CG_ITERS'\]"):
        _make(SGN, {**HP, "MAX_CG_ITERS": 4}).load(path)
    # Verbosity may differ.
    _make(SGN, {**HP, "PRINT_LEVEL": 2}).load(path)


def test_a_file_of_sgn_0_4_is_refused_with_what_it_lacks(tmp_path):
    # 0.4 filled a missing key from the current defaults: a CG_ADAPT file from before the race resumed
    # under the race.  A file without rule records now says so instead of resuming under a guess.
    path, old = tmp_path / "c.npz", tmp_path / "old.npz"
    opt = _make(SGN, HP)
    opt.step(*_batches(1)[0])
    opt.save(path)
    arrays, meta = load_checkpoint(path)
    del meta["rules"]
    meta["hyper_par"]["CG_COST"] = "auto"  # a 0.4 key
    save_checkpoint(old, arrays, {k: v for k, v in meta.items() if k != "format_version"})
    with pytest.raises(CheckpointError, match=r"sgn < 0.5.0.*records no rules"):
        _make(SGN, HP, seed=5).load(old)


@pytest.mark.python_ops
def test_a_file_resumes_only_under_the_rules_it_was_trained_with(tmp_path):
    from sgn.rules import RaceBudget
    path = tmp_path / "c.npz"
    raced = {k: v for k, v in HP.items() if k not in ("MAX_CG_ITERS", "MIN_CG_ITERS", "K_CG")}
    opt = _make(SGN, raced, budget=RaceBudget(8, start=3))
    opt.step(*_batches(1)[0])
    opt.save(path)
    with pytest.raises(CheckpointError, match=r"budget rule RaceBudget version 1 \(config \{'cap': 8, 'start': 3"):
        _make(SGN, raced, budget=RaceBudget(8, start=5)).load(path)
    with pytest.raises(CheckpointError, match=r"budget rule RaceBudget version 1 .* FixedBudget version 1"):
        _make(SGN, raced).load(path)
    resumed = _make(SGN, raced, seed=5, budget=RaceBudget(8, start=3))
    resumed.load(path)
    assert repr(resumed.rule_states) == repr(opt.rule_states)  # NaN fields: compared as text


def test_corrupt_truncated_and_foreign_files(tmp_path):
    path = tmp_path / "c.npz"
    opt = _make(SGN, HP)
    opt.save(path)
    raw = path.read_bytes()
    truncated = tmp_path / "t.npz"
    truncated.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        opt.load(truncated)
    garbage = tmp_path / "g.npz"
    garbage.write_bytes(b"not a zip file at all")
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        opt.load(garbage)
    foreign = tmp_path / "f.npz"
    np.savez(foreign, theta=np.zeros(3))
    with pytest.raises(CheckpointError, match="no metadata"):
        opt.load(foreign)
    with pytest.raises(CheckpointError, match="does not exist"):
        opt.load(tmp_path / "missing.npz")
    old = tmp_path / "old.npz"
    save_checkpoint(old, {"theta": np.zeros(3)}, {"format_version": 99})
    with pytest.raises(CheckpointError, match="format version 99"):
        load_checkpoint(old)


def test_crash_during_save_keeps_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "c.npz"
    opt = _make(SGN, HP)
    opt.save(path)
    before = path.read_bytes()
    opt.step(*_batches(1)[0])

    def exploding_savez(fh, **arrays):
        fh.write(b"partial")
        raise KeyboardInterrupt("killed mid-save")
    monkeypatch.setattr(np, "savez", exploding_savez)
    with pytest.raises(KeyboardInterrupt):
        opt.save(path)
    assert path.read_bytes() == before
    assert [f for f in os.listdir(tmp_path) if f.startswith(".tmp-")] == []


def test_no_pickle_in_checkpoints(tmp_path):
    with pytest.raises(TypeError, match="no pickle"):
        save_checkpoint(tmp_path / "x.npz", {"bad": np.array([object()])}, {})
