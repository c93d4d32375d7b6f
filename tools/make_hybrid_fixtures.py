#!/usr/bin/python3
"""Generate the hybrid-model fixtures under ``tests/data/hybrid/`` from the float64 reference.

Run from anywhere (the output location is derived from this file's path):

    nice /usr/bin/python3 tools/make_hybrid_fixtures.py

It writes three official-layout (``MambaLMHeadModel``) models with attention layers, MLPs and
LayerNorm (``hybrid_mamba2_attn``, ``hybrid_mlp_layernorm``, ``hybrid_mixed_ssm``) and two
standalone blocks (``attention_block``, ``gated_mlp_block``), from ``tools/hybrid_reference.py``.
Everything is deterministic (seeds from the crc32 of the case names, single-threaded torch).
Before a single file is written, it asserts:

* the two forms of the rotary embedding (pair rotation; flash_attn's rotate_half) agree,
  interleaved or not, and the rotated q.k depends only on the relative position;
* the attention core equals torch's own ``F.multi_head_attention_forward`` (MHA, causal mask),
  and GQA equals MHA with each kv head's rows repeated (repeat_interleave);
* ``torch.autograd.gradcheck`` passes on a tiny MHA (GQA, conv, rotary, biases; from an empty
  and from a non-empty ragged state), a tiny gated MLP and LayerNorm;
* per model and prompt length: token-by-token decode == the full forward (1e-10, float64);
  a chunked prefill == one pass; a ragged batch (each prompt prefilled alone, the states
  merged, then a multi-token chunk and decode steps from per-row positions) == each row's
  own full forward;
* tied embedding gradient = lookup path + head path; central finite differences on two
  entries of every parameter tensor;
* the fixtures tell the variants apart: no rotary, the other rotary layout, h % Hkv for GQA,
  a non-causal MHA, LayerNorm replaced by RMSNorm, the MLP left out (logits move > 0.05).

See ``tests/data/README.md`` ("Hybrid fixtures") for what each file holds.
"""

from __future__ import annotations

import math
import os
import sys
from typing import Callable, Dict, List, Tuple

import torch
import torch.nn.functional as F

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hybrid_reference as hy  # noqa: E402
import make_fixtures as mf  # noqa: E402  (seeds, writers, shared checks)
import mamba_reference as ref  # noqa: E402

torch.set_num_threads(1)
torch.set_default_dtype(torch.float64)

OUT = os.path.join(mf.DATA, "hybrid")
GENERATOR = "tools/make_hybrid_fixtures.py"
LENGTHS = (1, 3, 7, 17)
LONGEST = max(LENGTHS)
GRAD_LENGTH = 7
BATCH = 2
DECODE_TOL = 1e-10
DIR_LIMIT = 600 * 1024
# the ragged case: prompts of these lengths prefilled alone, then a chunk, then steps
RAGGED_PROMPTS = (5, 11)
RAGGED_CHUNK = 3
RAGGED_STEPS = 4
# in_proj rows of q and k scaled up (scores of order one, so that the attention pattern,
# and with it the rotary and the mask, visibly matter)
QK_SCALE = 2.5

seeded, uniform, normal = mf.seeded, mf.uniform, mf.normal
max_abs, f32 = mf.max_abs, mf.f32

# --------------------------------------------------------------------------------------
# cases
# --------------------------------------------------------------------------------------

MODEL_CASES: List[Dict] = [
    dict(name="hybrid_mamba2_attn", config={
        "d_model": 32, "d_intermediate": 0, "n_layer": 4, "vocab_size": 50,
        "ssm_cfg": {"layer": "Mamba2", "d_state": 8, "d_conv": 4, "expand": 2, "headdim": 16,
                    "ngroups": 2, "chunk_size": 8},
        "attn_layer_idx": [1, 3],
        "attn_cfg": {"causal": True, "num_heads": 4, "num_heads_kv": 2, "head_dim": 8,
                     "rotary_emb_dim": 4, "qkv_proj_bias": False, "out_proj_bias": False},
        "rms_norm": True, "residual_in_fp32": True, "fused_add_norm": True,
        "pad_vocab_size_multiple": 8, "tie_embeddings": True}),
    dict(name="hybrid_mlp_layernorm", config={
        "d_model": 24, "d_intermediate": 40, "n_layer": 3, "vocab_size": 45,
        "ssm_cfg": {"d_state": 8, "d_conv": 3, "expand": 2},
        "attn_layer_idx": [1],
        "attn_cfg": {"causal": True, "num_heads": 3, "head_dim": 8, "d_conv": 4,
                     "rotary_emb_dim": 8, "rotary_emb_interleaved": True,
                     "rotary_emb_base": 1000.0, "qkv_proj_bias": True, "out_proj_bias": True},
        "rms_norm": False, "residual_in_fp32": True, "fused_add_norm": True,
        "pad_vocab_size_multiple": 8, "tie_embeddings": False}),
    dict(name="hybrid_mixed_ssm", config={
        "d_model": 16, "d_intermediate": 24, "n_layer": 4, "vocab_size": 40,
        "ssm_cfg": {"layer": "Mamba2", "d_state": 8, "d_conv": 3, "expand": 2, "headdim": 8,
                    "ngroups": 1, "chunk_size": 8, "bias": True},
        "ssm_cfg_per_layer": {"2": {"layer": "Mamba1", "d_state": 4}},
        "attn_layer_idx": [1],
        "attn_cfg": {"causal": True, "num_heads": 2, "num_heads_kv": 1, "head_dim": 8,
                     "softmax_scale": 0.5},
        "rms_norm": True, "residual_in_fp32": True, "fused_add_norm": True,
        "pad_vocab_size_multiple": 8, "tie_embeddings": True}),
]

