#!/usr/bin/python3
"""Generate the test fixtures under ``tests/data/`` from the float64 reference.

Run from anywhere (the output location is derived from this file's path):

    nice /usr/bin/python3 tools/make_fixtures.py

Everything is deterministic (fixed seeds, single-threaded torch).  Before a single file is
written, the generator asserts a set of self-checks on the reference itself:

* the sequential scan equals an independent chunked recomputation (several chunk sizes),
  and its autograd gradients pass ``torch.autograd.gradcheck``;
* the written-out causal convolution and softplus agree with PyTorch's own;
* for every model case and prompt length, running token by token with the decode state
  gives the full-forward logits at every position (1e-10, float64), and the same final
  decode state; a chunked prefill (forward, then forward again from the state) agrees too;
* for tied models the embedding gradient is the sum of the lookup and the head paths,
  both non-zero; a few gradient entries agree with central finite differences;
* the fixtures are sensitive to the classic bugs (dt bias added twice, SSM path ignored).

The model-case builder, the model checks (decode, chunked prefill, tied paths, finite
differences) and the writers take the reference module as a parameter:
``tools/make_mamba2_fixtures.py`` runs them with ``mamba2_reference``.

See ``tests/data/README.md`` for what each file holds.
"""

from __future__ import annotations

import json
import math
import os
import sys
import zlib
from typing import Callable, Dict, List, Optional, Tuple

import torch

sys.dont_write_bytecode = True  # keep tools/ free of __pycache__
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mamba_reference as ref  # noqa: E402

torch.set_num_threads(1)
torch.set_default_dtype(torch.float64)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(ROOT, "tests", "data")

LENGTHS = (1, 2, 3, 7, 33)
BATCH = 2
GRAD_LENGTH = 7
DECODE_TOL = 1e-10
STORAGE = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16}
TORCH_DTYPE_NAME = {"F32": "float32", "F16": "float16", "BF16": "bfloat16"}

# --------------------------------------------------------------------------------------
# case definitions
# --------------------------------------------------------------------------------------

MODEL_CASES: List[Dict] = [
    dict(name="tiny_tied", layers=2, d_model=16, state=4, conv=4, expand=2, vocab=40,
         rank=2, tied=True, use_bias=False, conv_bias=True, dtype="F32"),
    dict(name="tiny_untied_bias", layers=3, d_model=24, state=8, conv=4, expand=2, vocab=48,
         rank="auto", tied=False, use_bias=True, conv_bias=True, dtype="F32"),
    dict(name="tiny_no_conv_bias", layers=4, d_model=16, state=4, conv=3, expand=2, vocab=40,
         rank=1, tied=True, use_bias=False, conv_bias=False, dtype="F32"),
    dict(name="tiny_old_names", layers=2, d_model=16, state=4, conv=4, expand=2, vocab=40,
         rank=2, tied=True, use_bias=False, conv_bias=True, dtype="F32", old_names=True),
    dict(name="tiny_f16", layers=2, d_model=16, state=4, conv=4, expand=2, vocab=40,
         rank=2, tied=True, use_bias=False, conv_bias=True, dtype="F16"),
    dict(name="tiny_bf16", layers=2, d_model=16, state=4, conv=4, expand=2, vocab=40,
         rank=2, tied=False, use_bias=False, conv_bias=True, dtype="BF16"),
]

SCAN_CASES: List[Dict] = [
    dict(name="full", B=2, L=37, E=5, N=4, softplus=True, D=True, z=True, delta_bias=True,
         initial_state=True),
    dict(name="bare", B=1, L=1, E=3, N=2, softplus=True, D=False, z=False, delta_bias=False,
         initial_state=False),
    dict(name="no_softplus", B=2, L=9, E=3, N=4, softplus=False, D=True, z=True,
         delta_bias=True, initial_state=False),
    dict(name="long", B=1, L=300, E=4, N=16, softplus=True, D=True, z=True, delta_bias=True,
         initial_state=True),
]


