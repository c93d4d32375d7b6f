#!/usr/bin/python3
"""Generate the Mamba-2 test fixtures under ``tests/data/`` from the float64 reference.

Run from anywhere (the output location is derived from this file's path):

    nice /usr/bin/python3 tools/make_mamba2_fixtures.py

It writes ``tests/data/models/mamba2_<case>/`` (same files and formats as the Mamba-1 model
cases of ``tools/make_fixtures.py``, whose model-case builder, model checks and writers it
runs with the Mamba-2 reference) and ``tests/data/ssd/<case>``
(the standalone SSD kernel).  Everything is deterministic (seeds from the crc32 of the case
names, single-threaded torch).  Before a single file is written, it asserts:

* the sequential SSD equals the chunked SSD (several chunk sizes, lengths that are not a
  multiple of the chunk) and, group by group, the Mamba-1 selective scan of
  ``mamba_reference`` with A, dt and D repeated over each head's channels;
* ``torch.autograd.gradcheck`` passes on the SSD (both forms) and on two tiny mixers;
* the grouped gated norm with one group equals the plain RMSNorm of ``y * silu(z)``;
* for every model case and prompt length, token-by-token decode gives the full-forward
  logits at every position and the same final state (1e-10, float64); a chunked prefill
  (forward, then forward again from the state) and the chunked-SSD forward agree too;
* tied embedding gradient = lookup path + head path; finite differences on the loss;
* the fixtures tell the known variants apart: the SSM output path and the state's memory
  matter, the per-group norm differs from the all-E norm and h // (H/G) from h % G when
  G > 1, and the dt clamp bites in the clamp case.

See ``tests/data/README.md`` for what each file holds.
"""

from __future__ import annotations

import math
import os
import sys
from typing import Dict, List, Tuple

import torch

sys.dont_write_bytecode = True  # keep tools/ free of __pycache__
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_fixtures as mf  # noqa: E402  (shared checks, builders, writers, seeds)
import mamba2_reference as m2  # noqa: E402
import mamba_reference as ref  # noqa: E402

torch.set_num_threads(1)
torch.set_default_dtype(torch.float64)

DATA = mf.DATA
DECODE_TOL = mf.DECODE_TOL      # 1e-10
GENERATOR = "tools/make_mamba2_fixtures.py"
FILE_LIMIT = 200 * 1024

seeded, uniform, normal = mf.seeded, mf.uniform, mf.normal
inverse_softplus, log_uniform, max_abs, f32, flag = (mf.inverse_softplus, mf.log_uniform,
                                                     mf.max_abs, mf.f32, mf.flag)

# --------------------------------------------------------------------------------------
# case definitions
# --------------------------------------------------------------------------------------

# layout "hf": Hugging Face Mamba2Config / names; "official": MambaLMHeadModel config.
# limit: time_step_limit written to config.json (None: key omitted, i.e. (0, inf)).
MODEL_CASES: List[Dict] = [
    dict(name="mamba2_hf_groups", layout="hf", layers=2, d_model=16, expand=2, head_dim=8,
         groups=2, state=8, conv=4, vocab=40, chunk=8, tied=True, use_bias=False,
         conv_bias=True, limit=None, dtype="F32"),
    dict(name="mamba2_hf_bias_clamp", layout="hf", layers=3, d_model=24, expand=2,
         head_dim=12, groups=1, state=8, conv=3, vocab=48, chunk=16, tied=False,
         use_bias=True, conv_bias=True, limit=(0.01, 0.05), dtype="F32"),
    dict(name="mamba2_official", layout="official", layers=2, d_model=24, expand=2,
         head_dim=12, groups=2, state=8, conv=4, vocab=45, pad_multiple=8, chunk=16,
         tied=True, use_bias=False, conv_bias=True, limit=None, dtype="F32"),
    dict(name="mamba2_bf16", layout="hf", layers=2, d_model=16, expand=2, head_dim=4,
         groups=4, state=4, conv=4, vocab=40, chunk=8, tied=False, use_bias=False,
         conv_bias=True, limit=(0.0, 1e308), dtype="BF16"),
]