ATTENTION_BLOCK = dict(name="attention_block", d_model=16, batch=2, length=9,
                       prefix=(6, 3),
                       attn_cfg={"causal": True, "num_heads": 4, "num_heads_kv": 2,
                                 "head_dim": 6, "d_conv": 3, "rotary_emb_dim": 4,
                                 "qkv_proj_bias": True, "out_proj_bias": True})
MLP_BLOCK = dict(name="gated_mlp_block", d_model=16, d_intermediate=40, batch=2, length=5)

# --------------------------------------------------------------------------------------
# weights
# --------------------------------------------------------------------------------------


def _lin(g: torch.Generator, out_f: int, in_f: int) -> torch.Tensor:
    bound = 1.0 / math.sqrt(in_f)
    return uniform(g, (out_f, in_f), -bound, bound)


def mamba1_params(g, c: ref.MambaConfig, p: hy.Params, pre: str) -> None:
    """As tools/make_fixtures.py draws them (x_proj 4x, out_proj 2x, S4D-real A_log)."""
    d, e, n, r, k = c.d_model, c.d_inner, c.d_state, c.dt_rank, c.d_conv
    p[pre + "in_proj.weight"] = _lin(g, 2 * e, d)
    if c.use_bias:
        p[pre + "in_proj.bias"] = uniform(g, (2 * e,), -0.2, 0.2)
    p[pre + "conv1d.weight"] = uniform(g, (e, 1, k), -1 / math.sqrt(k), 1 / math.sqrt(k))
    if c.use_conv_bias:
        p[pre + "conv1d.bias"] = uniform(g, (e,), -1 / math.sqrt(k), 1 / math.sqrt(k))
    p[pre + "x_proj.weight"] = 4.0 * _lin(g, r + 2 * n, e)
    p[pre + "dt_proj.weight"] = _lin(g, e, r)
    p[pre + "dt_proj.bias"] = mf.inverse_softplus(mf.log_uniform(g, (e,), 1e-3, 1e-1))
    p[pre + "A_log"] = (torch.log(torch.arange(1, n + 1, dtype=torch.float64).repeat(e, 1))
                        + normal(g, (e, n), 0.05))
    p[pre + "D"] = 1.0 + normal(g, (e,), 0.1)
    p[pre + "out_proj.weight"] = 2.0 * _lin(g, d, e)
    if c.use_bias:
        p[pre + "out_proj.bias"] = uniform(g, (d,), -0.2, 0.2)


def mamba2_params(g, c, p: hy.Params, pre: str) -> None:
    """As tools/make_mamba2_fixtures.py draws them (B, C rows of in_proj 4x)."""
    d, e, h, k = c.d_model, c.d_inner, c.n_heads, c.d_conv
    gn = c.n_groups * c.d_state
    w = _lin(g, c.d_in_proj, d)
    w[2 * e:2 * e + 2 * gn] *= 4.0
    p[pre + "in_proj.weight"] = w
    if c.use_bias:
        p[pre + "in_proj.bias"] = uniform(g, (c.d_in_proj,), -0.2, 0.2)
    p[pre + "conv1d.weight"] = uniform(g, (c.conv_dim, 1, k), -1 / math.sqrt(k), 1 / math.sqrt(k))
    if c.use_conv_bias:
        p[pre + "conv1d.bias"] = uniform(g, (c.conv_dim,), -1 / math.sqrt(k), 1 / math.sqrt(k))
    p[pre + "dt_bias"] = mf.inverse_softplus(mf.log_uniform(g, (h,), 1e-3, 1e-1))
    p[pre + "A_log"] = torch.log(uniform(g, (h,), 1.0, 16.0))
    p[pre + "D"] = 1.0 + normal(g, (h,), 0.1)
    p[pre + "norm.weight"] = 1.0 + normal(g, (e,), 0.1)
    p[pre + "out_proj.weight"] = 2.0 * _lin(g, d, e)
    if c.use_bias:
        p[pre + "out_proj.bias"] = uniform(g, (d,), -0.2, 0.2)


