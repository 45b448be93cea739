"""A plain training loop that records loss against measured training seconds.

Used by the example scripts and the demo.  Evaluation time is not counted as
training time, so curves against seconds compare optimizers fairly.

With an optimizer built with ``comm=`` (data-parallel on MPI), every rank calls :func:`fit` with
the whole dataset and the same seed: each takes its slice (:func:`sgn.distributed.shard_slice`) of
every global batch of the same shuffled order, rank 0's clock decides when to record and stop, and
only rank 0 shows the progress bar.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from ._validation import Interval, check_value
from .checkpoint import CheckpointError, atomic_write_bytes
from .distributed import shard_slice
from .optim import NonFiniteStepError

__all__ = ["HistoryLog", "evaluate", "fit", "history_path"]


def evaluate(opt: Any, x: np.ndarray, y: np.ndarray, batch_size: int = 10000) -> dict[str, float]:
    """Mean loss (and accuracy for classification) of ``opt``'s model on ``(x, y)``.

    Parameters
    ----------
    opt : SGN, SGD or Adam
        With ``comm``, every rank passes the whole split and evaluates its slice of each chunk.
    x, y : ndarray
        A dataset split; evaluated in chunks of ``batch_size`` samples.

    Returns
    -------
    dict
        ``{"loss": float}``, plus ``"acc"`` (fraction correct) when the targets are class indices.
    """
    total, correct, n = 0.0, 0, len(x)
    comm = getattr(opt, "comm", None)
    classification = np.asarray(y).dtype.kind in "iu" and np.asarray(y).ndim == 1
    for i in range(0, n, batch_size):
        xb, yb = x[i:i + batch_size], y[i:i + batch_size]
        size = len(xb)
        if comm is not None:  # opt.cost reduces the loss over the ranks' slices
            part = shard_slice(size, comm.Get_rank(), comm.Get_size())
            xb, yb = xb[part], yb[part]
        loss, pred = opt.cost(xb, yb)
        total += loss * size
        if classification:
            correct += int(np.sum(pred == yb))
    if comm is not None and classification:
        correct = comm.allreduce(correct)
    out = {"loss": total / n}
    if classification:
        out["acc"] = correct / n
    return out


def fit(opt: Any, x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray,
        epochs: int = 1, batch_size: int = 1000, time_budget: float | None = None,
        eval_every: float | None = 5.0, seed: int = 0, progress: bool = False,
        label: str = "", checkpoint_every: int | None = None, checkpoint_path: str | None = None,
        resume: str | None = None, x_val: np.ndarray | None = None, y_val: np.ndarray | None = None,
        patience: int | None = None, metrics: dict[str, Callable[[Any, np.ndarray, np.ndarray], float]] | None = None,
        stop_when: Callable[[dict[str, Any]], bool] | None = None) -> list[dict[str, Any]]:
    """Train ``opt`` on shuffled mini-batches and record a timeline.

    Parameters
    ----------
    opt : SGN, SGD or Adam
        The optimizer (its model is trained in place).  With ``comm``, data-parallel: see the
        module's docstring.
    x_train, y_train, x_test, y_test : ndarray
        The data splits.
    epochs : int
        Maximum number of passes over the training set.
    batch_size : int
        Mini-batch size; the last batch of an epoch may be smaller.
    time_budget : float or None
        Stop once this many seconds of training (evaluation excluded) have passed.
    eval_every : float or None
        Record every this many training seconds; an epoch's end is recorded too when that
        epoch took at least this long.  None: record at each epoch's end only.
    seed : int
        Seed of the data order.
    progress : bool
        Show a tqdm progress bar.
    label : str
        Description for the progress bar.
    checkpoint_every : int or None
        Save a checkpoint (optimizer state, data-order RNG, position and timeline)
        to ``checkpoint_path`` every this many steps, atomically; the optimizer's history
        goes to :func:`history_path` beside it (:class:`HistoryLog`).
    checkpoint_path : str or None
        Where checkpoints go.
    resume : str or None
        A checkpoint written by this function: training continues exactly where
        it stopped (same remaining batches, same steps).
    x_val, y_val : ndarray, optional
        A validation split: every record gains ``val_loss`` (and ``val_acc``).
    patience : int, optional
        Early stopping (needs ``x_val``): stop once ``val_loss`` has not improved on its best
        for this many records in a row, and put back the θ of the best record.  The last
        record is then that θ's, marked ``"early_stopped": True`` (with the seconds and steps
        spent).
    metrics : dict of str to callable, optional
        ``{name: fn(opt, x, y) -> float}``, evaluated on the test split at every record and
        recorded as ``test_<name>`` (the recurrent problems' ``wrong_fraction``).
    stop_when : callable, optional
        ``stop_when(record) -> bool``, asked after every record: True ends training there (that
        record is the last; a problem solved, a target reached).

    Returns
    -------
    list of dict
        Records ``{seconds, epoch, iteration, train_loss, test_loss}`` (+ ``test_acc``
        for classification, ``val_loss``/``val_acc`` with a validation split), the first at
        0 seconds, the last at the end of training.
        When the optimizer gives up on non-finite steps (:class:`NonFiniteStepError`),
        training stops and the last record carries ``"diverged": True``.
    """
    _check_fit_arguments(epochs, batch_size, time_budget, eval_every, checkpoint_every, checkpoint_path,
                         x_val, y_val, patience)
    run = _Run(opt, (x_train, y_train), (x_test, y_test), None if x_val is None else (x_val, y_val),
               batch_size, eval_every, seed, patience, checkpoint_path)
    run.metrics, run.stop_when = dict(metrics or {}), stop_when
    stop = run.start(resume, time_budget)
    bar = _progress_bar(opt, progress, time_budget, epochs, run.steps_per_epoch, run.pos, label)
    while run.pos["epoch"] <= epochs and not stop:
        stop = run.epoch(time_budget, checkpoint_every, bar) or run.end_epoch(epochs)
    run.finish(stop)
    if checkpoint_every is not None:
        run.checkpoint()
    if bar is not None:
        bar.close()
    return run.pos["timeline"]


def _check_fit_arguments(epochs: Any, batch_size: Any, time_budget: Any, eval_every: Any, checkpoint_every: Any,
                         checkpoint_path: Any, x_val: Any, y_val: Any, patience: Any) -> None:
    check_value("epochs", epochs, Interval("int", 1, None), "fit")
    check_value("batch_size", batch_size, Interval("int", 1, None), "fit")
    if time_budget is not None:
        check_value("time_budget", time_budget, Interval("real", 0, None, "neither"), "fit")
    if eval_every is not None:
        check_value("eval_every", eval_every, Interval("real", 0, None, "neither"), "fit")
    if checkpoint_every is not None:
        check_value("checkpoint_every", checkpoint_every, Interval("int", 1, None), "fit")
        if checkpoint_path is None:
            raise ValueError("fit: checkpoint_every needs a checkpoint_path")
    if (x_val is None) != (y_val is None):
        raise ValueError("fit: x_val and y_val go together")
    if patience is not None:
        check_value("patience", patience, Interval("int", 1, None), "fit")
        if x_val is None:
            raise ValueError("fit: patience (early stopping) needs a validation split, x_val and y_val")


def _progress_bar(opt: Any, progress: bool, time_budget: float | None, epochs: int, steps_per_epoch: int,
                  pos: dict[str, Any], label: str) -> Any:
    """A tqdm bar on rank 0 (training seconds with a time budget, otherwise steps), or None."""
    comm = getattr(opt, "comm", None)
    if not progress or (comm is not None and comm.Get_rank() != 0):
        return None
    from tqdm.auto import tqdm
    total = float(time_budget) if time_budget is not None else epochs * steps_per_epoch
    # Training seconds are floats: show them with one decimal, not as raw floats.
    fmt = ("{l_bar}{bar}| {n:.1f}/{total:.1f} s [{elapsed}<{remaining}{postfix}]" if time_budget is not None
           else None)
    return tqdm(total=total, desc=label or type(opt).__name__, unit="s" if time_budget else "step",
                leave=False, mininterval=0.5, bar_format=fmt,
                initial=min(pos["seconds"], total) if time_budget else pos["iteration"])


class _Run:
    """The state of one :func:`fit`: the position in the data, the timeline and early stopping."""

    def __init__(self, opt: Any, train: tuple, test: tuple, val: tuple | None, batch_size: int,
                 eval_every: float | None, seed: int, patience: int | None, checkpoint_path: str | None) -> None:
        self.opt, self.train, self.test, self.val = opt, train, test, val
        self.batch_size, self.eval_every, self.patience = batch_size, eval_every, patience
        self.comm = getattr(opt, "comm", None)
        self.rank, self.world = (self.comm.Get_rank(), self.comm.Get_size()) if self.comm is not None else (0, 1)
        self.rng = np.random.default_rng(seed)
        self.n = len(train[0])
        self.steps_per_epoch = -(-self.n // batch_size)
        # Everything that decides what happens next, so that a checkpoint can restore it.
        self.pos: dict[str, Any] = {"epoch": 1, "start": 0, "seconds": 0.0, "iteration": 0, "next_eval": None,
                                    "epoch_start": 0.0, "timeline": [], "best_val": None, "bad_records": 0}
        self.perm = None
        self.best_theta = None  # θ at the best validation loss so far (early stopping)
        self.checkpoint_path = checkpoint_path
        self.history_log = HistoryLog(history_path(checkpoint_path)) if checkpoint_path is not None else None
        self.metrics: dict[str, Callable[[Any, np.ndarray, np.ndarray], float]] = {}
        self.stop_when: Callable[[dict[str, Any]], bool] | None = None

    def start(self, resume: str | None, time_budget: float | None) -> bool:
        """The first record, or the state of the checkpoint ``resume``; True when nothing is left to do."""
        if resume is not None:
            self.resume(resume)
        else:
            self.record(0)
            self.after_record()
            self.pos["next_eval"] = self.eval_every if self.eval_every else None
        pos = self.pos
        return ((time_budget is not None and pos["seconds"] >= time_budget) or bool(pos.get("early_stopped"))
                or bool(pos.get("goal_reached")))

    def resume(self, path: str) -> None:
        extra, arrays = self.opt.load(path)
        self.pos = {"best_val": None, "bad_records": 0, **extra["fit"]}
        self.perm = arrays.get("perm")
        self.best_theta = arrays.get("best_theta")
        self.rng.bit_generator.state = self.pos.pop("rng_state")
        self.pos.setdefault("epoch_start", None)  # a checkpoint of an older release: every epoch end recorded
        if self.history_log is not None and self.rank == 0:
            self.history_log.restore(self.opt, path)

    def record(self, epoch: float) -> None:
        train, test = evaluate(self.opt, *self.train), evaluate(self.opt, *self.test)
        rec = {"seconds": self.pos["seconds"], "epoch": epoch, "iteration": self.pos["iteration"],
               "train_loss": train["loss"], "test_loss": test["loss"]}
        if "acc" in test:
            rec["test_acc"] = test["acc"]
        for name, metric in self.metrics.items():
            rec[f"test_{name}"] = float(metric(self.opt, *self.test))
        if self.val is not None:
            val = evaluate(self.opt, *self.val)
            rec["val_loss"] = val["loss"]
            if "acc" in val:
                rec["val_acc"] = val["acc"]
        self.pos["timeline"].append(rec)

    def after_record(self) -> bool:
        """Ask early stopping and ``stop_when`` about the newest record; True when training must stop."""
        if self.patience_spent():
            self.pos["early_stopped"] = True
            return True
        if self.stop_when is not None and self.stop_when(self.pos["timeline"][-1]):
            self.pos["goal_reached"] = True
            return True
        return False

    def patience_spent(self) -> bool:
        """After a record: keep the best θ by validation loss; True once ``patience`` records missed it."""
        if self.patience is None:
            return False
        pos, value = self.pos, self.pos["timeline"][-1]["val_loss"]
        if pos["best_val"] is None or value < pos["best_val"]:
            pos["best_val"], pos["bad_records"] = value, 0
            self.best_theta = self.opt.theta.get_value().copy()
            return False
        pos["bad_records"] += 1
        return pos["bad_records"] >= self.patience

    def checkpoint(self) -> None:
        arrays = {} if self.perm is None else {"perm": self.perm}
        if self.best_theta is not None:
            arrays["best_theta"] = self.best_theta
        if self.rank == 0:  # the log first: a crash between the two leaves lines a resume drops
            self.history_log.append(self.opt)
        self.opt.save(self.checkpoint_path, extra={"fit": {**self.pos, "rng_state": self.rng.bit_generator.state}},
                      extra_arrays=arrays)

    def epoch(self, time_budget: float | None, checkpoint_every: int | None, bar: Any) -> bool:
        """The rest of the current epoch's steps; True when training must stop."""
        pos = self.pos
        if self.perm is None:
            self.perm = self.rng.permutation(self.n)
        while pos["start"] < self.n:
            idx = self.perm[pos["start"]:pos["start"] + self.batch_size]
            mine = idx[shard_slice(len(idx), self.rank, self.world)] if self.comm is not None else idx
            t0 = time.perf_counter()
            try:
                loss = self.opt.step(self.train[0][mine], self.train[1][mine])[0]
            except NonFiniteStepError as exc:
                # A diverged run is a result, not a crash: keep its timeline and say so.  (With comm
                # every rank raises it at the same step: the decision is taken on reduced values.)
                pos["seconds"] += _elapsed(t0, self.comm)
                pos["diverged"] = str(exc)
                return True
            pos["seconds"] += _elapsed(t0, self.comm)
            pos["iteration"] += 1
            pos["start"] += len(idx)
            if bar is not None:
                bar.update(min(pos["seconds"], bar.total) - bar.n if time_budget is not None else 1)
                bar.set_postfix(loss=f"{loss:.4g}", epoch=pos["epoch"], refresh=False)
            if time_budget is not None and pos["seconds"] >= time_budget:
                return True
            if pos["next_eval"] is not None and pos["seconds"] >= pos["next_eval"]:
                self.record(pos["epoch"] - 1 + pos["start"] / self.n)
                pos["next_eval"] = pos["seconds"] + self.eval_every
                if self.after_record():
                    return True
            if checkpoint_every is not None and pos["iteration"] % checkpoint_every == 0:
                self.checkpoint()
        return False

    def end_epoch(self, epochs: int) -> bool:
        """Record an epoch's end where due and move to the next epoch; True when early stopping ends training."""
        pos = self.pos
        # Short epochs are seen on the eval_every grid; the last one always ends the timeline.
        long_epoch = (self.eval_every is None or pos["epoch_start"] is None
                      or pos["seconds"] - pos["epoch_start"] >= self.eval_every)
        if long_epoch or pos["epoch"] == epochs:
            self.record(pos["epoch"])
            if self.after_record():
                return True
        pos["epoch"] += 1
        pos["epoch_start"] = pos["seconds"]
        pos["start"] = 0
        self.perm = None
        return False

    def finish(self, stopped: bool) -> None:
        """The last record of a run that stopped early: the best θ's (early stopping) or the current one's."""
        pos = self.pos
        if pos.get("early_stopped") and not pos["timeline"][-1].get("early_stopped"):
            # The best θ back, and its losses as the last record (at the seconds and steps spent).
            self.opt.theta.set_value(self.best_theta.astype(self.opt.theta.dtype))
            self.record(round(pos["iteration"] / self.steps_per_epoch, 6))
            pos["timeline"][-1]["early_stopped"] = True
        elif stopped and not pos.get("early_stopped") and not pos.get("goal_reached"):
            self.record(round(pos["iteration"] / self.steps_per_epoch, 6))
            if "diverged" in pos:
                pos["timeline"][-1]["diverged"] = True


def history_path(checkpoint_path: str) -> str:
    """Where :func:`fit` logs the optimizer's history beside ``checkpoint_path``: ``<stem>.history.jsonl``."""
    return os.path.splitext(str(checkpoint_path))[0] + ".history.jsonl"


class HistoryLog:
    """An optimizer's per-step :attr:`history`, appended to a JSON-lines file at each checkpoint.

    Checkpoints hold the optimizer's state only, so their size does not grow with the run; the history,
    which does, is written as a log: each checkpoint appends the steps since the last one (one line
    each, ``{"step": t, key: value, ...}``), and a resume reads back the steps up to the checkpoint's
    (dropping any written after it) into ``opt.history``.
    """

    def __init__(self, path: str) -> None:
        self.path, self.written = path, 0

    def append(self, opt: Any) -> None:
        history = opt.history
        n = len(next(iter(history.values()), []))
        first = opt.tot_iter - n  # the step before the history's first entry (after a resume: its offset)
        lines = [json.dumps({"step": first + i + 1, **{k: _plain(v[i]) for k, v in history.items()}}) + "\n"
                 for i in range(self.written, n)]
        mode = "a" if self.written else "w"  # a fresh run (or one resumed without a log) starts the file
        with open(self.path, mode, encoding="utf-8") as fh:
            fh.writelines(lines)
            fh.flush()
            os.fsync(fh.fileno())
        self.written = n

    def restore(self, opt: Any, checkpoint: str) -> None:
        """Put the logged steps up to the checkpoint's back into ``opt.history``; the file keeps only those."""
        if not os.path.exists(self.path):
            return
        with open(self.path, encoding="utf-8") as fh:
            rows = [json.loads(line) for line in fh if line.strip()]
        rows = [r for r in rows if r["step"] <= opt.tot_iter]
        steps = [r["step"] for r in rows]
        if steps and steps != list(range(steps[0], opt.tot_iter + 1)):
            raise CheckpointError(f"{self.path!r} does not hold the history of the steps up to {opt.tot_iter} of "
                                  f"{checkpoint!r}; move it away to resume without the earlier history")
        for key, values in opt.history.items():
            values[:0] = [r.get(key) for r in rows]
        text = "".join(json.dumps(r) + "\n" for r in rows)
        atomic_write_bytes(self.path, lambda fh: fh.write(text.encode("utf-8")))
        self.written = len(rows)


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def _elapsed(t0: float, comm: Any) -> float:
    """Seconds since ``t0``; with ``comm``, rank 0's, so that every rank takes the same decisions."""
    seconds = time.perf_counter() - t0
    return seconds if comm is None else comm.bcast(seconds, root=0)
