#!/usr/bin/env python3
"""Training-step throughput of a PyTorch 1.13 autograd implementation of a Mamba-2 language
model in float32, with torch.optim.AdamW: the peer of the C++ Mamba-2 training path.

The mixer follows Hugging Face's ``Mamba2Mixer.torch_forward`` (the path transformers takes
without the CUDA kernels): ``F.conv1d`` for the causal convolution, the chunked SSD in plain
torch ops (pad to a multiple of the chunk, in-chunk decay matrix from a segment sum,
chunk states, chunk-to-chunk recurrence, state-to-output term), and HF's gated RMSNorm over
all of E (the same as the official per-group norm for the n_groups = 1 shapes here).  The
contractions are written as ``einsum`` rather than HF's broadcast-multiply-then-sum, which
would materialise (B, chunks, Q, Q, H, N) tensors; the arithmetic is the same.

    /usr/bin/python3 tools/torch_mamba2_train_bench.py --shape kjv --batch 8 --length 256 --threads 2
    /usr/bin/python3 tools/torch_mamba2_train_bench.py --check     # float64 vs mamba2_reference

Prints one JSON object per case: tokens per second of forward + backward + optimizer step.
"""
import json
import math
import sys

import torch
import torch.nn.functional as F

sys.dont_write_bytecode = True  # keep tools/ free of __pycache__ (the imports below, --check)
from torch_train_bench import bench_parser, time_train_steps  # noqa: E402

# d_model, n_layer, vocab, d_state, head_dim, expand, n_groups, chunk_size, d_conv
SHAPES = {
    "kjv": dict(d_model=256, n_layer=6, vocab=257, d_state=64, head_dim=64, expand=2,
                n_groups=1, chunk=64, d_conv=4),
    "mamba2-130m": dict(d_model=768, n_layer=24, vocab=50280, d_state=128, head_dim=64,
                        expand=2, n_groups=1, chunk=256, d_conv=4),
}


def dims(s: dict) -> dict:
    """Derived sizes: E, H, conv_dim, in_proj width."""
    e = s["expand"] * s["d_model"]
    h = e // s["head_dim"]
    conv_dim = e + 2 * s["n_groups"] * s["d_state"]
    return dict(E=e, H=h, conv_dim=conv_dim, d_in_proj=e + conv_dim + h)


def random_params(s: dict, dtype=torch.float32, seed: int = 0) -> dict:
    """Hugging Face-named parameters with the Mamba-2 initialisation scales (tied head)."""
    g = torch.Generator().manual_seed(seed)
    d, k, n_layer = s["d_model"], s["d_conv"], s["n_layer"]
    z = dims(s)
    e, h, cd = z["E"], z["H"], z["conv_dim"]

    def uniform(*shape, bound):
        return (torch.rand(*shape, generator=g, dtype=torch.float64) * 2 - 1) * bound

    p = {"backbone.embeddings.weight": torch.randn(s["vocab"], d, generator=g, dtype=torch.float64) * 0.02,
         "backbone.norm_f.weight": torch.ones(d, dtype=torch.float64)}
    for i in range(n_layer):
        m = f"backbone.layers.{i}.mixer."
        p[f"backbone.layers.{i}.norm.weight"] = torch.ones(d, dtype=torch.float64)
        p[m + "in_proj.weight"] = uniform(z["d_in_proj"], d, bound=d ** -0.5)
        p[m + "conv1d.weight"] = uniform(cd, 1, k, bound=k ** -0.5)
        p[m + "conv1d.bias"] = uniform(cd, bound=k ** -0.5)
        dt = torch.exp(torch.rand(h, generator=g, dtype=torch.float64) * (math.log(0.1) - math.log(0.001))
                       + math.log(0.001)).clamp(min=1e-4)
        p[m + "dt_bias"] = dt + torch.log(-torch.expm1(-dt))
        p[m + "A_log"] = torch.log(1 + 15 * torch.rand(h, generator=g, dtype=torch.float64))
        p[m + "D"] = torch.ones(h, dtype=torch.float64)
        p[m + "norm.weight"] = torch.ones(e, dtype=torch.float64)
        p[m + "out_proj.weight"] = uniform(d, e, bound=(e * n_layer) ** -0.5)
    return {k: v.to(dtype).requires_grad_(True) for k, v in p.items()}


def rms_norm(x, w, eps=1e-5):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def segment_sum(a):
    """(..., T) -> (..., T, T): sum of a over (s, t] below the diagonal, -inf above."""
    t = a.size(-1)
    a = a[..., None].expand(*a.size(), t)
    a = a.masked_fill(~torch.ones(t, t, dtype=torch.bool).tril(-1), 0)
    out = torch.cumsum(a, dim=-2)
    return out.masked_fill(~torch.ones(t, t, dtype=torch.bool).tril(0), -math.inf)


