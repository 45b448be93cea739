"""The CG budget picked by racing budgets against each other during training (``CG_BUDGET='race'``).

A step's own numbers cannot say how many CG iterations pay: a more exact step gains little at
once on an ill-conditioned problem yet saves many later steps, while on a noisy one it only fits
its mini-batch better.  What a user wants is the most training progress per second, so the race
measures exactly that, over blocks of steps, and moves the budget towards the faster one:

* training runs in blocks of step time, each at one CG budget: the first lasts ``block_seconds``
  and each later one :data:`BLOCK_GROWTH` times the one before, since progress slows and its
  measure gets noisier as training goes on;
* a block's score is the log training loss its budget is on course for: a least-squares line
  through the log losses of the steps in the block's second half (at least
  :data:`MIN_BLOCK_STEPS` of them; the first half lets the switch of budget settle), read
  :data:`HORIZON` block lengths past the block's end.  Each step's loss is taken on its own
  mini-batch before the step trains on it, so the score costs nothing: every step computes it;
* blocks alternate between the current budget (the *centre*) and a *probe*, a neighbouring
  budget (``×`` or ``÷`` :data:`PROBE_FACTOR`); a probe wins when its score is below the mean of
  the centre's scores just before and just after it, which cancels a linear trend (the loss
  falls as training goes on);
* the first block, which pays for first calls and the steepest part of training, only warms up;
* a winning probe becomes the centre and the next probe keeps its direction; a losing one turns
  the search the other way (a pattern search on log budget).

The functions here are pure: the optimizer keeps a :class:`CGRace` and replaces it with
:func:`race_after_block`'s result when a block ends.
"""

from __future__ import annotations

import dataclasses
import math
import sys

__all__ = ["BLOCK_GROWTH", "CGRace", "HORIZON", "MIN_BLOCK_STEPS", "PROBE_FACTOR", "add_sample", "block_score",
           "log_loss", "neighbour_budget",
           "race_after_block", "race_block_seconds", "start_race"]

#: Each block lasts this factor longer than the one before (scale-free: a run of any length has a
#: number of blocks that grows with the logarithm of its duration).
BLOCK_GROWTH = 1.1
#: The fewest scored steps (in its second half) in a block, however fast the steps.
MIN_BLOCK_STEPS = 5
#: A probe budget is the centre's times or divided by this factor (and differs by at least one).
PROBE_FACTOR = 1.5


@dataclasses.dataclass(frozen=True)
class CGRace:
    """Where the race stands between two blocks.

    Attributes
    ----------
    centre : int >= 1
        The budget the race holds best so far.
    trial : int >= 1
        The budget of the block now running: ``centre``, or a probe.
    direction : {+1, -1}
        Whether the next probe is above or below the centre.
    block : int >= 0
        Blocks completed.
    centre_score : float
        The score of the last centre block (NaN: none since the centre last moved).
    probe_score : float
        The score of the last probe block, waiting for the centre block after it (NaN: none).
    probe : int
        The budget of that probe (0: none).
    """

    centre: int
    trial: int
    direction: int = 1
    block: int = 0
    centre_score: float = math.nan
    probe_score: float = math.nan
    probe: int = 0


def start_race(start: int, cap: int) -> CGRace:
    """The race before its first block: a centre block at ``min(start, cap)``.

    Parameters
    ----------
    start, cap : int >= 1
        The first centre budget (``CG_RACE_START``) and the largest budget (``MAX_CG_ITERS``).

    Returns
    -------
    CGRace
    """
    if start < 1 or cap < 1:
        raise ValueError(f"start and cap must be >= 1, got start={start}, cap={cap}")
    centre = min(start, cap)
    return CGRace(centre=centre, trial=centre)


def neighbour_budget(budget: int, direction: int, cap: int) -> int:
    """The probe budget next to ``budget``: ``×`` (direction +1) or ``÷`` (-1) :data:`PROBE_FACTOR`.

    Rounded, at least one iteration away, and within ``[1, cap]`` (so it equals ``budget`` at a bound).

    Parameters
    ----------
    budget : int >= 1
    direction : {+1, -1}
    cap : int >= 1

    Returns
    -------
    int
    """
    if direction > 0:
        return min(cap, max(budget + 1, round(budget * PROBE_FACTOR)))
    return max(1, min(budget - 1, round(budget / PROBE_FACTOR)))


