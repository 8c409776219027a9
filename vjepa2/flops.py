"""Analytic FLOP counts (multiply-add = 2 FLOPs) of the models' matmuls, for benchmarks."""
from __future__ import annotations


def block_flops(tokens: int, dim: int, mlp_dim: int, attended: int | None = None) -> int:
    """Forward FLOPs of one transformer block over `tokens` tokens each attending to
    `attended` tokens (default: all of them)."""
    attended = tokens if attended is None else attended
    projections = 2 * tokens * (4 * dim * dim + 2 * dim * mlp_dim)
    attention = 2 * 2 * tokens * attended * dim  # scores and weighted sum
    return projections + attention


def encoder_flops(tokens: int, embed_dim: int, depth: int, mlp_dim: int, tubelet_size=2,
                  patch_size=16, **unused) -> int:
    """Forward FLOPs of a `VideoEncoder` on `tokens` tokens."""
    embed = 2 * tokens * tubelet_size * patch_size * patch_size * 3 * embed_dim
    return embed + depth * block_flops(tokens, embed_dim, mlp_dim)


def predictor_flops(num_context: int, num_target: int, encoder_dim: int, embed_dim: int,
                    depth: int, mlp_dim: int, **unused) -> int:
    """Forward FLOPs of a `MaskedPredictor`."""
    tokens = num_context + num_target
    return (2 * num_context * encoder_dim * embed_dim
            + depth * block_flops(tokens, embed_dim, mlp_dim)
            + 2 * num_target * embed_dim * encoder_dim)


def pretrain_step_flops(encoder: dict, predictor: dict, batch: int, tokens: int,
                        num_context, num_target) -> int:
    """FLOPs of one V-JEPA pretraining step: the teacher's forward on the full clip, and the
    student encoder and predictor forward + backward (backward ~ 2x forward) per mask set."""
    total = encoder_flops(tokens, **encoder)
    for ctx, tgt in zip(num_context, num_target):
        total += 3 * encoder_flops(ctx, **encoder)
        total += 3 * predictor_flops(ctx, tgt, **predictor)
    return batch * total


def matmul_peak_flops(size: int = 2048, dtype: str = "float32", repeats: int = 10) -> float:
    """The best dense matmul rate (FLOP/s) of the active Keras backend on this machine, in
    `dtype`: the reference the benchmarks compare achieved FLOP/s with."""
    import time

    import keras
    import numpy as np
    from keras import ops

    rng = np.random.default_rng(0)
    a = ops.cast(ops.convert_to_tensor(rng.normal(size=(size, size)), "float32"), dtype)
    b = ops.cast(ops.convert_to_tensor(rng.normal(size=(size, size)), "float32"), dtype)
    if keras.backend.backend() == "jax":
        import jax

        fn = jax.jit(lambda x, y: x @ y)

        def sync(x):
            return x.block_until_ready()
    else:
        fn = ops.matmul

        def sync(x):
            return np.asarray(ops.cast(x[:1, :1], "float32"))
    sync(fn(a, b))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        sync(fn(a, b))
        times.append(time.perf_counter() - start)
    return 2 * size ** 3 / min(times)
