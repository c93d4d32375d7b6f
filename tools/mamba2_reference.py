#!/usr/bin/python3
"""Independent float64 PyTorch reference for Mamba-2 (SSD) language models.

The ground truth the C++ Mamba-2 mixer is tested against.  It follows the semantics of the
OFFICIAL ``mamba_ssm.modules.mamba2.Mamba2`` module (state-spaces/mamba), as set out in
``shared/BRIEF.md`` ("Mamba-2 (SSD) math, and where the sources disagree"):

* the gated RMSNorm normalises per group of E/G consecutive channels (official
  ``RMSNormGated(group_size=E/G, norm_before_gate=False)``), not over all of E as Hugging
  Face's ``MambaRMSNormGated`` does;
* head h reads B/C group h // (H/G) (prefill and decode alike);
* dt = softplus(dt + dt_bias) is clamped to ``time_step_limit`` in the forward and in the
  decode step alike.

It reads both checkpoint layouts: Hugging Face ``Mamba2ForCausalLM`` (model_type "mamba2")
and the official ``MambaLMHeadModel`` config (``d_model``, ``ssm_cfg`` ...; vocabulary padded
to ``pad_vocab_size_multiple``).  The pieces shared with Mamba-1 (RMSNorm, softplus, silu,
the written-out causal depthwise convolution, the safetensors codec, the loss, the
embedding / norm / head stack around the mixer and the directory loader) are imported from
:mod:`mamba_reference`.

Notation: B batch, L length, D d_model, E d_inner = expand * D = H * P, H heads, P head_dim,
G n_groups, N d_state, K d_conv, V (padded) vocabulary, conv_dim = E + 2 G N.

Main entry points
-----------------
* :func:`ssd` - the standalone SSD recurrence (sequential loop over time, float64-safe).
* :func:`ssd_chunked` - the chunked (block-decomposed) SSD form, a cross-check.
* :class:`Mamba2Config` - what the math needs, from either config layout.
* :func:`model_forward` / :func:`model_step` - full forward and one-token decode.
* :func:`load_model` - ``config.json`` + ``model.safetensors`` of a directory, in float64.

Parameters are plain ``dict[str, torch.Tensor]`` keyed by the checkpoint tensor names.
"""

from __future__ import annotations

import dataclasses
import math
import os
import sys
from dataclasses import dataclass
from typing import List, Optional, Tuple

import torch

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mamba_reference as ref  # noqa: E402

Tensor = torch.Tensor
Params = ref.Params

# Re-exported so that callers need only this module.
read_safetensors = ref.read_safetensors
write_safetensors = ref.write_safetensors
rms_norm = ref.rms_norm
softplus = ref.softplus
silu = ref.silu
linear = ref.linear
next_token_loss = ref.next_token_loss
embedding_name = ref.embedding_name
head_weight = ref.head_weight  # reads only cfg.tie_word_embeddings

INF = float("inf")

