"""Choice of the PyTensor backend (compilation mode), and the BLAS its C backend links.

A pip-installed PyTensor finds no BLAS to link: its C backend then runs ``Dot22``, ``Gemv``
and ``Ger`` as Python thunks (``numpy.dot`` and SciPy calls, one interpreter round trip per
matrix product, also inside the CG ``scan``) and warns that "operations that might benefit
from BLAS will be severely degraded".  ``sgn`` depends on ``scipy-openblas32``, the
OpenBLAS build that SciPy ships as a wheel, and points PyTensor at it when an sgn optimizer or
model first compiles for the C backend (:func:`resolve_mode` calls :func:`configure_blas`;
``import sgn`` itself changes no PyTensor setting).  That library prefixes its symbols
(``scipy_dgemm_``), so the
Fortran names PyTensor's C code calls are mapped to them with preprocessor defines.
"""

from __future__ import annotations

import os
from typing import Any

__all__ = ["resolve_mode", "has_conv_ops", "is_jax", "is_numba", "configure_blas", "blas_info", "BACKENDS"]

# Every Fortran BLAS routine PyTensor's C code declares (pytensor/tensor/blas_headers.py, blas_c.py).
_BLAS_ROUTINES = ("gemm", "gemv", "ger", "dot", "axpy", "scal", "copy", "swap", "symv", "syrk", "trsm")

_BLAS_STATE: dict[str, str] = {"source": "not configured", "ldflags": ""}


def _user_set_blas() -> bool:
    """Whether the user chose ``blas__ldflags`` (PYTENSOR_FLAGS or .pytensorrc), even as empty."""
    import pytensor
    # PyTensor may already have read (and consumed) the flag while importing: then the
    # parameter holds a value that did not come from its default.
    param = getattr(pytensor.config, "_config_var_dict", {}).get("blas__ldflags")
    if param is not None and hasattr(param, "val") and not getattr(param, "is_default", True):
        return True
    try:
        pytensor.config.fetch_val_for_key("blas__ldflags")
    except KeyError:
        return False
    return True


def configure_blas() -> dict[str, str]:
    """Link PyTensor's C backend to the OpenBLAS of the ``scipy-openblas32`` wheel.

    Called by :func:`resolve_mode` when an sgn optimizer or model first compiles for the C
    backend; call it yourself before compiling graphs of your own that should use it.  Sets
    ``pytensor.config.blas__ldflags`` and adds the symbol defines to ``gcc__cxxflags``, once
    per process.  Does nothing when the user set ``blas__ldflags`` (through
    ``PYTENSOR_FLAGS`` or ``.pytensorrc``; an explicit empty value keeps PyTensor's
    fallback), when ``SGN_BUNDLED_BLAS=0``, or when the wheel is not installed.

    Returns
    -------
    dict
        ``{"source": ..., "ldflags": ...}``, as :func:`blas_info`.
    """
    import pytensor

    if _BLAS_STATE["source"] != "not configured":
        return dict(_BLAS_STATE)
    if os.environ.get("SGN_BUNDLED_BLAS", "1").strip().lower() in ("0", "false", "no", "off"):
        _BLAS_STATE.update(source="disabled by SGN_BUNDLED_BLAS=0", ldflags="")
        return dict(_BLAS_STATE)
    if _user_set_blas():
        _BLAS_STATE.update(source="user (blas__ldflags)", ldflags=pytensor.config.blas__ldflags)
        return dict(_BLAS_STATE)
    try:
        import scipy_openblas32 as bundled
    except ImportError:  # e.g. a platform without the wheel: PyTensor's own detection decides
        _BLAS_STATE.update(source="pytensor default (scipy-openblas32 not installed)", ldflags="")
        return dict(_BLAS_STATE)
    libdir = bundled.get_lib_dir()
    ldflags = f"-L{libdir} -l{bundled.get_library()} -Wl,-rpath,{libdir}"
    prefix = "scipy_"  # the symbol prefix of every scipy-openblas build
    defines = " ".join(f"-D{t}{r}_={prefix}{t}{r}_" for r in _BLAS_ROUTINES for t in "sd")
    pytensor.config.blas__ldflags = ldflags
    pytensor.config.gcc__cxxflags = f"{pytensor.config.gcc__cxxflags} {defines}".strip()
    _BLAS_STATE.update(source=f"scipy-openblas32 {getattr(bundled, '__version__', '')}".strip(), ldflags=ldflags)
    return dict(_BLAS_STATE)


def blas_info() -> dict[str, str]:
    """Which BLAS PyTensor's C backend links: ``{"source": ..., "ldflags": ...}``.

    ``source`` is ``"scipy-openblas32 <version>"`` after :func:`configure_blas` linked the
    bundled library, ``"user (blas__ldflags)"`` when the user chose, or says why neither.
    """
    return dict(_BLAS_STATE)


