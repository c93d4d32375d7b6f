#!/usr/bin/python3
"""Independent float64 PyTorch reference for Mamba-1 (Hugging Face ``MambaForCausalLM``).

This module is the ground truth the C++ side of mambakit is tested against.  It is
written from the math in ``shared/BRIEF.md`` and deliberately avoids every fast path:
no fused kernels, no ``F.conv1d`` (the causal convolution is written out as a sum of
shifted inputs), and a plain Python loop over time for the selective scan.

Notation: B batch, L length, D d_model, E d_inner = expand * D, N d_state,
R dt_rank, K d_conv, V vocabulary size.

Main entry points
-----------------
* :func:`selective_scan_ref` - the standalone selective scan (sequential, float64-safe).
* :func:`selective_scan_chunked` - a second, chunked algorithm used only as a cross-check.
* :class:`MambaConfig` - the subset of the Hugging Face ``config.json`` that matters.
* :func:`model_forward` - full forward: logits plus the per-layer decode state.
* :func:`model_step` - one-token decode from a decode state (Hugging Face cache semantics).
* :func:`read_safetensors` / :func:`write_safetensors` - a self-contained safetensors codec
  (the ``safetensors`` Python package is intentionally not used).

Parameters are plain ``dict[str, torch.Tensor]`` keyed by the Hugging Face tensor names.
"""

from __future__ import annotations

import json
import math
import struct
import sys
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

import torch

Tensor = torch.Tensor
Params = Dict[str, Tensor]

SOFTPLUS_THRESHOLD = 20.0

# --------------------------------------------------------------------------------------
# safetensors codec
# --------------------------------------------------------------------------------------

_DTYPE_TO_TORCH = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
                   "F64": torch.float64}
# Same-sized integer view used to move raw bytes through numpy (numpy has no bfloat16).
_RAW_VIEW = {torch.float32: torch.int32, torch.float16: torch.int16,
             torch.bfloat16: torch.int16, torch.float64: torch.int64}


def _tensor_bytes(t: Tensor) -> bytes:
    """Little-endian raw bytes of a contiguous float tensor (any supported dtype)."""
    assert sys.byteorder == "little", "the codec assumes a little-endian host"
    raw = t.detach().contiguous().cpu().view(_RAW_VIEW[t.dtype])
    return raw.numpy().tobytes()


def write_safetensors(path: str, tensors: Dict[str, Tensor],
                      metadata: Optional[Dict[str, str]] = None) -> None:
    """Write ``tensors`` (already in their storage dtype) to ``path`` in safetensors format.

    Layout: 8-byte little-endian header length n, then n bytes of JSON (padded with spaces
    to a multiple of 8), then the raw data of every tensor, in sorted-name order.
    """
    dtype_names = {v: k for k, v in _DTYPE_TO_TORCH.items()}
    header: Dict[str, object] = {}
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    blobs = []
    offset = 0
    for name in sorted(tensors):
        t = tensors[name]
        blob = _tensor_bytes(t)
        header[name] = {"dtype": dtype_names[t.dtype], "shape": list(t.shape),
                        "data_offsets": [offset, offset + len(blob)]}
        offset += len(blob)
        blobs.append(blob)
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * ((-len(text)) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for blob in blobs:
            f.write(blob)


def read_safetensors(path: str) -> Tuple[Dict[str, Tensor], Dict[str, str]]:
    """Read a safetensors file; returns (tensors in their stored dtype, metadata)."""
    import numpy as np  # local: only the codec needs numpy
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n].decode("utf-8"))
    base = 8 + n
    metadata = header.pop("__metadata__", {}) or {}
    out: Dict[str, Tensor] = {}
    for name, info in header.items():
        dtype = _DTYPE_TO_TORCH[info["dtype"]]
        begin, end = info["data_offsets"]
        raw_np = {torch.int16: "<i2", torch.int32: "<i4", torch.int64: "<i8"}[_RAW_VIEW[dtype]]
        arr = np.frombuffer(data[base + begin:base + end], dtype=raw_np).copy()
        t = torch.from_numpy(arr).view(dtype).reshape(info["shape"])
        out[name] = t
    return out, metadata


# --------------------------------------------------------------------------------------
# configuration
# --------------------------------------------------------------------------------------

