"""Choice of the PyTensor backend (compilation mode) in one place."""

from __future__ import annotations

from typing import Any

__all__ = ["resolve_mode"]


def resolve_mode(mode: Any, conv: bool = False) -> Any:
    """The PyTensor compilation mode for a backend name.

    Parameters
    ----------
    mode : None, str or pytensor Mode
        ``None`` picks the default: the C virtual machine (``"c"``), measured
        faster than PyTensor's own default (Numba) here for the MLP step (3.9 ms
        against 4.9 ms for an SGN step with CG 3, MNIST MLP, batch 1000) and for
        the convolutional nets, but about 4x slower than Numba on tiny networks such
        as the sine task's (see docs/performance.md).  ``"c"``, ``"numba"`` and
        ``"jax"`` name a backend; any other string or a ``Mode`` object is passed to
        PyTensor unchanged.
    conv : bool
        Whether the graph holds convolutions (the same default today).

    Returns
    -------
    pytensor Mode or str
    """
    if mode is None:
        mode = "c"
    if isinstance(mode, str):
        key = mode.lower()
        if key in ("c", "cvm"):
            from pytensor.compile.mode import Mode
            return Mode(linker="cvm", optimizer="fast_run")
        if key == "numba":
            return "NUMBA"
        if key == "jax":
            return "JAX"
    return mode