def seeded(name: str, salt: str = "") -> torch.Generator:
    """A generator whose seed is a fixed function of the case name (crc32)."""
    g = torch.Generator()
    g.manual_seed(zlib.crc32((name + "/" + salt).encode()))
    return g


def uniform(g: torch.Generator, shape, lo: float, hi: float) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(shape, generator=g)


def normal(g: torch.Generator, shape, std: float = 1.0) -> torch.Tensor:
    return std * torch.randn(shape, generator=g)


def inverse_softplus(y: torch.Tensor) -> torch.Tensor:
    """v with softplus(v) = y, for y > 0."""
    return y + torch.log(-torch.expm1(-y))


def log_uniform(g: torch.Generator, shape, lo: float, hi: float) -> torch.Tensor:
    return torch.exp(uniform(g, shape, math.log(lo), math.log(hi)))


# --------------------------------------------------------------------------------------
# model weights and config
# --------------------------------------------------------------------------------------

def hf_config(case: Dict) -> Dict:
    """The ``config.json`` dict, with the keys and spelling of Hugging Face's MambaConfig."""
    return {
        "architectures": ["MambaForCausalLM"],
        "model_type": "mamba",
        "vocab_size": case["vocab"],
        "hidden_size": case["d_model"],
        "state_size": case["state"],
        "num_hidden_layers": case["layers"],
        "layer_norm_epsilon": 1e-5,
        "expand": case["expand"],
        "intermediate_size": case["expand"] * case["d_model"],
        "conv_kernel": case["conv"],
        "use_bias": case["use_bias"],
        "use_conv_bias": case["conv_bias"],
        "time_step_rank": case["rank"],
        "hidden_act": "silu",
        "residual_in_fp32": True,
        "tie_word_embeddings": case["tied"],
        "bos_token_id": 0,
        "eos_token_id": 0,
        "pad_token_id": 0,
        "use_cache": True,
        "torch_dtype": TORCH_DTYPE_NAME[case["dtype"]],
    }


def random_lm_params(g: torch.Generator, cfg, emb: str, in_proj_rows: int,
                     conv_channels: int, mixer_own: Callable) -> ref.Params:
    """Random float64 weights of the language model around a mixer (shared with
    tools/make_mamba2_fixtures.py), drawn from g in a fixed order: the embedding ``emb``;
    per layer the block norm, in_proj (weight, bias), conv1d (weight, bias), then
    ``mixer_own(p, prefix, lin)`` for the mixer's own tensors, then out_proj (weight, bias);
    the final norm and, when untied, the head.  lin(out, in) draws a weight with the
    nn.Linear default scale U(-1/sqrt(in), 1/sqrt(in))."""
    d, e, k, v = cfg.d_model, cfg.d_inner, cfg.d_conv, cfg.vocab_size

    def lin(out_f: int, in_f: int):
        bound = 1.0 / math.sqrt(in_f)
        return uniform(g, (out_f, in_f), -bound, bound)

    p: ref.Params = {emb: normal(g, (v, d), 0.5)}
    for i in range(cfg.n_layer):
        pre = f"backbone.layers.{i}."
        p[pre + "norm.weight"] = 1.0 + normal(g, (d,), 0.1)
        p[pre + "mixer.in_proj.weight"] = lin(in_proj_rows, d)
        if cfg.use_bias:
            p[pre + "mixer.in_proj.bias"] = uniform(g, (in_proj_rows,), -0.2, 0.2)
        p[pre + "mixer.conv1d.weight"] = uniform(g, (conv_channels, 1, k), -1 / math.sqrt(k),
                                                 1 / math.sqrt(k))
        if cfg.use_conv_bias:
            p[pre + "mixer.conv1d.bias"] = uniform(g, (conv_channels,), -1 / math.sqrt(k),
                                                   1 / math.sqrt(k))
        mixer_own(p, pre + "mixer.", lin)
        # out_proj a little larger than the 1/sqrt(fan_in) default so the layers matter.
        p[pre + "mixer.out_proj.weight"] = 2.0 * lin(d, e)
        if cfg.use_bias:
            p[pre + "mixer.out_proj.bias"] = uniform(g, (d,), -0.2, 0.2)
    p["backbone.norm_f.weight"] = 1.0 + normal(g, (d,), 0.1)
    if not cfg.tie_word_embeddings:
        p["lm_head.weight"] = normal(g, (v, d), 0.5)
    return p