@dataclass
class MambaConfig:
    """The Hugging Face ``MambaConfig`` fields the math depends on."""
    vocab_size: int
    d_model: int
    d_state: int
    n_layer: int
    expand: int
    d_conv: int
    dt_rank: int
    use_bias: bool
    use_conv_bias: bool
    tie_word_embeddings: bool
    eps: float = 1e-5

    @property
    def d_inner(self) -> int:
        return self.expand * self.d_model

    @staticmethod
    def from_hf(cfg: dict) -> "MambaConfig":
        """Build from a parsed ``config.json`` ("auto" dt rank = ceil(hidden_size / 16))."""
        d_model = int(cfg["hidden_size"])
        rank = cfg.get("time_step_rank", "auto")
        dt_rank = math.ceil(d_model / 16) if rank == "auto" else int(rank)
        return MambaConfig(
            vocab_size=int(cfg["vocab_size"]), d_model=d_model,
            d_state=int(cfg.get("state_size", 16)), n_layer=int(cfg["num_hidden_layers"]),
            expand=int(cfg.get("expand", 2)), d_conv=int(cfg.get("conv_kernel", 4)),
            dt_rank=dt_rank, use_bias=bool(cfg.get("use_bias", False)),
            use_conv_bias=bool(cfg.get("use_conv_bias", True)),
            tie_word_embeddings=bool(cfg.get("tie_word_embeddings", True)),
            eps=float(cfg.get("layer_norm_epsilon", 1e-5)))


def embedding_name(params: Params) -> str:
    """Name of the embedding table: ``backbone.embeddings.weight`` or the old ``embedding``."""
    for name in ("backbone.embeddings.weight", "backbone.embedding.weight"):
        if name in params:
            return name
    raise KeyError("no embedding table (backbone.embeddings.weight / backbone.embedding.weight)")


def head_weight(params: Params, cfg: MambaConfig) -> Tensor:
    """The LM head matrix [V, D]: ``lm_head.weight`` if present, else the tied embedding."""
    if "lm_head.weight" in params:
        return params["lm_head.weight"]
    if not cfg.tie_word_embeddings:
        raise KeyError("lm_head.weight missing but tie_word_embeddings is false")
    return params[embedding_name(params)]


# --------------------------------------------------------------------------------------
# elementwise pieces
# --------------------------------------------------------------------------------------

def softplus(v: Tensor) -> Tensor:
    """softplus(v) = log(1 + exp(v)), and exactly v above the threshold 20 (PyTorch rule).

    The exp argument is clamped so that the unused branch never produces inf/nan gradients.
    """
    safe = torch.clamp(v, max=SOFTPLUS_THRESHOLD)
    return torch.where(v > SOFTPLUS_THRESHOLD, v, torch.log1p(torch.exp(safe)))


def silu(v: Tensor) -> Tensor:
    """x * sigmoid(x)."""
    return v * torch.sigmoid(v)


def rms_norm(x: Tensor, weight: Tensor, eps: float) -> Tensor:
    """x * rsqrt(mean(x^2, last dim) + eps) * weight."""
    return x * torch.rsqrt(x.pow(2).mean(dim=-1, keepdim=True) + eps) * weight


def linear(x: Tensor, weight: Tensor, bias: Optional[Tensor] = None) -> Tensor:
    """x @ weight^T (+ bias); weight is [out, in] as in ``nn.Linear``."""
    y = x @ weight.transpose(0, 1)
    return y if bias is None else y + bias


def causal_depthwise_conv(x: Tensor, weight: Tensor, bias: Optional[Tensor],
                          history: Optional[Tensor] = None) -> Tensor:
    """Causal depthwise convolution over time, written out as a sum of shifted inputs.

    x: (B, L, E); weight: (E, K) (the [E, 1, K] checkpoint tensor squeezed);
    history: optional (B, K-1, E) inputs that precede x (zeros when None, i.e. the
    left padding of K-1).  out[t] = sum_k weight[:, k] * xp[t + k], xp = [history, x].
    """
    bsz, length, e = x.shape
    k = weight.shape[1]
    if history is None:
        history = x.new_zeros(bsz, k - 1, e)
    xp = torch.cat([history, x], dim=1)  # (B, K-1+L, E)
    out = x.new_zeros(bsz, length, e)
    for j in range(k):
        out = out + xp[:, j:j + length, :] * weight[:, j]
    return out if bias is None else out + bias