SSD_CASES: List[Dict] = [
    dict(name="full", B=2, L=70, H=4, P=3, G=2, N=5, D=True, initial_state=True,
         dt_range=(1e-2, 3e-1)),
    dict(name="bare", B=1, L=1, H=1, P=2, G=1, N=3, D=False, initial_state=False,
         dt_range=(1e-2, 3e-1)),
    dict(name="long", B=1, L=300, H=2, P=4, G=1, N=4, D=True, initial_state=False,
         dt_range=(1e-3, 1e-1)),
]

# in_proj rows that produce B and C are scaled by this (like x_proj's 4x in the Mamba-1
# fixtures): B and C of order one, so that the SSM state visibly drives the output.
BC_SCALE = 4.0

# --------------------------------------------------------------------------------------
# configs and weights
# --------------------------------------------------------------------------------------


def n_heads(case: Dict) -> int:
    return case["expand"] * case["d_model"] // case["head_dim"]


def hf_config(case: Dict) -> Dict:
    """config.json with the keys and spelling of Hugging Face's Mamba2Config."""
    cfg = {
        "architectures": ["Mamba2ForCausalLM"],
        "model_type": "mamba2",
        "vocab_size": case["vocab"],
        "hidden_size": case["d_model"],
        "state_size": case["state"],
        "num_hidden_layers": case["layers"],
        "layer_norm_epsilon": 1e-5,
        "expand": case["expand"],
        "conv_kernel": case["conv"],
        "n_groups": case["groups"],
        "num_heads": n_heads(case),
        "head_dim": case["head_dim"],
        "chunk_size": case["chunk"],
        "use_bias": case["use_bias"],
        "use_conv_bias": case["conv_bias"],
        "hidden_act": "silu",
        "initializer_range": 0.1,
        "residual_in_fp32": True,
        "time_step_rank": math.ceil(case["d_model"] / 16),
        "time_step_min": 0.001,
        "time_step_max": 0.1,
        "time_step_floor": 0.0001,
        "rescale_prenorm_residual": False,
        "use_cache": True,
        "rms_norm": True,
        "norm_before_gate": False,
        "tie_word_embeddings": case["tied"],
        "bos_token_id": 0,
        "eos_token_id": 0,
        "pad_token_id": 0,
        "torch_dtype": mf.TORCH_DTYPE_NAME[case["dtype"]],
    }
    if case["limit"] is not None:
        cfg["time_step_limit"] = list(case["limit"])
    return cfg


def official_config(case: Dict) -> Dict:
    """config.json of the official MambaLMHeadModel (as state-spaces/mamba2-130m ships it,
    with the Mamba2 ssm_cfg keys spelled out)."""
    assert case["limit"] is None and not case["use_bias"] and case["conv_bias"]
    return {
        "d_model": case["d_model"],
        "d_intermediate": 0,
        "n_layer": case["layers"],
        "vocab_size": case["vocab"],
        "ssm_cfg": {"layer": "Mamba2", "d_state": case["state"], "d_conv": case["conv"],
                    "expand": case["expand"], "headdim": case["head_dim"],
                    "ngroups": case["groups"], "chunk_size": case["chunk"]},
        "attn_layer_idx": [],
        "attn_cfg": {},
        "rms_norm": True,
        "residual_in_fp32": True,
        "fused_add_norm": True,
        "pad_vocab_size_multiple": case["pad_multiple"],
        "tie_embeddings": case["tied"],
    }


def make_config(case: Dict) -> Dict:
    return official_config(case) if case["layout"] == "official" else hf_config(case)


