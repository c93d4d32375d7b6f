#!/usr/bin/python3
"""Independent float64 PyTorch reference for the official mamba_ssm hybrid language models.

The ground truth the C++ attention and gated-MLP plugins, the official-layout config adapter
and the host's LayerNorm / MLP sub-block / growing KV cache are tested against.  It follows
the semantics of the OFFICIAL state-spaces/mamba modules (``mamba_ssm/modules/mha.py``,
``mlp.py``, ``block.py`` and ``models/mixer_seq_simple.py``), written out in plain PyTorch
1.13 on the CPU: no flash_attn, no einops, no ``F.scaled_dot_product_attention`` (explicit
matrix products, an explicit causal mask and an explicit softmax in float64).  The Mamba-1
and Mamba-2 layers are those of :mod:`mamba_reference` and :mod:`mamba2_reference` (the
official per-group gated norm included).

Notation: B batch, L length, D d_model, H num_heads, Hkv num_heads_kv, hd head_dim,
R rotary_emb_dim, K d_conv, C = hd (H + 2 Hkv) the width of qkv, F the MLP's hidden width,
V the (padded) vocabulary.

Semantics
---------
Block (official ``Block``, prenorm; ``residual_in_fp32`` changes nothing in float64)::

    h = h + mixer(norm(h));   if d_intermediate > 0:  h = h + mlp(norm2(h))

``norm``/``norm2``/``norm_f`` are RMSNorm (weight) when ``rms_norm`` is true, else
``nn.LayerNorm`` (weight and bias, biased variance); eps 1e-5 (MambaConfig has no key for it).

MHA (official ``MHA``)::

    qkv = in_proj(x) (+ bias if qkv_proj_bias)            (B, L, C), rows q | k | v
    if d_conv > 0: qkv = causal_depthwise_conv(qkv) + conv1d.bias     (no activation)
    q = qkv[:, :, :H hd] -> (H, hd);  k, v = the next Hkv hd each -> (Hkv, hd)
          (the official "(two hkv d)" rearrange of the kv part: all of k, then all of v)
    q, k = rotary(q, k) on their first R dims at absolute positions
    q head h reads kv head h // (H / Hkv)                  (torch.repeat_interleave)
    o_h = softmax(q_h k^T * softmax_scale + causal mask) v   softmax_scale: 1/sqrt(hd)
    out = out_proj(concat_h o_h) (+ bias if out_proj_bias)

Rotary (flash_attn ``RotaryEmbedding``, no xpos scale): for pair i < R/2 the angle at position
p is p * base^(-2i/R).  Non-interleaved (GPT-NeoX, ``rotate_half``): the pair is
(i, i + R/2); interleaved (GPT-J): the pair is (2i, 2i+1).  Each pair (a, b) becomes
(a cos - b sin, b cos + a sin); dims R..hd pass through.  (flash_attn computes the angles in
float32; here they are float64, a difference of order 1e-7 relative.)

The official ``causal`` defaults to False (a non-causal MHA); every fixture sets it true, and
the decode paths here require it.  ``mlp_dim`` > 0 (the MLP fused into the MHA) is refused.

Decode state of an MHA layer (:class:`AttnState`): the keys (after rotary) and values of
every token each row holds, that row's number of tokens (rows may differ: a ragged batch),
and, with d_conv > 0, the last K qkv conv INPUTS (before the conv), oldest first, like the
Mamba layers' conv state.  One decode step therefore equals the forward pass; the official
MHA caches the conv OUTPUTS at prefill instead, and its decode differs from its forward; this
reference does not follow it.

GatedMLP (official ``GatedMLP``, bias false)::

    F = ceil(d_intermediate / 128) * 128;  [y | gate] = fc1(x) (2F rows: y first)
    out = fc2(y * silu(gate))

Model (official ``MixerModel`` / ``MambaLMHeadModel``): embedding (``backbone.embedding.weight``,
vocab padded up to ``pad_vocab_size_multiple``) -> blocks -> norm_f -> lm_head (the embedding
when ``tie_embeddings``).  Layer i is an MHA when i is in ``attn_layer_idx`` (with ``attn_cfg``),
else the SSM that ``ssm_cfg`` names ("layer": "Mamba1" by default, or "Mamba2").  Our
extension ``ssm_cfg_per_layer`` maps a layer index (a string) to a complete ssm_cfg of its
own, with its own "layer"; its missing keys take the module's defaults, not the top-level
ssm_cfg's values.

Main entry points: :class:`HybridConfig` (``from_json``), :func:`model_forward`,
:func:`model_step`, :func:`empty_state`, :func:`merge_rows`, :func:`load_model`,
:func:`mha_forward` / :func:`mha_step`, :func:`gated_mlp`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
from dataclasses import dataclass
from typing import List, Optional, Tuple, Union

import torch

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mamba2_reference as m2  # noqa: E402
import mamba_reference as ref  # noqa: E402

Tensor = torch.Tensor
Params = ref.Params

read_safetensors = ref.read_safetensors
write_safetensors = ref.write_safetensors
linear = ref.linear
silu = ref.silu
rms_norm = ref.rms_norm
next_token_loss = ref.next_token_loss
embedding_name = ref.embedding_name
head_weight = ref.head_weight  # reads only cfg.tie_word_embeddings

NORM_EPS = 1e-5
MLP_MULTIPLE = 128

# --------------------------------------------------------------------------------------
# configuration
# --------------------------------------------------------------------------------------

# The constructor arguments of the official modules (those that only initialise are
# accepted and ignored); anything else is an error, so a misspelt key cannot pass silently.
MAMBA1_KEYS = {"layer", "d_state", "d_conv", "expand", "dt_rank", "dt_min", "dt_max", "dt_init",
               "dt_scale", "dt_init_floor", "conv_bias", "bias", "use_fast_path"}
MAMBA2_KEYS = {"layer", "d_state", "d_conv", "conv_init", "expand", "headdim", "d_ssm", "ngroups",
               "A_init_range", "D_has_hdim", "rmsnorm", "norm_before_gate", "dt_min", "dt_max",
               "dt_init_floor", "dt_limit", "bias", "conv_bias", "chunk_size", "use_mem_eff_path"}
MHA_KEYS = {"num_heads", "num_heads_kv", "head_dim", "mlp_dim", "qkv_proj_bias", "out_proj_bias",
            "softmax_scale", "causal", "d_conv", "rotary_emb_dim", "rotary_emb_base",
            "rotary_emb_interleaved"}
MODEL_KEYS = {"d_model", "d_intermediate", "n_layer", "vocab_size", "ssm_cfg", "attn_layer_idx",
              "attn_cfg", "rms_norm", "residual_in_fp32", "fused_add_norm",
              "pad_vocab_size_multiple", "tie_embeddings", "ssm_cfg_per_layer"}


def _check_keys(cfg: dict, allowed: set, where: str) -> None:
    unknown = sorted(set(cfg) - allowed)
    if unknown:
        raise ValueError(f"{where}: unknown keys {unknown}")


@dataclass(frozen=True)
class AttnConfig:
    """The official ``MHA`` arguments the math depends on.

    ``head_group_map`` ("block": q head h reads kv head h // (H/Hkv), the official
    repeat_interleave; "modulo": h % Hkv) exists so that the generator can show the fixtures
    tell the two apart."""
    d_model: int
    num_heads: int
    num_heads_kv: int
    head_dim: int
    qkv_proj_bias: bool = True
    out_proj_bias: bool = True
    softmax_scale: Optional[float] = None
    causal: bool = False
    d_conv: int = 0
    rotary_emb_dim: int = 0
    rotary_emb_base: float = 10000.0
    rotary_emb_interleaved: bool = False
    head_group_map: str = "block"

    def __post_init__(self) -> None:
        if self.num_heads % self.num_heads_kv != 0:
            raise ValueError(f"num_heads {self.num_heads} is not a multiple of num_heads_kv "
                             f"{self.num_heads_kv}")
        if self.rotary_emb_dim % 2 != 0 or self.rotary_emb_dim > self.head_dim:
            raise ValueError(f"rotary_emb_dim {self.rotary_emb_dim} must be even and at most "
                             f"head_dim {self.head_dim}")

    @property
    def q_dim(self) -> int:
        return self.num_heads * self.head_dim

    @property
    def kv_dim(self) -> int:
        return self.num_heads_kv * self.head_dim

    @property
    def qkv_dim(self) -> int:
        return self.q_dim + 2 * self.kv_dim

    @property
    def scale(self) -> float:
        return 1.0 / math.sqrt(self.head_dim) if self.softmax_scale is None else self.softmax_scale

    def replace(self, **changes) -> "AttnConfig":
        return dataclasses.replace(self, **changes)

    @staticmethod
    def from_official(d_model: int, cfg: dict) -> "AttnConfig":
        """From an ``attn_cfg`` (the official MHA defaults fill the missing keys)."""
        _check_keys(cfg, MHA_KEYS, "attn_cfg")
        if int(cfg.get("mlp_dim", 0)) != 0:
            raise ValueError("attn_cfg.mlp_dim > 0 (an MLP fused into the MHA) is not supported")
        num_heads = int(cfg["num_heads"])
        head_dim = cfg.get("head_dim")
        if head_dim is None:
            if d_model % num_heads:
                raise ValueError(f"d_model {d_model} is not a multiple of num_heads {num_heads}")
            head_dim = d_model // num_heads
        kv = cfg.get("num_heads_kv")
        scale = cfg.get("softmax_scale")
        return AttnConfig(
            d_model=d_model, num_heads=num_heads,
            num_heads_kv=num_heads if kv is None else int(kv), head_dim=int(head_dim),
            qkv_proj_bias=bool(cfg.get("qkv_proj_bias", True)),
            out_proj_bias=bool(cfg.get("out_proj_bias", True)),
            softmax_scale=None if scale is None else float(scale),
            causal=bool(cfg.get("causal", False)), d_conv=int(cfg.get("d_conv", 0)),
            rotary_emb_dim=int(cfg.get("rotary_emb_dim", 0)),
            rotary_emb_base=float(cfg.get("rotary_emb_base", 10000.0)),
            rotary_emb_interleaved=bool(cfg.get("rotary_emb_interleaved", False)))


@dataclass(frozen=True)
class MlpConfig:
    """The official ``GatedMLP`` as ``create_block`` builds it (hidden_features =
    d_intermediate rounded up to the multiple of 128, out_features = d_model, bias false)."""
    d_model: int
    hidden: int
    bias: bool = False

    @staticmethod
    def from_d_intermediate(d_model: int, d_intermediate: int) -> "MlpConfig":
        hidden = (d_intermediate + MLP_MULTIPLE - 1) // MLP_MULTIPLE * MLP_MULTIPLE
        return MlpConfig(d_model=d_model, hidden=hidden)


def mamba1_config(d_model: int, ssm: dict, where: str) -> ref.MambaConfig:
    """A Mamba-1 layer's config from its ssm_cfg (official ``Mamba`` defaults)."""
    _check_keys(ssm, MAMBA1_KEYS, where)
    rank = ssm.get("dt_rank", "auto")
    return ref.MambaConfig(
        vocab_size=0, d_model=d_model, d_state=int(ssm.get("d_state", 16)), n_layer=1,
        expand=int(ssm.get("expand", 2)), d_conv=int(ssm.get("d_conv", 4)),
        dt_rank=math.ceil(d_model / 16) if rank == "auto" else int(rank),
        use_bias=bool(ssm.get("bias", False)), use_conv_bias=bool(ssm.get("conv_bias", True)),
        tie_word_embeddings=True, eps=NORM_EPS)


