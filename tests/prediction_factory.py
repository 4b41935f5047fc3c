"""Prediction frames for the evaluation, report and validity tests: the schema of pdstudy.data.predictions,
scores correlated with the label, several methods, seeds, folds."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.special import expit

B7 = "efficientnet_b7"
B3 = "efficientnet_b3"
B0 = "efficientnet_b0"
PD7 = f"pd:{B7}>{B7}>{B7}"
PD3 = f"pd:{B3}>{B3}>{B3}"
PD037 = f"pd:{B0}>{B3}>{B7}"
KD7 = f"kd:{B7}>{B7}"

#: method ID -> separation (binormal mean difference) of each stage.
METHODS = {
    f"baseline:{B7}": [1.0],
    f"baseline:{B3}": [0.8],
    KD7: [1.0, 1.3],
    f"pd:{B7}>{B7}": [1.0, 1.5],
    PD7: [1.0, 1.6, 2.2],
    PD3: [0.8, 1.1, 1.4],
    PD037: [0.7, 1.2, 2.0],
}


def make_predictions(methods=None, seeds=(0,), n_train=90, n_val=20, n_test=28, seed=0, folds=None, repeats=1):
    """Synthetic prediction rows: binormal scores with a shared patient effect (methods are correlated).

    Classes alternate within each split (14 poor / 14 good on 28 test patients). With ``folds`` the
    non-train patients rotate through the test role (cross-validation rows, fold >= 0).
    """
    methods = METHODS if methods is None else methods
    rng = np.random.default_rng(seed)
    splits = np.array(["train"] * n_train + ["val"] * n_val + ["test"] * n_test)
    n = len(splits)
    y = np.concatenate([np.arange(k) % 2 for k in (n_train, n_val, n_test)])
    idx = np.arange(n)
    recist = np.where(y == 1, np.where(idx % 4 < 2, "SD", "PD"), np.where(idx % 4 < 2, "CR", "PR"))
    shared = rng.normal(size=n)
    ids = np.array([f"P{i:03d}" for i in range(n)])
    frames = []
    layouts = [(-1, 0, splits)]
    if folds:
        layouts = []
        for rep in range(repeats):
            order = np.random.default_rng([seed, 99, rep]).permutation(n)
            for f in range(folds):
                sp = np.array(["train"] * n, dtype=object)
                sp[order[f::folds]] = "test"
                sp[order[(f + 1) % folds::folds][:10]] = "val"
                layouts.append((f, rep, sp))
    for k, (mid, seps) in enumerate(methods.items()):
        for st, d in enumerate(seps):
            for s in seeds:
                for fold, rep, sp in layouts:
                    r = np.random.default_rng([seed, s, st, k, fold + 1, rep])
                    lat = d * y + 0.6 * shared + 0.8 * r.normal(size=n) + np.where(sp == "train", 1.5 * y, 0.0)
                    frames.append(pd.DataFrame({
                        "patient_id": ids, "split": sp, "response": np.where(y == 1, "poor", "good"),
                        "recist": recist, "score": expit(lat - d / 2), "method": mid, "stage": st, "seed": s,
                        "fold": fold, "repeat": rep}))
    return pd.DataFrame(pd.concat(frames, ignore_index=True))