def random_params(case: Dict, cfg: m2.Mamba2Config) -> m2.Params:
    """Random float64 weights with realistic scales, under the checkpoint's names."""
    g = seeded(case["name"], "weights")
    e, h = cfg.d_inner, cfg.n_heads
    gn = cfg.n_groups * cfg.d_state
    emb = ("backbone.embedding.weight" if case["layout"] == "official"
           else "backbone.embeddings.weight")

    def mixer_own(p: m2.Params, pre: str, lin) -> None:
        p[pre + "in_proj.weight"][2 * e:2 * e + 2 * gn] *= BC_SCALE  # z | x | B | C | dt: B, C
        p[pre + "dt_bias"] = inverse_softplus(log_uniform(g, (h,), 1e-3, 1e-1))
        p[pre + "A_log"] = torch.log(uniform(g, (h,), 1.0, 16.0))
        p[pre + "D"] = 1.0 + normal(g, (h,), 0.1)
        p[pre + "norm.weight"] = 1.0 + normal(g, (e,), 0.1)

    return mf.random_lm_params(g, cfg, emb, cfg.d_in_proj, cfg.conv_dim, mixer_own)


# --------------------------------------------------------------------------------------
# SSD self-checks
# --------------------------------------------------------------------------------------

SSD_ARGS = ("x", "dt", "A", "B", "C", "D", "initial_state")


def ssd_inputs(case: Dict) -> Dict[str, torch.Tensor]:
    """Random float64 inputs of one standalone SSD case (only the present optionals).

    dt is positive (already softplus'd): softplus of N(0, 0.5) around a per-head base
    drawn log-uniform in dt_range; A = -U(1, 16) per head, as Mamba-2 initialises it."""
    g = seeded(case["name"], "ssd")
    b, length, h, p, gr, n = (case[k] for k in ("B", "L", "H", "P", "G", "N"))
    t: Dict[str, torch.Tensor] = {"x": normal(g, (b, length, h, p))}
    base = inverse_softplus(log_uniform(g, (h,), *case["dt_range"]))
    t["dt"] = ref.softplus(base + normal(g, (b, length, h), 0.5))
    t["A"] = -uniform(g, (h,), 1.0, 16.0)
    t["B"] = normal(g, (b, length, gr, n))
    t["C"] = normal(g, (b, length, gr, n))
    if case["D"]:
        t["D"] = 1.0 + normal(g, (h,), 0.5)
    if case["initial_state"]:
        t["initial_state"] = normal(g, (b, h, p, n))
    t["grad_y"] = normal(g, (b, length, h, p))
    t["grad_final_state"] = normal(g, (b, h, p, n))
    return t


def run_ssd(fn, t: Dict[str, torch.Tensor], **kw):
    return fn(t["x"], t["dt"], t["A"], t["B"], t["C"], t.get("D"), t.get("initial_state"),
              **kw)


def ssd_via_mamba1(t: Dict[str, torch.Tensor]) -> Tuple[torch.Tensor, torch.Tensor]:
    """The SSD computed with Mamba-1's selective_scan_ref, one group at a time: every
    channel (h, p) of a head in group g is a Mamba-1 channel with A[e, :] = A_h,
    delta = dt_h (no softplus), B, C of group g, D_h."""
    x, dt, a, bm, cm = t["x"], t["dt"], t["A"], t["B"], t["C"]
    bsz, length, h, p = x.shape
    gr, n = bm.shape[2], bm.shape[3]
    groups = m2.head_groups(h, gr)
    y = torch.zeros_like(x)
    final = x.new_zeros(bsz, h, p, n)
    for g in range(gr):
        hs = (groups == g).nonzero().reshape(-1)
        k = len(hs)
        u = x[:, :, hs].reshape(bsz, length, k * p)
        delta = dt[:, :, hs].repeat_interleave(p, dim=2)
        a1 = a[hs].repeat_interleave(p)[:, None].expand(k * p, n)
        d1 = None if "D" not in t else t["D"][hs].repeat_interleave(p)
        h0 = None if "initial_state" not in t else t["initial_state"][:, hs].reshape(bsz, k * p, n)
        yg, hg = ref.selective_scan_ref(u, delta, a1, bm[:, :, g], cm[:, :, g], D=d1,
                                        delta_softplus=False, initial_state=h0)
        y[:, :, hs] = yg.reshape(bsz, length, k, p)
        final[:, hs] = hg.reshape(bsz, k, p, n)
    return y, final


