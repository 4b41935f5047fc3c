"""External-protocol prediction frames for the evaluation and report tests of external validation: sites, one fold
per held-out set of sites, methods, seeds, cached slices per site, and a score shift at the held-out site."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.special import expit

BASE = "baseline:efficientnet_b3"
PD = "pd:efficientnet_b3>efficientnet_b3"
SLICES = {"A": 24, "B": 40, "C": 16}


def make_patients(sites=("A", "B"), n_per_site=100):
    """Patients with a manifest split (train 50% / val 20% / test 30% per site), alternating classes."""
    rows = []
    for site in sites:
        for i in range(n_per_site):
            split = "train" if i < n_per_site // 2 else "val" if i < 7 * n_per_site // 10 else "test"
            poor = i % 2 == 1
            rows.append({"patient_id": f"{site}{i:03d}", "site": site, "manifest_split": split,
                         "response": "poor" if poor else "good",
                         "recist": ("SD" if i % 4 == 1 else "PD") if poor else ("CR" if i % 4 == 0 else "PR")})
    return pd.DataFrame(rows)


def make_predictions(patients, held_out_per_fold, *, shift=0.0, methods=(BASE, PD), seeds=(0, 1), seed=0):
    """External-protocol rows: per fold, the held-out sites' patients get split 'external' and their latent score is
    shifted by ``shift`` on the logit scale (a site that reads higher); other patients keep their manifest split."""
    rng = np.random.default_rng(seed)
    y = (patients["response"] == "poor").to_numpy().astype(int)
    shared = rng.normal(size=len(patients))
    n_slices = patients["site"].map(SLICES).to_numpy() + rng.integers(-3, 4, len(patients))
    frames = []
    for fold, held in enumerate(held_out_per_fold):
        external = patients["site"].isin(held).to_numpy()
        split = np.where(external, "external", patients["manifest_split"])
        for k, mid in enumerate(methods):
            stages = 1 if mid.startswith("baseline") else 2
            for stage in range(stages):
                for s in seeds:
                    r = np.random.default_rng([seed, fold, k, stage, s])
                    lat = 1.2 * y - 0.6 + 0.5 * shared + 0.4 * r.normal(size=len(y)) + np.where(external, shift, 0)
                    frames.append(pd.DataFrame({
                        "patient_id": patients["patient_id"], "split": split, "response": patients["response"],
                        "recist": patients["recist"], "score": expit(lat), "method": mid, "stage": stage,
                        "seed": s, "fold": fold, "repeat": 0, "n_slices": n_slices}))
    return pd.concat(frames, ignore_index=True)


def sites_of(patients):
    return patients.set_index("patient_id")["site"]