def random_params(case: Dict, cfg: ref.MambaConfig) -> ref.Params:
    """Random float64 weights with realistic scales, under Hugging Face names."""
    g = seeded(case["name"], "weights")
    e, n, r = cfg.d_inner, cfg.d_state, cfg.dt_rank
    emb = "backbone.embedding.weight" if case.get("old_names") else "backbone.embeddings.weight"

    def mixer_own(p: ref.Params, pre: str, lin: Callable) -> None:
        # x_proj 4x the default scale: B and C of order one, so that at these short lengths
        # the SSM state (not only the D skip) visibly drives the output.
        p[pre + "x_proj.weight"] = 4.0 * lin(r + 2 * n, e)
        p[pre + "dt_proj.weight"] = lin(e, r)
        p[pre + "dt_proj.bias"] = inverse_softplus(log_uniform(g, (e,), 1e-3, 1e-1))
        a = torch.arange(1, n + 1, dtype=torch.float64).repeat(e, 1)
        p[pre + "A_log"] = torch.log(a) + normal(g, (e, n), 0.05)
        p[pre + "D"] = 1.0 + normal(g, (e,), 0.1)

    return random_lm_params(g, cfg, emb, 2 * e, e, mixer_own)


def round_to_storage(params: ref.Params, dtype_name: str) -> Dict[str, torch.Tensor]:
    """The tensors as they will be written (F32 / F16 / BF16)."""
    return {k: t.to(STORAGE[dtype_name]).contiguous() for k, t in params.items()}


# --------------------------------------------------------------------------------------
# self-checks
# --------------------------------------------------------------------------------------

def max_abs(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a - b).abs().max().item() if a.numel() else 0.0


def check_elementwise() -> None:
    """Written-out conv and softplus against PyTorch's built-ins."""
    import torch.nn.functional as F
    g = seeded("elementwise")
    for k, length in ((4, 1), (4, 2), (4, 9), (3, 5), (1, 3)):
        x = normal(g, (2, length, 6))
        w = normal(g, (6, k))
        b = normal(g, (6,))
        mine = ref.causal_depthwise_conv(x, w, b)
        theirs = F.conv1d(x.transpose(1, 2), w[:, None, :], b, padding=k - 1, groups=6)
        theirs = theirs[:, :, :length].transpose(1, 2)
        assert max_abs(mine, theirs) < 1e-12, "causal conv mismatch"
    v = torch.linspace(-40, 40, 801)
    assert max_abs(ref.softplus(v), F.softplus(v)) < 1e-12, "softplus mismatch"
    assert torch.equal(ref.softplus(torch.tensor([20.5, 25.0])), torch.tensor([20.5, 25.0]))
    print("  elementwise: conv1d and softplus agree with torch")


def scan_inputs(case: Dict) -> Dict[str, torch.Tensor]:
    """Random float64 inputs of one standalone-scan case (only the present optionals)."""
    g = seeded(case["name"], "scan")
    b, length, e, n = case["B"], case["L"], case["E"], case["N"]
    t: Dict[str, torch.Tensor] = {"u": normal(g, (b, length, e))}
    if case["softplus"]:
        t["delta"] = normal(g, (b, length, e), 1.0)
    else:
        t["delta"] = uniform(g, (b, length, e), 0.01, 0.5)
    t["A"] = -torch.arange(1, n + 1, dtype=torch.float64).repeat(e, 1) * (1.0 + normal(g, (e, n), 0.1).abs())
    t["B"] = normal(g, (b, length, n))
    t["C"] = normal(g, (b, length, n))
    if case["D"]:
        t["D"] = normal(g, (e,))
    if case["z"]:
        t["z"] = normal(g, (b, length, e))
    if case["delta_bias"]:
        if case["softplus"]:
            t["delta_bias"] = inverse_softplus(log_uniform(g, (e,), 1e-2, 1.0))
        else:
            t["delta_bias"] = uniform(g, (e,), 0.0, 0.1)
    if case["initial_state"]:
        t["initial_state"] = normal(g, (b, e, n))
    t["grad_y"] = normal(g, (b, length, e))
    t["grad_final_state"] = normal(g, (b, e, n))
    return t