def check_ssd(case: Dict, t: Dict[str, torch.Tensor]) -> None:
    """Sequential SSD == chunked SSD (several chunk sizes) == Mamba-1 scan per group."""
    y, s = run_ssd(m2.ssd, t)
    scale = max(y.abs().max().item(), s.abs().max().item(), 1.0)
    worst = 0.0
    for chunk in (1, 3, 8, 64, 256):
        yc, sc = run_ssd(m2.ssd_chunked, t, chunk=chunk)
        worst = max(worst, max_abs(y, yc), max_abs(s, sc))
    y1, s1 = ssd_via_mamba1(t)
    m1 = max(max_abs(y, y1), max_abs(s, s1))
    assert worst < 1e-11 * scale, f"ssd {case['name']}: chunked differs by {worst}"
    assert m1 < 1e-11 * scale, f"ssd {case['name']}: Mamba-1 scan differs by {m1}"
    msg = (f"  ssd {case['name']}: sequential vs chunked (1,3,8,64,256) max diff {worst:.2e}, "
           f"vs Mamba-1 scan per group {m1:.2e}")
    if case["L"] >= 100:
        # the decay must matter: the state forgets (sum of dt*A over the sequence far below
        # zero) and removing the decay (A = 0) changes the output a lot
        log_decay = (t["dt"] * t["A"]).sum(1)
        assert log_decay.max() < -5.0, f"ssd {case['name']}: decay too weak {log_decay}"
        t0 = dict(t, A=torch.zeros_like(t["A"]))
        moved = max_abs(run_ssd(m2.ssd, t0)[0], y)
        assert moved > 1.0, f"ssd {case['name']}: A = 0 moves y only by {moved}"
        msg += f", total log-decay {log_decay.max().item():.1f}..{log_decay.min().item():.1f}, " \
               f"A=0 moves y {moved:.2f}"
    print(msg)


def check_ssd_gradcheck() -> None:
    """Finite-difference check of the autograd gradients of both SSD forms."""
    small = dict(name="gradcheck", B=1, L=5, H=4, P=2, G=2, N=3, D=True, initial_state=True,
                 dt_range=(1e-2, 5e-1))
    t = ssd_inputs(small)
    for fn, kw in ((m2.ssd, {}), (m2.ssd_chunked, {"chunk": 2})):
        mf.gradcheck_kernel(t, SSD_ARGS, lambda d, fn=fn, kw=kw: run_ssd(fn, d, **kw))
    print("  ssd gradcheck (sequential and chunked): passed")


def check_mixer_gradcheck() -> None:
    """gradcheck of a whole tiny mixer: every parameter, the input and both states."""
    tiny = [
        dict(name="mixer_gradcheck_groups", layout="hf", layers=1, d_model=4, expand=2,
             head_dim=2, groups=2, state=3, conv=3, vocab=8, chunk=4, tied=True,
             use_bias=False, conv_bias=True, limit=None, dtype="F32"),
        dict(name="mixer_gradcheck_clamp", layout="hf", layers=1, d_model=4, expand=2,
             head_dim=4, groups=1, state=2, conv=2, vocab=8, chunk=4, tied=True,
             use_bias=True, conv_bias=True, limit=(0.01, 0.05), dtype="F32"),
    ]
    for case in tiny:
        cfg = m2.Mamba2Config.from_json(hf_config(case))
        params = m2._mixer_params(random_params(case, cfg), 0)
        g = seeded(case["name"], "inputs")
        hidden = normal(g, (2, 4, cfg.d_model))
        st = m2.LayerState(conv=normal(g, (2, cfg.conv_dim, cfg.d_conv)),
                           ssm=normal(g, (2, cfg.n_heads, cfg.head_dim, cfg.d_state)))
        w_out = normal(g, (2, 4, cfg.d_model))
        w_ssm = normal(g, st.ssm.shape)
        names = sorted(params)
        leaves = [params[k].clone().requires_grad_(True) for k in names]
        leaves += [hidden.clone().requires_grad_(True), st.conv.clone().requires_grad_(True),
                   st.ssm.clone().requires_grad_(True)]

        def f(*xs):
            m = dict(zip(names, xs[:len(names)]))
            out, new = m2.mixer_forward(m, cfg, xs[-3], m2.LayerState(xs[-2], xs[-1]))
            return (out * w_out).sum() + (new.ssm * w_ssm).sum()
        assert torch.autograd.gradcheck(f, leaves, eps=1e-6, atol=1e-7, rtol=1e-6)
    print("  mixer gradcheck (G=2; G=1 with biases and dt clamp, from a non-zero state): "
          "passed")