def race_block_seconds(block: int, first: float) -> float:
    """The step time that block number ``block`` (from 0) must last: ``first · BLOCK_GROWTH**block``."""
    return first * BLOCK_GROWTH ** block


def log_loss(loss: float) -> float:
    """A step's log loss, as the score uses it: ``+inf`` for a non-finite loss (a diverging budget
    loses), and losses floored at the smallest normal float."""
    if not math.isfinite(loss):
        return math.inf
    return math.log(max(loss, sys.float_info.min))


#: How far past its end a block's score looks, in block lengths.  0 (the mean level of the second
#: half) favoured small budgets wherever a larger one's gain lasts (measured on Boston housing: a
#: race settled at 1-2 iterations, 1.25x CG 20's test loss); 1 raced to 27 there, and matched
#: the best fixed count on MNIST, the sine and Fashion-MNIST (pilot runs at seed 1; the
#: evaluation is docs/results.md's "The raced budget").
HORIZON = 1.0


def add_sample(sums: tuple, t: float, y: float) -> tuple:
    """The running sums of a block's scored steps with one more step added.

    Parameters
    ----------
    sums : tuple
        ``(n, Σt, Σy, Σt², Σty)``, or ``()`` for none yet.
    t : float
        The step's start, in seconds of step time since the block began.
    y : float
        Its :func:`log_loss`.

    Returns
    -------
    tuple
        The five sums with ``(t, y)`` added.
    """
    n, st, sy, stt, sty = sums or (0, 0.0, 0.0, 0.0, 0.0)
    return (n + 1, st + t, sy + y, stt + t * t, sty + t * y)


def block_score(sums: tuple, end: float) -> float:
    """A block's score: where its budget's level and pace are taking the log loss.

    Parameters
    ----------
    sums : tuple
        :func:`add_sample`'s sums over the block's scored steps (at least one).
    end : float
        The block's duration in seconds of step time.

    Returns
    -------
    float
        The value at ``end · (1 + HORIZON)`` of the least-squares line through the samples (their
        mean when they span no time); ``+inf`` when a sample is not finite.
    """
    n, st, sy, stt, sty = sums
    mean_t, mean_y = st / n, sy / n
    var_t = stt / n - mean_t * mean_t
    if not math.isfinite(mean_y):
        return math.inf
    slope = (sty / n - mean_t * mean_y) / var_t if n > 1 and var_t > 0 else 0.0
    return mean_y + slope * (end * (1 + HORIZON) - mean_t)


def _probe_from(race: CGRace, centre: int, direction: int, cap: int, **fields) -> CGRace:
    """The next block: a probe beside ``centre`` (turning at a bound), or the centre at bay."""
    probe = neighbour_budget(centre, direction, cap)
    if probe == centre:
        direction = -direction
        probe = neighbour_budget(centre, direction, cap)
    return dataclasses.replace(race, centre=centre, trial=probe, direction=direction, block=race.block + 1,
                               **fields)


def race_after_block(race: CGRace, score: float, cap: int) -> CGRace:
    """The race after the block now running ended with score ``score`` (lower is better).

    Parameters
    ----------
    race : CGRace
        The state while the block ran.
    score : float
        The block's mean :func:`log_loss` over its second half.
    cap : int >= 1
        The largest budget.

    Returns
    -------
    CGRace
        After the first block (a warm-up): the centre again, unscored.  After a probe block: the
        centre again, with the probe's score kept.  After a centre block: if a probe waits, it is
        judged against the mean of the centre's scores either side of it; a winner becomes the
        centre (whose next block is a centre block, scored afresh), a loser turns the search;
        otherwise (or after judging a loser) the next block is a probe.
    """
    if race.block == 0:
        return dataclasses.replace(race, block=1)
    if race.trial != race.centre:
        return dataclasses.replace(race, trial=race.centre, block=race.block + 1, probe_score=score,
                                   probe=race.trial)
    if not math.isnan(race.probe_score) and not math.isnan(race.centre_score):
        baseline = 0.5 * (race.centre_score + score)
        if race.probe_score < baseline:
            return dataclasses.replace(race, centre=race.probe, trial=race.probe, block=race.block + 1,
                                       centre_score=math.nan, probe_score=math.nan, probe=0)
        return _probe_from(race, race.centre, -race.direction, cap, centre_score=score, probe_score=math.nan,
                           probe=0)
    return _probe_from(race, race.centre, race.direction, cap, centre_score=score, probe_score=math.nan,
                       probe=0)
