"""Planning seconds per action: one full CEM plan with a V-JEPA 2-AC world model.

One plan is what MPC spends per executed action: the current frame is encoded (the goal image's
latent is cached after the first plan, as `planning.Planner` does), then CEM runs its iterations
(one compiled, batched world-model rollout each) and scores the returned mean. Each
configuration gets a fresh `Planner`; its first plan (tracing and compilation) is reported
apart, then `--repeats` plans give the median and p95 seconds per action.

Sections:
- `default`: the tiny preset world model at the default budget (`planning.CEMConfig()`), at the
  size it is trained at in docs/world_model.md (64 px: 16 tokens per frame), fed 128 px camera
  frames as `vjepa2 evaluate` does (the resize is part of the encoding).
- `samples` / `horizon`: how that grows with the samples and the horizon (default iterations).
- `comparison`: the reference notebook-like budget (256 samples, 5 iterations, horizon 2) with an
  AC predictor of width 192 and depth 6 on 128 px frames (64 patch tokens of 16 px): planned with
  the world model's cached rollout (`WorldModel.rollout`: the context and earlier imagined steps
  are never re-run for later steps) and with its naive recompute rollout
  (`WorldModel.rollout_recompute`: the whole growing sequence re-run at every step, as the
  reference does), plus the rollout alone at that batch and their largest difference.

Weights are random unless `--run` names a `vjepa2 finetune-ac` run folder (speed does not depend
on them). The machine is usually shared: the load average is recorded and medians are reported.
Runs on TensorFlow or JAX (`KERAS_BACKEND=jax` needs no TensorFlow).

Usage:
    python scripts/bench_plan.py --out bench_plan.json
    python scripts/bench_plan.py --quick --out bench_plan_quick.json
    KERAS_BACKEND=jax python scripts/bench_plan.py --quick
    python scripts/bench_plan.py --run runs/ac --skip-comparison
"""
from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bench_world_model import build_model, time_call  # noqa: E402

TARGET_SECONDS = 1.0
COMPARISON = dict(samples=256, iterations=5, horizon=2)


class RecomputeWorldModel:
    """The same world model planned with `rollout_recompute` instead of the cached `rollout`."""

    def __init__(self, model):
        self.model = model
        self.action_dim = model.action_dim
        self.state_dim = model.state_dim
        self.conventions = model.conventions

    def encode(self, frames):
        return self.model.encode(frames)

    def rollout(self, z_context, states, actions, context_actions=None):
        return self.model.rollout_recompute(z_context, states, actions, context_actions)


def machine_info() -> dict:
    import keras

    versions = {}
    for name in ("keras", "numpy", "tensorflow", "jax", "jaxlib", "torch"):
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    return {"backend": keras.backend.backend(), "cpus": os.cpu_count(),
            "machine": platform.machine(), "processor": platform.processor(),
            "python": platform.python_version(), "platform": platform.platform(),
            "versions": versions, "loadavg_start": list(os.getloadavg())}


def make_inputs(model, context: int, size: int, seed: int = 0) -> dict:
    """Random uint8 `size` px frames (a few current frames to cycle through), a goal image,
    states."""
    rng = np.random.default_rng(seed)
    width = size * getattr(model, "frame_views", 1)  # camera views side by side
    return {
        "frames": [rng.integers(0, 256, (context, size, width, 3), dtype=np.uint8)
                   for _ in range(4)],
        "goal": rng.integers(0, 256, (size, width, 3), dtype=np.uint8),
        "state": rng.normal(0, 0.1, (context, model.state_dim)).astype("float32"),
        "context_actions": (None if context == 1 else
                            rng.uniform(-0.05, 0.05, (context - 1, model.action_dim))
                            .astype("float32")),
    }