# --------------------------------------------------------------------------------------
# selective scan
# --------------------------------------------------------------------------------------

def _scan_prepare(delta: Tensor, delta_bias: Optional[Tensor], delta_softplus: bool) -> Tensor:
    """dt = softplus(delta + delta_bias) (or without softplus), bias added exactly once."""
    dt = delta if delta_bias is None else delta + delta_bias
    return softplus(dt) if delta_softplus else dt


def _scan_finish(y: Tensor, u: Tensor, D: Optional[Tensor], z: Optional[Tensor]) -> Tensor:
    """y + D * u, then gating by silu(z)."""
    if D is not None:
        y = y + u * D
    if z is not None:
        y = y * silu(z)
    return y


def selective_scan_ref(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor,
                       D: Optional[Tensor] = None, z: Optional[Tensor] = None,
                       delta_bias: Optional[Tensor] = None, delta_softplus: bool = True,
                       initial_state: Optional[Tensor] = None) -> Tuple[Tensor, Tensor]:
    """Sequential selective scan (the reference recurrence).

    Layouts: u, delta, z, y: (B, L, E); B, C: (B, L, N); A: (E, N); D, delta_bias: (E,);
    state: (B, E, N).  For each step t:
        dt_t = softplus(delta_t + delta_bias)           (softplus only if delta_softplus)
        h_t  = exp(dt_t * A) * h_{t-1} + dt_t * B_t * u_t
        y_t  = <h_t, C_t> + D * u_t,   then y_t *= silu(z_t)
    Returns (y, h_{L-1}); h_{-1} = initial_state or zeros.
    """
    bsz, length, e = u.shape
    n = A.shape[1]
    dt = _scan_prepare(delta, delta_bias, delta_softplus)
    h = u.new_zeros(bsz, e, n) if initial_state is None else initial_state
    ys = []
    for t in range(length):
        dt_t = dt[:, t, :].unsqueeze(-1)                      # (B, E, 1)
        decay = torch.exp(dt_t * A)                            # (B, E, N)
        drive = dt_t * B[:, t, None, :] * u[:, t, :, None]     # (B, E, N)
        h = decay * h + drive
        ys.append((h * C[:, t, None, :]).sum(-1))              # (B, E)
    y = torch.stack(ys, dim=1) if ys else u.new_zeros(bsz, 0, e)
    return _scan_finish(y, u, D, z), h


def selective_scan_chunked(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor,
                           D: Optional[Tensor] = None, z: Optional[Tensor] = None,
                           delta_bias: Optional[Tensor] = None, delta_softplus: bool = True,
                           initial_state: Optional[Tensor] = None,
                           chunk: int = 8) -> Tuple[Tensor, Tensor]:
    """The same scan computed chunk by chunk, used only to cross-check the sequential one.

    Inside a chunk every state is formed in closed form,
        h_t = exp(S_t) h_in + sum_{s<=t} exp(S_t - S_s) dt_s B_s u_s,   S_t = sum_{r<=t} dt_r A,
    using only differences S_t - S_s <= 0 (never a division by a prefix product), and the
    last state is carried into the next chunk.
    """
    bsz, length, e = u.shape
    n = A.shape[1]
    dt = _scan_prepare(delta, delta_bias, delta_softplus)
    h = u.new_zeros(bsz, e, n) if initial_state is None else initial_state
    ys = []
    for start in range(0, length, chunk):
        sl = slice(start, min(start + chunk, length))
        dt_c, u_c, b_c, c_c = dt[:, sl], u[:, sl], B[:, sl], C[:, sl]
        t_len = dt_c.shape[1]
        logd = dt_c[..., None] * A                                  # (B, T, E, N)
        cum = torch.cumsum(logd, dim=1)                             # S_t
        diff = cum[:, :, None] - cum[:, None, :]                    # (B, T, T, E, N): S_t - S_s
        causal = torch.ones(t_len, t_len, dtype=torch.bool).tril()  # s <= t
        diff = torch.where(causal[None, :, :, None, None], diff,
                           torch.full_like(diff, -math.inf))
        drive = dt_c[..., None] * b_c[:, :, None, :] * u_c[..., None]  # (B, T, E, N)
        states = torch.exp(cum) * h[:, None] + (torch.exp(diff) * drive[:, None]).sum(2)
        ys.append((states * c_c[:, :, None, :]).sum(-1))            # (B, T, E)
        h = states[:, -1]
    y = torch.cat(ys, dim=1) if ys else u.new_zeros(bsz, 0, e)
    return _scan_finish(y, u, D, z), h