# --------------------------------------------------------------------------------------
# configuration
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Mamba2Config:
    """The Mamba-2 model fields the math depends on (either checkpoint layout).

    ``vocab_size`` is the number of embedding rows (the padded vocabulary for the official
    layout); ``eps`` is the block / final RMSNorm epsilon and ``gated_norm_eps`` the epsilon
    of the gated norm inside the mixer.  ``norm_group_size`` (default E / G) and
    ``head_group_map`` ("block": h // (H/G), the correct one; "modulo": h % G) exist so that
    the fixture generator can show that the fixtures tell the known variants apart.
    """
    vocab_size: int
    d_model: int
    n_layer: int
    d_state: int
    expand: int
    d_conv: int
    head_dim: int
    n_heads: int
    n_groups: int
    chunk_size: int
    use_bias: bool
    use_conv_bias: bool
    tie_word_embeddings: bool
    eps: float = 1e-5
    gated_norm_eps: float = 1e-5
    time_step_limit: Tuple[float, float] = (0.0, INF)
    norm_before_gate: bool = False
    norm_group_size: Optional[int] = None
    head_group_map: str = "block"

    def __post_init__(self) -> None:
        e = self.d_inner
        if self.n_heads * self.head_dim != e:
            raise ValueError(f"num_heads * head_dim = {self.n_heads * self.head_dim} "
                             f"!= expand * hidden_size = {e}")
        if self.n_heads % self.n_groups != 0:
            raise ValueError(f"num_heads {self.n_heads} is not a multiple of n_groups "
                             f"{self.n_groups}")
        if e % self.group_size != 0:
            raise ValueError(f"norm group size {self.group_size} does not divide {e}")
        if self.head_group_map not in ("block", "modulo"):
            raise ValueError(f"head_group_map {self.head_group_map!r}")

    @property
    def d_inner(self) -> int:
        return self.expand * self.d_model

    @property
    def conv_dim(self) -> int:
        return self.d_inner + 2 * self.n_groups * self.d_state

    @property
    def d_in_proj(self) -> int:
        """in_proj output width: z (E) | xBC (E + 2GN) | dt (H)."""
        return self.d_inner + self.conv_dim + self.n_heads

    @property
    def group_size(self) -> int:
        """Channels per RMS group of the gated norm (official: E / G)."""
        return self.norm_group_size if self.norm_group_size else self.d_inner // self.n_groups

    def replace(self, **changes) -> "Mamba2Config":
        return dataclasses.replace(self, **changes)

    @staticmethod
    def from_hf(cfg: dict) -> "Mamba2Config":
        """From a Hugging Face ``Mamba2Config`` config.json (model_type "mamba2").

        The gated norm uses ``layer_norm_epsilon`` (as Hugging Face does); its grouping is
        the official one (E / n_groups channels per group) whatever Hugging Face does.
        A missing ``time_step_limit`` means (0, inf)."""
        if not cfg.get("rms_norm", True):
            raise ValueError("rms_norm false is not supported")
        d_model = int(cfg["hidden_size"])
        expand = int(cfg.get("expand", 2))
        head_dim = int(cfg.get("head_dim", 64))
        n_heads = int(cfg.get("num_heads", expand * d_model // head_dim))
        lo, hi = cfg.get("time_step_limit", (0.0, INF))
        eps = float(cfg.get("layer_norm_epsilon", 1e-5))
        return Mamba2Config(
            vocab_size=int(cfg["vocab_size"]), d_model=d_model,
            n_layer=int(cfg["num_hidden_layers"]), d_state=int(cfg.get("state_size", 128)),
            expand=expand, d_conv=int(cfg.get("conv_kernel", 4)), head_dim=head_dim,
            n_heads=n_heads, n_groups=int(cfg.get("n_groups", 1)),
            chunk_size=int(cfg.get("chunk_size", 256)),
            use_bias=bool(cfg.get("use_bias", False)),
            use_conv_bias=bool(cfg.get("use_conv_bias", True)),
            tie_word_embeddings=bool(cfg.get("tie_word_embeddings", False)),
            eps=eps, gated_norm_eps=eps, time_step_limit=(float(lo), float(hi)),
            norm_before_gate=bool(cfg.get("norm_before_gate", False)))

    @staticmethod
    def from_official(cfg: dict) -> "Mamba2Config":
        """From an official ``MambaLMHeadModel`` config.json (``ssm_cfg.layer`` "Mamba2").

        The vocabulary is padded up to ``pad_vocab_size_multiple``; both norm epsilons are
        the official fixed 1e-5; ``Mamba2`` defaults fill missing ``ssm_cfg`` keys."""
        ssm = dict(cfg.get("ssm_cfg", {}))
        if ssm.get("layer", "Mamba1") != "Mamba2":
            raise ValueError(f"ssm_cfg.layer is {ssm.get('layer')!r}, not 'Mamba2'")
        if int(cfg.get("d_intermediate", 0)) != 0 or cfg.get("attn_layer_idx"):
            raise ValueError("MLP / attention layers are not part of this reference")
        if not cfg.get("rms_norm", True):
            raise ValueError("rms_norm false (LayerNorm blocks) is not supported")
        if ssm.get("d_ssm") is not None or ssm.get("D_has_hdim", False):
            raise ValueError("d_ssm / D_has_hdim are not supported")
        if not ssm.get("rmsnorm", True):
            raise ValueError("ssm_cfg.rmsnorm false is not supported")
        vocab = int(cfg["vocab_size"])
        multiple = int(cfg.get("pad_vocab_size_multiple", 1))
        if vocab % multiple:
            vocab += multiple - vocab % multiple
        d_model = int(cfg["d_model"])
        expand = int(ssm.get("expand", 2))
        head_dim = int(ssm.get("headdim", 64))
        lo, hi = ssm.get("dt_limit", (0.0, INF))
        return Mamba2Config(
            vocab_size=vocab, d_model=d_model, n_layer=int(cfg["n_layer"]),
            d_state=int(ssm.get("d_state", 128)), expand=expand,
            d_conv=int(ssm.get("d_conv", 4)), head_dim=head_dim,
            n_heads=expand * d_model // head_dim, n_groups=int(ssm.get("ngroups", 1)),
            chunk_size=int(ssm.get("chunk_size", 256)), use_bias=bool(ssm.get("bias", False)),
            use_conv_bias=bool(ssm.get("conv_bias", True)),
            tie_word_embeddings=bool(cfg.get("tie_embeddings", True)),
            eps=1e-5, gated_norm_eps=1e-5, time_step_limit=(float(lo), float(hi)),
            norm_before_gate=bool(ssm.get("norm_before_gate", False)))

    @staticmethod
    def from_json(cfg: dict) -> "Mamba2Config":
        """Either layout: Hugging Face if ``model_type`` is "mamba2", official if ``ssm_cfg``."""
        if cfg.get("model_type") == "mamba2":
            return Mamba2Config.from_hf(cfg)
        if "ssm_cfg" in cfg:
            return Mamba2Config.from_official(cfg)
        raise ValueError("neither a Hugging Face mamba2 nor an official Mamba2 config")


# --------------------------------------------------------------------------------------
# elementwise pieces
# --------------------------------------------------------------------------------------

def head_groups(n_heads: int, n_groups: int, mode: str = "block") -> Tensor:
    """Index of the B/C group each head reads: h // (H/G) ("block"), or h % G ("modulo")."""
    h = torch.arange(n_heads)
    return h // (n_heads // n_groups) if mode == "block" else h % n_groups


def discretize_dt(dt_raw: Tensor, dt_bias: Tensor,
                  limit: Tuple[float, float] = (0.0, INF)) -> Tensor:
    """dt = clamp(softplus(dt_raw + dt_bias), lo, hi); (0, inf) is a no-op."""
    dt = softplus(dt_raw + dt_bias)
    lo, hi = limit
    if lo > 0.0 or hi < INF:
        dt = torch.clamp(dt, min=lo, max=hi)
    return dt


def gated_rms_norm(y: Tensor, z: Tensor, weight: Tensor, eps: float, group_size: int,
                   norm_before_gate: bool = False) -> Tensor:
    """Official ``RMSNormGated``: RMS over each group of ``group_size`` consecutive channels.

    norm_before_gate False (the Mamba-2 default): rmsnorm_g(y * silu(z)) * weight;
    True: rmsnorm_g(y) * weight * silu(z).  group_size = E gives Hugging Face's norm."""
    if not norm_before_gate:
        y = y * silu(z)
    shape = y.shape
    g = y.reshape(*shape[:-1], shape[-1] // group_size, group_size)
    g = g * torch.rsqrt(g.pow(2).mean(dim=-1, keepdim=True) + eps)
    out = g.reshape(shape) * weight
    return out * silu(z) if norm_before_gate else out


# --------------------------------------------------------------------------------------
# SSD
# --------------------------------------------------------------------------------------

def _expand_groups(t: Tensor, n_heads: int, mode: str) -> Tensor:
    """(B, L, G, N) -> (B, L, H, N): the group of every head."""
    return t[:, :, head_groups(n_heads, t.shape[2], mode)]


def ssd(x: Tensor, dt: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Optional[Tensor] = None,
        initial_state: Optional[Tensor] = None,
        head_group_map: str = "block") -> Tuple[Tensor, Tensor]:
    """The SSD recurrence, sequential over time (the reference).

    Layouts: x, y (B, L, H, P); dt (B, L, H), already softplus'd (and clamped); A (H),
    negative; B, C (B, L, G, N), head h reading group h // (H/G); D (H); state (B, H, P, N).
    For each step t and head h:
        S_t = exp(dt_t A_h) S_{t-1} + dt_t x_t B_t^T       (P x N)
        y_t = S_t C_t + D_h x_t
    Returns (y, S_{L-1}); S_{-1} = initial_state or zeros.
    """
    bsz, length, h, p = x.shape
    n = B.shape[-1]
    bh = _expand_groups(B, h, head_group_map)
    ch = _expand_groups(C, h, head_group_map)
    s = x.new_zeros(bsz, h, p, n) if initial_state is None else initial_state
    ys = []
    for t in range(length):
        decay = torch.exp(dt[:, t] * A)                                    # (B, H)
        drive = (dt[:, t, :, None] * x[:, t])[..., None] * bh[:, t, :, None, :]  # (B, H, P, N)
        s = decay[:, :, None, None] * s + drive
        ys.append((s * ch[:, t, :, None, :]).sum(-1))                      # (B, H, P)
    y = torch.stack(ys, dim=1) if ys else x.new_zeros(bsz, 0, h, p)
    if D is not None:
        y = y + D[:, None] * x
    return y, s


def _segsum(a: Tensor) -> Tensor:
    """a (..., T) -> (..., T, T): out[..., t, s] = a[s+1] + ... + a[t] for s <= t, -inf above.

    Built by a cumulative sum of masked copies (no difference of two prefix sums)."""
    t_len = a.shape[-1]
    rep = a[..., :, None].expand(*a.shape, t_len)            # rep[..., r, s] = a[r]
    strict = torch.ones(t_len, t_len, dtype=torch.bool).tril(-1)  # r > s
    out = torch.cumsum(rep.masked_fill(~strict, 0.0), dim=-2)
    causal = torch.ones(t_len, t_len, dtype=torch.bool).tril(0)
    return out.masked_fill(~causal, -math.inf)


def ssd_chunked(x: Tensor, dt: Tensor, A: Tensor, B: Tensor, C: Tensor,
                D: Optional[Tensor] = None, initial_state: Optional[Tensor] = None,
                chunk: int = 8, head_group_map: str = "block") -> Tuple[Tensor, Tensor]:
    """The same SSD in the chunked (block-decomposed) form, used as a cross-check.

    The sequence is zero-padded to a multiple of ``chunk`` (a padded step has dt = 0: decay
    1 and no drive, so it changes neither the earlier outputs nor the final state). Per
    chunk c, with a_t = dt_t A and its in-chunk prefix sums:
      1. intra-chunk outputs: (C B^T o exp(segsum(a))) (dt x), as matrix products;
      2. each chunk's own end state from its inputs;
      3. the states entering each chunk, by the (chunk-level) recurrence over chunk decays;
      4. the contribution of the entering state to each output, C_t exp(cum_t) S_in.
    Only sums over spans of a (all <= 0) are exponentiated; nothing is divided.
    """
    bsz, length, h, p = x.shape
    n = B.shape[-1]
    pad = (-length) % chunk
    bh = _expand_groups(B, h, head_group_map)
    ch = _expand_groups(C, h, head_group_map)

    def blocks(t: Tensor) -> Tensor:
        t = torch.cat([t, t.new_zeros(bsz, pad, *t.shape[2:])], dim=1)
        return t.reshape(bsz, -1, chunk, *t.shape[2:])

    xdt = blocks(x * dt[..., None])                       # (B, c, Q, H, P)
    bq, cq = blocks(bh), blocks(ch)                       # (B, c, Q, H, N)
    a = blocks(dt * A).permute(0, 3, 1, 2)                # (B, H, c, Q)
    cum = torch.cumsum(a, dim=-1)

    decay_in = torch.exp(_segsum(a))                      # (B, H, c, Q, Q)
    y_diag = torch.einsum("bclhn,bcshn,bhcls,bcshp->bclhp", cq, bq, decay_in, xdt)

    decay_to_end = torch.exp(cum[..., -1:] - cum)         # (B, H, c, Q)
    chunk_states = torch.einsum("bclhn,bhcl,bclhp->bchpn", bq, decay_to_end, xdt)

    s0 = x.new_zeros(bsz, h, p, n) if initial_state is None else initial_state
    chunk_states = torch.cat([s0[:, None], chunk_states], dim=1)   # (B, c+1, H, P, N)
    chunk_decay = torch.exp(_segsum(torch.nn.functional.pad(cum[..., -1], (1, 0))))
    entering = torch.einsum("bhzc,bchpn->bzhpn", chunk_decay, chunk_states)
    states, final = entering[:, :-1], entering[:, -1]

    y_off = torch.einsum("bclhn,bchpn,bhcl->bclhp", cq, states, torch.exp(cum))
    y = (y_diag + y_off).reshape(bsz, -1, h, p)[:, :length]
    if D is not None:
        y = y + D[:, None] * x
    return y, final


# --------------------------------------------------------------------------------------
# the model
# --------------------------------------------------------------------------------------

@dataclass
class LayerState:
    """Decode state of one layer: conv (B, conv_dim, K) of conv INPUTS (xBC before the
    convolution), oldest at index 0; ssm (B, H, P, N)."""
    conv: Tensor
    ssm: Tensor


_mixer_params = ref._mixer_params  # layer i's mixer tensors, keyed by their short names


def _split_in_proj(cfg: Mamba2Config, zxbcdt: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
    """in_proj output -> z (E), xBC (E + 2GN), dt (H), in that order."""
    e, cd = cfg.d_inner, cfg.conv_dim
    return zxbcdt[..., :e], zxbcdt[..., e:e + cd], zxbcdt[..., e + cd:]


def _split_xbc(cfg: Mamba2Config, xbc: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
    """Post-conv xBC (..., conv_dim) -> x (..., H, P), B (..., G, N), C (..., G, N)."""
    e, gn = cfg.d_inner, cfg.n_groups * cfg.d_state
    lead = xbc.shape[:-1]
    x = xbc[..., :e].reshape(*lead, cfg.n_heads, cfg.head_dim)
    b = xbc[..., e:e + gn].reshape(*lead, cfg.n_groups, cfg.d_state)
    c = xbc[..., e + gn:].reshape(*lead, cfg.n_groups, cfg.d_state)
    return x, b, c


def _mixer_out(m: Params, cfg: Mamba2Config, y: Tensor, z: Tensor) -> Tensor:
    y = gated_rms_norm(y, z, m["norm.weight"], cfg.gated_norm_eps, cfg.group_size,
                       cfg.norm_before_gate)
    return linear(y, m["out_proj.weight"], m.get("out_proj.bias"))


def mixer_forward(m: Params, cfg: Mamba2Config, hidden: Tensor,
                  state: Optional[LayerState] = None,
                  chunk: Optional[int] = None) -> Tuple[Tensor, LayerState]:
    """Mamba-2 mixer over a sequence (B, L, D), optionally continuing from a decode state.

    ``chunk`` None runs the sequential :func:`ssd`, otherwise :func:`ssd_chunked`.
    Returns the output (B, L, D) and the new decode state."""
    k, cd = cfg.d_conv, cfg.conv_dim
    bsz, length, _ = hidden.shape
    z, xbc, dt_raw = _split_in_proj(cfg, linear(hidden, m["in_proj.weight"],
                                                m.get("in_proj.bias")))
    prev_conv = hidden.new_zeros(bsz, cd, k) if state is None else state.conv
    history = prev_conv[:, :, 1:].transpose(1, 2)          # (B, K-1, conv_dim)
    conv_w = m["conv1d.weight"].reshape(cd, k)
    xbc_c = silu(ref.causal_depthwise_conv(xbc, conv_w, m.get("conv1d.bias"), history))
    x, b, c = _split_xbc(cfg, xbc_c)
    dt = discretize_dt(dt_raw, m["dt_bias"], cfg.time_step_limit)
    a = -torch.exp(m["A_log"])
    s0 = None if state is None else state.ssm
    if chunk is None:
        y, s = ssd(x, dt, a, b, c, m["D"], s0, cfg.head_group_map)
    else:
        y, s = ssd_chunked(x, dt, a, b, c, m["D"], s0, chunk, cfg.head_group_map)
    out = _mixer_out(m, cfg, y.reshape(bsz, length, cfg.d_inner), z)
    all_inputs = torch.cat([prev_conv.transpose(1, 2), xbc], dim=1)   # (B, K+L, conv_dim)
    conv_state = all_inputs[:, -k:, :].transpose(1, 2).contiguous()
    return out, LayerState(conv=conv_state, ssm=s)


def mixer_step(m: Params, cfg: Mamba2Config, hidden: Tensor,
               state: LayerState) -> Tuple[Tensor, LayerState]:
    """One decode step, written as an incremental engine does it (independently of
    :func:`mixer_forward`): shift the conv window left, append the new xBC input, take the
    dot product with the kernel, then one SSM update per head.  hidden: (B, D) -> (B, D)."""
    k, cd = cfg.d_conv, cfg.conv_dim
    z, xbc, dt_raw = _split_in_proj(cfg, linear(hidden, m["in_proj.weight"],
                                                m.get("in_proj.bias")))
    window = torch.cat([state.conv[:, :, 1:], xbc[:, :, None]], dim=2)   # (B, conv_dim, K)
    xbc_c = (window * m["conv1d.weight"].reshape(cd, k)).sum(-1)
    if "conv1d.bias" in m:
        xbc_c = xbc_c + m["conv1d.bias"]
    x, b, c = _split_xbc(cfg, silu(xbc_c))                 # (B,H,P), (B,G,N), (B,G,N)
    dt = discretize_dt(dt_raw, m["dt_bias"], cfg.time_step_limit)   # (B, H)
    a = -torch.exp(m["A_log"])
    groups = head_groups(cfg.n_heads, cfg.n_groups, cfg.head_group_map)
    bh, ch = b[:, groups], c[:, groups]                    # (B, H, N)
    s = (torch.exp(dt * a)[:, :, None, None] * state.ssm
         + torch.einsum("bh,bhp,bhn->bhpn", dt, x, bh))
    y = torch.einsum("bhpn,bhn->bhp", s, ch) + m["D"][:, None] * x
    out = _mixer_out(m, cfg, y.reshape(y.shape[0], cfg.d_inner), z)
    return out, LayerState(conv=window, ssm=s)


def empty_state(cfg: Mamba2Config, batch: int, dtype=torch.float64) -> List[LayerState]:
    """All-zero decode state for every layer."""
    return [LayerState(conv=torch.zeros(batch, cfg.conv_dim, cfg.d_conv, dtype=dtype),
                       ssm=torch.zeros(batch, cfg.n_heads, cfg.head_dim, cfg.d_state,
                                       dtype=dtype))
            for _ in range(cfg.n_layer)]


def model_forward(params: Params, cfg: Mamba2Config, ids: Tensor,
                  states: Optional[List[LayerState]] = None,
                  chunk: Optional[int] = None) -> Tuple[Tensor, List[LayerState]]:
    """ids (B, L) -> logits (B, L, V), new states.  Block: h = x + mixer(rmsnorm(x));
    then rmsnorm (norm_f) and the head.  The residual stream is float64 here."""
    return ref.stack_forward(params, cfg, ids,
                             lambda m, x, st: mixer_forward(m, cfg, x, st, chunk), states)


def model_step(params: Params, cfg: Mamba2Config, ids: Tensor,
               states: List[LayerState]) -> Tuple[Tensor, List[LayerState]]:
    """One decode step: ids (B,) -> logits (B, V), using :func:`mixer_step` per layer."""
    return ref.stack_forward(params, cfg, ids, lambda m, x, st: mixer_step(m, cfg, x, st),
                             states)


def load_model(directory: str) -> Tuple[Mamba2Config, Params]:
    """Load ``config.json`` (either layout) + ``model.safetensors``, upcast to float64."""
    return ref.load_model(directory, Mamba2Config.from_json)