def attention_params(g, c: hy.AttnConfig, p: hy.Params, pre: str) -> None:
    """in_proj U(+-1/sqrt(D)) with its q and k rows QK_SCALE x; conv1d U(+-1/sqrt(K));
    out_proj 2x U(+-1/sqrt(H hd)); biases U(+-0.2)."""
    w = _lin(g, c.qkv_dim, c.d_model)
    w[:c.q_dim + c.kv_dim] *= QK_SCALE
    p[pre + "in_proj.weight"] = w
    if c.qkv_proj_bias:
        p[pre + "in_proj.bias"] = uniform(g, (c.qkv_dim,), -0.2, 0.2)
    if c.d_conv > 0:
        k = c.d_conv
        bound = 1 / math.sqrt(k)
        p[pre + "conv1d.weight"] = uniform(g, (c.qkv_dim, 1, k), -bound, bound)
        p[pre + "conv1d.bias"] = uniform(g, (c.qkv_dim,), -bound, bound)
    p[pre + "out_proj.weight"] = 2.0 * _lin(g, c.d_model, c.q_dim)
    if c.out_proj_bias:
        p[pre + "out_proj.bias"] = uniform(g, (c.d_model,), -0.2, 0.2)


def mlp_params(g, c: hy.MlpConfig, p: hy.Params, pre: str) -> None:
    p[pre + "fc1.weight"] = _lin(g, 2 * c.hidden, c.d_model)
    p[pre + "fc2.weight"] = 2.0 * _lin(g, c.d_model, c.hidden)


def norm_params(g, cfg: hy.HybridConfig, p: hy.Params, pre: str) -> None:
    """Norm weights 1 + N(0, 0.1); LayerNorm biases U(+-0.2)."""
    p[pre + "weight"] = 1.0 + normal(g, (cfg.d_model,), 0.1)
    if not cfg.rms_norm:
        p[pre + "bias"] = uniform(g, (cfg.d_model,), -0.2, 0.2)


def random_params(name: str, cfg: hy.HybridConfig) -> hy.Params:
    g = seeded(name, "weights")
    p: hy.Params = {"backbone.embedding.weight": normal(g, (cfg.vocab_size, cfg.d_model), 0.5)}
    for i, (kind, lcfg) in enumerate(zip(cfg.layer_kinds, cfg.layer_cfgs)):
        pre = f"backbone.layers.{i}."
        norm_params(g, cfg, p, pre + "norm.")
        {"mamba1": mamba1_params, "mamba2": mamba2_params,
         "attention": attention_params}[kind](g, lcfg, p, pre + "mixer.")
        if cfg.mlp is not None:
            norm_params(g, cfg, p, pre + "norm2.")
            mlp_params(g, cfg.mlp, p, pre + "mlp.")
    norm_params(g, cfg, p, "backbone.norm_f.")
    if not cfg.tie_word_embeddings:
        p["lm_head.weight"] = normal(g, (cfg.vocab_size, cfg.d_model), 0.5)
    return p


# --------------------------------------------------------------------------------------
# self-checks of the pieces
# --------------------------------------------------------------------------------------

def check_rotary() -> None:
    """Pair rotation == rotate_half form; q.k after rotary depends only on p_q - p_k; the
    angles are flash_attn's 1 / base^(arange(0, R, 2) / R) times the position."""
    g = seeded("rotary")
    for interleaved in (False, True):
        for r, hd in ((4, 8), (8, 8), (2, 6)):
            acfg = hy.AttnConfig(d_model=8, num_heads=2, num_heads_kv=2, head_dim=hd,
                                 rotary_emb_dim=r, rotary_emb_interleaved=interleaved,
                                 rotary_emb_base=500.0)
            x = normal(g, (2, 5, 2, hd))
            pos = torch.tensor([[0., 1, 2, 3, 4], [7, 8, 9, 10, 11]])
            a, b = hy.rotary_pairs(x, pos, acfg), hy.rotary_rotate_half(x, pos, acfg)
            assert max_abs(a, b) < 1e-14, "rotary forms differ"
            assert torch.equal(a[..., r:], x[..., r:]), "rotary touched dims past R"
            assert max_abs(a.norm(dim=-1), x.norm(dim=-1)) < 1e-13, "rotary is not a rotation"
            q, k = normal(g, (1, 1, 1, hd)), normal(g, (1, 1, 1, hd))

            def dot(pq: float, pk: float) -> float:
                rq = hy.rotary_pairs(q, torch.tensor([[pq]]), acfg)
                rk = hy.rotary_pairs(k, torch.tensor([[pk]]), acfg)
                return float((rq * rk).sum())
            assert abs(dot(3, 1) - dot(10, 8)) < 1e-12, "rotary is not relative"
    inv = 1.0 / (500.0 ** (torch.arange(0, 6, 2, dtype=torch.float64) / 6))
    assert max_abs(hy.rotary_angles(torch.tensor([3.0]), 6, 500.0), 3.0 * inv[None]) < 1e-14
    print("  rotary: pair and rotate_half forms agree (both layouts), relative, a rotation")