def ssd_chunked(x, dt, A, B, C, D, chunk):
    """HF torch_forward's SSD: x (b, L, H, P), dt (b, L, H), A (H), B/C (b, L, G, N)."""
    b, length, h, p = x.shape
    pad = (chunk - length % chunk) % chunk
    B = B.repeat_interleave(h // B.shape[2], dim=2)
    C = C.repeat_interleave(h // C.shape[2], dim=2)
    d_res = D[:, None] * x
    xdt, adt = x * dt[..., None], A * dt

    def chunks(t):
        t = F.pad(t, (0, 0) * (t.dim() - 2) + (0, pad))
        return t.reshape(b, -1, chunk, *t.shape[2:])

    xdt, adt, B, C = chunks(xdt), chunks(adt), chunks(B), chunks(C)
    adt = adt.permute(0, 3, 1, 2)                                   # (b, h, c, l)
    cum = torch.cumsum(adt, dim=-1)
    lmat = torch.exp(segment_sum(adt))                              # (b, h, c, l, s)
    scores = torch.einsum("bclhn,bcshn->bhcls", C, B) * lmat
    y_diag = torch.einsum("bhcls,bcshp->bclhp", scores, xdt)
    decay_states = torch.exp(cum[..., -1:] - cum)
    states = torch.einsum("bclhn,bhcl,bclhp->bchpn", B, decay_states, xdt)
    states = torch.cat([torch.zeros_like(states[:, :1]), states], dim=1)
    decay_chunk = torch.exp(segment_sum(F.pad(cum[..., -1], (1, 0))))
    states = torch.einsum("bhzc,bchpn->bzhpn", decay_chunk, states)[:, :-1]
    y_off = torch.einsum("bclhn,bchpn,bhcl->bclhp", C, states, torch.exp(cum))
    y = (y_diag + y_off).reshape(b, -1, h, p)[:, :length]
    return y + d_res


def mixer(p, m, s, hidden):
    z = dims(s)
    e, h, cd, k = z["E"], z["H"], z["conv_dim"], s["d_conv"]
    gn = s["n_groups"] * s["d_state"]
    b, length, _ = hidden.shape
    proj = F.linear(hidden, p[m + "in_proj.weight"])
    gate, xbc, dt = proj.split([e, cd, h], dim=-1)
    xbc = F.conv1d(xbc.transpose(1, 2), p[m + "conv1d.weight"], p[m + "conv1d.bias"],
                   padding=k - 1, groups=cd)[..., :length]
    xbc = F.silu(xbc.transpose(1, 2))
    x, B, C = xbc.split([e, gn, gn], dim=-1)
    dt = F.softplus(dt + p[m + "dt_bias"])
    A = -torch.exp(p[m + "A_log"])
    y = ssd_chunked(x.reshape(b, length, h, -1), dt, A,
                    B.reshape(b, length, s["n_groups"], -1), C.reshape(b, length, s["n_groups"], -1),
                    p[m + "D"], s["chunk"])
    y = rms_norm(y.reshape(b, length, e) * F.silu(gate), p[m + "norm.weight"])  # HF: over all E
    return F.linear(y, p[m + "out_proj.weight"])


def forward(p, s, ids):
    hidden = p["backbone.embeddings.weight"][ids]
    for i in range(s["n_layer"]):
        normed = rms_norm(hidden, p[f"backbone.layers.{i}.norm.weight"])
        hidden = hidden + mixer(p, f"backbone.layers.{i}.mixer.", s, normed)
    hidden = rms_norm(hidden, p["backbone.norm_f.weight"])
    return F.linear(hidden, p["backbone.embeddings.weight"])


def loss_fn(logits, ids):
    return F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1))


def check() -> None:
    """The bench's model in float64 against tools/mamba2_reference.py, n_groups 1 and 2 (the
    reference set to HF's all-E gated norm, which equals its per-group norm for n_groups 1)."""
    import mamba2_reference as m2
    for groups in (1, 2):
        s = dict(d_model=16, n_layer=2, vocab=32, d_state=8, head_dim=8, expand=2,
                 n_groups=groups, chunk=4, d_conv=4)
        p = {k: v.detach() for k, v in random_params(s, torch.float64, seed=groups).items()}
        for k in p:  # non-trivial norms and skip weights
            if k.endswith("norm.weight") or k.endswith(".D"):
                p[k] = p[k] + 0.1 * torch.randn(p[k].shape, generator=torch.Generator().manual_seed(7),
                                                dtype=torch.float64)
        cfg = m2.Mamba2Config(vocab_size=32, d_model=16, n_layer=2, d_state=8, expand=2, d_conv=4,
                              head_dim=8, n_heads=4, n_groups=groups, chunk_size=4, use_bias=False,
                              use_conv_bias=True, tie_word_embeddings=True,
                              norm_group_size=32)  # HF's all-E gated norm
        ids = torch.randint(0, 32, (2, 11), generator=torch.Generator().manual_seed(3))
        diff = (forward(p, s, ids) - m2.model_forward(p, cfg, ids)[0]).abs().max().item()
        print(json.dumps({"check": "float64 bench model vs mamba2_reference (HF norm)",
                          "n_groups": groups, "max_abs_diff": diff}))
        assert diff < 1e-10, diff


def main() -> None:
    parser = bench_parser(SHAPES)
    parser.add_argument("--check", action="store_true",
                        help="compare the model with tools/mamba2_reference.py in float64 and exit")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.check:
        check()
        return
    s = SHAPES[args.shape]
    params = random_params(s)
    time_train_steps(params, lambda ids: loss_fn(forward(params, s, ids), ids), args, s["vocab"],
                     model="mamba2")


if __name__ == "__main__":
    main()