def mamba2_config(d_model: int, ssm: dict, where: str) -> m2.Mamba2Config:
    """A Mamba-2 layer's config from its ssm_cfg (official ``Mamba2`` defaults), through
    :meth:`mamba2_reference.Mamba2Config.from_official`."""
    _check_keys(ssm, MAMBA2_KEYS, where)
    return m2.Mamba2Config.from_official({"d_model": d_model, "n_layer": 1, "vocab_size": 1,
                                          "ssm_cfg": ssm, "rms_norm": True})


LayerConfig = Union[ref.MambaConfig, m2.Mamba2Config, AttnConfig]


@dataclass(frozen=True)
class HybridConfig:
    """An official ``MambaLMHeadModel`` config: per layer its kind ("mamba1", "mamba2",
    "attention") and that layer's config; ``vocab_size`` is the padded number of rows."""
    vocab_size: int
    vocab_unpadded: int
    d_model: int
    n_layer: int
    rms_norm: bool
    tie_word_embeddings: bool
    layer_kinds: Tuple[str, ...]
    layer_cfgs: Tuple[LayerConfig, ...]
    mlp: Optional[MlpConfig]
    eps: float = NORM_EPS

    def replace(self, **changes) -> "HybridConfig":
        return dataclasses.replace(self, **changes)

    def with_attention(self, **changes) -> "HybridConfig":
        """This config with ``changes`` made to every attention layer's AttnConfig."""
        cfgs = tuple(c.replace(**changes) if k == "attention" else c
                     for k, c in zip(self.layer_kinds, self.layer_cfgs))
        return self.replace(layer_cfgs=cfgs)

    @staticmethod
    def from_json(cfg: dict) -> "HybridConfig":
        _check_keys(cfg, MODEL_KEYS, "config")
        d_model, n_layer = int(cfg["d_model"]), int(cfg["n_layer"])
        vocab = int(cfg["vocab_size"])
        multiple = int(cfg.get("pad_vocab_size_multiple", 8))
        padded = vocab + (multiple - vocab % multiple) % multiple
        attn_layers = [int(i) for i in cfg.get("attn_layer_idx") or []]
        per_layer = {int(k): v for k, v in (cfg.get("ssm_cfg_per_layer") or {}).items()}
        for i in list(attn_layers) + list(per_layer):
            if not 0 <= i < n_layer:
                raise ValueError(f"layer index {i} outside [0, {n_layer})")
        both = sorted(set(attn_layers) & set(per_layer))
        if both:
            raise ValueError(f"layers {both} are in attn_layer_idx and ssm_cfg_per_layer")
        kinds, cfgs = [], []
        for i in range(n_layer):
            if i in attn_layers:
                kinds.append("attention")
                cfgs.append(AttnConfig.from_official(d_model, dict(cfg.get("attn_cfg") or {})))
                continue
            ssm = dict(per_layer[i] if i in per_layer else (cfg.get("ssm_cfg") or {}))
            where = f"ssm_cfg_per_layer[{i}]" if i in per_layer else "ssm_cfg"
            layer = ssm.get("layer", "Mamba1")
            if layer == "Mamba1":
                kinds.append("mamba1")
                cfgs.append(mamba1_config(d_model, ssm, where))
            elif layer == "Mamba2":
                kinds.append("mamba2")
                cfgs.append(mamba2_config(d_model, ssm, where))
            else:
                raise ValueError(f"{where}.layer {layer!r} is not Mamba1 or Mamba2")
        d_intermediate = int(cfg.get("d_intermediate", 0))
        mlp = MlpConfig.from_d_intermediate(d_model, d_intermediate) if d_intermediate else None
        return HybridConfig(
            vocab_size=padded, vocab_unpadded=vocab, d_model=d_model, n_layer=n_layer,
            rms_norm=bool(cfg.get("rms_norm", True)),
            tie_word_embeddings=bool(cfg.get("tie_embeddings", True)),
            layer_kinds=tuple(kinds), layer_cfgs=tuple(cfgs), mlp=mlp)


