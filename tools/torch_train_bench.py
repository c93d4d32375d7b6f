#!/usr/bin/env python3
"""Training-step throughput of a PyTorch 1.13 autograd implementation of the same Mamba model
(the math of tools/mamba_reference.py in float32: Hugging Face's slow path, sequential scan
over time), with torch.optim.AdamW: the baseline for `mambakit bench --mode train`.

    /usr/bin/python3 tools/torch_train_bench.py --shape kjv --batch 8 --length 256 --threads 2

Prints one JSON object per case: tokens per second of forward + backward + optimizer step.
"""
import argparse
import json
import math
import statistics
import time

import torch

import mamba_reference as ref

SHAPES = {"kjv": (256, 6, 257), "130m": (768, 24, 50280)}  # d_model, n_layer, vocab


def config_for(shape: str) -> ref.MambaConfig:
    """The Mamba-1 config of one of SHAPES (d_state 16, expand 2, d_conv 4, tied embeddings)."""
    d_model, n_layer, vocab = SHAPES[shape]
    return ref.MambaConfig(vocab_size=vocab, d_model=d_model, d_state=16, n_layer=n_layer, expand=2, d_conv=4,
                           dt_rank=math.ceil(d_model / 16), use_bias=False, use_conv_bias=True,
                           tie_word_embeddings=True)


def random_params(cfg: ref.MambaConfig) -> dict:
    """HF-named float32 parameters with the reference initialisation scales."""
    g = torch.Generator().manual_seed(0)
    D, E, N, R, K = cfg.d_model, cfg.d_inner, cfg.d_state, cfg.dt_rank, cfg.d_conv

    def uniform(*shape, bound):
        return (torch.rand(*shape, generator=g) * 2 - 1) * bound

    p = {"backbone.embeddings.weight": torch.randn(cfg.vocab_size, D, generator=g) * 0.02,
         "backbone.norm_f.weight": torch.ones(D)}
    for i in range(cfg.n_layer):
        m = f"backbone.layers.{i}.mixer."
        p[f"backbone.layers.{i}.norm.weight"] = torch.ones(D)
        p[m + "in_proj.weight"] = uniform(2 * E, D, bound=D ** -0.5)
        p[m + "conv1d.weight"] = uniform(E, 1, K, bound=K ** -0.5)
        p[m + "conv1d.bias"] = uniform(E, bound=K ** -0.5)
        p[m + "x_proj.weight"] = uniform(R + 2 * N, E, bound=E ** -0.5)
        p[m + "dt_proj.weight"] = uniform(E, R, bound=R ** -0.5)
        dt = torch.exp(torch.rand(E, generator=g) * (math.log(0.1) - math.log(0.001)) + math.log(0.001))
        p[m + "dt_proj.bias"] = dt + torch.log(-torch.expm1(-dt))
        p[m + "A_log"] = torch.log(torch.arange(1, N + 1, dtype=torch.float32)).repeat(E, 1)
        p[m + "D"] = torch.ones(E)
        p[m + "out_proj.weight"] = uniform(D, E, bound=(E * cfg.n_layer) ** -0.5)
    return {k: v.float().requires_grad_(True) for k, v in p.items()}


def bench_parser(shapes) -> argparse.ArgumentParser:
    """The options of a training bench (shared with tools/torch_mamba2_train_bench.py)."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--shape", default="kjv", choices=shapes)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--length", type=int, default=256)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=5)
    return parser


def time_train_steps(params: dict, loss_of, args, vocab: int, **report) -> None:
    """Time args.steps AdamW training steps (one more warms up) of ``loss_of(ids)`` on a fixed
    random batch and print the JSON result line: the ``report`` keys after the
    implementation, then the run's options, the median step time and tokens per second."""
    optimizer = torch.optim.AdamW(params.values(), lr=1e-3, betas=(0.9, 0.95), weight_decay=0.1)
    ids = torch.randint(0, vocab, (args.batch, args.length), generator=torch.Generator().manual_seed(1))
    seconds = []
    for step in range(args.steps + 1):  # step 0 warms up
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        loss = loss_of(ids)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params.values(), 1.0)
        optimizer.step()
        if step > 0:
            seconds.append(time.perf_counter() - start)
    median = statistics.median(seconds)
    print(json.dumps({"implementation": "pytorch-1.13-autograd", **report, "shape": args.shape,
                      "batch": args.batch, "length": args.length, "threads": args.threads,
                      "steps": args.steps, "median_s": median,
                      "tokens_per_s": args.batch * args.length / median, "loss": float(loss)}))


def main() -> None:
    args = bench_parser(SHAPES).parse_args()
    torch.set_num_threads(args.threads)
    cfg = config_for(args.shape)
    params = random_params(cfg)

    def loss_of(ids):
        logits, _ = ref.model_forward(params, cfg, ids)
        return ref.next_token_loss(logits, ids)

    time_train_steps(params, loss_of, args, cfg.vocab_size)


if __name__ == "__main__":
    main()
