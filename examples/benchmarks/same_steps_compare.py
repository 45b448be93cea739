"""Compare two folders of ``examples/benchmarks/same_steps.sh`` runs: every number in results.json (the
timings, paths and versions aside) and every per-step record of diagnostics.jsonl, to 1e-10 relative::

    python examples/benchmarks/same_steps_compare.py OUT_A OUT_B
"""

from __future__ import annotations

import json
import math
import os
import sys

# Wall-clock readings, paths, versions, and the keys 0.5.0 removed (CG_COST and its flag).
SKIP = {"seconds", "wall_seconds", "seconds_products", "seconds_line_search", "seconds_other", "out",
        "sgn_version", "compile_seconds", "data_dir", "cg_cost", "CG_COST", "processor"}
# Keys added after 0.4.0, with the value that turns them off: one side may lack such a key when the
# other holds exactly that value (the run did not use the feature).
ADDED_OFF = {"clip_norm": 0.0, "struct_damp": 0.0, "STRUCT_DAMP": 0.0}


def differences(x: object, y: object, path: str, out: list[str]) -> None:
    """Append to ``out`` every place where ``x`` and ``y`` differ beyond 1e-10 relative."""
    if isinstance(x, dict) and isinstance(y, dict):
        for key in sorted(set(x) | set(y)):
            if key in SKIP:
                continue
            if key not in x or key not in y:
                present = x.get(key, y.get(key))
                if key in ADDED_OFF and present == ADDED_OFF[key]:
                    continue
                out.append(f"{path}.{key} missing on one side")
            else:
                differences(x[key], y[key], f"{path}.{key}", out)
    elif isinstance(x, list) and isinstance(y, list):
        if len(x) != len(y):
            out.append(f"{path}: length {len(x)} against {len(y)}")
        for i, (u, v) in enumerate(zip(x, y)):
            differences(u, v, f"{path}[{i}]", out)
    elif isinstance(x, float) and isinstance(y, float):
        if not (math.isnan(x) and math.isnan(y)) and abs(x - y) > 1e-10 * max(abs(x), abs(y), 1e-300):
            out.append(f"{path}: {x!r} against {y!r}")
    elif x != y:
        out.append(f"{path}: {x!r} against {y!r}")


def _records(path: str) -> list:
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def main(a_root: str, b_root: str) -> int:
    total = 0
    for name in sorted(n for n in os.listdir(a_root) if os.path.isdir(os.path.join(a_root, n))):
        bad: list[str] = []
        with open(os.path.join(a_root, name, "results.json"), encoding="utf-8") as fa, \
                open(os.path.join(b_root, name, "results.json"), encoding="utf-8") as fb:
            ra, rb = json.load(fa), json.load(fb)
        differences(ra, rb, "results", bad)
        steps_a = _records(os.path.join(a_root, name, "diagnostics.jsonl"))
        differences(steps_a, _records(os.path.join(b_root, name, "diagnostics.jsonl")), "diagnostics", bad)
        total += len(bad)
        verdict = "EQUAL" if not bad else "DIFFER " + "; ".join(bad[:4])
        print(f"{name:16s} steps {len(steps_a):4d} records {len(ra['timeline'])}: {verdict}")
    print("all equal" if total == 0 else f"{total} differences")
    return 0 if total == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main(*sys.argv[1:3]))