SCAN_ARGS = ("u", "delta", "A", "B", "C", "D", "z", "delta_bias", "initial_state")


def run_scan(fn, t: Dict[str, torch.Tensor], softplus: bool, **kw):
    return fn(t["u"], t["delta"], t["A"], t["B"], t["C"], D=t.get("D"), z=t.get("z"),
              delta_bias=t.get("delta_bias"), delta_softplus=softplus,
              initial_state=t.get("initial_state"), **kw)


def kernel_objective(y: torch.Tensor, state: torch.Tensor,
                     t: Dict[str, torch.Tensor]) -> torch.Tensor:
    """<y, grad_y> + <final state, grad_final_state>: its gradients are the kernel's backward."""
    return (y * t["grad_y"]).sum() + (state * t["grad_final_state"]).sum()


def gradcheck_kernel(t: Dict[str, torch.Tensor], arg_names, run: Callable) -> None:
    """torch.autograd.gradcheck of kernel_objective(*run(inputs)) w.r.t. the present inputs."""
    names = [k for k in arg_names if k in t]
    leaves = [t[k].clone().requires_grad_(True) for k in names]

    def f(*xs):
        return kernel_objective(*run(dict(zip(names, xs))), t)
    assert torch.autograd.gradcheck(f, leaves, eps=1e-6, atol=1e-7, rtol=1e-6)


def check_scan(case: Dict, t: Dict[str, torch.Tensor]) -> None:
    """Sequential scan == chunked scan for several chunk sizes; gradcheck on a small slice."""
    y, h = run_scan(ref.selective_scan_ref, t, case["softplus"])
    scale = max(y.abs().max().item(), h.abs().max().item(), 1.0)
    worst = 0.0
    for chunk in (1, 3, 8, 64):
        yc, hc = run_scan(ref.selective_scan_chunked, t, case["softplus"], chunk=chunk)
        worst = max(worst, max_abs(y, yc), max_abs(h, hc))
    assert worst < 1e-11 * scale, f"scan {case['name']}: chunked differs by {worst}"
    print(f"  scan {case['name']}: sequential vs chunked (1,3,8,64) max diff {worst:.2e}")


def check_scan_gradcheck() -> None:
    """Finite-difference check of the sequential scan's autograd gradients."""
    small = dict(name="gradcheck", B=1, L=5, E=2, N=3, softplus=True, D=True, z=True,
                 delta_bias=True, initial_state=True)
    gradcheck_kernel(scan_inputs(small), SCAN_ARGS,
                     lambda d: run_scan(ref.selective_scan_ref, d, True))
    print("  scan gradcheck: passed")


# The model checks below are shared with tools/make_mamba2_fixtures.py: ``reference`` is
# the reference module (mamba_reference or mamba2_reference), of which they use
# model_forward, model_step, empty_state, next_token_loss and embedding_name.

