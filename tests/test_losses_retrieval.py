"""CSP-HD losses and schedules: formulas, stop-gradients, weighting directions, bounds."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from edge_geoloc.models.retrieval import StageOutputs
from edge_geoloc.train.losses_retrieval import (
    ConfidenceSensitiveAlignment,
    CSDAConfig,
    CSPHDLoss,
    HCDConfig,
    HierarchicalConsistencyDistillation,
    LossConfig,
    PALWConfig,
    SymmetricInfoNCE,
    attention_map,
)
from edge_geoloc.train.schedules import ProgressiveAdaptiveWeight, cosine_with_warmup


def emb(b: int = 6, d: int = 8, seed: int = 0) -> torch.Tensor:
    return F.normalize(torch.randn(b, d, generator=torch.Generator().manual_seed(seed)), dim=1)


def outputs(seed: int, b: int = 6, stages: int = 2) -> StageOutputs:
    g = torch.Generator().manual_seed(seed)
    maps = [torch.randn(b, 4, 8 >> i, 8 >> i, generator=g, requires_grad=True) for i in range(stages + 1)]
    embs = [F.normalize(torch.randn(b, 8, generator=g), dim=1).requires_grad_() for _ in range(stages + 1)]
    return StageOutputs(embs[-1], embs[:-1], maps)


def test_info_nce_matches_sample4geo_formula() -> None:
    e_d, e_s, scale = emb(seed=1), emb(seed=2), torch.tensor(math.log(1 / 0.07))
    out = SymmetricInfoNCE(0.1)(e_d, e_s, scale)
    ce = torch.nn.CrossEntropyLoss(label_smoothing=0.1)
    logits = scale.exp() * e_s @ e_d.t()  # Sample4Geo: satellite rows
    expected = (ce(logits, torch.arange(6)) + ce(logits.t(), torch.arange(6))) / 2
    assert out.loss.item() == pytest.approx(expected.item(), rel=1e-6)
    aligned = SymmetricInfoNCE(0.1)(e_d, e_d, scale).loss
    assert aligned < out.loss


def test_hcd_kl_is_zero_when_stages_agree_and_teachers_get_no_gradient() -> None:
    d, s = outputs(1), outputs(2)
    hcd = HierarchicalConsistencyDistillation(HCDConfig(deep_supervision=0.0, attention=0.0))
    scale = torch.tensor(2.0)
    student = scale.exp() * d.embedding @ s.embedding.t()
    same_d = StageOutputs(d.embedding, [d.embedding, d.embedding], d.feature_maps)
    same_s = StageOutputs(s.embedding, [s.embedding, s.embedding], s.feature_maps)
    loss, _ = hcd(same_d, same_s, scale, student)
    assert loss.item() == pytest.approx(0.0, abs=1e-6)
    loss, logs = hcd(d, s, scale, student)
    assert loss.item() > 0 and logs["hcd_kl"] > 0
    loss.backward()
    teacher_grad = d.stage_embeddings[0].grad  # stop-gradient on the shallow teachers
    assert teacher_grad is None or torch.count_nonzero(teacher_grad) == 0
    assert d.embedding.grad is not None and d.embedding.grad.abs().sum() > 0


def test_hcd_attention_term_pulls_deep_map_towards_shallow_layout() -> None:
    shallow = torch.zeros(1, 2, 8, 8)
    shallow[..., :4, :4] = 1.0  # energy in the top-left quarter
    deep_match = torch.zeros(1, 3, 4, 4, requires_grad=True)
    with torch.no_grad():
        deep_match[..., :2, :2] = 2.0
    deep_other = torch.ones(1, 3, 4, 4, requires_grad=True)
    term = HierarchicalConsistencyDistillation.attention_term
    assert term([shallow, deep_match]).item() == pytest.approx(0.0, abs=1e-6)
    loss = term([shallow.requires_grad_(), deep_other])
    assert loss.item() > 0.5
    loss.backward()
    assert shallow.grad is None and deep_other.grad.abs().sum() > 0
    assert attention_map(shallow, (4, 4)).norm(dim=1).item() == pytest.approx(1.0)


def test_csda_gives_the_less_confident_direction_more_weight() -> None:
    logits = torch.tensor([[5.0, 0.0, 0.0], [4.0, 5.0, 0.0], [4.0, 0.0, 5.0]])
    # satellite 0 (column 0) attracts drones 1 and 2: drone->satellite is the less confident direction
    (w_d, w_s), logs = ConfidenceSensitiveAlignment(CSDAConfig())(logits)
    assert logs["conf_d2s"] < logs["conf_s2d"]
    assert w_d > 1.0 > w_s and (w_d + w_s).item() == pytest.approx(2.0)
    (f_d, f_s), _ = ConfidenceSensitiveAlignment(CSDAConfig(mode="sample"))(logits)
    assert f_d.mean().item() == pytest.approx(1.0) and f_s.shape == (3,)
    with pytest.raises(ValueError, match="csda.mode"):
        ConfidenceSensitiveAlignment(CSDAConfig(mode="both"))


def test_palw_decays_reacts_to_spikes_and_stays_bounded() -> None:
    cfg = PALWConfig(start=1.0, end=0.1, power=2.0, short_window=2, long_window=50, min_weight=0.05, max_weight=1.5)
    palw = ProgressiveAdaptiveWeight(cfg, total_steps=100)
    for _ in range(20):
        palw.update(3.0)
    steady = [palw.value(t) for t in (0, 50, 100)]
    assert steady[0] == pytest.approx(1.0) and steady[1] == pytest.approx(0.325) and steady[2] == pytest.approx(0.1)
    for _ in range(3):
        palw.update(9.0)  # short-term spike of the metric loss
    assert palw.value(50) > steady[1]
    assert palw.value(0) == pytest.approx(1.5)  # clipped at max_weight
    palw.update(float("nan"))  # ignored
    state = palw.state_dict()
    other = ProgressiveAdaptiveWeight(cfg, 100)
    other.load_state_dict(state)
    assert other.value(30) == palw.value(30)
    assert ProgressiveAdaptiveWeight(PALWConfig(enabled=False), 10).value(0) == 1.0


def test_cosine_with_warmup() -> None:
    assert cosine_with_warmup(0, 100, 10) == pytest.approx(0.1)
    assert cosine_with_warmup(9, 100, 10) == pytest.approx(1.0)
    assert cosine_with_warmup(55, 100, 10) == pytest.approx(0.5)
    assert cosine_with_warmup(100, 100, 10, min_factor=0.1) == pytest.approx(0.1)


@pytest.mark.parametrize("hcd,csda", [(False, False), (True, False), (False, True), (True, True)])
def test_csphd_parts_switch_from_config(hcd: bool, csda: bool) -> None:
    cfg = LossConfig(hcd=HCDConfig(enabled=hcd), csda=CSDAConfig(enabled=csda))
    loss, logs = CSPHDLoss(cfg)(outputs(1), outputs(2), torch.tensor(2.0, requires_grad=True), hcd_weight=0.5)
    assert ("hcd" in logs) == hcd and ("w_d2s" in logs) == csda
    assert math.isfinite(loss.item())
    if hcd:
        assert logs["loss"] == pytest.approx(logs["metric"] + 0.5 * logs["hcd"], rel=1e-5)
    else:
        assert logs["loss"] == pytest.approx(logs["metric"])