def bench_planner(world_model, config, inputs, repeats: int, low: float, high: float) -> dict:
    """First plan (compile) and `repeats` more plans with one `Planner`; seconds per plan."""
    from planning import Planner

    planner = Planner(world_model, action_low=np.full(world_model.action_dim, low),
                      action_high=np.full(world_model.action_dim, high), config=config)
    frames = inputs["frames"]

    def one(i):
        t0 = time.perf_counter()
        result = planner.plan(frames[i % len(frames)], inputs["state"], inputs["goal"],
                              context_actions=inputs["context_actions"])
        return time.perf_counter() - t0, result

    first, result = one(0)
    first_encode = result.timings["encode"]
    total, encode, cem, evaluate = [], [], [], []
    for i in range(repeats):
        seconds, result = one(i + 1)
        total.append(seconds)
        encode.append(result.timings["encode"])
        cem.append(result.timings["iterations"])
        evaluate.append(result.timings["evaluate"])
    median = float(np.median(total))
    return {
        "samples": config.samples, "iterations": config.iterations, "horizon": config.horizon,
        "elites": config.elites, "jit_compile": config.jit_compile,
        "first_plan_s": first, "first_plan_encode_s": first_encode,
        "median_s": median, "p95_s": float(np.percentile(total, 95)),
        "min_s": float(np.min(total)),
        "encode_median_s": float(np.median(encode)),
        "cem_iterations_median_s": float(np.median(cem)),
        "evaluate_median_s": float(np.median(evaluate)),
        "rollouts_per_second": config.samples * config.iterations / median,
        "repeats": repeats, "loadavg_1min": os.getloadavg()[0],
    }


def bench_rollouts(model, inputs, samples: int, horizon: int, repeats: int, jit) -> dict:
    """The rollout alone at the planner's batch: cached vs recompute, and their difference."""
    from keras import ops

    from planning._compile import compile_function

    rng = np.random.default_rng(1)
    z = model.encode(inputs["frames"][0][None])
    states = ops.convert_to_tensor(inputs["state"][None], "float32")
    ctx = inputs["context_actions"]
    ctx = None if ctx is None else ops.convert_to_tensor(ctx[None], "float32")
    actions = ops.convert_to_tensor(
        rng.uniform(-1, 1, (samples, horizon, model.action_dim)), "float32")
    cached = compile_function(lambda z, s, a, c: model.rollout(z, s, a, c), jit)
    naive = compile_function(lambda z, s, a, c: model.rollout_recompute(z, s, a, c), jit)
    inputs_ = (z, states, actions, ctx)
    first_c, med_c = time_call(cached, inputs_, repeats)
    first_n, med_n = time_call(naive, inputs_, repeats)
    diff = float(np.abs(ops.convert_to_numpy(cached(*inputs_))
                        - ops.convert_to_numpy(naive(*inputs_))).max())
    return {"samples": samples, "horizon": horizon, "cached_median_s": med_c,
            "recompute_median_s": med_n, "speedup": med_n / med_c,
            "cached_first_call_s": first_c, "recompute_first_call_s": first_n,
            "max_abs_difference": diff}


def comparison_model(base, image_size: int):
    """The comparison world model: the same encoder at `image_size`, an AC predictor of width
    192 and depth 6 (the tiny preset's heads and MLP)."""
    from vjepa2.models import ActionConditionedPredictor
    from vjepa2.models.world_model import WorldModel

    predictor = ActionConditionedPredictor.from_preset(
        "tiny", encoder_dim=base.encoder.embed_dim, action_dim=base.action_dim,
        state_dim=base.state_dim, embed_dim=192, depth=6)
    return WorldModel(base.encoder, predictor, dict(base.conventions, image_size=image_size))


def matmul_gflops() -> float:
    """A quick dense-matmul rate: how much of the shared CPU this process gets right now."""
    from vjepa2.flops import matmul_peak_flops

    return round(matmul_peak_flops(1024, "float32", repeats=5) / 1e9, 1)


def describe(model) -> dict:
    p = model.predictor
    side = model.image_size // model.encoder.patch_size
    return {"image_size": model.image_size, "patch_size": model.encoder.patch_size,
            "tokens_per_frame": side * side * getattr(model, "frame_views", 1),
            "encoder_width": model.encoder.embed_dim,
            "predictor_width": p.embed_dim, "predictor_depth": p.depth,
            "predictor_heads": p.num_heads, "predictor_mlp": p.mlp_dim,
            "action_dim": model.action_dim, "state_dim": model.state_dim}


def row(label, r) -> str:
    return (f"{label:<28} {r['samples']:>4} {r['iterations']:>3} {r['horizon']:>2} "
            f"{r['first_plan_s']:>8.2f} {r['median_s']:>8.3f} {r['p95_s']:>8.3f} "
            f"{r['encode_median_s']:>7.3f} {r['cem_iterations_median_s']:>7.3f} "
            f"{r['loadavg_1min']:>5.1f}")