def check_decode(reference, case: Dict, cfg, params: ref.Params, ids: torch.Tensor,
                 logits: torch.Tensor, states: list) -> float:
    """Token-by-token decode == full forward (logits at every position, final state)."""
    st = reference.empty_state(cfg, ids.shape[0])
    worst = 0.0
    for t in range(ids.shape[1]):
        lt, st = reference.model_step(params, cfg, ids[:, t], st)
        worst = max(worst, max_abs(lt, logits[:, t]))
    for a, b in zip(st, states):
        worst = max(worst, max_abs(a.conv, b.conv), max_abs(a.ssm, b.ssm))
    length, k = ids.shape[1], cfg.d_conv
    if length < k:  # conv state is left-padded with zeros for prompts shorter than d_conv
        for s in states:
            assert torch.all(s.conv[:, :, :k - length] == 0), "conv state not zero-padded"
    assert worst < DECODE_TOL, f"{case['name']} L={length}: decode differs by {worst}"
    return worst


def check_chunked_prefill(reference, case: Dict, cfg, params: ref.Params, ids: torch.Tensor,
                          logits: torch.Tensor, states: list, chunks=(None,)) -> float:
    """Forward on a prefix, then forward on the rest from the returned state == full.

    ``chunks``: the ``chunk`` argument of each run of the pair (None: the reference's
    default, the only one Mamba-1's model_forward has)."""
    worst = 0.0
    for split in (1, 2, cfg.d_conv - 1, 10, ids.shape[1] - 1):
        for chunk in chunks:
            kw = {} if chunk is None else {"chunk": chunk}
            l1, s1 = reference.model_forward(params, cfg, ids[:, :split], **kw)
            l2, s2 = reference.model_forward(params, cfg, ids[:, split:], s1, **kw)
            worst = max(worst, max_abs(torch.cat([l1, l2], 1), logits))
            for a, b in zip(s2, states):
                worst = max(worst, max_abs(a.conv, b.conv), max_abs(a.ssm, b.ssm))
    assert worst < DECODE_TOL, f"{case['name']}: chunked prefill differs by {worst}"
    return worst


def loss_and_grads(reference, cfg, params: ref.Params,
                   ids: torch.Tensor) -> Tuple[torch.Tensor, ref.Params]:
    """Mean next-token cross-entropy and its gradient w.r.t. every parameter."""
    leaves = {k: v.clone().requires_grad_(True) for k, v in params.items()}
    logits, _ = reference.model_forward(leaves, cfg, ids)
    loss = reference.next_token_loss(logits, ids)
    grads = torch.autograd.grad(loss, list(leaves.values()))
    return loss.detach(), dict(zip(leaves.keys(), grads))


def check_tied_paths(reference, cfg, params: ref.Params, ids: torch.Tensor,
                     grads: ref.Params) -> None:
    """Tied embedding gradient == lookup-path gradient + head-path gradient, both non-zero."""
    emb = reference.embedding_name(params)
    untied = dict(params)
    untied["lm_head.weight"] = params[emb].clone()
    _, g2 = loss_and_grads(reference, cfg, untied, ids)
    lookup, head = g2[emb], g2["lm_head.weight"]
    assert lookup.abs().max() > 1e-6 and head.abs().max() > 1e-6, "a tied path has no gradient"
    diff = max_abs(grads[emb], lookup + head)
    assert diff < 1e-12, f"tied gradient is not the sum of both paths ({diff})"
    assert max_abs(grads[emb], head) > 1e-6, "tied gradient misses the lookup path"


def fd_picks(cfg: ref.MambaConfig, params: ref.Params,
             ids: torch.Tensor) -> List[Tuple[str, int]]:
    """(tensor, flat index) pairs: two entries of several Mamba-1 parameter kinds."""
    picks = []
    for name in (ref.embedding_name(params), "backbone.layers.0.mixer.A_log",
                 "backbone.layers.0.mixer.dt_proj.bias", "backbone.layers.0.mixer.conv1d.weight",
                 f"backbone.layers.{cfg.n_layer - 1}.mixer.x_proj.weight",
                 "backbone.norm_f.weight"):
        for flat_index in (1, 5):
            if "embedding" in name:  # a row that is actually looked up
                flat_index += int(ids[0, 1]) * cfg.d_model
            picks.append((name, flat_index))
    return picks


