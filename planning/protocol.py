"""The world-model protocol the planner is written against.

`planning` never imports training code. Any object with `encode` and `rollout` as below can be
planned with: the trained V-JEPA 2-AC world model, or the small analytic models in the tests.
"""
from __future__ import annotations

from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class WorldModel(Protocol):
    """What a world model must provide to be planned with.

    Shapes use `B` candidates, `T` frames, `Tc` context frames, `H` planning horizon, `N` latent
    tokens per frame, `D` token width, `A` action dim, `S` state dim.

    Required methods:

    - `encode(frames)`: frames `(B, T, H, W, 3)`, `uint8` in [0, 255] or floating (the model
      documents its expected range in `conventions`). Returns per-frame latent tokens
      `(B, T, N, D)`, already normalized the way the energy expects (V-JEPA 2-AC: a non-affine
      LayerNorm over `D`). Called eagerly, outside compiled code, once per new frame and once
      per goal image.
    - `rollout(z_context, states, actions, context_actions=None)`:
        - `z_context`: `(1 or B, Tc, N, D)` latents of the observed context frames;
        - `states`: `(1 or B, Tc, S)` proprio states of those frames;
        - `actions`: `(B, H, A)` candidate action sequences, `actions[:, k]` applied after the
          k-th imagined frame (the first one right after the last context frame);
        - `context_actions`: `(1 or B, Tc - 1, A)` actions taken between the context frames, or
          `None` when `Tc == 1`.
      Returns `z_pred` `(B, H, N, D)`: the imagined latents of the `H` frames that follow the
      context. The model broadcasts a batch-1 context over the `B` candidates and propagates the
      state itself (the planner passes only the observed states). It is called *inside* the
      planner's compiled CEM iteration, so it must use `keras.ops` only (traceable by
      `tf.function` / `jax.jit`), no Python branching on tensor values and no host transfers.

    Optional attributes (read with `getattr`, checked when present):

    - `action_dim` (int): `A`; the planner checks its action bounds against it.
    - `state_dim` (int): `S`; the `Planner` API checks states against it.
    - `conventions` (dict): free-form facts the caller must respect, e.g.
      `{"frame_dtype": "uint8", "action": "delta xyz (m), delta euler (rad), delta gripper"}`.
    - `traceable_encode` (bool): `encode` uses `keras.ops` only, like `rollout`, so the
      `Planner` compiles it (one call instead of one dispatch per op: 8 ms instead of 80 ms for
      the shipped model's 64 px frame on 2 CPU cores).
    """

    def encode(self, frames: Any) -> Any:
        ...

    def rollout(
        self,
        z_context: Any,
        states: Any,
        actions: Any,
        context_actions: Any = None,
    ) -> Any:
        ...
