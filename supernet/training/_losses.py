"""Training losses: cross-entropy for tasks with a head, supervised contrastive for embedding tasks,
and in-place distillation of the smaller sandwich paths from the largest.

Tasks without a head (re-id, retrieval, face: the supernet outputs the final-normed class token)
are trained with the supervised contrastive loss of Khosla et al. (2020) on L2-normalised
embeddings: every other item of the anchor's class in the batch is a positive, all other items
are the denominator. Unlike a cosine-softmax classifier it needs no class count and no extra
weights (which the supernet's state dict would not hold), and it optimises the cosine geometry
that the re-id and retrieval metrics rank by.

Distillation (BigNAS/OFA's in-place distillation): logits match the largest path's (detached)
softmax by KL divergence; embeddings match its (detached) direction by cosine distance.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def supcon_loss(embeddings: Tensor, labels: Tensor, temperature: float = 0.1) -> Tensor:
    """Supervised contrastive loss (the "L_out" form) of a batch of embeddings.

    Args:
        embeddings: ``B x E`` (normalised here).
        labels: ``B`` class ids.
        temperature: Softmax temperature of the cosine similarities.

    Returns:
        The mean over anchors with at least one positive; 0 (with a gradient path) when none has.
    """
    z = F.normalize(embeddings.float(), dim=1)
    sim = z @ z.T / temperature
    b = z.shape[0]
    self_mask = torch.eye(b, dtype=torch.bool, device=z.device)
    positive = (labels[:, None] == labels[None, :]) & ~self_mask
    log_prob = sim.masked_fill(self_mask, float("-inf")).log_softmax(dim=1)
    counts = positive.sum(1)
    anchors = counts > 0
    if not bool(anchors.any()):
        return sim.sum() * 0.0
    pos_log_prob = log_prob.masked_fill(~positive, 0.0).sum(1)
    return -(pos_log_prob[anchors] / counts[anchors]).mean()


def task_loss(outputs: Tensor, labels: Tensor, has_head: bool, temperature: float = 0.1) -> Tensor:
    """Cross-entropy of a head's logits, or :func:`supcon_loss` of a task's embeddings."""
    if has_head:
        return F.cross_entropy(outputs.float(), labels)
    return supcon_loss(outputs, labels, temperature)


def distill_loss(student: Tensor, teacher: Tensor, has_head: bool) -> Tensor:
    """In-place distillation towards the largest path's (already detached) outputs."""
    if has_head:
        return F.kl_div(
            F.log_softmax(student.float(), dim=1), F.softmax(teacher.float(), dim=1), reduction="batchmean"
        )
    return (1.0 - F.cosine_similarity(student.float(), teacher.float(), dim=1)).mean()