# --------------------------------------------------------------------------------------
# the model
# --------------------------------------------------------------------------------------

@dataclass
class LayerState:
    """Decode state of one layer: conv (B, E, K) of conv INPUTS, oldest first; ssm (B, E, N)."""
    conv: Tensor
    ssm: Tensor


def _mixer_params(params: Params, i: int) -> Params:
    """The tensors of layer i's mixer, keyed by their short names (``in_proj.weight``...)."""
    prefix = f"backbone.layers.{i}.mixer."
    return {k[len(prefix):]: v for k, v in params.items() if k.startswith(prefix)}


def _mixer_inner(m: Params, cfg: MambaConfig, x: Tensor) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
    """Project x with x_proj and dt_proj: returns (delta without bias, B, C) and A."""
    dbc = linear(x, m["x_proj.weight"])
    r, n = cfg.dt_rank, cfg.d_state
    dt_low, b, c = dbc[..., :r], dbc[..., r:r + n], dbc[..., r + n:r + 2 * n]
    delta = linear(dt_low, m["dt_proj.weight"])  # dt_proj bias is added once, in the scan
    a = -torch.exp(m["A_log"])
    return delta, b, c, a


def mixer_forward(m: Params, cfg: MambaConfig, hidden: Tensor,
                  state: Optional[LayerState] = None) -> Tuple[Tensor, LayerState]:
    """Mixer over a whole sequence (B, L, D), optionally continuing from a decode state.

    Returns the mixer output (B, L, D) and the new decode state: the last K conv inputs
    (left-padded with the previous state, zeros initially) and the final SSM state.
    """
    e, k = cfg.d_inner, cfg.d_conv
    xz = linear(hidden, m["in_proj.weight"], m.get("in_proj.bias"))
    x, z = xz[..., :e], xz[..., e:]
    bsz = hidden.shape[0]
    prev_conv = x.new_zeros(bsz, e, k) if state is None else state.conv
    history = prev_conv[:, :, 1:].transpose(1, 2)  # (B, K-1, E): the K-1 most recent inputs
    conv_w = m["conv1d.weight"].reshape(e, k)
    xc = silu(causal_depthwise_conv(x, conv_w, m.get("conv1d.bias"), history))
    delta, b, c, a = _mixer_inner(m, cfg, xc)
    y, h = selective_scan_ref(xc, delta, a, b, c, D=m["D"], z=z,
                              delta_bias=m["dt_proj.bias"], delta_softplus=True,
                              initial_state=None if state is None else state.ssm)
    out = linear(y, m["out_proj.weight"], m.get("out_proj.bias"))
    all_inputs = torch.cat([prev_conv.transpose(1, 2), x], dim=1)  # (B, K+L, E)
    conv_state = all_inputs[:, -k:, :].transpose(1, 2).contiguous()
    return out, LayerState(conv=conv_state, ssm=h)


def mixer_step(m: Params, cfg: MambaConfig, hidden: Tensor,
               state: LayerState) -> Tuple[Tensor, LayerState]:
    """One decode step, written the way an incremental engine does it (independently of
    :func:`mixer_forward`): shift the conv window left, append the new input, take the dot
    product with the kernel, then a single SSM update.  hidden: (B, D) -> (B, D)."""
    e, k = cfg.d_inner, cfg.d_conv
    xz = linear(hidden, m["in_proj.weight"], m.get("in_proj.bias"))
    x, z = xz[:, :e], xz[:, e:]
    window = torch.cat([state.conv[:, :, 1:], x[:, :, None]], dim=2)  # (B, E, K)
    xc = (window * m["conv1d.weight"].reshape(e, k)).sum(-1)
    if "conv1d.bias" in m:
        xc = xc + m["conv1d.bias"]
    xc = silu(xc)
    delta, b, c, a = _mixer_inner(m, cfg, xc)
    dt = softplus(delta + m["dt_proj.bias"])                          # (B, E)
    h = torch.exp(dt[:, :, None] * a) * state.ssm + (dt * xc)[:, :, None] * b[:, None, :]
    y = (h * c[:, None, :]).sum(-1) + m["D"] * xc
    y = y * silu(z)
    out = linear(y, m["out_proj.weight"], m.get("out_proj.bias"))
    return out, LayerState(conv=window, ssm=h)