def resolve_mode(mode: Any, conv: bool = False) -> Any:
    """The PyTensor compilation mode for a backend name.

    Parameters
    ----------
    mode : None, str or pytensor Mode
        ``None`` picks the default, the C virtual machine (``"c"``) linked to the bundled
        OpenBLAS (:func:`configure_blas`, called here for every mode but Numba and JAX).
        Measured by ``examples/benchmarks/bench_backends.py``
        (docs/performance.md) against PyTensor's Numba and JAX backends on the paper's
        networks, it is the fastest or within noise of the fastest on each, and 2x faster
        than Numba on the convolutional nets.  ``"c"``, ``"numba"`` and ``"jax"`` name a
        backend; ``"jax"`` compiles the whole step with XLA (the route to a GPU; the CG
        loop is unrolled, since JAX needs static loop lengths).  Any other string or a
        ``Mode`` object is passed to PyTensor unchanged.  The C and Numba modes are
        ``fast_run`` plus :class:`sgn.rewrites.MergeDuplicateNodes`, which removes the
        duplicate forward pass that PyTensor's scan rewrites leave beside the CG loop.  A
        ``Mode`` of your own gets it with ``mode.including("sgn_merge_duplicates")`` after
        :func:`sgn.rewrites.register`.
    conv : bool
        Whether the graph holds convolutions (see :func:`has_conv_ops`).  The C backend
        then keeps intermediate arrays between calls (``allow_gc=False``): the patch
        matrices of a convolution are 50–200 MB at batch 1000, and freeing and
        re-faulting them on every call measured up to 1.3x the gradient's time
        (docs/performance.md).  It costs that memory between steps.

    Returns
    -------
    pytensor Mode or str
    """
    if mode is None:
        mode = "c"
    if not (isinstance(mode, str) and mode.lower() in ("jax", "numba")):
        configure_blas()  # the C backend (or a mode of the user's that may use it) links a real BLAS
    if isinstance(mode, str):
        key = mode.lower()
        if key in ("c", "cvm", "numba"):
            from pytensor.compile.mode import Mode, get_mode

            from .rewrites import MERGE_DUPLICATES_TAG, register
            register()
            if key == "numba":
                from .conv import register_numba
                register_numba()  # the convolution Ops' Numba implementations
                base = get_mode("NUMBA")
            elif conv:
                from pytensor.link.vm import VMLinker
                base = Mode(linker=VMLinker(allow_gc=False, use_cloop=True, c_thunks=True), optimizer="fast_run")
            else:
                base = Mode(linker="cvm", optimizer="fast_run")
            # fast_run plus the merge pass that PyTensor's scan rewrites leave undone (sgn.rewrites).
            return base.including(MERGE_DUPLICATES_TAG)
        if key == "jax":
            try:
                import jax  # noqa: F401
            except ImportError:
                from ._validation import InvalidParameterError
                raise InvalidParameterError(
                    "mode='jax' needs JAX, which is not installed: pip install 'sgn[jax]' (or a CUDA "
                    "build of jaxlib for a GPU), or use mode='c' (the default) or 'numba'.") from None
            from . import _jax_ops
            _jax_ops.register()  # the convolution Ops' JAX implementations
            return "JAX"
        _check_mode_name(mode)
    elif is_numba(mode):
        from .conv import register_numba
        register_numba()  # a Numba Mode of the user's own
    return mode


#: The backend names :func:`resolve_mode` knows; PyTensor's own mode names are passed through.
BACKENDS = ("c", "numba", "jax")


def _check_mode_name(name: str) -> None:
    """A string mode must be one of ours or one PyTensor knows; say which ones otherwise."""
    from pytensor.compile.mode import get_mode

    try:
        get_mode(name)
    except Exception:
        from ._validation import InvalidParameterError
        raise InvalidParameterError(
            f"Unknown backend mode={name!r}: use one of {', '.join(map(repr, BACKENDS))} (None: 'c'), a "
            f"PyTensor mode name such as 'FAST_RUN' or 'FAST_COMPILE', or a pytensor Mode object.") from None


def is_jax(mode: Any) -> bool:
    """Whether a mode (as :func:`resolve_mode` returns it) compiles with PyTensor's JAX linker."""
    if isinstance(mode, str):
        return mode.upper() == "JAX"
    linker = getattr(mode, "linker", None)
    return type(linker).__name__ == "JAXLinker"


def is_numba(mode: Any) -> bool:
    """Whether a PyTensor Mode compiles with PyTensor's Numba linker."""
    linker = getattr(mode, "linker", None)
    return linker is not None and "numba" in type(linker).__name__.lower()


def has_conv_ops(*outputs: Any) -> bool:
    """Whether the graphs of ``outputs`` contain the convolution or pooling Ops of :mod:`sgn.conv`."""
    from pytensor.graph.traversal import applys_between

    from .conv import Im2Col, MaxPool2D
    return any(isinstance(node.op, (Im2Col, MaxPool2D)) for node in applys_between([], list(outputs)))
