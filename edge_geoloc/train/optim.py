"""Optimizer pieces shared by the trainers: weight-decay groups and the warm-up length in steps."""

from __future__ import annotations

from torch import nn

# parameter names (last part) that are never decayed besides norms and biases: temperatures and pooling powers
NO_DECAY_NAMES = ("logit_scale", "temperature", "p")


def decay_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """AdamW groups: weights of convolutions and linear layers decay; norms, biases, layer scales, the
    learnable temperature (``logit_scale``) and GeM's ``p`` do not (decaying ``logit_scale`` pulls the
    temperature to 1 and flattens InfoNCE; decaying norm gains shrinks features)."""
    decay, keep = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        no_decay = param.ndim <= 1 or name.rsplit(".", 1)[-1] in NO_DECAY_NAMES
        (keep if no_decay else decay).append(param)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": keep, "weight_decay": 0.0}]


def warmup_steps(total_steps: int, batches_per_epoch: int, warmup_epochs: float, warmup_steps_cfg: int | None,
                 min_steps: int) -> int:
    """Linear warm-up length: ``warmup_steps_cfg`` if set, else ``warmup_epochs`` of an epoch, raised to
    ``min_steps`` (a 0.1-epoch warm-up of a 9-batch epoch is one step: the first full-lr steps then blow the
    fresh heads into a collapsed plateau) and capped at half the run."""
    derived = warmup_steps_cfg if warmup_steps_cfg is not None else round(warmup_epochs * batches_per_epoch)
    return int(min(max(derived, min_steps), max(1, total_steps // 2)))