def empty_state(cfg: MambaConfig, batch: int, dtype=torch.float64) -> List[LayerState]:
    """All-zero decode state for every layer."""
    return [LayerState(conv=torch.zeros(batch, cfg.d_inner, cfg.d_conv, dtype=dtype),
                       ssm=torch.zeros(batch, cfg.d_inner, cfg.d_state, dtype=dtype))
            for _ in range(cfg.n_layer)]


def stack_forward(params: Params, cfg, ids: Tensor, mixer,
                  states: Optional[list] = None) -> Tuple[Tensor, list]:
    """The language model around a mixer, shared by the Mamba-1 and Mamba-2 references.

    Embedding lookup, then per layer ``hidden += mixer(m, rmsnorm(hidden), state)`` with m
    the layer's mixer tensors (short names) and state that layer's entry of ``states``
    (None when ``states`` is None), then ``norm_f`` and the LM head.  ``mixer`` returns
    (output, new state); ids may be (B, L) (a sequence) or (B,) (one decode step).  cfg
    needs ``n_layer``, ``eps`` and ``tie_word_embeddings``.  Returns (logits, new states).
    """
    hidden = params[embedding_name(params)][ids]
    new_states = []
    for i in range(cfg.n_layer):
        normed = rms_norm(hidden, params[f"backbone.layers.{i}.norm.weight"], cfg.eps)
        out, st = mixer(_mixer_params(params, i), normed, None if states is None else states[i])
        hidden = hidden + out
        new_states.append(st)
    hidden = rms_norm(hidden, params["backbone.norm_f.weight"], cfg.eps)
    return linear(hidden, head_weight(params, cfg)), new_states


def model_forward(params: Params, cfg: MambaConfig, ids: Tensor,
                  states: Optional[List[LayerState]] = None) -> Tuple[Tensor, List[LayerState]]:
    """Full forward of ``MambaForCausalLM``: ids (B, L) -> logits (B, L, V), new states.

    ``states`` (optional) continues from a previous call (chunked prefill); the residual
    stream is kept in the parameter dtype (float64 here, so residual_in_fp32 is moot).
    """
    return stack_forward(params, cfg, ids, lambda m, x, st: mixer_forward(m, cfg, x, st), states)


def model_step(params: Params, cfg: MambaConfig, ids: Tensor,
               states: List[LayerState]) -> Tuple[Tensor, List[LayerState]]:
    """One decode step: ids (B,) -> logits (B, V), using :func:`mixer_step` per layer."""
    return stack_forward(params, cfg, ids, lambda m, x, st: mixer_step(m, cfg, x, st), states)


def next_token_loss(logits: Tensor, ids: Tensor) -> Tensor:
    """Mean cross-entropy over the B*(L-1) targets: logits[:, t] predicts ids[:, t+1]."""
    pred = logits[:, :-1, :].reshape(-1, logits.shape[-1])
    target = ids[:, 1:].reshape(-1)
    logp = pred - torch.logsumexp(pred, dim=-1, keepdim=True)
    return -logp.gather(1, target[:, None]).mean()


def load_model(directory: str, config_from_json=None) -> Tuple[MambaConfig, Params]:
    """Load ``config.json`` + ``model.safetensors`` from a directory, upcast to float64.

    ``config_from_json`` turns the parsed config.json into the config object (default
    :meth:`MambaConfig.from_hf`; the Mamba-2 reference passes its own)."""
    import os
    with open(os.path.join(directory, "config.json")) as f:
        cfg = (config_from_json or MambaConfig.from_hf)(json.load(f))
    tensors, _ = read_safetensors(os.path.join(directory, "model.safetensors"))
    return cfg, {k: v.to(torch.float64) for k, v in tensors.items()}
