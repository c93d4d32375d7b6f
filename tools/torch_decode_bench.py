#!/usr/bin/env python3
"""Decode throughput of PyTorch 1.13 on the same Mamba model (tools/mamba_reference.py's
model_step in float32, no autograd: Hugging Face's slow path with cached conv and SSM states):
the peer for `mambakit bench --mode decode`, run back to back with it.

    OMP_PROC_BIND=close OMP_PLACES=cores /usr/bin/python3 tools/torch_decode_bench.py \
        --shape 130m --batch 1 --threads 2

Prints one JSON object: tokens per second (batch x steps over the median of the timed runs).
"""
import argparse
import json
import statistics
import time

import torch

import mamba_reference as ref
from torch_train_bench import SHAPES, config_for, random_params


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--shape", default="130m", choices=SHAPES)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=32, help="decode steps per run")
    parser.add_argument("--repeat", type=int, default=7, help="timed runs (one more warms up)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cfg = config_for(args.shape)
    params = {name: value.detach() for name, value in random_params(cfg).items()}
    seconds = []
    with torch.no_grad():
        for run in range(args.repeat + 1):  # run 0 warms up
            states = ref.empty_state(cfg, args.batch, dtype=torch.float32)
            ids = torch.zeros(args.batch, dtype=torch.long)
            start = time.perf_counter()
            for _ in range(args.steps):
                logits, states = ref.model_step(params, cfg, ids, states)
                ids = logits.argmax(-1)
            if run > 0:
                seconds.append(time.perf_counter() - start)
    median = statistics.median(seconds)
    print(json.dumps({"implementation": "pytorch-1.13", "shape": args.shape, "batch": args.batch,
                      "threads": args.threads, "steps": args.steps, "median_s": median,
                      "tokens_per_s": args.batch * args.steps / median}))


if __name__ == "__main__":
    main()