def check_finite_differences(reference, cfg, params: ref.Params, ids: torch.Tensor,
                             grads: ref.Params, picks: List[Tuple[str, int]]) -> float:
    """Central differences (step 1e-4) on the (tensor, flat index) entries ``picks``.

    Returns the worst |fd - autograd|; the bound 1e-8 + 1e-6 |autograd| sits well above
    float64 round-off and the O(step^2) truncation (both ~1e-11 here)."""
    worst = 0.0
    step = 1e-4
    for name, flat_index in picks:
        p_plus, p_minus = dict(params), dict(params)
        for sign, p in ((1, p_plus), (-1, p_minus)):
            t = params[name].clone()
            t.view(-1)[flat_index] += sign * step
            p[name] = t
        lp = reference.next_token_loss(reference.model_forward(p_plus, cfg, ids)[0], ids)
        lm = reference.next_token_loss(reference.model_forward(p_minus, cfg, ids)[0], ids)
        fd = (lp - lm).item() / (2 * step)
        an = grads[name].reshape(-1)[flat_index].item()
        assert abs(fd - an) < 1e-8 + 1e-6 * abs(an), \
            f"finite difference mismatch on {name}[{flat_index}]: fd {fd} autograd {an}"
        worst = max(worst, abs(fd - an))
    return worst


def check_sensitivity(cfg: ref.MambaConfig, params: ref.Params, ids: torch.Tensor,
                      logits: torch.Tensor) -> Tuple[float, float]:
    """The logits must move visibly under the classic bugs (so the fixtures catch them)."""
    twice = dict(params)
    no_ssm = dict(params)
    r, n = cfg.dt_rank, cfg.d_state
    for i in range(cfg.n_layer):
        pre = f"backbone.layers.{i}.mixer."
        twice[pre + "dt_proj.bias"] = 2 * params[pre + "dt_proj.bias"]
        xw = params[pre + "x_proj.weight"].clone()
        xw[r + n:] = 0  # C = 0: the scan state never reaches the output
        no_ssm[pre + "x_proj.weight"] = xw
    d_twice = max_abs(ref.model_forward(twice, cfg, ids)[0], logits)
    d_no_ssm = max_abs(ref.model_forward(no_ssm, cfg, ids)[0], logits)
    assert d_twice > 0.05, f"dt-bias-twice bug moves the logits only by {d_twice}"
    assert d_no_ssm > 0.1, f"the SSM path moves the logits only by {d_no_ssm}"
    return d_twice, d_no_ssm


# --------------------------------------------------------------------------------------
# writers
# --------------------------------------------------------------------------------------

def f32(t: torch.Tensor) -> torch.Tensor:
    return t.detach().to(torch.float32).contiguous()


