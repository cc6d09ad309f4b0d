"""Import the supernet UFO released (PaddlePaddle/VIMER ``UFO/OneForAll``) into gpnas.

UFO trains its multi-task supernet in PaddlePaddle; a checkpoint is a pickle (``paddle.save``) of
numpy arrays. :func:`read_pdparams` reads one without Paddle, and without running anything the
file could ask the unpickler to run; :func:`convert_ufo_state_dict` maps its keys onto
:class:`~supernet.UFOSupernet`'s, checking every shape, and :func:`ufo_space_of` writes the space
definition the converted weights fit (``gpnas import-checkpoint`` does all three).

The released layout (``modeling/backbones/vision_transformer_super_hardpolicy_moe.py``, the
``MultiTaskBatchFuse`` meta-architecture of ``modeling/meta_arch/multitask_super_hardpolicy_moe.py``
that prefixes ``backbone.`` and ``heads.<task>.``) and where each part goes:

==================================================  ====================================  =========
UFO key (``N``: block, ``i``: task index)           gpnas key                             transform
==================================================  ====================================  =========
``backbone.patch_embeds.<task>.proj.*``            ``stems.<task>.patch_embed.*``        copy
``backbone.cls_tokens.<i>``                         ``stems.<tasks[i]>.cls_token``        copy
``backbone.pos_embeds.<i>``                         ``stems.<tasks[i]>.pos_embed``        copy
``backbone.blocks.N.norm{1,2}.*``                   ``blocks.N.norm{1,2}.*``              copy
``backbone.blocks.N.attn.qkv.weight`` ``[E, 3A]``   ``blocks.N.attn.qkv.weight``          transpose
``backbone.blocks.N.attn.qkv.bias``                 ``blocks.N.attn.qkv.bias``            copy
``backbone.blocks.N.attn.proj.weight`` ``[A, E]``   ``blocks.N.attn.proj.weight``         transpose
``...N.mlp.moe_mlp.common_expert.fc{1,2}.weight``   ``blocks.N.ffn.fc{1,2}.weight``       transpose
``...N.mlp.moe_mlp.specific_experts.<i>.fc*.*``     ``blocks.N.experts.<tasks[i]>.fc*``   transpose
``backbone.blocks.N.mlp.moe_mlp.expert_weight``     :attr:`ImportReport.gates`            row i: task i
``backbone.norm.{weight,bias}``                     ``norm.{weight,bias}``                copy
``heads.<task>.{bottleneck.*, linear.*}``           ``heads.<task>.{weight,bias}``        folded
``heads.<task>.weight`` (margin classifier)         (skipped: training only)
==================================================  ====================================  =========

The linears' biases are copied; a checkpoint without qkv biases (``qkv_bias=False``) gets zeros.
Paddle's ``Linear.weight`` is ``[in, out]``, torch's ``[out, in]``; the qkv output channels are
``[q | k | v]``, each head-major, in both (``QkvSuper.sample_weight`` cuts each third to its first
channels, as gpnas slices heads), so the transpose is the only reordering. When a stem part is
shared (UFO's ``sep_list`` without it: only ``patch_embeds.<tasks[0]>`` / ``cls_tokens.0`` /
``pos_embeds.0``) but another is per task, the shared part is copied into every task's stem.
A head (``EmbeddingHead`` at evaluation: ``bottleneck`` = an optional bias-free 1x1 conv and an
optional BatchNorm, then ``linear`` for classification tasks) is affine, so it is folded into one
``Linear``; a head-less task outputs the embedding.

Experts of several tasks. In training each rank holds one task's expert as
``specific_experts.0`` and the gate logits ``expert_weight`` ``[1, 2]`` (``MoeLayer``), and saves
its own file (``tools/ufo_trainsuper_moe.py``: ``<output_dir>/task<id>/``). A merged checkpoint, the
form :func:`merge_rank_states` builds from one such file per task, is the ``MoeLayer`` holding every
task's expert: ``specific_experts.<i>`` in task order and ``expert_weight`` ``[tasks, 2]``, one row
of (shared, specific) logits per task. Experts named by task (``specific_experts.<task>``, as the
UFO 2.0 17B release names them in ``tools/extract_task_specific_model.py``) are accepted too.

Geometry: UFO's LayerNorms have epsilon ``1e-6`` (the space's ``geometry.norm_eps``), attention
scales by ``head_dim ** -0.5`` (``change_qkv``), GELU is exact. The patch stride is assumed equal to
the patch size (``stride_size`` of the released configs); the image side is the token grid times
the patch size (a ``256`` input with 14-pixel patches is its top-left ``252`` crop to the conv).
"""

from __future__ import annotations

from ._conversion import convert_ufo_state_dict, import_ufo_checkpoint
from ._errors import CheckpointError
from ._layout import DEFAULT_HEAD_DIM, UFO_BN_EPS, UFO_NORM_EPS
from ._merge_ranks import merge_rank_states
from ._pdparams import read_pdparams
from ._report import ExpertGates, ImportReport
from ._space_inference import ufo_space_of

__all__ = [
    "DEFAULT_HEAD_DIM",
    "UFO_BN_EPS",
    "UFO_NORM_EPS",
    "CheckpointError",
    "ExpertGates",
    "ImportReport",
    "convert_ufo_state_dict",
    "import_ufo_checkpoint",
    "merge_rank_states",
    "read_pdparams",
    "ufo_space_of",
]
