"""What the example scripts and benchmarks share, kept apart from the method's modules.

``flags``
    The scripts' command-line flags and their mapping onto ``hyper_par``.
``run``
    ``run_experiment``: train as the flags say and write ``results.json``.
``results``
    Reading ``results.json`` files; the compact CSV summaries of benchmark runs.

Nothing in ``sgn.optim``, ``sgn.rules`` or the models imports this package.
"""

from .flags import (
                    ADAPT_CG_CAP,
                    FIXED_CG_ITERS,
                    adam_hyper_par,
                    add_common_arguments,
                    expected_errors,
                    init_seed,
                    resolve_cg_flags,
                    sgd_hyper_par,
                    sgn_hyper_par,
                    str2bool,
)
from .run import StepLog, results_json_text, run_experiment, validation_split

__all__ = ["ADAPT_CG_CAP", "FIXED_CG_ITERS", "StepLog", "adam_hyper_par", "add_common_arguments",
           "expected_errors", "init_seed", "resolve_cg_flags", "results_json_text", "run_experiment",
           "sgd_hyper_par", "sgn_hyper_par", "str2bool", "validation_split"]