# --------------------------------------------------------------------------------------
# norms and the gated MLP
# --------------------------------------------------------------------------------------

def layer_norm(x: Tensor, weight: Tensor, bias: Tensor, eps: float) -> Tensor:
    """``nn.LayerNorm``: (x - mean) / sqrt(biased variance + eps) * weight + bias."""
    centred = x - x.mean(dim=-1, keepdim=True)
    var = centred.pow(2).mean(dim=-1, keepdim=True)
    return centred / torch.sqrt(var + eps) * weight + bias


def block_norm(params: Params, prefix: str, cfg: HybridConfig, x: Tensor) -> Tensor:
    """The norm whose tensors are ``prefix`` + "weight" (and "bias" for LayerNorm)."""
    if cfg.rms_norm:
        return rms_norm(x, params[prefix + "weight"], cfg.eps)
    return layer_norm(x, params[prefix + "weight"], params[prefix + "bias"], cfg.eps)


def gated_mlp(m: Params, x: Tensor) -> Tensor:
    """Official ``GatedMLP``: fc1 -> [y | gate] (y the first half) -> y * silu(gate) -> fc2."""
    h = linear(x, m["fc1.weight"], m.get("fc1.bias"))
    half = h.shape[-1] // 2
    return linear(h[..., :half] * silu(h[..., half:]), m["fc2.weight"], m.get("fc2.bias"))


