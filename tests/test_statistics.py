"""AUROC and paired bootstrap against hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest

from edge_geoloc.evaluate.statistics import auroc, paired_bootstrap


def test_auroc_hand_computed_with_ties():
    assert auroc([0.9, 0.8, 0.1, 0.2], [True, True, False, False]) == 1.0
    assert auroc([0.1, 0.2, 0.9, 0.8], [True, True, False, False]) == 0.0
    # positives {0.5, 0.7}, negatives {0.5, 0.1}: pairs (0.5,0.5)=1/2, (0.5,0.1)=1, (0.7,0.5)=1, (0.7,0.1)=1 -> 3.5/4
    assert auroc([0.5, 0.7, 0.5, 0.1], [True, True, False, False]) == pytest.approx(0.875)
    assert np.isnan(auroc([0.1, 0.2], [True, True]))
    with pytest.raises(ValueError, match="differ in length"):
        auroc([0.1, 0.2], [True])


def test_paired_bootstrap_sees_a_consistent_change_and_not_noise():
    rng = np.random.default_rng(0)
    a = rng.uniform(1, 10, 300)
    better = paired_bootstrap(a, 0.8 * a, groups=np.repeat([0, 1, 2], 100))
    assert better["ratio"] == pytest.approx(0.8) and better["ratio_ci95"][1] < 1.0
    assert better["change_ci95"][1] < 0 < -better["change_ci95"][0]
    same = paired_bootstrap(a, a + rng.normal(0, 0.5, 300))
    assert same["change_ci95"][0] < 0 < same["change_ci95"][1]
    with pytest.raises(ValueError, match="paired"):
        paired_bootstrap(a, a[:10])