def check_norm() -> None:
    """The grouped gated norm with one group is the plain RMSNorm of y * silu(z); with G
    groups each group of E/G channels is normalised on its own."""
    g = seeded("gated_norm")
    y, z, w = normal(g, (2, 3, 12)), normal(g, (2, 3, 12)), 1.0 + normal(g, (12,), 0.1)
    one = m2.gated_rms_norm(y, z, w, 1e-5, 12)
    assert max_abs(one, ref.rms_norm(y * ref.silu(z), w, 1e-5)) < 1e-14
    three = m2.gated_rms_norm(y, z, w, 1e-5, 4)
    for k in range(3):
        sl = slice(4 * k, 4 * k + 4)
        part = ref.rms_norm((y * ref.silu(z))[..., sl], w[sl], 1e-5)
        assert max_abs(three[..., sl], part) < 1e-14
    assert max_abs(one, three) > 0.01
    print("  gated norm: one group == rmsnorm(y * silu(z)); groups normalised separately")


# --------------------------------------------------------------------------------------
# model self-checks
# --------------------------------------------------------------------------------------

def check_chunked_prefill(case: Dict, cfg: m2.Mamba2Config, params: m2.Params,
                          ids: torch.Tensor, logits: torch.Tensor,
                          states: List[m2.LayerState]) -> float:
    """Forward on a prefix, then on the rest from the returned state == one pass (with the
    sequential and the chunked SSD); the chunked-SSD forward (several chunk sizes) too."""
    worst = mf.check_chunked_prefill(m2, case, cfg, params, ids, logits, states,
                                     chunks=(None, 4))
    for chunk in (1, 3, cfg.chunk_size, 64):
        lc, sc = m2.model_forward(params, cfg, ids, chunk=chunk)
        worst = max(worst, max_abs(lc, logits))
        for a, b in zip(sc, states):
            worst = max(worst, max_abs(a.ssm, b.ssm))
    assert worst < DECODE_TOL, f"{case['name']}: chunked prefill differs by {worst}"
    return worst


def fd_picks(cfg: m2.Mamba2Config, params: m2.Params, ids: torch.Tensor) -> List[Tuple[str, int]]:
    """(tensor, flat index) pairs: every parameter kind, and in_proj in each of its parts."""
    d, e, gn = cfg.d_model, cfg.d_inner, cfg.n_groups * cfg.d_state
    emb = m2.embedding_name(params)
    last = f"backbone.layers.{cfg.n_layer - 1}."
    picks = [(emb, int(ids[0, 1]) * d + 1), (emb, int(ids[1, 2]) * d + 5)]
    for name in ("mixer.A_log", "mixer.dt_bias", "mixer.D", "mixer.conv1d.weight",
                 "mixer.norm.weight", "norm.weight"):
        picks += [("backbone.layers.0." + name, 1), ("backbone.layers.0." + name, 3)]
    # in_proj rows: z, x, B, C, dt (first and last layer)
    for row in (1, e + 1, 2 * e + 1, 2 * e + gn + 1, e + cfg.conv_dim + 1):
        picks += [("backbone.layers.0.mixer.in_proj.weight", row * d + 2),
                  (last + "mixer.in_proj.weight", row * d + 3)]
    picks += [(last + "mixer.out_proj.weight", 7), ("backbone.norm_f.weight", 2)]
    if cfg.use_bias:
        picks += [("backbone.layers.0.mixer.in_proj.bias", e + cfg.conv_dim + 1),
                  (last + "mixer.out_proj.bias", 1)]
    if cfg.use_conv_bias:
        picks += [("backbone.layers.0.mixer.conv1d.bias", e + 2)]
    if "lm_head.weight" in params:
        picks += [("lm_head.weight", int(ids[0, 3]) * d + 4)]
    return picks