def build_model_files(reference, case: Dict, config: Dict, cfg, weights: ref.Params,
                      check_longest: Callable, picks: Callable,
                      generator: str) -> Tuple[Dict[str, object], Dict]:
    """Compute (and self-check) everything for one model case, for either generator.

    The weights are rounded to the storage dtype and the model computed from the rounded
    ones.  For every prompt length: the logits and final states, with the decode check, and
    at the longest length ``check_longest(params, ids, logits, states)`` (the generator's
    own checks); at GRAD_LENGTH the loss and the gradients, with the tied-path check and
    finite differences on ``picks(cfg, params, ids)``.  Returns the files to write and a
    summary (decode, longest: what check_longest returned, fd, logit_std, loss)."""
    stored = round_to_storage(weights, case["dtype"])
    params = {k: v.to(torch.float64) for k, v in stored.items()}  # compute from rounded weights

    g = seeded(case["name"], "tokens")
    expected: Dict[str, torch.Tensor] = {}
    worst_decode = 0.0
    logit_std = []
    for length in LENGTHS:
        ids = torch.randint(0, case["vocab"], (BATCH, length), generator=g)
        logits, states = reference.model_forward(params, cfg, ids)
        worst_decode = max(worst_decode,
                           check_decode(reference, case, cfg, params, ids, logits, states))
        if length == max(LENGTHS):
            longest = check_longest(params, ids, logits, states)
        expected[f"tokens.L{length}"] = f32(ids.to(torch.float64))
        expected[f"logits.L{length}"] = f32(logits)
        for i, s in enumerate(states):
            expected[f"conv_state.L{length}.layer{i}"] = f32(s.conv)
            expected[f"ssm_state.L{length}.layer{i}"] = f32(s.ssm)
        logit_std.append(logits.std().item())
        if length == GRAD_LENGTH:
            grad_ids = ids

    loss, grads = loss_and_grads(reference, cfg, params, grad_ids)
    if "lm_head.weight" not in params:
        check_tied_paths(reference, cfg, params, grad_ids, grads)
    fd_err = check_finite_differences(reference, cfg, params, grad_ids, grads,
                                      picks(cfg, params, grad_ids))
    grad_out = {k: f32(v) for k, v in grads.items()}
    grad_out["loss"] = f32(loss.reshape(1))
    assert set(grads) == set(stored), "a parameter has no gradient"

    summary = dict(decode=worst_decode, longest=longest, fd=fd_err,
                   logit_std=(min(logit_std), max(logit_std)), loss=loss.item())
    meta_common = {"case": case["name"], "generator": generator}
    return {
        "config.json": config,
        "model.safetensors": (stored, {"format": "pt"}),
        "expected.safetensors": (expected, dict(meta_common, batch=str(BATCH),
                                                lengths=",".join(map(str, LENGTHS)),
                                                weights_dtype=case["dtype"])),
        "grads.safetensors": (grad_out, dict(meta_common, tokens=f"tokens.L{GRAD_LENGTH}",
                                             loss="mean next-token cross-entropy")),
    }, summary


def build_model_case(case: Dict) -> Dict[str, object]:
    """Compute (and self-check) everything for one model case; returns files to write."""
    config = hf_config(case)
    cfg = ref.MambaConfig.from_hf(config)

    def check_longest(params, ids, logits, states):
        prefill = check_chunked_prefill(ref, case, cfg, params, ids, logits, states)
        return (prefill,) + check_sensitivity(cfg, params, ids, logits)

    files, s = build_model_files(ref, case, config, cfg, random_params(case, cfg),
                                 check_longest, fd_picks, "tools/make_fixtures.py")
    worst_prefill, d_twice, d_no_ssm = s["longest"]
    print(f"  model {case['name']}: decode max diff {s['decode']:.2e}, chunked prefill "
          f"{worst_prefill:.2e}, fd max abs err {s['fd']:.1e}, logits std "
          f"{s['logit_std'][0]:.2f}..{s['logit_std'][1]:.2f}, loss {s['loss']:.4f}, "
          f"dt-bias-twice moves logits {d_twice:.3f}, C=0 moves logits {d_no_ssm:.3f}")
    return files


def kernel_case_tensors(t: Dict[str, torch.Tensor], arg_names,
                        run: Callable) -> Dict[str, torch.Tensor]:
    """The file of a standalone kernel case (scan or SSD): the present inputs, y and
    final_state from ``run(inputs)``, grad_y, grad_final_state, and grad_<input> of
    kernel_objective for every present input, all in float32."""
    names = [k for k in arg_names if k in t]
    leaves = {k: t[k].clone().requires_grad_(True) for k in names}
    y, h = run(leaves)
    grads = torch.autograd.grad(kernel_objective(y, h, t), [leaves[k] for k in names])
    out = {k: f32(t[k]) for k in names}
    out["y"] = f32(y)
    out["final_state"] = f32(h)
    out["grad_y"] = f32(t["grad_y"])
    out["grad_final_state"] = f32(t["grad_final_state"])
    for k, gk in zip(names, grads):
        out["grad_" + k] = f32(gk)
    return out


def flag(b: bool) -> str:
    return "1" if b else "0"


