"""The 3D-aware multimodal LLM: LLaVA-Video (SigLIP → mlp2x_gelu → 2×2 pool → Qwen2) with
Video-3D-LLM's 3D position code on every visual token, ``<ground>`` proposal selection, ``<coord>``
location prompts, and the training-only Ross3D / 3DRS objectives.

Forward, top to bottom (:meth:`Ros3DForConditionalGeneration.forward`):

1. :meth:`~Ros3DForConditionalGeneration.encode_frames` — per view: SigLIP patches → projector
   (the *pre-pool* features, also used by grounding) → 2×2 pooling → [Ross3D: mask some views] →
   + sin-cos code of each token's averaged world xyz. Separable, so the ROS node encodes each keyframe
   once and reuses it for every query (:meth:`VisualFeatures.concat_views`).
2. :meth:`~Ros3DForConditionalGeneration.prepare_inputs_embeds` — text embeddings, + box-centre code
   on ``<coord>``, and the visual tokens (``h`` rows of ``w`` tokens + ``image_newline`` per view)
   spliced in place of the single ``<image>`` placeholder of each sample.
3. Qwen2 decoder → last hidden states → LM logits; the LM loss covers labelled (answer) tokens only.
4. Heads on the last hidden states: grounding at the ``<ground>`` token against proposal features
   pooled from the pre-pool features; Ross3D (masked views every Δt steps, BEV every step, both
   skipped on grounding batches) and 3DRS alignment on the visual-token states. All terms are
   weighted by :func:`~.losses.compose_losses`.

State-dict layout (what :mod:`.checkpoint` writes; LLaVA-Video names minus their ``model.`` prefix)::

    vision_tower.embeddings.{patch_embedding,position_embedding}.*        SiglipVisionModel, layers
    vision_tower.encoder.layers.{i}.{layer_norm1,self_attn.{q,k,v,out}_proj,layer_norm2,mlp.fc1,mlp.fc2}.*
                                                                           i < vision.layers_used
    mm_projector.{0,2}.{weight,bias}                                       mlp2x_gelu
    image_newline                                                          (D,)
    language_model.model.embed_tokens.weight                               Qwen2ForCausalLM
    language_model.model.layers.{i}.{self_attn.{q,k,v,o}_proj,mlp.{gate,up,down}_proj,
                                     input_layernorm,post_attention_layernorm}.*
    language_model.model.norm.weight
    language_model.lm_head.weight                                          (tied to embed_tokens when configured)
    grounding_head.{query_head,object_head}.{0,3}.{weight,bias}, .2 (LayerNorm), grounding_head.no_object
    training_heads.view_masker.mask_token                                  training only
    training_heads.ross3d.denoiser.*                                       training only
    training_heads.alignment3drs.proj.*                                    training only

Mapping a LLaVA-Video-7B-Qwen2 checkpoint: ``model.vision_tower.vision_tower.vision_model.X`` →
``vision_tower.X`` (drop ``post_layernorm``/``head``; LLaVA already deleted the last layer),
``model.mm_projector.X`` → ``mm_projector.X``, ``model.image_newline`` → ``image_newline``, other
``model.X`` → ``language_model.model.X``, ``lm_head.weight`` → ``language_model.lm_head.weight``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, fields, replace

import torch
from torch import nn
from torch.nn import functional as F

from .alignment3drs import Alignment3DRSHead
from .configuration import Ros3DModelConfig
from .coord import coord_embedding
from .grounding import GroundingHead, infonce_loss, pool_proposal_features
from .losses import compose_losses
from .position_encoding import SinCos3DPositionEncoding, patch_xyz_from_world
from .ross3d.masking import ViewMasker
from .tokenizer import IGNORE_INDEX
from .vision import (
    add_row_newlines,
    build_projector,
    build_vision_tower,
    encode_patches,
    pool_grid,
    visual_token_offsets,
)

__all__ = ["VisualFeatures", "SplicedInputs", "Ros3DOutput", "Ros3DForConditionalGeneration"]


@dataclass
class VisualFeatures:
    """What :meth:`Ros3DForConditionalGeneration.encode_frames` computes for ``B × V`` views.

    Attributes:
        tokens: ``(B, V, h, w, D)`` pooled visual tokens with the 3D code added — what the LLM sees.
        pre_pool: ``(B, V, Hp, Wp, D)`` projector output before pooling (grounding pools objects here).
        pre_pool_xyz / pre_pool_valid: ``(B, V, Hp, Wp, 3)`` / ``(B, V, Hp, Wp)`` average world
            position of each patch and whether it had any depth.
        token_xyz / token_valid: the same for the pooled token cells (the code's input).
        view_mask: ``(B, V)`` views replaced by the Ross3D mask token, or None.
    """

    tokens: torch.Tensor
    pre_pool: torch.Tensor
    pre_pool_xyz: torch.Tensor
    pre_pool_valid: torch.Tensor
    token_xyz: torch.Tensor
    token_valid: torch.Tensor
    view_mask: torch.Tensor | None = None

    @property
    def num_views(self) -> int:
        return int(self.tokens.shape[1])

    @property
    def grid(self) -> tuple[int, int]:
        """Pooled token grid ``(h, w)`` per view."""
        return int(self.tokens.shape[2]), int(self.tokens.shape[3])

    @property
    def num_spliced_tokens(self) -> int:
        """Sequence positions the visual tokens take per sample, newlines included: ``V·h·(w+1)``."""
        h, w = self.grid
        return self.num_views * h * (w + 1)

    @staticmethod
    def concat_views(parts: Sequence[VisualFeatures]) -> VisualFeatures:
        """Join features computed separately (e.g. one keyframe each) along the view axis."""
        if not parts:
            raise ValueError("concat_views: nothing to concatenate")
        if any(p.view_mask is not None for p in parts):
            raise ValueError("concat_views: masked (training) features cannot be cached and joined")
        grids = {(p.grid, p.pre_pool.shape[2:4]) for p in parts}
        if len(grids) != 1:
            raise ValueError(f"concat_views: views were encoded at different resolutions: {sorted(map(str, grids))}")
        kwargs = {f.name: torch.cat([getattr(p, f.name) for p in parts], dim=1) for f in fields(VisualFeatures) if f.name != "view_mask"}
        return VisualFeatures(**kwargs)

    def detach(self) -> VisualFeatures:
        return replace(self, **{f.name: getattr(self, f.name).detach() for f in fields(self) if getattr(self, f.name) is not None})


@dataclass
class SplicedInputs:
    """The LLM's input after the visual tokens replaced ``<image>`` (all ``(B, L')``-shaped).

    ``token_ids`` is the spliced id sequence with ``-1`` at visual positions (newlines included);
    ``visual_positions (B, V·h·w)`` are the sequence indices of the real visual tokens in
    ``(view, row, column)`` order, or None for a text-only batch.
    """

    inputs_embeds: torch.Tensor
    attention_mask: torch.Tensor
    position_ids: torch.Tensor
    labels: torch.Tensor | None
    token_ids: torch.Tensor
    visual_positions: torch.Tensor | None


@dataclass
class Ros3DOutput:
    """Model output.

    Attributes:
        loss: weighted total (None without any target).
        losses: every contributing term as a float, plus ``"loss"`` (for logging).
        loss_terms: the unweighted term tensors themselves.
        logits: ``(B, L', vocab)`` LM logits over the spliced sequence (the last ``logits_to_keep``
            positions only when that was set).
        visual_hidden: ``(B, V, h, w, D)`` last-layer LLM states at the visual tokens (newlines
            removed): the input of the Ross3D / 3DRS heads.
        visual_pre_pool / visual_pre_pool_xyz / visual_pre_pool_valid: see :class:`VisualFeatures`.
        ground_logits: ``(B, P + 1)`` proposal scores (last = no object) when proposals were given.
        view_mask: ``(B, V)`` views masked for Ross3D on this step, or None.
        attention_mask: ``(B, L')`` mask of the spliced sequence (aligned with ``logits``).
    """

    loss: torch.Tensor | None
    losses: dict[str, float]
    logits: torch.Tensor
    visual_hidden: torch.Tensor | None = None
    visual_pre_pool: torch.Tensor | None = None
    visual_pre_pool_xyz: torch.Tensor | None = None
    visual_pre_pool_valid: torch.Tensor | None = None
    ground_logits: torch.Tensor | None = None
    view_mask: torch.Tensor | None = None
    attention_mask: torch.Tensor | None = None
    loss_terms: dict[str, torch.Tensor] = field(default_factory=dict)


class Ros3DForConditionalGeneration(nn.Module):
    """The full model.

    Args:
        config: the model config (a preset from :mod:`.presets` or a checkpoint's).
        training_heads: also build the training-only parts the config enables (Ross3D mask token
            and denoiser, 3DRS projector). An inference model (the default) has none of their
            parameters; the frozen VAE that makes Ross3D's latent targets stays outside the model
            (:func:`~.ross3d.targets.encode_images`), so it never enters a checkpoint.
    """

    def __init__(self, config: Ros3DModelConfig, training_heads: bool = False) -> None:
        super().__init__()
        if not isinstance(config, Ros3DModelConfig):
            raise TypeError(f"config: expected Ros3DModelConfig, got {type(config).__name__}")
        config.validate()
        self.config = config
        D = config.language.hidden_size
        self.vision_tower = build_vision_tower(config.vision)
        self.mm_projector = build_projector(config.projector, config.vision.hidden_size, D)
        self.image_newline = nn.Parameter(torch.randn(D) / D**0.5)
        from transformers import Qwen2ForCausalLM

        self.language_model = Qwen2ForCausalLM(config.language.qwen2_config(config.tokens))
        self.position_encoding = SinCos3DPositionEncoding(D, config.position_encoding)
        self.grounding_head = GroundingHead(D, config.grounding)
        self.training_heads = nn.ModuleDict()
        if training_heads:
            if config.ross3d is not None and config.ross3d.enabled:
                from .ross3d.head import Ross3DHead  # diffusers: only a training model pays its import

                if config.ross3d.cross_view:
                    self.training_heads["view_masker"] = ViewMasker(D, config.ross3d)
                self.training_heads["ross3d"] = Ross3DHead(D, config.ross3d)
            if config.alignment3drs is not None:
                self.training_heads["alignment3drs"] = Alignment3DRSHead(D, config.alignment3drs)

    # -- small helpers -------------------------------------------------------------------------------
    @property
    def hidden_size(self) -> int:
        return self.config.language.hidden_size

    @property
    def has_training_heads(self) -> bool:
        return len(self.training_heads) > 0

    def num_parameters(self, include_training_heads: bool = True) -> int:
        """Parameter count (tied embeddings counted once)."""
        params = {id(p): p for name, p in self.named_parameters() if include_training_heads or not name.startswith("training_heads.")}
        return sum(p.numel() for p in params.values())

    def gradient_checkpointing_enable(self, enabled: bool = True) -> None:
        """Recompute the activations of the SigLIP and Qwen2 layers in backward (training memory ↓).

        Uses transformers' (non-reentrant) activation checkpointing of both towers; it is active in
        training mode only.
        """
        for module in (self.vision_tower, self.language_model):
            if enabled:
                module.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
            else:
                module.activation_checkpointing_disable()

    def gradient_checkpointing_disable(self) -> None:
        self.gradient_checkpointing_enable(False)

    def position_code(self, xyz: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """3D code of ``xyz (..., 3)``, zero where ``valid`` is False: a cell without any depth
        reading has no position, and a code for the clamp corner of the voxel grid would lie."""
        return self.position_encoding(xyz) * valid[..., None].to(torch.float32)

    # -- 1. visual tokens --------------------------------------------------------------------------
    def encode_frames(
        self,
        pixel_values: torch.Tensor,
        world_xyz: torch.Tensor,
        world_valid: torch.Tensor,
        *,
        mask_views: bool = False,
        add_position_encoding: bool = True,
        generator: torch.Generator | None = None,
    ) -> VisualFeatures:
        """Visual tokens of ``B × V`` posed views.

        Args:
            pixel_values: ``(B, V, 3, H, W)`` normalised images (any ``V``, any ``H × W``).
            world_xyz: ``(B, V, H, W, 3)`` world coordinates of every pixel (metres).
            world_valid: ``(B, V, H, W)`` bool, True where the pixel had depth.
            mask_views: replace a random subset of views by the Ross3D mask token (before the 3D code
                is added, so masked views keep their position). Needs the training heads.
            add_position_encoding: False gives the "no PE" ablation.
            generator: drives which views are masked.
        """
        if pixel_values.ndim != 5 or pixel_values.shape[2] != 3:
            raise ValueError(f"pixel_values: expected shape (B, V, 3, H, W), got {tuple(pixel_values.shape)}")
        B, V, _, H, W = pixel_values.shape
        if world_xyz.shape != (B, V, H, W, 3):
            raise ValueError(f"world_xyz: expected shape {(B, V, H, W, 3)} (one point per pixel), got {tuple(world_xyz.shape)}")
        if world_valid.shape != (B, V, H, W):
            raise ValueError(f"world_valid: expected shape {(B, V, H, W)}, got {tuple(world_valid.shape)}")
        vcfg, pcfg = self.config.vision, self.config.projector
        tower_dtype = self.vision_tower.embeddings.patch_embedding.weight.dtype
        if not self.config.visual_input:  # text-only ablation: same shapes, nothing seen
            pixel_values = torch.zeros_like(pixel_values)
            world_valid = torch.zeros_like(world_valid)

        patches = encode_patches(self.vision_tower, pixel_values.reshape(B * V, 3, H, W).to(tower_dtype), vcfg.patch_size, vcfg.image_size)
        pre_pool = self.mm_projector(patches)  # (B·V, Hp, Wp, D)
        pooled = pool_grid(pre_pool, pcfg.pool_stride, pcfg.pool_mode)  # (B·V, h, w, D)
        Hp, Wp = pre_pool.shape[1:3]
        h, w = pooled.shape[1:3]
        D = pre_pool.shape[-1]

        # Pixels right/below the last whole patch are never seen by the tower (384 px = 27·14 + 6).
        ps = vcfg.patch_size
        xyz = world_xyz[:, :, : Hp * ps, : Wp * ps]
        valid = world_valid[:, :, : Hp * ps, : Wp * ps].to(torch.bool)
        pre_xyz, pre_valid = patch_xyz_from_world(xyz, valid, (Hp, Wp))
        tok_xyz, tok_valid = patch_xyz_from_world(xyz, valid, (h, w))

        tokens = pooled.reshape(B, V, h, w, D)
        view_mask = None
        if mask_views:
            if "view_masker" not in self.training_heads:
                raise RuntimeError("mask_views=True needs the Ross3D view masker: build the model with training_heads=True and ross3d.cross_view")
            tokens, view_mask = self.training_heads["view_masker"].mask_views(tokens, generator=generator)
        if add_position_encoding:
            tokens = tokens + self.position_code(tok_xyz, tok_valid).to(tokens.dtype)
        return VisualFeatures(
            tokens=tokens,
            pre_pool=pre_pool.reshape(B, V, Hp, Wp, D),
            pre_pool_xyz=pre_xyz,
            pre_pool_valid=pre_valid,
            token_xyz=tok_xyz,
            token_valid=tok_valid,
            view_mask=view_mask,
        )

    # -- 2. LLM input ------------------------------------------------------------------------------
    def prepare_inputs_embeds(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        visual: VisualFeatures | None = None,
        coord_centres: torch.Tensor | None = None,
    ) -> SplicedInputs:
        """Text embeddings with the ``<coord>`` codes added and the visual tokens spliced in.

        Every sample of an image batch holds exactly one ``<image>``; all samples then grow by the
        same number of positions, so padding (left or right) is preserved without re-padding.
        """
        tok = self.config.tokens
        if input_ids.ndim != 2:
            raise ValueError(f"input_ids: expected shape (B, L), got {tuple(input_ids.shape)}")
        B, L = input_ids.shape
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        if attention_mask.shape != (B, L):
            raise ValueError(f"attention_mask: expected shape {(B, L)}, got {tuple(attention_mask.shape)}")
        if labels is not None and labels.shape != (B, L):
            raise ValueError(f"labels: expected shape {(B, L)}, got {tuple(labels.shape)}")

        embed = self.language_model.get_input_embeddings()
        embeds = embed(input_ids)
        is_coord = input_ids == tok.coord
        n_coord = int(is_coord.sum())
        if n_coord or coord_centres is not None:
            if coord_centres is None:
                raise ValueError(f"input_ids hold {n_coord} <coord> token(s) but no coord_centres were given")
            centres = coord_centres.reshape(-1, 3)
            if centres.shape[0] != n_coord:
                raise ValueError(f"coord_centres: {centres.shape[0]} centres for {n_coord} <coord> token(s) (row-major order)")
            code = coord_embedding(self.position_encoding, centres.to(embeds.device)).to(embeds.dtype)
            delta = torch.zeros_like(embeds)
            delta[is_coord] = code
            embeds = embeds + delta

        is_image = input_ids == tok.image
        per_sample = is_image.sum(dim=1)
        if visual is None:
            if bool(is_image.any()):
                raise ValueError("input_ids contain <image> but no frames/visual features were given")
            position_ids = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
            return SplicedInputs(embeds, attention_mask, position_ids, labels, input_ids, None)
        if visual.tokens.shape[0] != B:
            raise ValueError(f"visual features have batch {visual.tokens.shape[0]}, input_ids {B}")
        if not bool((per_sample == 1).all()):
            raise ValueError(f"every sample needs exactly one <image> placeholder when frames are given; counts: {per_sample.tolist()}")

        seq = add_row_newlines(visual.tokens.to(embeds.dtype), self.image_newline)  # (B, N, D)
        N = seq.shape[1]
        p = is_image.long().argmax(dim=1, keepdim=True)  # (B, 1) placeholder index
        j = torch.arange(L + N - 1, device=input_ids.device)[None]  # (1, L')
        in_visual = (j >= p) & (j < p + N)
        text_src = torch.where(j < p, j, j - N + 1).clamp(0, L - 1)
        vis_src = (j - p).clamp(0, N - 1)
        inputs_embeds = torch.where(
            in_visual[..., None],
            seq.gather(1, vis_src[..., None].expand(-1, -1, seq.shape[-1])),
            embeds.gather(1, text_src[..., None].expand(-1, -1, embeds.shape[-1])),
        )
        mask = torch.where(in_visual, torch.ones_like(attention_mask[:, :1]), attention_mask.gather(1, text_src))
        ids = torch.where(in_visual, torch.full_like(input_ids[:, :1], -1), input_ids.gather(1, text_src))
        new_labels = None
        if labels is not None:
            new_labels = torch.where(in_visual, torch.full_like(labels[:, :1], IGNORE_INDEX), labels.gather(1, text_src))
        V = visual.num_views
        h, w = visual.grid
        visual_positions = p + visual_token_offsets(V, h, w, device=input_ids.device)[None]
        position_ids = (mask.long().cumsum(-1) - 1).clamp(min=0)
        return SplicedInputs(inputs_embeds, mask, position_ids, new_labels, ids, visual_positions)

    # -- 3./4. forward -----------------------------------------------------------------------------
    def _should_mask_views(self, global_step: int | None, grounding_batch: bool, view_latents: torch.Tensor | None) -> bool:
        """Ross3D cross-view masking: training mode, a masking step (every Δt), not a grounding
        batch, and masked-view targets available (masking without a target only hurts the LM)."""
        masker = self.training_heads["view_masker"] if "view_masker" in self.training_heads else None
        return (
            masker is not None
            and self.training
            and global_step is not None
            and not grounding_batch
            and view_latents is not None
            and self.config.loss_weights.get("ross3d_view", 0.0) > 0
            and masker.should_mask(int(global_step))
        )

    def _check_training_inputs(
        self, view_latents: torch.Tensor | None, bev_latents: torch.Tensor | None, teacher_feats: torch.Tensor | None
    ) -> None:
        if (view_latents is not None or bev_latents is not None) and "ross3d" not in self.training_heads:
            raise ValueError("Ross3D targets were given but the model has no Ross3D head (build it with training_heads=True and a ross3d config)")
        if teacher_feats is not None and "alignment3drs" not in self.training_heads:
            raise ValueError("teacher_feats were given but the model has no 3DRS head (build it with training_heads=True and an alignment3drs config)")

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        pixel_values: torch.Tensor | None = None,
        world_xyz: torch.Tensor | None = None,
        world_valid: torch.Tensor | None = None,
        *,
        visual: VisualFeatures | None = None,
        proposals: torch.Tensor | None = None,
        proposal_valid: torch.Tensor | None = None,
        coord_centres: torch.Tensor | None = None,
        ground_targets: torch.Tensor | None = None,
        global_step: int | None = None,
        view_latents: torch.Tensor | None = None,
        bev_latents: torch.Tensor | None = None,
        bev_valid: torch.Tensor | None = None,
        teacher_feats: torch.Tensor | None = None,
        teacher_valid: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        logits_to_keep: int = 0,
    ) -> Ros3DOutput:
        """Run the model; every loss whose targets are given is computed and composed.

        Args:
            input_ids / attention_mask / labels: ``(B, L)``; one ``<image>`` per sample when frames
                are given; ``labels`` = :data:`~.tokenizer.IGNORE_INDEX` outside the answer.
            pixel_values / world_xyz / world_valid: frames as in :meth:`encode_frames`; or pass
                ``visual`` (precomputed :class:`VisualFeatures`) instead.
            proposals / proposal_valid: ``(B, P, 6)`` candidate boxes ``[cx,cy,cz,sx,sy,sz]`` and
                ``(B, P)`` validity. Their presence makes this a grounding batch: every sample needs
                a ``<ground>`` token, whose last-layer state scores the candidates.
            coord_centres: ``(N, 3)`` box centres for the ``N`` ``<coord>`` tokens (row-major).
            ground_targets: ``(B, P + 1)`` (or ``(B, P)``) positive mask → InfoNCE term ``ground``.
            global_step: optimizer step; decides Ross3D masking steps.
            view_latents / bev_latents / bev_valid: Ross3D targets (see
                :class:`~.ross3d.head.Ross3DHead`); skipped on grounding batches.
            teacher_feats / teacher_valid: ``(B, V, Dt, Ht, Wt)`` 3D-teacher features and ``(B, V)``
                validity → 3DRS term ``align3drs``.
            generator: randomness of masking and diffusion noise (reproducible tests).
            logits_to_keep: compute LM logits for the last ``k`` positions only (0 = all). A query
                needs the last one; 32 views make 6.8k positions × a 152k vocabulary otherwise.
        """
        self._check_training_inputs(view_latents, bev_latents, teacher_feats)
        grounding_batch = proposals is not None
        weights = self.config.loss_weights

        if visual is not None and pixel_values is not None:
            raise ValueError("pass either frames (pixel_values, world_xyz, world_valid) or precomputed visual features, not both")
        if visual is None and pixel_values is not None:
            if world_xyz is None or world_valid is None:
                raise ValueError("pixel_values need world_xyz and world_valid (the 3D position of every pixel)")
            visual = self.encode_frames(
                pixel_values, world_xyz, world_valid,
                mask_views=self._should_mask_views(global_step, grounding_batch, view_latents), generator=generator,
            )
        spliced = self.prepare_inputs_embeds(input_ids, attention_mask, labels, visual, coord_centres)

        hidden = self.language_model.model(
            inputs_embeds=spliced.inputs_embeds,
            attention_mask=spliced.attention_mask,
            position_ids=spliced.position_ids,
            use_cache=False,
        ).last_hidden_state
        if logits_to_keep < 0:
            raise ValueError(f"logits_to_keep must be >= 0, got {logits_to_keep}")
        if logits_to_keep and spliced.labels is not None:
            raise ValueError("logits_to_keep cannot be combined with labels (the LM loss needs every position's logits)")
        logits = self.language_model.lm_head(hidden[:, -logits_to_keep:] if logits_to_keep else hidden)

        terms: dict[str, torch.Tensor] = {}
        if spliced.labels is not None and weights.get("lm", 0.0) > 0:
            lm = self._lm_loss(logits, spliced.labels)
            if lm is not None:
                terms["lm"] = lm

        visual_hidden = None
        if visual is not None and spliced.visual_positions is not None:
            V, (h, w) = visual.num_views, visual.grid
            pos = spliced.visual_positions[..., None].expand(-1, -1, hidden.shape[-1])
            visual_hidden = hidden.gather(1, pos).reshape(hidden.shape[0], V, h, w, hidden.shape[-1])

        ground_logits = None
        if grounding_batch:
            ground_logits = self._ground(hidden, spliced.token_ids, visual, proposals, proposal_valid)
            if ground_targets is not None and weights.get("ground", 0.0) > 0:
                terms["ground"] = infonce_loss(ground_logits, ground_targets.to(ground_logits.device))
        elif ground_targets is not None:
            raise ValueError("ground_targets were given without proposals")

        if visual_hidden is not None and not grounding_batch and "ross3d" in self.training_heads:
            if view_latents is not None or bev_latents is not None:
                ross = self.training_heads["ross3d"](
                    visual_hidden, visual.view_mask if visual is not None else None,
                    view_latents if weights.get("ross3d_view", 0.0) > 0 else None,
                    bev_latents if weights.get("ross3d_bev", 0.0) > 0 else None,
                    bev_valid, generator=generator,
                )
                terms.update(ross)
        if teacher_feats is not None and weights.get("align3drs", 0.0) > 0:
            if visual_hidden is None:
                raise ValueError("teacher_feats need visual tokens (frames) in the batch")
            terms["align3drs"] = self.training_heads["alignment3drs"](visual_hidden, teacher_feats, teacher_valid)

        loss, log = compose_losses(terms, weights)
        return Ros3DOutput(
            loss=loss,
            losses=log,
            logits=logits,
            visual_hidden=visual_hidden,
            visual_pre_pool=None if visual is None else visual.pre_pool,
            visual_pre_pool_xyz=None if visual is None else visual.pre_pool_xyz,
            visual_pre_pool_valid=None if visual is None else visual.pre_pool_valid,
            ground_logits=ground_logits,
            view_mask=None if visual is None else visual.view_mask,
            attention_mask=spliced.attention_mask,
            loss_terms=terms,
        )

    @staticmethod
    def _lm_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor | None:
        """Next-token cross-entropy over the labelled positions only (float32; None if none)."""
        shift_labels = labels[:, 1:]
        selected = shift_labels != IGNORE_INDEX
        if not bool(selected.any()):
            return None
        return F.cross_entropy(logits[:, :-1][selected].float(), shift_labels[selected])

    def _ground(
        self,
        hidden: torch.Tensor,
        token_ids: torch.Tensor,
        visual: VisualFeatures | None,
        proposals: torch.Tensor,
        proposal_valid: torch.Tensor | None,
    ) -> torch.Tensor:
        """Proposal logits ``(B, P + 1)`` from the last ``<ground>`` token's hidden state."""
        if visual is None:
            raise ValueError("grounding needs frames (proposal features are pooled from the visual features)")
        B = hidden.shape[0]
        if proposals.ndim != 3 or proposals.shape[0] != B or proposals.shape[-1] != 6:
            raise ValueError(f"proposals: expected shape ({B}, P, 6), got {tuple(proposals.shape)}")
        if proposal_valid is None:
            proposal_valid = torch.ones(proposals.shape[:2], dtype=torch.bool, device=proposals.device)
        is_ground = token_ids == self.config.tokens.ground
        missing = (~is_ground.any(dim=1)).nonzero().flatten().tolist()
        if missing:
            raise ValueError(f"grounding batch: samples {missing} have no <ground> token")
        L = token_ids.shape[1]
        last = L - 1 - is_ground.flip(1).long().argmax(dim=1)  # index of the last <ground> per sample
        query = hidden[torch.arange(B, device=hidden.device), last]
        feats = pool_proposal_features(
            visual.pre_pool, visual.pre_pool_xyz, visual.pre_pool_valid,
            proposals.to(visual.pre_pool_xyz.dtype), proposal_valid.to(torch.bool), self.position_encoding,
        )
        return self.grounding_head(query, feats.to(query.dtype), proposal_valid.to(torch.bool))

    # -- text generation ---------------------------------------------------------------------------
    @torch.no_grad()
    def generate(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        pixel_values: torch.Tensor | None = None,
        world_xyz: torch.Tensor | None = None,
        world_valid: torch.Tensor | None = None,
        *,
        visual: VisualFeatures | None = None,
        coord_centres: torch.Tensor | None = None,
        max_new_tokens: int = 32,
        **generate_kwargs,
    ) -> torch.Tensor:
        """Greedy answer tokens ``(B, T)`` (only the new tokens; padded with the pad id after EOS).

        Batches are padded on the left (:func:`~.tokenizer.collate_prompts`). Generation stops at
        ``<|im_end|>``/``<|endoftext|>``. Extra keyword arguments go to Hugging Face ``generate``.
        """
        if visual is not None and pixel_values is not None:
            raise ValueError("pass either frames or precomputed visual features, not both")
        if visual is None and pixel_values is not None:
            if world_xyz is None or world_valid is None:
                raise ValueError("pixel_values need world_xyz and world_valid")
            visual = self.encode_frames(pixel_values, world_xyz, world_valid)
        spliced = self.prepare_inputs_embeds(input_ids, attention_mask, None, visual, coord_centres)
        tok = self.config.tokens
        kwargs = dict(do_sample=False, num_beams=1, eos_token_id=[tok.im_end, tok.endoftext], pad_token_id=tok.pad)
        kwargs.update(generate_kwargs)
        return self.language_model.generate(
            inputs_embeds=spliced.inputs_embeds,
            attention_mask=spliced.attention_mask,
            max_new_tokens=max_new_tokens,
            **kwargs,
        )
