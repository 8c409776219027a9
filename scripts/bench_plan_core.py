"""Seconds per CEM plan with analytic world models: the planner's own overhead.

The world model here costs almost nothing (a linear latent of the position, x_{k+1} = x_k + a_k),
so the numbers are the CEM machinery itself: sampling, L1-ball projection, energy, top-k and the
per-iteration dispatch. `--tokens/--dim` set the latent size the energy runs over (V-JEPA 2-AC at
256 px: 256 tokens of width 1024; the comparison budget in issue 5: 64 tokens).

Usage:
    python scripts/bench_plan_core.py                 # default budget, jit off and on
    python scripts/bench_plan_core.py --repeats 20 --tokens 64 --dim 192
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np
from keras import ops

from planning import CEMConfig, CEMPlanner


class LinearPointModel:
    """Latent tokens = fixed linear embedding of a 2-D position; position += action."""

    action_dim = 2
    state_dim = 2

    def __init__(self, tokens: int, dim: int):
        self.tokens, self.dim = tokens, dim
        self.embed = np.random.default_rng(0).normal(size=(2, tokens * dim)).astype("float32")

    def latent(self, pos):
        z = ops.matmul(pos, ops.convert_to_tensor(self.embed))
        return ops.reshape(z, tuple(pos.shape[:-1]) + (self.tokens, self.dim))

    def encode(self, frames):
        raise NotImplementedError("the benchmark plans from latents")

    def rollout(self, z_context, states, actions, context_actions=None):
        return self.latent(states[:, -1][:, None] + ops.cumsum(actions, axis=1))


def bench(config: CEMConfig, tokens: int, dim: int, repeats: int) -> dict:
    model = LinearPointModel(tokens, dim)
    planner = CEMPlanner(model, [-0.1, -0.1], [0.1, 0.1], config)
    state = np.array([[0.2, 0.2]], "float32")
    z = ops.convert_to_numpy(model.latent(ops.convert_to_tensor(state)))
    goal = ops.convert_to_numpy(model.latent(ops.convert_to_tensor([[0.5, 0.6]])))[0]
    t0 = time.perf_counter()
    planner.plan(z, state, goal)
    first = time.perf_counter() - t0
    seconds = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        planner.plan(z, state, goal)
        seconds.append(time.perf_counter() - t0)
    return {
        "samples": config.samples, "iterations": config.iterations, "horizon": config.horizon,
        "jit_compile": bool(config.jit_compile), "tokens": tokens, "dim": dim,
        "first_plan_s": round(first, 4),
        "median_s": round(float(np.median(seconds)), 5),
        "p95_s": round(float(np.percentile(seconds, 95)), 5),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--dim", type=int, default=192)
    args = parser.parse_args()
    default = CEMConfig()
    # Throwaway run: the process's first graph pays one-time TensorFlow start-up costs.
    bench(default, args.tokens, args.dim, 2)
    runs = []
    for jit in (False, True):
        runs.append(bench(default.replace(jit_compile=jit), args.tokens, args.dim, args.repeats))
    for samples in (256, 800):
        runs.append(bench(default.replace(samples=samples), args.tokens, args.dim, args.repeats))
    for horizon in (1, 4):
        runs.append(bench(default.replace(horizon=horizon), args.tokens, args.dim, args.repeats))
    runs.append(bench(CEMConfig(samples=256, iterations=5, horizon=2), args.tokens, args.dim,
                      args.repeats))
    for run in runs:
        print(json.dumps(run))


if __name__ == "__main__":
    main()