def build_scan_case(case: Dict) -> Tuple[Dict[str, torch.Tensor], Dict[str, str]]:
    """Compute (and self-check) one standalone scan case."""
    t = scan_inputs(case)
    check_scan(case, t)
    out = kernel_case_tensors(t, SCAN_ARGS,
                              lambda d: run_scan(ref.selective_scan_ref, d, case["softplus"]))
    meta = {"delta_softplus": flag(case["softplus"]), "has_D": flag(case["D"]),
            "has_z": flag(case["z"]), "has_delta_bias": flag(case["delta_bias"]),
            "has_initial_state": flag(case["initial_state"]),
            "B": str(case["B"]), "L": str(case["L"]), "E": str(case["E"]), "N": str(case["N"]),
            "generator": "tools/make_fixtures.py"}
    return out, meta


def write_json(path: str, obj: Dict) -> None:
    with open(path, "w") as f:
        json.dump(obj, f, indent=2)
        f.write("\n")


def verify_roundtrip(path: str, tensors: Dict[str, torch.Tensor]) -> None:
    """Re-read a written safetensors file and compare bit for bit."""
    back, _ = ref.read_safetensors(path)
    assert set(back) == set(tensors), path
    for k, v in tensors.items():
        assert back[k].dtype == v.dtype and back[k].shape == v.shape, (path, k)
        assert ref._tensor_bytes(back[k]) == ref._tensor_bytes(v), (path, k)


def write_tensors(path: str, tensors: Dict[str, torch.Tensor], meta: Dict[str, str]) -> None:
    """Write a safetensors file and check that it reads back bit for bit."""
    ref.write_safetensors(path, tensors, meta)
    verify_roundtrip(path, tensors)


def write_model_dir(reference, directory: str, files: Dict[str, object],
                    file_limit: Optional[int] = None, dir_limit: Optional[int] = None) -> int:
    """Write one model case's files (JSON or (tensors, metadata)) into ``directory``, check
    the sizes against the limits and that the reference's loader, reading the directory
    back, computes exactly the stored logits.L7; returns the bytes written."""
    name = os.path.basename(directory)
    os.makedirs(directory, exist_ok=True)
    for fname, content in files.items():
        path = os.path.join(directory, fname)
        if fname.endswith(".json"):
            write_json(path, content)
        else:
            write_tensors(path, *content)
        if file_limit is not None:
            assert os.path.getsize(path) < file_limit, f"{path} is too large"
    size = sum(os.path.getsize(os.path.join(directory, f)) for f in files)
    if dir_limit is not None:
        assert size < dir_limit, f"{name} is {size} bytes"
    # the loader path round trip: what a reader of the directory computes is what we used
    cfg2, p2 = reference.load_model(directory)
    ids = files["expected.safetensors"][0]["tokens.L7"].to(torch.int64)
    logits, _ = reference.model_forward(p2, cfg2, ids)
    assert max_abs(f32(logits), files["expected.safetensors"][0]["logits.L7"]) == 0.0
    print(f"  models/{name}: {size} bytes")
    return size


def main() -> None:
    print("self-checks:")
    check_elementwise()
    check_scan_gradcheck()
    scans = {c["name"]: build_scan_case(c) for c in SCAN_CASES}
    models = {c["name"]: build_model_case(c) for c in MODEL_CASES}

    print("writing:")
    os.makedirs(os.path.join(DATA, "scan"), exist_ok=True)
    for name, (tensors, meta) in scans.items():
        write_tensors(os.path.join(DATA, "scan", name + ".safetensors"), tensors, meta)
    total = 0
    for name, files in models.items():
        total += write_model_dir(ref, os.path.join(DATA, "models", name), files,
                                 dir_limit=300 * 1024)
    total += sum(os.path.getsize(os.path.join(DATA, "scan", n + ".safetensors")) for n in scans)
    print(f"total fixture bytes: {total}")
    assert total < 3 * 1024 * 1024


if __name__ == "__main__":
    main()
