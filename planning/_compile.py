"""Compile a keras.ops function with the active backend's graph compiler.

The planner's CEM iteration (sample -> world-model rollout -> energy -> elite update) is written in
`keras.ops`; this helper turns it into one compiled call so that an iteration costs one dispatch
instead of one per op. It is the only place in `planning/` that names a backend library.
"""
from __future__ import annotations

from typing import Callable

import keras


def compile_function(fn: Callable, jit_compile: bool | None = None,
                     exact_shapes: bool = False) -> Callable:
    """Compiles `fn` for the active Keras backend.

    - TensorFlow: `tf.function(fn, jit_compile=...)`. `None` means `False`: on the 2-core CPU,
      with 64 tokens of width 192, the XLA-compiled iteration was slower per plan and took about
      2 s to compile instead of 0.35 s (`scripts/bench_plan_core.py`); it helps only when the
      iteration is tiny and dispatch-bound. Measure with the real world model before enabling.
    - JAX: `jax.jit(fn)` (always XLA; `jit_compile` is ignored).
    - Torch and others: `fn` itself, called eagerly.

    Tensor arguments may change value without retracing; a change of shape retraces once per new
    shape. `None` arguments are allowed and stay static.

    Args:
        fn: a function of tensors (and `None`s) returning a tuple of tensors, using `keras.ops`
            only.
        jit_compile: TensorFlow only: whether to compile the graph with XLA.
        exact_shapes: TensorFlow only: trace once per exact input shape instead of relaxing a
            changed dim to unknown (for functions whose Python code needs static sizes).

    Returns:
        A callable with the same signature as `fn`.
    """
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        return tf.function(fn, jit_compile=bool(jit_compile), reduce_retracing=not exact_shapes)
    if backend == "jax":
        import jax

        return jax.jit(fn)
    return fn