def check_sensitivity(case: Dict, cfg: m2.Mamba2Config, params: m2.Params, ids: torch.Tensor,
                      logits: torch.Tensor) -> Dict[str, float]:
    """The logits must move visibly under each variant the fixtures are meant to catch."""
    e, gn = cfg.d_inner, cfg.n_groups * cfg.d_state
    no_c, no_memory = dict(params), dict(params)
    for i in range(cfg.n_layer):
        pre = f"backbone.layers.{i}.mixer."
        # C = 0: zero the C rows of in_proj (and of its bias) and the C conv bias, so the
        # post-conv C is silu(0) = 0 and the state never reaches the output
        rows = slice(2 * e + gn, 2 * e + 2 * gn)
        w = params[pre + "in_proj.weight"].clone()
        w[rows] = 0
        no_c[pre + "in_proj.weight"] = w
        if cfg.use_bias:
            bias = params[pre + "in_proj.bias"].clone()
            bias[rows] = 0
            no_c[pre + "in_proj.bias"] = bias
        if cfg.use_conv_bias:
            cb = params[pre + "conv1d.bias"].clone()
            cb[e + gn:] = 0
            no_c[pre + "conv1d.bias"] = cb
        # A -> -1e6: the state forgets everything from one step to the next
        no_memory[pre + "A_log"] = torch.full_like(params[pre + "A_log"], math.log(1e6))

    def moved(p, c) -> float:
        return max_abs(m2.model_forward(p, c, ids)[0], logits)

    out = {"C=0": moved(no_c, cfg), "no memory": moved(no_memory, cfg)}
    assert out["C=0"] > 0.1, f"{case['name']}: the SSM output path moves logits by {out}"
    assert out["no memory"] > 0.05, f"{case['name']}: the state's memory moves logits by {out}"
    if cfg.n_groups > 1:
        out["all-E norm"] = moved(params, cfg.replace(norm_group_size=e))
        assert out["all-E norm"] > 0.05, f"{case['name']}: grouped norm invisible: {out}"
        if cfg.n_heads // cfg.n_groups > 1:
            out["h % G"] = moved(params, cfg.replace(head_group_map="modulo"))
            assert out["h % G"] > 0.05, f"{case['name']}: group mapping invisible: {out}"
    lo, hi = cfg.time_step_limit
    if lo > 0.0 or hi < m2.INF:
        if hi < 1e300:
            out["no clamp"] = moved(params, cfg.replace(time_step_limit=(0.0, m2.INF)))
            assert out["no clamp"] > 0.05, f"{case['name']}: dt clamp invisible: {out}"
        else:  # (0, 1e308): a no-op written as a finite number
            assert moved(params, cfg.replace(time_step_limit=(0.0, m2.INF))) == 0.0
    return out


