"""A plain training loop that records loss against measured training seconds.

Used by the example scripts and the demo.  Evaluation time is not counted as
training time, so curves against seconds compare optimizers fairly.

With an optimizer built with ``comm=`` (data-parallel on MPI), every rank calls :func:`fit` with
the whole dataset and the same seed: each takes its slice (:func:`sgn.distributed.shard_slice`) of
every global batch of the same shuffled order, rank 0's clock decides when to record and stop, and
only rank 0 shows the progress bar.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from ._validation import Interval, check_value
from .distributed import shard_slice
from .optimizers import NonFiniteStepError

__all__ = ["evaluate", "fit"]


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
        patience: int | None = None) -> list[dict[str, Any]]:
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
        to ``checkpoint_path`` every this many steps, atomically.
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

    Returns
    -------
    list of dict
        Records ``{seconds, epoch, iteration, train_loss, test_loss}`` (+ ``test_acc``
        for classification, ``val_loss``/``val_acc`` with a validation split), the first at
        0 seconds, the last at the end of training.
        When the optimizer gives up on non-finite steps (:class:`NonFiniteStepError`),
        training stops and the last record carries ``"diverged": True``.
    """
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
    comm = getattr(opt, "comm", None)
    rank, world = (comm.Get_rank(), comm.Get_size()) if comm is not None else (0, 1)
    rng = np.random.default_rng(seed)
    n = len(x_train)
    steps_per_epoch = -(-n // batch_size)
    # Everything that decides what happens next, so that a checkpoint can restore it.
    pos: dict[str, Any] = {"epoch": 1, "start": 0, "seconds": 0.0, "iteration": 0, "next_eval": None,
                           "epoch_start": 0.0, "timeline": [], "best_val": None, "bad_records": 0}
    perm = None
    best_theta = None  # θ at the best validation loss so far (early stopping)
    if resume is not None:
        extra, arrays = opt.load(resume)
        pos = {"best_val": None, "bad_records": 0, **extra["fit"]}
        perm = arrays.get("perm")
        best_theta = arrays.get("best_theta")
        rng.bit_generator.state = pos.pop("rng_state")
        pos.setdefault("epoch_start", None)  # a checkpoint of an older release: every epoch end recorded

    def record(epoch: float) -> None:
        train = evaluate(opt, x_train, y_train)
        test = evaluate(opt, x_test, y_test)
        rec = {"seconds": pos["seconds"], "epoch": epoch, "iteration": pos["iteration"],
               "train_loss": train["loss"], "test_loss": test["loss"]}
        if "acc" in test:
            rec["test_acc"] = test["acc"]
        if x_val is not None:
            val = evaluate(opt, x_val, y_val)
            rec["val_loss"] = val["loss"]
            if "acc" in val:
                rec["val_acc"] = val["acc"]
        pos["timeline"].append(rec)

    def patience_spent() -> bool:
        """After a record: keep the best θ by validation loss; True once ``patience`` records missed it."""
        nonlocal best_theta
        if patience is None:
            return False
        value = pos["timeline"][-1]["val_loss"]
        if pos["best_val"] is None or value < pos["best_val"]:
            pos["best_val"], pos["bad_records"] = value, 0
            best_theta = opt.theta.get_value().copy()
            return False
        pos["bad_records"] += 1
        return pos["bad_records"] >= patience

    def checkpoint() -> None:
        arrays = {} if perm is None else {"perm": perm}
        if best_theta is not None:
            arrays["best_theta"] = best_theta
        opt.save(checkpoint_path, extra={"fit": {**pos, "rng_state": rng.bit_generator.state}},
                 extra_arrays=arrays)

    if resume is None:
        record(0)
        patience_spent()
        pos["next_eval"] = eval_every if eval_every else None
    bar = None
    if progress and rank == 0:
        from tqdm.auto import tqdm
        # With a time budget the bar counts training seconds, otherwise steps.
        total = float(time_budget) if time_budget is not None else epochs * steps_per_epoch
        # Training seconds are floats: show them with one decimal, not as raw floats.
        fmt = ("{l_bar}{bar}| {n:.1f}/{total:.1f} s [{elapsed}<{remaining}{postfix}]" if time_budget is not None
               else None)
        bar = tqdm(total=total, desc=label or type(opt).__name__, unit="s" if time_budget else "step",
                   leave=False, mininterval=0.5, bar_format=fmt,
                   initial=min(pos["seconds"], total) if time_budget else pos["iteration"])
    out_of_time = (time_budget is not None and pos["seconds"] >= time_budget) or bool(pos.get("early_stopped"))
    while pos["epoch"] <= epochs and not out_of_time:
        if perm is None:
            perm = rng.permutation(n)
        while pos["start"] < n:
            idx = perm[pos["start"]:pos["start"] + batch_size]
            mine = idx[shard_slice(len(idx), rank, world)] if comm is not None else idx
            t0 = time.perf_counter()
            try:
                loss = opt.step(x_train[mine], y_train[mine])[0]
            except NonFiniteStepError as exc:
                # A diverged run is a result, not a crash: keep its timeline and say so.  (With comm
                # every rank raises it at the same step: the decision is taken on reduced values.)
                pos["seconds"] += _elapsed(t0, comm)
                pos["diverged"] = str(exc)
                out_of_time = True
                break
            pos["seconds"] += _elapsed(t0, comm)
            pos["iteration"] += 1
            pos["start"] += len(idx)
            if bar is not None:
                bar.update(min(pos["seconds"], bar.total) - bar.n if time_budget is not None else 1)
                bar.set_postfix(loss=f"{loss:.4g}", epoch=pos["epoch"], refresh=False)
            if time_budget is not None and pos["seconds"] >= time_budget:
                out_of_time = True
                break
            if pos["next_eval"] is not None and pos["seconds"] >= pos["next_eval"]:
                record(pos["epoch"] - 1 + pos["start"] / n)
                pos["next_eval"] = pos["seconds"] + eval_every
                if patience_spent():
                    pos["early_stopped"] = True
                    out_of_time = True
                    break
            if checkpoint_every is not None and pos["iteration"] % checkpoint_every == 0:
                checkpoint()
        if out_of_time:
            break
        # Short epochs are seen on the eval_every grid; the last one always ends the timeline.
        long_epoch = (eval_every is None or pos["epoch_start"] is None
                      or pos["seconds"] - pos["epoch_start"] >= eval_every)
        if long_epoch or pos["epoch"] == epochs:
            record(pos["epoch"])
            if patience_spent():
                pos["early_stopped"] = True
                out_of_time = True
                break
        pos["epoch"] += 1
        pos["epoch_start"] = pos["seconds"]
        pos["start"] = 0
        perm = None
    if pos.get("early_stopped") and not pos["timeline"][-1].get("early_stopped"):
        # The best θ back, and its losses as the last record (at the seconds and steps spent).
        opt.theta.set_value(best_theta.astype(opt.theta.dtype))
        record(round(pos["iteration"] / steps_per_epoch, 6))
        pos["timeline"][-1]["early_stopped"] = True
    elif out_of_time and not pos.get("early_stopped"):
        record(round(pos["iteration"] / steps_per_epoch, 6))
        if "diverged" in pos:
            pos["timeline"][-1]["diverged"] = True
    if checkpoint_every is not None:
        checkpoint()
    if bar is not None:
        bar.close()
    return pos["timeline"]


def _elapsed(t0: float, comm: Any) -> float:
    """Seconds since ``t0``; with ``comm``, rank 0's, so that every rank takes the same decisions."""
    seconds = time.perf_counter() - t0
    return seconds if comm is None else comm.bcast(seconds, root=0)