def check_attention_core() -> None:
    """MHA (no conv, no rotary, H = Hkv, H hd = D) == torch's F.multi_head_attention_forward
    with a causal mask; GQA == MHA whose k and v rows repeat each kv head H/Hkv times."""
    g = seeded("attention_core")
    d, h, length = 12, 3, 6
    acfg = hy.AttnConfig(d_model=d, num_heads=h, num_heads_kv=h, head_dim=d // h, causal=True)
    p: hy.Params = {}
    attention_params(g, acfg, p, "")
    x = normal(g, (2, length, d))
    mine, _ = hy.mha_forward(p, acfg, x)
    mask = torch.triu(torch.full((length, length), -math.inf), diagonal=1)
    theirs, _ = F.multi_head_attention_forward(
        x.transpose(0, 1), x.transpose(0, 1), x.transpose(0, 1), d, h, p["in_proj.weight"],
        p["in_proj.bias"], None, None, False, 0.0, p["out_proj.weight"], p["out_proj.bias"],
        training=False, need_weights=False, attn_mask=mask)
    diff = max_abs(mine, theirs.transpose(0, 1))
    assert diff < 1e-13, f"MHA differs from torch's by {diff}"
    full = hy.AttnConfig(d_model=d, num_heads=h, num_heads_kv=h, head_dim=d // h, causal=False)
    diff_nc = max_abs(hy.mha_forward(p, full, x)[0], F.multi_head_attention_forward(
        x.transpose(0, 1), x.transpose(0, 1), x.transpose(0, 1), d, h, p["in_proj.weight"],
        p["in_proj.bias"], None, None, False, 0.0, p["out_proj.weight"], p["out_proj.bias"],
        training=False, need_weights=False)[0].transpose(0, 1))
    assert diff_nc < 1e-13, f"non-causal MHA differs from torch's by {diff_nc}"

    gqa = hy.AttnConfig(d_model=d, num_heads=4, num_heads_kv=2, head_dim=3, causal=True,
                        rotary_emb_dim=2, d_conv=3)
    pg: hy.Params = {}
    attention_params(g, gqa, pg, "")
    rep = gqa.num_heads // gqa.num_heads_kv
    mha = gqa.replace(num_heads_kv=gqa.num_heads)

    def widen(t: torch.Tensor) -> torch.Tensor:
        """q rows kept; each kv head's k (then v) rows repeated rep times."""
        q = t[:gqa.q_dim]
        heads = (gqa.num_heads_kv, gqa.head_dim, *t.shape[1:])
        k = t[gqa.q_dim:gqa.q_dim + gqa.kv_dim].reshape(heads)
        v = t[gqa.q_dim + gqa.kv_dim:].reshape(heads)
        k = k.repeat_interleave(rep, dim=0).reshape(mha.kv_dim, *t.shape[1:])
        v = v.repeat_interleave(rep, dim=0).reshape(mha.kv_dim, *t.shape[1:])
        return torch.cat([q, k, v])
    pm = {k: (widen(v) if k != "out_proj.weight" and k != "out_proj.bias" else v)
          for k, v in pg.items()}
    diff_gqa = max_abs(hy.mha_forward(pg, gqa, x)[0], hy.mha_forward(pm, mha, x)[0])
    assert diff_gqa < 1e-13, f"GQA differs from the repeated MHA by {diff_gqa}"
    print(f"  attention: equals torch's multi_head_attention_forward (causal {diff:.1e}, "
          f"full {diff_nc:.1e}); GQA equals the kv-repeated MHA ({diff_gqa:.1e})")


def check_block_gradcheck() -> None:
    """gradcheck of a tiny MHA (every parameter and x; from an empty and from a ragged
    non-empty state, whose keys, values and conv window are inputs too), of a gated MLP and of
    LayerNorm."""
    g = seeded("block_gradcheck")
    acfg = hy.AttnConfig(d_model=6, num_heads=4, num_heads_kv=2, head_dim=3, causal=True,
                         d_conv=2, rotary_emb_dim=2, softmax_scale=0.7)
    p: hy.Params = {}
    attention_params(g, acfg, p, "")
    x = normal(g, (2, 3, 6))
    w = normal(g, (2, 3, 6))
    names = sorted(p)
    st = hy.AttnState(k=normal(g, (2, 4, 2, 3)), v=normal(g, (2, 4, 2, 3)), lengths=[4, 2],
                      conv=normal(g, (2, acfg.qkv_dim, 2)))
    for with_state in (False, True):
        leaves = [p[k].clone().requires_grad_(True) for k in names]
        leaves.append(x.clone().requires_grad_(True))
        if with_state:
            leaves += [st.k.clone().requires_grad_(True), st.v.clone().requires_grad_(True),
                       st.conv.clone().requires_grad_(True)]

        def f(*xs):
            m = dict(zip(names, xs[:len(names)]))
            s = None
            if with_state:
                s = hy.AttnState(k=xs[-3], v=xs[-2], lengths=st.lengths, conv=xs[-1])
            y, _ = hy.mha_forward(m, acfg, xs[len(names)], s)
            return (y * w).sum()
        assert torch.autograd.gradcheck(f, leaves, eps=1e-6, atol=1e-7, rtol=1e-6)
    mlp = {"fc1.weight": normal(g, (8, 5)), "fc2.weight": normal(g, (5, 4))}
    xm = normal(g, (2, 3, 5))
    leaves = [mlp["fc1.weight"].requires_grad_(True), mlp["fc2.weight"].requires_grad_(True),
              xm.requires_grad_(True)]
    assert torch.autograd.gradcheck(
        lambda a, b, c: hy.gated_mlp({"fc1.weight": a, "fc2.weight": b}, c).sum(), leaves)
    ln = [normal(g, (2, 3, 5)).requires_grad_(True), normal(g, (5,)).requires_grad_(True),
          normal(g, (5,)).requires_grad_(True)]
    assert torch.autograd.gradcheck(lambda a, b, c: (hy.layer_norm(a, b, c, 1e-5) ** 2).sum(), ln)
    diff = max_abs(hy.layer_norm(ln[0], ln[1], ln[2], 1e-5),
                   F.layer_norm(ln[0], (5,), ln[1], ln[2], 1e-5))
    assert diff < 1e-13, f"layer_norm differs from torch's by {diff}"
    print("  gradcheck: MHA (empty and ragged non-empty state), gated MLP, LayerNorm: passed; "
          "LayerNorm equals F.layer_norm")


# --------------------------------------------------------------------------------------
# model self-checks
# --------------------------------------------------------------------------------------

def check_decode(cfg, params, ids, logits) -> float:
    """Token by token from an empty state == the full forward at every position."""
    st = hy.empty_state(cfg, ids.shape[0])
    worst = 0.0
    for t in range(ids.shape[1]):
        lt, st = hy.model_step(params, cfg, ids[:, t], st)
        worst = max(worst, max_abs(lt, logits[:, t]))
    assert worst < DECODE_TOL, f"decode differs by {worst}"
    return worst


def check_chunked_prefill(cfg, params, ids, logits) -> float:
    worst = 0.0
    for split in (1, 2, 5, ids.shape[1] - 1):
        l1, s1 = hy.model_forward(params, cfg, ids[:, :split])
        l2, _ = hy.model_forward(params, cfg, ids[:, split:], s1)
        worst = max(worst, max_abs(torch.cat([l1, l2], 1), logits))
    assert worst < DECODE_TOL, f"chunked prefill differs by {worst}"
    return worst


def ragged_case(name: str, cfg, params) -> Tuple[Dict[str, torch.Tensor], float]:
    """Each prompt prefilled alone, the states merged into one batch, then a chunk of
    RAGGED_CHUNK tokens per row (one forward from per-row positions 5 and 11), then
    RAGGED_STEPS decode steps; every logit equals that of the row's own full forward."""
    g = seeded(name, "ragged")
    v = cfg.vocab_unpadded
    prompts = [torch.randint(0, v, (1, n), generator=g) for n in RAGGED_PROMPTS]
    chunk = torch.randint(0, v, (BATCH, RAGGED_CHUNK), generator=g)
    steps = torch.randint(0, v, (RAGGED_STEPS, BATCH), generator=g)
    prefill, states = [], []
    for p in prompts:
        lp, sp = hy.model_forward(params, cfg, p)
        prefill.append(lp[0, -1])
        states.append(sp)
    merged = hy.merge_rows(cfg, states)
    chunk_logits, merged = hy.model_forward(params, cfg, chunk, merged)
    step_logits = []
    for s in range(RAGGED_STEPS):
        ls, merged = hy.model_step(params, cfg, steps[s], merged)
        step_logits.append(ls)
    step_logits = torch.stack(step_logits)                               # (S, B, V)
    worst = 0.0
    for b in range(BATCH):
        whole = torch.cat([prompts[b][0], chunk[b], steps[:, b]])[None]
        lw, _ = hy.model_forward(params, cfg, whole)
        n = RAGGED_PROMPTS[b]
        worst = max(worst, max_abs(prefill[b], lw[0, n - 1]),
                    max_abs(chunk_logits[b], lw[0, n:n + RAGGED_CHUNK]),
                    max_abs(step_logits[:, b], lw[0, n + RAGGED_CHUNK:]))
    assert worst < DECODE_TOL, f"{name}: ragged batch differs by {worst}"
    out = {"ragged.prompt0": f32(prompts[0].to(torch.float64)),
           "ragged.prompt1": f32(prompts[1].to(torch.float64)),
           "ragged.prefill_logits": f32(torch.stack(prefill)),
           "ragged.chunk": f32(chunk.to(torch.float64)),
           "ragged.chunk_logits": f32(chunk_logits),
           "ragged.steps": f32(steps.to(torch.float64)),
           "ragged.step_logits": f32(step_logits)}
    return out, worst


def fd_picks(cfg, params, ids) -> List[Tuple[str, int]]:
    """Two entries of every tensor (looked-up rows of the embedding), and rows of each of q,
    k and v of every attention in_proj."""
    picks = []
    d = cfg.d_model
    for name in sorted(params):
        n = params[name].numel()
        if name == "backbone.embedding.weight":
            picks += [(name, int(ids[0, 1]) * d + 1), (name, int(ids[1, 2]) * d + 3)]
            continue
        picks += [(name, 1 % n), (name, (2 * n) // 3)]
    for i, (kind, c) in enumerate(zip(cfg.layer_kinds, cfg.layer_cfgs)):
        if kind == "attention":
            for row in (1, c.q_dim + 1, c.q_dim + c.kv_dim + 1):
                picks.append((f"backbone.layers.{i}.mixer.in_proj.weight", row * d + 2))
    return picks


def check_sensitivity(cfg: hy.HybridConfig, params, ids, logits) -> Dict[str, float]:
    """The logits move under each variant the fixture must tell apart."""
    def moved(c: hy.HybridConfig) -> float:
        return max_abs(hy.model_forward(params, c, ids)[0], logits)
    attn = [c for k, c in zip(cfg.layer_kinds, cfg.layer_cfgs) if k == "attention"]
    out: Dict[str, float] = {"non-causal": moved(cfg.with_attention(causal=False))}
    a = attn[0]
    if a.rotary_emb_dim > 0:
        out["no rotary"] = moved(cfg.with_attention(rotary_emb_dim=0))
        out["other rotary layout"] = moved(
            cfg.with_attention(rotary_emb_interleaved=not a.rotary_emb_interleaved))
    if 1 < a.num_heads_kv < a.num_heads:
        out["kv head h % Hkv"] = moved(cfg.with_attention(head_group_map="modulo"))
    if a.softmax_scale is not None:
        out["default softmax scale"] = moved(cfg.with_attention(softmax_scale=None))
    if cfg.mlp is not None:
        out["no MLP"] = moved(cfg.replace(mlp=None))
    if not cfg.rms_norm:
        out["RMSNorm for LayerNorm"] = moved(cfg.replace(rms_norm=True))
    for key, value in out.items():
        assert value > 0.05, f"{key} moves the logits only by {value}"
    return out


def rounded_logits(params, cfg, ids, dtype) -> torch.Tensor:
    """The logits of the weights rounded to a 16-bit type, the host's norms kept (as a model
    holding 16-bit weights keeps them in f32)."""
    keep = set(hy.host_norm_names(params))
    p = {k: (v if k in keep else v.to(dtype).to(torch.float64)) for k, v in params.items()}
    return hy.model_forward(p, cfg, ids)[0]


# --------------------------------------------------------------------------------------
# builders
# --------------------------------------------------------------------------------------

def build_model_case(case: Dict) -> Dict[str, object]:
    name, config = case["name"], case["config"]
    cfg = hy.HybridConfig.from_json(config)
    stored = {k: v.to(torch.float32).contiguous() for k, v in random_params(name, cfg).items()}
    params = {k: v.to(torch.float64) for k, v in stored.items()}

    g = seeded(name, "tokens")
    expected: Dict[str, torch.Tensor] = {}
    worst_decode = worst_prefill = 0.0
    stds = []
    for length in LENGTHS:
        ids = torch.randint(0, cfg.vocab_unpadded, (BATCH, length), generator=g)
        logits, _ = hy.model_forward(params, cfg, ids)
        worst_decode = max(worst_decode, check_decode(cfg, params, ids, logits))
        expected[f"tokens.L{length}"] = f32(ids.to(torch.float64))
        expected[f"logits.L{length}"] = f32(logits)
        stds.append(logits.std().item())
        if length == GRAD_LENGTH:
            grad_ids = ids
        if length == LONGEST:
            worst_prefill = check_chunked_prefill(cfg, params, ids, logits)
            moves = check_sensitivity(cfg, params, ids, logits)
            half = {}
            for label, dt in (("f16", torch.float16), ("bf16", torch.bfloat16)):
                lr = rounded_logits(params, cfg, ids, dt)
                expected[f"logits_{label}.L{length}"] = f32(lr)
                half[label] = max_abs(lr, logits)
    ragged, worst_ragged = ragged_case(name, cfg, params)
    expected.update(ragged)

    loss, grads = mf.loss_and_grads(hy, cfg, params, grad_ids)
    if "lm_head.weight" not in params:
        mf.check_tied_paths(hy, cfg, params, grad_ids, grads)
    fd_err = mf.check_finite_differences(hy, cfg, params, grad_ids, grads,
                                         fd_picks(cfg, params, grad_ids))
    assert set(grads) == set(stored)
    grad_out = {k: f32(v) for k, v in grads.items()}
    grad_out["loss"] = f32(loss.reshape(1))
    assert 0.8 < min(stds) and max(stds) < 4.0, f"{name}: logits std {stds}"

    print(f"  model {name}: layers {'/'.join(cfg.layer_kinds)}, decode {worst_decode:.1e}, "
          f"chunked prefill {worst_prefill:.1e}, ragged {worst_ragged:.1e}, fd {fd_err:.1e}, "
          f"logits std {min(stds):.2f}..{max(stds):.2f}, loss {loss.item():.4f}")
    print("      logits move under: " + ", ".join(f"{k} {v:.3f}" for k, v in moves.items())
          + f"; weights rounded to f16 / bf16 move them {half['f16']:.4f} / {half['bf16']:.4f}")
    meta = {"case": name, "generator": GENERATOR}
    return {
        "config.json": config,
        "model.safetensors": (stored, {"format": "pt"}),
        "expected.safetensors": (expected, dict(meta, batch=str(BATCH),
                                                lengths=",".join(map(str, LENGTHS)),
                                                weights_dtype="F32",
                                                ragged_prompts=",".join(map(str, RAGGED_PROMPTS)))),
        "grads.safetensors": (grad_out, dict(meta, tokens=f"tokens.L{GRAD_LENGTH}",
                                             loss="mean next-token cross-entropy")),
    }


def block_files(name: str, config: Dict, params: hy.Params, run: Callable,
                x: torch.Tensor, extra: Dict[str, torch.Tensor]) -> Dict[str, object]:
    """A standalone block: params.safetensors (its tensors under their official names
    relative to the block), expected.safetensors (x, y = run(params, x), grad_y and the
    gradients of sum(y * grad_y) as grad_<name> and grad_x, plus ``extra``)."""
    g = seeded(name, "grad_y")
    names = sorted(params)
    leaves = {k: params[k].clone().requires_grad_(True) for k in names}
    xl = x.clone().requires_grad_(True)
    y = run(leaves, xl)
    w = normal(g, y.shape)
    grads = torch.autograd.grad((y * w).sum(), [leaves[k] for k in names] + [xl])
    expected = {"x": f32(x), "y": f32(y), "grad_y": f32(w), "grad_x": f32(grads[-1])}
    for k, gk in zip(names, grads[:-1]):
        expected["grad_" + k] = f32(gk)
    expected.update(extra)
    stored = {k: v.to(torch.float32).contiguous() for k, v in params.items()}
    return {"config.json": config,
            "params.safetensors": (stored, {"format": "pt"}),
            "expected.safetensors": (expected, {"case": name, "generator": GENERATOR,
                                                "objective": "sum(y * grad_y)"})}


def block_params(name: str, fill: Callable, cfg) -> hy.Params:
    """One block's tensors from fill(generator, cfg, params, ""), seeded by the case's name, each
    rounded to a float32 value (held in float64, so that the stored float32 file is exact)."""
    p: hy.Params = {}
    fill(seeded(name, "weights"), cfg, p, "")
    return {k: v.to(torch.float32).to(torch.float64) for k, v in p.items()}


def build_attention_block() -> Dict[str, object]:
    c = ATTENTION_BLOCK
    acfg = hy.AttnConfig.from_official(c["d_model"], c["attn_cfg"])
    params = block_params(c["name"], attention_params, acfg)
    gx = seeded(c["name"], "x")
    x = normal(gx, (c["batch"], c["length"], c["d_model"])).to(torch.float32).to(torch.float64)
    # the continuation: row b first runs the first prefix[b] tokens of x_prefix, then x
    pmax = max(c["prefix"])
    x_prefix = normal(gx, (c["batch"], pmax, c["d_model"])).to(torch.float32).to(torch.float64)
    states = [hy.mha_forward(params, acfg, x_prefix[b:b + 1, :n])[1]
              for b, n in enumerate(c["prefix"])]
    merged = hy.AttnState(k=hy._pad_rows([s.k[0] for s in states]),
                          v=hy._pad_rows([s.v[0] for s in states]),
                          lengths=[s.lengths[0] for s in states],
                          conv=torch.cat([s.conv for s in states]))
    y_cont, _ = hy.mha_forward(params, acfg, x, merged)
    worst = 0.0
    for b, n in enumerate(c["prefix"]):
        whole, _ = hy.mha_forward(params, acfg, torch.cat([x_prefix[b:b + 1, :n], x[b:b + 1]], 1))
        worst = max(worst, max_abs(whole[0, n:], y_cont[b]))
    assert worst < DECODE_TOL, f"attention block continuation differs by {worst}"
    extra = {"x_prefix": f32(x_prefix), "y_continued": f32(y_cont),
             "prefix_lengths": f32(torch.tensor(c["prefix"], dtype=torch.float64))}
    config = {"d_model": c["d_model"], "attn_cfg": c["attn_cfg"]}
    print(f"  block attention_block: continuation after ragged prefixes {c['prefix']} "
          f"matches the whole rows ({worst:.1e})")
    return block_files(c["name"], config, params, lambda m, xx: hy.mha_forward(m, acfg, xx)[0],
                       x, extra)


def build_mlp_block() -> Dict[str, object]:
    c = MLP_BLOCK
    mcfg = hy.MlpConfig.from_d_intermediate(c["d_model"], c["d_intermediate"])
    params = block_params(c["name"], mlp_params, mcfg)
    x = normal(seeded(c["name"], "x"), (c["batch"], c["length"], c["d_model"]))
    x = x.to(torch.float32).to(torch.float64)
    config = {"d_model": c["d_model"], "d_intermediate": c["d_intermediate"],
              "hidden_features": mcfg.hidden}
    return block_files(c["name"], config, params, hy.gated_mlp, x, {})


# --------------------------------------------------------------------------------------
# writing
# --------------------------------------------------------------------------------------

def write_dir(name: str, files: Dict[str, object], is_model: bool) -> int:
    directory = os.path.join(OUT, name)
    os.makedirs(directory, exist_ok=True)
    for fname, content in files.items():
        path = os.path.join(directory, fname)
        if fname.endswith(".json"):
            mf.write_json(path, content)
        else:
            mf.write_tensors(path, *content)
    size = sum(os.path.getsize(os.path.join(directory, f)) for f in files)
    assert size < DIR_LIMIT, f"{name} is {size} bytes"
    if is_model:
        # what a reader of the directory computes is what was stored
        cfg2, p2 = hy.load_model(directory)
        ids = files["expected.safetensors"][0][f"tokens.L{LONGEST}"].to(torch.int64)
        logits, _ = hy.model_forward(p2, cfg2, ids)
        assert max_abs(f32(logits), files["expected.safetensors"][0][f"logits.L{LONGEST}"]) == 0.0
    print(f"  hybrid/{name}: {size} bytes")
    return size


def main() -> None:
    print("self-checks:")
    mf.check_elementwise()
    check_rotary()
    check_attention_core()
    check_block_gradcheck()
    models = {c["name"]: build_model_case(c) for c in MODEL_CASES}
    blocks = {ATTENTION_BLOCK["name"]: build_attention_block(),
              MLP_BLOCK["name"]: build_mlp_block()}

    print("writing:")
    total = sum(write_dir(n, f, True) for n, f in models.items())
    total += sum(write_dir(n, f, False) for n, f in blocks.items())
    print(f"total hybrid fixture bytes: {total}")
    assert total < 2 * 1024 * 1024


if __name__ == "__main__":
    main()