HEADER = (f"{'configuration':<28} {'S':>4} {'I':>3} {'H':>2} {'first s':>8} {'median s':>8} "
          f"{'p95 s':>8} {'encode':>7} {'CEM':>7} {'load':>5}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--run", default=None, help="a finetune-ac run folder (else random)")
    parser.add_argument("--image-size", type=int, default=64,
                        help="the world model's frame size (docs/world_model.md trains at 64)")
    parser.add_argument("--frame-size", type=int, default=128,
                        help="camera frame size given to the planner (`vjepa2 collect`: 128)")
    parser.add_argument("--context", type=int, default=1,
                        help="context frames Tc (MPC and evaluation default: 1)")
    parser.add_argument("--repeats", type=int, default=7, help="timed plans per configuration")
    parser.add_argument("--comparison-repeats", type=int, default=4,
                        help="timed plans per comparison configuration (slow ones)")
    parser.add_argument("--samples", type=int, nargs="*", default=[64, 128, 256, 512])
    parser.add_argument("--horizons", type=int, nargs="*", default=[1, 2, 4])
    parser.add_argument("--comparison-contexts", type=int, nargs="*", default=[1],
                        help="context frames for the comparison budget")
    parser.add_argument("--budgets", nargs="*", default=[], metavar="S,I,H",
                        help="extra budgets to time: samples,iterations,horizon each, "
                        "',paired' to search the last action dim as open-versus-close "
                        "(CEMConfig.binary_dims)")
    parser.add_argument("--skip-comparison", action="store_true")
    parser.add_argument("--jit", action="store_true", help="TensorFlow: XLA-compile")
    parser.add_argument("--precision", default="float32",
                        choices=["float32", "mixed_bfloat16", "bfloat16"],
                        help="Keras dtype policy of the world model: mixed_bfloat16 computes in "
                        "bf16 with float32 weights, bfloat16 stores the weights in bf16 too")
    parser.add_argument("--action-bound", type=float, default=1.0,
                        help="actions in [-bound, bound] per dim")
    parser.add_argument("--quick", action="store_true",
                        help="short run: 3 repeats (2 comparison), samples 64 256, "
                        "horizons 1 4, comparison Tc=1")
    parser.add_argument("--out", default="bench_plan.json")
    args = parser.parse_args(argv)
    if args.quick:
        args.repeats = min(args.repeats, 3)
        args.comparison_repeats = min(args.comparison_repeats, 2)
        args.samples = [64, 256]
        args.horizons = [1, 4]
        args.comparison_contexts = args.comparison_contexts[:1]

    import keras

    from planning import CEMConfig

    keras.mixed_precision.set_global_policy(args.precision)  # before any model is built
    keras.utils.set_random_seed(0)
    info = machine_info()
    info["matmul_gflops_start"] = matmul_gflops()
    model = build_model(args)
    default = CEMConfig(jit_compile=True if args.jit else None)
    low, high = -args.action_bound, args.action_bound
    inputs = make_inputs(model, args.context, args.frame_size)
    result = {"command": " ".join([os.path.basename(sys.argv[0])] + sys.argv[1:]),
              "machine": info, "preset": args.preset, "run": args.run,
              "context": args.context, "frame_size": args.frame_size, "repeats": args.repeats,
              "precision": args.precision,
              "comparison_repeats": args.comparison_repeats, "target_seconds": TARGET_SECONDS,
              "model": describe(model), "default_config": {
                  k: getattr(default, k) for k in ("samples", "elites", "iterations", "horizon")}}
    print(f"planning seconds per action: backend {info['backend']}, {info['cpus']} CPUs, "
          f"load average {info['loadavg_start'][0]:.1f}, matmul "
          f"{info['matmul_gflops_start']} GFLOP/s, preset {args.preset}"
          f"{' (run ' + args.run + ')' if args.run else ' (random weights)'}, "
          f"{result['model']['tokens_per_frame']} tokens x {result['model']['encoder_width']}, "
          f"AC predictor {result['model']['predictor_depth']} x "
          f"{result['model']['predictor_width']}, Tc={args.context}, {args.frame_size} px camera frames, median of "
          f"{args.repeats}")
    print(HEADER)

    runs = {}

    def run(label, world_model, config, inputs_, repeats=args.repeats):
        r = bench_planner(world_model, config, inputs_, repeats, low, high)
        runs[label] = r
        print(row(label, r), flush=True)
        return r

    result["default"] = run("default", model, default, inputs)
    result["samples"] = [
        result["default"] if s == default.samples else run(f"samples={s}", model,
                                                            default.replace(samples=s), inputs)
        for s in args.samples]
    result["horizon"] = [
        result["default"] if h == default.horizon else run(f"horizon={h}", model,
                                                           default.replace(horizon=h), inputs)
        for h in args.horizons]
    result["budgets"] = []
    for budget in args.budgets:
        parts = budget.split(",")
        paired = parts[3:] == ["paired"]
        if len(parts) not in (3, 4) or (len(parts) == 4 and not paired):
            parser.error(f"--budgets takes samples,iterations,horizon[,paired]; received {budget}")
        s, i, h = (int(v) for v in parts[:3])
        config = default.replace(samples=s, iterations=i, horizon=h,
                                 binary_dims=(model.action_dim - 1,) if paired else None)
        result["budgets"].append(run(f"budget {budget}", model, config, inputs))

    if not args.skip_comparison:
        cmodel = comparison_model(model, 128)
        result["comparison_model"] = describe(cmodel)
        cconfig = default.replace(**COMPARISON)
        result["comparison"] = []
        for context in args.comparison_contexts:
            cinputs = make_inputs(cmodel, context, 128)
            cached = run(f"compare Tc={context} cached", cmodel, cconfig, cinputs,
                         args.comparison_repeats)
            naive = run(f"compare Tc={context} recompute", RecomputeWorldModel(cmodel), cconfig,
                        cinputs, args.comparison_repeats)
            rollout = bench_rollouts(cmodel, cinputs, cconfig.samples, cconfig.horizon,
                                     max(3, args.comparison_repeats), default.jit_compile)
            result["comparison"].append({"context": context, "cached": cached,
                                         "recompute": naive, "rollout": rollout,
                                         "plan_speedup": naive["median_s"] / cached["median_s"]})

    # Verdict against the target, and the sweep budgets that meet it.
    med = result["default"]["median_s"]
    meets = med <= TARGET_SECONDS
    fitting = [label for label, r in runs.items()
               if r["median_s"] <= TARGET_SECONDS and not label.startswith("compare")]
    result["verdict"] = {"default_median_s": med, "meets_target": meets,
                         "over_target_by_s": max(0.0, med - TARGET_SECONDS),
                         "configurations_meeting_target": fitting}
    result["machine"]["loadavg_end"] = list(os.getloadavg())
    result["machine"]["matmul_gflops_end"] = matmul_gflops()

    print()
    print(f"default budget ({default.samples} samples, {default.iterations} iterations, horizon "
          f"{default.horizon}): median {med:.3f} s per action, p95 "
          f"{result['default']['p95_s']:.3f} s -> "
          + ("meets" if meets else f"misses by {med - TARGET_SECONDS:.3f} s")
          + f" the {TARGET_SECONDS:g} s target")
    if not meets:
        print(f"configurations within the target: {', '.join(fitting) or 'none'}")
    for c in result.get("comparison", []):
        ro = c["rollout"]
        print(f"comparison Tc={c['context']}: plan cached {c['cached']['median_s']:.3f} s vs "
              f"recompute {c['recompute']['median_s']:.3f} s ({c['plan_speedup']:.2f}x); "
              f"rollout of {ro['samples']} x H{ro['horizon']}: cached {ro['cached_median_s']:.3f} s"
              f" vs recompute {ro['recompute_median_s']:.3f} s ({ro['speedup']:.2f}x), "
              f"max |diff| {ro['max_abs_difference']:.1e}")
    print(f"load average start {info['loadavg_start'][0]:.1f}, end "
          f"{result['machine']['loadavg_end'][0]:.1f}; matmul GFLOP/s start "
          f"{info['matmul_gflops_start']}, end {result['machine']['matmul_gflops_end']}")
    with open(args.out, "w") as handle:
        json.dump(result, handle, indent=2, default=str)
    print(f"wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