def clamp_fractions(cfg: m2.Mamba2Config, params: m2.Params,
                    ids: torch.Tensor) -> Tuple[float, float]:
    """Fractions of the dt values (all layers) below lo and above hi before the clamp."""
    lo, hi = cfg.time_step_limit
    below = above = total = 0
    hidden = params[m2.embedding_name(params)][ids]
    for i in range(cfg.n_layer):
        m = m2._mixer_params(params, i)
        normed = m2.rms_norm(hidden, params[f"backbone.layers.{i}.norm.weight"], cfg.eps)
        _, _, dt_raw = m2._split_in_proj(cfg, m2.linear(normed, m["in_proj.weight"],
                                                        m.get("in_proj.bias")))
        dt = m2.softplus(dt_raw + m["dt_bias"])
        below += int((dt < lo).sum())
        above += int((dt > hi).sum())
        total += dt.numel()
        hidden = hidden + m2.mixer_forward(m, cfg, normed)[0]
    return below / total, above / total


# --------------------------------------------------------------------------------------
# builders
# --------------------------------------------------------------------------------------

def build_model_case(case: Dict) -> Dict[str, object]:
    """Compute (and self-check) everything for one model case; returns files to write."""
    config = make_config(case)
    cfg = m2.Mamba2Config.from_json(config)

    def check_longest(params, ids, logits, states):
        worst_prefill = check_chunked_prefill(case, cfg, params, ids, logits, states)
        moves = check_sensitivity(case, cfg, params, ids, logits)
        if cfg.time_step_limit[1] < 1e300:
            below, above = clamp_fractions(cfg, params, ids)
            assert below > 0.05 and above > 0.05, \
                f"{case['name']}: clamp bites on {below:.2f} below, {above:.2f} above"
            moves["dt clamped below/above"] = (below, above)
        return worst_prefill, moves

    files, s = mf.build_model_files(m2, case, config, cfg, random_params(case, cfg),
                                    check_longest, fd_picks, GENERATOR)
    worst_prefill, moves = s["longest"]

    def fmt(v) -> str:
        return f"{v[0]:.2f}/{v[1]:.2f}" if isinstance(v, tuple) else f"{v:.3f}"
    print(f"  model {case['name']}: decode max diff {s['decode']:.2e}, chunked prefill and "
          f"chunked SSD {worst_prefill:.2e}, fd max abs err {s['fd']:.1e}, logits std "
          f"{s['logit_std'][0]:.2f}..{s['logit_std'][1]:.2f}, loss {s['loss']:.4f}")
    print("      logits move under: " + ", ".join(f"{k} {fmt(v)}" for k, v in moves.items()))
    return files


def build_ssd_case(case: Dict) -> Tuple[Dict[str, torch.Tensor], Dict[str, str]]:
    """Compute (and self-check) one standalone SSD case."""
    t = ssd_inputs(case)
    check_ssd(case, t)
    out = mf.kernel_case_tensors(t, SSD_ARGS, lambda d: run_ssd(m2.ssd, d))
    meta = {"has_D": flag(case["D"]), "has_initial_state": flag(case["initial_state"]),
            "B": str(case["B"]), "L": str(case["L"]), "H": str(case["H"]),
            "P": str(case["P"]), "G": str(case["G"]), "N": str(case["N"]),
            "generator": GENERATOR}
    return out, meta


def main() -> None:
    print("self-checks:")
    check_norm()
    check_ssd_gradcheck()
    check_mixer_gradcheck()
    ssds = {c["name"]: build_ssd_case(c) for c in SSD_CASES}
    models = {c["name"]: build_model_case(c) for c in MODEL_CASES}

    print("writing:")
    os.makedirs(os.path.join(DATA, "ssd"), exist_ok=True)
    total = 0
    for name, (tensors, meta) in ssds.items():
        path = os.path.join(DATA, "ssd", name + ".safetensors")
        mf.write_tensors(path, tensors, meta)
        size = os.path.getsize(path)
        assert size < FILE_LIMIT, f"{path} is {size} bytes"
        total += size
        print(f"  ssd/{name}.safetensors: {size} bytes")
    for name, files in models.items():
        total += mf.write_model_dir(m2, os.path.join(DATA, "models", name), files,
                                    file_limit=FILE_LIMIT)
    print(f"total Mamba-2 fixture bytes: {total}")
    assert total < 1024 * 1024


if __name__ == "__main__":
    main()
