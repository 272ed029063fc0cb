#!/usr/bin/env python3
"""Reference values for kmbench's hand-written statistics (harness/src/stats.rs), from scipy.

    pip install scipy && python3 scripts/stats_fixtures.py > harness/tests/fixtures/stats_reference.json

Mann-Whitney U: scipy.stats.mannwhitneyu, two-sided; method "exact" for small samples without
ties, "asymptotic" (normal, tie- and continuity-corrected) otherwise — the same choice
kmbench makes. Bootstrap: scipy.stats.bootstrap, percentile method, ratio of medians of two
independent samples; kmbench's own RNG differs, so the test compares within Monte Carlo error.
"""
import json
import sys

import numpy as np
import scipy
from scipy import stats

rng = np.random.default_rng(20261202)


def r(xs):
    return [float(round(x, 6)) for x in xs]


cases = []
# (name, a, b): no ties and small (exact), ties (normal), larger (normal), separated, equal.
cases.append(("small_no_ties", r(rng.normal(100, 5, 7)), r(rng.normal(108, 5, 6))))
cases.append(("small_overlapping", r(rng.normal(100, 5, 5)), r(rng.normal(101, 5, 5))))
cases.append(("ties", [10, 11, 11, 12, 12, 12, 13, 14], [12, 12, 13, 13, 14, 15, 15, 16]))
cases.append(("large_shift", r(rng.normal(200, 20, 60)), r(rng.normal(212, 20, 70))))
cases.append(("separated", [1, 2, 3, 4, 5], [6, 7, 8, 9, 10]))
cases.append(("boot_medians_5v5", [101.2, 99.8, 100.5, 102.1, 100.9], [104.9, 103.2, 106.0, 104.1, 105.5]))

out = {"scipy": scipy.__version__, "mann_whitney": [], "bootstrap": []}
for name, a, b in cases:
    ties = len(set(a + b)) < len(a + b)
    method = "exact" if (not ties and len(a) <= 50 and len(b) <= 50) else "asymptotic"
    res = stats.mannwhitneyu(a, b, alternative="two-sided", method=method, use_continuity=True)
    out["mann_whitney"].append(
        {"name": name, "a": a, "b": b, "u1": float(res.statistic), "p_value": float(res.pvalue),
         "method": "exact" if method == "exact" else "normal"}
    )

for name, a, b in cases:
    if name in ("separated", "ties"):
        continue
    res = stats.bootstrap(
        (np.array(b), np.array(a)),
        lambda new, base, axis=-1: np.median(new, axis=axis) / np.median(base, axis=axis),
        paired=False, vectorized=True, n_resamples=200_000, confidence_level=0.95,
        method="percentile", random_state=np.random.default_rng(1),
    )
    out["bootstrap"].append(
        {"name": name, "base": a, "new": b, "alpha": 0.05,
         "lower": float(res.confidence_interval.low), "upper": float(res.confidence_interval.high)}
    )

json.dump(out, sys.stdout, indent=1)
print()