# --------------------------------------------------------------------------------------
# rotary embedding
# --------------------------------------------------------------------------------------

def rotary_angles(positions: Tensor, dim: int, base: float) -> Tensor:
    """positions (...) -> angles (..., dim/2): position * base^(-2i/dim)."""
    inv_freq = base ** (-torch.arange(0, dim, 2, dtype=torch.float64) / dim)
    return positions.to(torch.float64)[..., None] * inv_freq


def rotary_pairs(x: Tensor, positions: Tensor, acfg: AttnConfig) -> Tensor:
    """Rotates each pair of the first R dims of x (B, L, heads, hd) by its angle at
    positions (B, L): pairs (i, i + R/2), or (2i, 2i+1) when interleaved."""
    r = acfg.rotary_emb_dim
    if r == 0:
        return x
    ang = rotary_angles(positions, r, acfg.rotary_emb_base)[:, :, None, :]  # (B, L, 1, R/2)
    cos, sin = torch.cos(ang), torch.sin(ang)
    rot = x[..., :r]
    if acfg.rotary_emb_interleaved:
        a, b = rot[..., 0::2], rot[..., 1::2]
        out = torch.stack([a * cos - b * sin, b * cos + a * sin], dim=-1).reshape(rot.shape)
    else:
        a, b = rot[..., :r // 2], rot[..., r // 2:]
        out = torch.cat([a * cos - b * sin, b * cos + a * sin], dim=-1)
    return torch.cat([out, x[..., r:]], dim=-1)


def rotary_rotate_half(x: Tensor, positions: Tensor, acfg: AttnConfig) -> Tensor:
    """The same rotation in flash_attn's ``apply_rotary_emb_torch`` form (cos and sin repeated
    to R dims, ``x * cos + rotate_half(x) * sin``): used by the decode step, so that
    decode == forward also checks the two forms against each other."""
    r = acfg.rotary_emb_dim
    if r == 0:
        return x
    ang = rotary_angles(positions, r, acfg.rotary_emb_base)
    if acfg.rotary_emb_interleaved:
        ang = ang.repeat_interleave(2, dim=-1)          # "... d -> ... (d 2)"
    else:
        ang = torch.cat([ang, ang], dim=-1)             # "... d -> ... (2 d)"
    cos, sin = torch.cos(ang)[..., None, :], torch.sin(ang)[..., None, :]
    rot = x[..., :r]
    if acfg.rotary_emb_interleaved:
        x1, x2 = rot[..., 0::2], rot[..., 1::2]
        half = torch.stack([-x2, x1], dim=-1).reshape(rot.shape)
    else:
        x1, x2 = rot[..., :r // 2], rot[..., r // 2:]
        half = torch.cat([-x2, x1], dim=-1)
    return torch.cat([rot * cos + half * sin, x[..., r:]], dim=-1)


# --------------------------------------------------------------------------------------
# multi-head attention
# --------------------------------------------------------------------------------------

@dataclass
class AttnState:
    """Decode state of an MHA layer for B rows.

    k, v: (B, T, Hkv, hd), T >= max(lengths); row b holds lengths[b] tokens (keys after the
    rotary), the rest of its rows is zero.  conv: (B, C, K) the last K qkv conv inputs,
    oldest first (zeros before the first token), or None without a conv."""
    k: Tensor
    v: Tensor
    lengths: List[int]
    conv: Optional[Tensor]


def attn_empty_state(acfg: AttnConfig, batch: int, dtype=torch.float64) -> AttnState:
    hkv, hd = acfg.num_heads_kv, acfg.head_dim
    conv = (torch.zeros(batch, acfg.qkv_dim, acfg.d_conv, dtype=dtype) if acfg.d_conv > 0
            else None)
    return AttnState(k=torch.zeros(batch, 0, hkv, hd, dtype=dtype),
                     v=torch.zeros(batch, 0, hkv, hd, dtype=dtype), lengths=[0] * batch,
                     conv=conv)


def _kv_head(acfg: AttnConfig, h: int) -> int:
    group = acfg.num_heads // acfg.num_heads_kv
    return h // group if acfg.head_group_map == "block" else h % acfg.num_heads_kv


def _split_qkv(acfg: AttnConfig, qkv: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
    """(..., C) -> q (..., H, hd), k (..., Hkv, hd), v (..., Hkv, hd)."""
    lead = qkv.shape[:-1]
    hd = acfg.head_dim
    q = qkv[..., :acfg.q_dim].reshape(*lead, acfg.num_heads, hd)
    k = qkv[..., acfg.q_dim:acfg.q_dim + acfg.kv_dim].reshape(*lead, acfg.num_heads_kv, hd)
    v = qkv[..., acfg.q_dim + acfg.kv_dim:].reshape(*lead, acfg.num_heads_kv, hd)
    return q, k, v


def _softmax_rows(scores: Tensor) -> Tensor:
    """Softmax over the last dim, written out (entries of -inf get weight 0)."""
    shifted = scores - scores.max(dim=-1, keepdim=True).values
    e = torch.exp(shifted)
    return e / e.sum(dim=-1, keepdim=True)


def mha_forward(m: Params, acfg: AttnConfig, x: Tensor,
                state: Optional[AttnState] = None) -> Tuple[Tensor, AttnState]:
    """MHA over a sequence x (B, L, D), optionally after the tokens a state holds (row b
    then starts at position state.lengths[b]).  Returns the output (B, L, D) and the new
    state (each row's keys and values appended, the conv window advanced)."""
    bsz, length, _ = x.shape
    if state is not None and not acfg.causal:
        raise ValueError("a non-causal MHA has no decode state")
    st = attn_empty_state(acfg, bsz, x.dtype) if state is None else state
    qkv = linear(x, m["in_proj.weight"], m.get("in_proj.bias"))          # (B, L, C)
    new_conv = None
    if acfg.d_conv > 0:
        k_conv = acfg.d_conv
        history = st.conv[:, :, 1:].transpose(1, 2)                      # (B, K-1, C)
        conv_w = m["conv1d.weight"].reshape(acfg.qkv_dim, k_conv)
        inputs = qkv
        qkv = ref.causal_depthwise_conv(inputs, conv_w, m["conv1d.bias"], history)
        all_inputs = torch.cat([st.conv.transpose(1, 2), inputs], dim=1)  # (B, K+L, C)
        new_conv = all_inputs[:, -k_conv:, :].transpose(1, 2).contiguous()
    q, k, v = _split_qkv(acfg, qkv)
    start = torch.tensor(st.lengths, dtype=torch.float64)
    positions = start[:, None] + torch.arange(length, dtype=torch.float64)  # (B, L)
    q = rotary_pairs(q, positions, acfg)
    k = rotary_pairs(k, positions, acfg)

    contexts, keys, values = [], [], []
    for b in range(bsz):
        held = st.lengths[b]
        k_all = torch.cat([st.k[b, :held], k[b]], dim=0)                 # (held+L, Hkv, hd)
        v_all = torch.cat([st.v[b, :held], v[b]], dim=0)
        keys.append(k_all)
        values.append(v_all)
        # query t sits at position held + t and sees keys 0 .. held + t
        allowed = (torch.arange(held + length)[None, :]
                   <= held + torch.arange(length)[:, None])               # (L, held+L)
        heads = []
        for h in range(acfg.num_heads):
            g = _kv_head(acfg, h)
            scores = (q[b, :, h] @ k_all[:, g].transpose(0, 1)) * acfg.scale
            if acfg.causal:
                scores = scores.masked_fill(~allowed, -math.inf)
            heads.append(_softmax_rows(scores) @ v_all[:, g])            # (L, hd)
        contexts.append(torch.stack(heads, dim=1))                       # (L, H, hd)
    context = torch.stack(contexts, dim=0).reshape(bsz, length, acfg.q_dim)
    out = linear(context, m["out_proj.weight"], m.get("out_proj.bias"))
    lengths = [n + length for n in st.lengths]
    return out, AttnState(k=_pad_rows(keys), v=_pad_rows(values), lengths=lengths,
                          conv=new_conv)


def _pad_rows(rows: List[Tensor]) -> Tensor:
    """Rows (T_b, ...) -> (B, max T_b, ...), zero-padded at the end."""
    longest = max(r.shape[0] for r in rows)
    return torch.stack([torch.cat([r, r.new_zeros(longest - r.shape[0], *r.shape[1:])])
                        for r in rows])


def mha_step(m: Params, acfg: AttnConfig, x: Tensor,
             state: AttnState) -> Tuple[Tensor, AttnState]:
    """One decode step, written as an incremental engine does it (independently of
    :func:`mha_forward`): shift the conv window and take its dot product with the kernel,
    rotate q and k (rotate_half form) at each row's own position, write k and v into the
    cache slot of that position, attend over the row's slots 0..position.  x (B, D)."""
    if not acfg.causal:
        raise ValueError("a non-causal MHA has no decode step")
    bsz = x.shape[0]
    qkv = linear(x, m["in_proj.weight"], m.get("in_proj.bias"))          # (B, C)
    window = None
    if acfg.d_conv > 0:
        window = torch.cat([state.conv[:, :, 1:], qkv[:, :, None]], dim=2)  # (B, C, K)
        qkv = (window * m["conv1d.weight"].reshape(acfg.qkv_dim, acfg.d_conv)).sum(-1)
        qkv = qkv + m["conv1d.bias"]
    q, k, v = _split_qkv(acfg, qkv[:, None, :])                           # (B, 1, ., hd)
    pos = torch.tensor(state.lengths, dtype=torch.float64)[:, None]     # (B, 1)
    q = rotary_rotate_half(q, pos, acfg)[:, 0]
    k = rotary_rotate_half(k, pos, acfg)[:, 0]
    slots = max(max(state.lengths) + 1, state.k.shape[1])
    k_cache = torch.zeros(bsz, slots, acfg.num_heads_kv, acfg.head_dim, dtype=x.dtype)
    v_cache = torch.zeros_like(k_cache)
    k_cache[:, :state.k.shape[1]] = state.k
    v_cache[:, :state.v.shape[1]] = state.v
    context = x.new_zeros(bsz, acfg.num_heads, acfg.head_dim)
    for b in range(bsz):
        p = state.lengths[b]
        k_cache[b, p] = k[b]
        v_cache[b, p] = v[b]
        for h in range(acfg.num_heads):
            g = _kv_head(acfg, h)
            scores = torch.stack([torch.dot(q[b, h], k_cache[b, j, g]) for j in range(p + 1)])
            weights = torch.softmax(scores * acfg.scale, dim=0)
            context[b, h] = (weights[:, None] * v_cache[b, :p + 1, g]).sum(0)
    out = linear(context.reshape(bsz, acfg.q_dim), m["out_proj.weight"], m.get("out_proj.bias"))
    return out, AttnState(k=k_cache, v=v_cache, lengths=[n + 1 for n in state.lengths],
                          conv=window)


# --------------------------------------------------------------------------------------
# the model
# --------------------------------------------------------------------------------------

LayerState = Union[ref.LayerState, m2.LayerState, AttnState]


def _layer_params(params: Params, i: int, part: str) -> Params:
    """Layer i's tensors under backbone.layers.{i}.{part}., keyed by their short names."""
    prefix = f"backbone.layers.{i}.{part}."
    return {k[len(prefix):]: v for k, v in params.items() if k.startswith(prefix)}


def _mixer_forward(kind: str, lcfg, m: Params, x: Tensor, st):
    if kind == "attention":
        return mha_forward(m, lcfg, x, st)
    if kind == "mamba2":
        return m2.mixer_forward(m, lcfg, x, st)
    return ref.mixer_forward(m, lcfg, x, st)


def _mixer_step(kind: str, lcfg, m: Params, x: Tensor, st):
    if kind == "attention":
        return mha_step(m, lcfg, x, st)
    if kind == "mamba2":
        return m2.mixer_step(m, lcfg, x, st)
    return ref.mixer_step(m, lcfg, x, st)


def _stack(params: Params, cfg: HybridConfig, ids: Tensor, mixer, states) -> Tuple[Tensor, list]:
    """embedding -> per layer h += mixer(norm(h)), then h += mlp(norm2(h)) -> norm_f -> head.
    ``mixer(kind, layer cfg, mixer tensors, x, state)``; ids (B, L) or (B,)."""
    hidden = params[embedding_name(params)][ids]
    new_states = []
    for i in range(cfg.n_layer):
        pre = f"backbone.layers.{i}."
        normed = block_norm(params, pre + "norm.", cfg, hidden)
        out, st = mixer(cfg.layer_kinds[i], cfg.layer_cfgs[i], _layer_params(params, i, "mixer"),
                        normed, None if states is None else states[i])
        hidden = hidden + out
        if cfg.mlp is not None:
            hidden = hidden + gated_mlp(_layer_params(params, i, "mlp"),
                                        block_norm(params, pre + "norm2.", cfg, hidden))
        new_states.append(st)
    hidden = block_norm(params, "backbone.norm_f.", cfg, hidden)
    return linear(hidden, head_weight(params, cfg)), new_states


def model_forward(params: Params, cfg: HybridConfig, ids: Tensor,
                  states: Optional[list] = None) -> Tuple[Tensor, list]:
    """ids (B, L) -> logits (B, L, V) and the new per-layer states, optionally continuing
    from ``states`` (a chunked prefill; attention rows may hold different numbers of tokens)."""
    return _stack(params, cfg, ids, _mixer_forward, states)


def model_step(params: Params, cfg: HybridConfig, ids: Tensor, states: list) -> Tuple[Tensor, list]:
    """One decode step: ids (B,) -> logits (B, V), through every layer's step path."""
    return _stack(params, cfg, ids, _mixer_step, states)


def empty_state(cfg: HybridConfig, batch: int, dtype=torch.float64) -> list:
    """All-zero decode state of every layer (no token held)."""
    out = []
    for kind, lcfg in zip(cfg.layer_kinds, cfg.layer_cfgs):
        if kind == "attention":
            out.append(attn_empty_state(lcfg, batch, dtype))
        elif kind == "mamba2":
            conv = torch.zeros(batch, lcfg.conv_dim, lcfg.d_conv, dtype=dtype)
            ssm = torch.zeros(batch, lcfg.n_heads, lcfg.head_dim, lcfg.d_state, dtype=dtype)
            out.append(m2.LayerState(conv=conv, ssm=ssm))
        else:
            conv = torch.zeros(batch, lcfg.d_inner, lcfg.d_conv, dtype=dtype)
            ssm = torch.zeros(batch, lcfg.d_inner, lcfg.d_state, dtype=dtype)
            out.append(ref.LayerState(conv=conv, ssm=ssm))
    return out


def merge_rows(cfg: HybridConfig, row_states: List[list]) -> list:
    """The states of separate runs (each of batch 1 or more) as one batch, rows in order:
    how a ragged batch is formed after prefilling each prompt alone."""
    merged = []
    for i, kind in enumerate(cfg.layer_kinds):
        parts = [s[i] for s in row_states]
        if kind == "attention":
            ks = [p.k[b, :p.lengths[b]] for p in parts for b in range(p.k.shape[0])]
            vs = [p.v[b, :p.lengths[b]] for p in parts for b in range(p.v.shape[0])]
            lengths = [n for p in parts for n in p.lengths]
            conv = None if parts[0].conv is None else torch.cat([p.conv for p in parts])
            merged.append(AttnState(k=_pad_rows(ks), v=_pad_rows(vs), lengths=lengths, conv=conv))
        else:
            cls = type(parts[0])
            merged.append(cls(conv=torch.cat([p.conv for p in parts]),
                              ssm=torch.cat([p.ssm for p in parts])))
    return merged


def load_model(directory: str) -> Tuple[HybridConfig, Params]:
    """``config.json`` + ``model.safetensors`` of a directory, upcast to float64."""
    with open(os.path.join(directory, "config.json")) as f:
        cfg = HybridConfig.from_json(json.load(f))
    tensors, _ = read_safetensors(os.path.join(directory, "model.safetensors"))
    return cfg, {k: v.to(torch.float64) for k, v in tensors.items()}


def host_norm_names(params: Params) -> List[str]:
    """The block norms' and the final norm's tensors (a model holding 16-bit weights keeps
    these in f32; a mixer's own norm, such as Mamba-2's gated norm, is not among them)."""
    out = []
    for name in params:
        parts = name.split(".")
        if name.startswith("backbone.norm_f."):
            out.append(name)
        elif (len(parts) == 5 and parts[:2] == ["backbone", "layers"]
              and parts[3] in ("norm", "norm2")):
            out.append(name)
    return sorted(out)
