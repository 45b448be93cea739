"""A plain training loop that records loss against measured training seconds.

Used by the example scripts and the demo.  Evaluation time is not counted as
training time, so curves against seconds compare optimizers fairly.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from ._validation import Interval, check_value

__all__ = ["evaluate", "fit"]


def evaluate(opt: Any, x: np.ndarray, y: np.ndarray, batch_size: int = 10000) -> dict[str, float]:
    """Mean loss (and accuracy for classification) of ``opt``'s model on ``(x, y)``.

    Parameters
    ----------
    opt : SGN or SGD
    x, y : ndarray
        A dataset split; evaluated in chunks of ``batch_size`` samples.

    Returns
    -------
    dict
        ``{"loss": float}``, plus ``"acc"`` (fraction correct) when the targets are class indices.
    """
    total, correct, n = 0.0, 0, len(x)
    classification = np.asarray(y).dtype.kind in "iu" and np.asarray(y).ndim == 1
    for i in range(0, n, batch_size):
        xb, yb = x[i:i + batch_size], y[i:i + batch_size]
        loss, pred = opt.cost(xb, yb)
        total += loss * len(xb)
        if classification:
            correct += int(np.sum(pred == yb))
    out = {"loss": total / n}
    if classification:
        out["acc"] = correct / n
    return out


def fit(opt: Any, x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray,
        epochs: int = 1, batch_size: int = 1000, time_budget: float | None = None,
        eval_every: float | None = 5.0, seed: int = 0, progress: bool = False,
        label: str = "") -> list[dict[str, Any]]:
    """Train ``opt`` on shuffled mini-batches and record a timeline.

    Parameters
    ----------
    opt : SGN or SGD
        The optimizer (its model is trained in place).
    x_train, y_train, x_test, y_test : ndarray
        The data splits.
    epochs : int
        Maximum number of passes over the training set.
    batch_size : int
        Mini-batch size; the last batch of an epoch may be smaller.
    time_budget : float or None
        Stop once this many seconds of training (evaluation excluded) have passed.
    eval_every : float or None
        Also record every this many training seconds, besides each epoch's end.
    seed : int
        Seed of the data order.
    progress : bool
        Show a tqdm progress bar.
    label : str
        Description for the progress bar.

    Returns
    -------
    list of dict
        Records ``{seconds, epoch, iteration, train_loss, test_loss}`` (+ ``test_acc``
        for classification), the first at 0 seconds, the last at the end of training.
    """
    check_value("epochs", epochs, Interval("int", 1, None), "fit")
    check_value("batch_size", batch_size, Interval("int", 1, None), "fit")
    if time_budget is not None:
        check_value("time_budget", time_budget, Interval("real", 0, None, "neither"), "fit")
    if eval_every is not None:
        check_value("eval_every", eval_every, Interval("real", 0, None, "neither"), "fit")
    rng = np.random.default_rng(seed)
    n = len(x_train)
    steps_per_epoch = -(-n // batch_size)
    timeline: list[dict[str, Any]] = []
    seconds, iteration = 0.0, 0

    def record(epoch: float) -> None:
        train = evaluate(opt, x_train, y_train)
        test = evaluate(opt, x_test, y_test)
        rec = {"seconds": seconds, "epoch": epoch, "iteration": iteration,
               "train_loss": train["loss"], "test_loss": test["loss"]}
        if "acc" in test:
            rec["test_acc"] = test["acc"]
        timeline.append(rec)

    record(0)
    next_eval = eval_every if eval_every else float("inf")
    bar = None
    if progress:
        from tqdm.auto import tqdm
        # With a time budget the bar counts training seconds, otherwise steps.
        total = float(time_budget) if time_budget is not None else epochs * steps_per_epoch
        bar = tqdm(total=total, desc=label or type(opt).__name__, unit="s" if time_budget else "step",
                   leave=False, mininterval=0.5)
    out_of_time = False
    for epoch in range(1, epochs + 1):
        perm = rng.permutation(n)
        for start in range(0, n, batch_size):
            idx = perm[start:start + batch_size]
            t0 = time.perf_counter()
            loss = opt.step(x_train[idx], y_train[idx])[0]
            seconds += time.perf_counter() - t0
            iteration += 1
            if bar is not None:
                bar.update(min(seconds, bar.total) - bar.n if time_budget is not None else 1)
                bar.set_postfix(loss=f"{loss:.4g}", epoch=epoch, refresh=False)
            if time_budget is not None and seconds >= time_budget:
                out_of_time = True
                break
            if seconds >= next_eval:
                record(epoch - 1 + (start + len(idx)) / n)
                next_eval = seconds + eval_every
        if out_of_time:
            break
        record(epoch)
    if out_of_time:
        record(round(iteration / steps_per_epoch, 6))
    if bar is not None:
        bar.close()
    return timeline
