"""MC-JEPA: one encoder learns content (the JEPA loss) and motion (self-supervised flow).

Content is the V-JEPA 2 objective of `JEPAPretrainer`, unchanged. Motion: the clip's frames are
cut into consecutive pairs (2k, 2k + 1), one tubelet each; the same student encoder encodes
every pair forwards and backwards, and a `FlowHead` turns the tokens into flow from the first
frame to the second (and back). Without labels, as in MC-JEPA (and UFlow / PWC-Net style
unsupervised flow):

- photometric: the second frame warped by the forward flow reconstructs the first (and the
  reverse), a Charbonnier penalty on pixels not flagged occluded;
- smoothness: edge-aware first-order smoothness of both flows;
- forward-backward consistency: the backward flow, read at where the forward flow points,
  cancels it (the cycle loss), on pixels not flagged occluded.

A pixel is flagged occluded where the forward-backward mismatch is large (UnFlow's test:
`|f + b|^2 > 0.01 (|f|^2 + |b|^2) + 0.5`), without gradient. The total is
`jepa + motion_weight * (photometric + smooth_weight * smooth + cycle_weight * cycle)`.
MC-JEPA's VICReg terms on the flow features are left out (the content objective here is the
JEPA loss, whose EMA teacher already prevents collapse).
"""
from __future__ import annotations

from keras import ops

from vjepa2.models.flow_head import FlowHead, warp
from vjepa2.train.jepa import JEPAPretrainer


def charbonnier(x, eps=1e-3, alpha=0.45):
    return ops.power(ops.square(x) + eps * eps, alpha)


def occlusion_mask(forward, backward_at_target):
    """1 where forward-backward flows agree (visible in both frames), else 0; no gradient."""
    mismatch = ops.sum(ops.square(forward + backward_at_target), axis=-1)
    scale = ops.sum(ops.square(forward) + ops.square(backward_at_target), axis=-1)
    visible = ops.cast(mismatch <= 0.01 * scale + 0.5, "float32")
    return ops.stop_gradient(visible[..., None])


def smoothness(flow, image, edge_weight=10.0):
    """Edge-aware first-order smoothness: |grad flow| down-weighted across image edges."""
    loss = 0.0
    for axis in (1, 2):
        size = flow.shape[axis]
        d_flow = ops.take(flow, range(1, size), axis=axis) - ops.take(flow, range(size - 1),
                                                                          axis=axis)
        d_image = ops.take(image, range(1, size), axis=axis) - ops.take(image, range(size - 1),
                                                                            axis=axis)
        weight = ops.exp(-edge_weight * ops.mean(ops.abs(d_image), axis=-1, keepdims=True))
        loss = loss + ops.mean(weight * charbonnier(d_flow))
    return loss / 2.0


def flow_losses(first, second, forward, backward):
    """{"photometric", "smooth", "cycle"} of a forward and a backward flow between frames."""
    backward_at = warp(backward, forward)
    forward_at = warp(forward, backward)
    visible_f = occlusion_mask(forward, backward_at)
    visible_b = occlusion_mask(backward, forward_at)

    def masked_mean(value, mask):
        return ops.sum(value * mask) / (ops.sum(mask) * value.shape[-1] + 1.0)

    photometric = masked_mean(charbonnier(warp(second, forward) - first), visible_f) + \
        masked_mean(charbonnier(warp(first, backward) - second), visible_b)
    cycle = masked_mean(charbonnier(forward + backward_at), visible_f) + \
        masked_mean(charbonnier(backward + forward_at), visible_b)
    smooth = smoothness(forward, first) + smoothness(backward, second)
    return {"photometric": photometric / 2.0, "smooth": smooth / 2.0, "cycle": cycle / 2.0}


class MCJEPAPretrainer(JEPAPretrainer):
    """`JEPAPretrainer` plus the motion objective on the same student encoder.

    Args:
        encoder, predictor, **kwargs: as `JEPAPretrainer` (a `VideoEncoder` with tubelets of 2).
        motion_weight: weight of the motion loss against the JEPA loss.
        motion_pairs: how many frame pairs per step the motion loss sees (the batch's first;
            None: all). MC-JEPA draws its flow batches apart from its content batches; this
            caps the flow batch, the costly part on a CPU.
        smooth_weight, cycle_weight: weights of smoothness and forward-backward consistency.
        flow_config: extra `FlowHead` arguments.
    """

    def __init__(self, encoder, predictor, motion_weight=1.0, motion_pairs=None,
                 smooth_weight=0.5, cycle_weight=0.2, flow_config=None, **kwargs):
        super().__init__(encoder, predictor, **kwargs)
        if encoder.tubelet_size != 2:
            raise ValueError(f"MC-JEPA encodes frame pairs as one tubelet; the encoder has "
                             f"tubelet_size={encoder.tubelet_size}")
        self.motion_weight = float(motion_weight)
        if motion_pairs is not None and motion_pairs < 1:
            raise ValueError(f"motion_pairs must be >= 1; received {motion_pairs}")
        self.motion_pairs = motion_pairs
        self.smooth_weight = float(smooth_weight)
        self.cycle_weight = float(cycle_weight)
        self.flow_head = FlowHead(encoder.embed_dim, encoder.patch_size, name="flow_head",
                                  **(flow_config or {}))

    def build(self, input_shape=None):
        self.flow_head.build()
        super().build(input_shape)

    def pair_flows(self, first, second, training=False):
        """(forward, backward) flows of frame pairs (B, H, W, 3) with the student encoder."""
        pairs = ops.concatenate([ops.stack([first, second], axis=1),
                                 ops.stack([second, first], axis=1)], axis=0)
        tokens = self.encoder(pairs, training=training)
        flows = self.flow_head(ops.concatenate([first, second], axis=0),
                               ops.concatenate([second, first], axis=0), tokens,
                               training=training)
        count = ops.shape(first)[0]
        return flows[:count], flows[count:]

    def motion_loss(self, video, training=True):
        """(loss, terms) of the clip's consecutive frame pairs (2k, 2k + 1)."""
        t, h, w = video.shape[1], video.shape[2], video.shape[3]
        pairs = ops.reshape(video, (-1, t // 2, 2, h, w, 3))
        first = ops.reshape(pairs[:, :, 0], (-1, h, w, 3))
        second = ops.reshape(pairs[:, :, 1], (-1, h, w, 3))
        if self.motion_pairs is not None:
            first, second = first[:self.motion_pairs], second[:self.motion_pairs]
        forward, backward = self.pair_flows(first, second, training=training)
        terms = flow_losses(first, second, ops.cast(forward, "float32"),
                            ops.cast(backward, "float32"))
        loss = terms["photometric"] + self.smooth_weight * terms["smooth"] + \
            self.cycle_weight * terms["cycle"]
        return loss, terms

    def compute_objective(self, data, training=True):
        loss, aux = self.compute_jepa_loss(data, training=training)
        motion, terms = self.motion_loss(data["video"], training=training)
        aux.update({"jepa": loss, "motion": motion, **{f"flow_{k}": v for k, v in terms.items()}})
        return loss + self.motion_weight * motion, aux


def flow_to_rgb(flow, max_magnitude=None):
    """(H, W, 2) flow -> (H, W, 3) uint8: hue the direction, brightness the magnitude (the
    usual optical-flow colour wheel; zero flow is black)."""
    import colorsys

    import numpy as np

    flow = np.asarray(flow, np.float32)
    magnitude = np.linalg.norm(flow, axis=-1)
    scale = max_magnitude or max(float(magnitude.max()), 1e-6)
    hue = (np.arctan2(-flow[..., 1], -flow[..., 0]) / (2 * np.pi) + 0.5).reshape(-1)
    value = np.clip(magnitude / scale, 0, 1).reshape(-1)
    rgb = np.array([colorsys.hsv_to_rgb(h, 1.0, v) for h, v in zip(hue, value)])
    return (rgb.reshape(flow.shape[:2] + (3,)) * 255).astype(np.uint8)


def write_flow_picture(trainer, video, path, pairs=4):
    """A PNG of the first `pairs` frame pairs of `video` (B, T, H, W, 3), normalised as in
    training: per row the first frame, the second, and the predicted forward flow."""
    import io

    import numpy as np
    from PIL import Image

    from vjepa2.data.video import IMAGENET_MEAN, IMAGENET_STD
    from vjepa2.files import atomic_write

    video = np.asarray(video, np.float32)[:pairs]
    forward, _ = trainer.pair_flows(video[:, 0], video[:, 1])
    forward = np.asarray(forward)
    top = max(float(np.linalg.norm(forward, axis=-1).max()), 1e-6)

    def to_uint8(frame):
        return (np.clip(frame * IMAGENET_STD + IMAGENET_MEAN, 0, 1) * 255).astype(np.uint8)

    rows = [np.concatenate([to_uint8(v[0]), to_uint8(v[1]), flow_to_rgb(f, top)], axis=1)
            for v, f in zip(video, forward)]
    buffer = io.BytesIO()
    Image.fromarray(np.concatenate(rows, axis=0)).save(buffer, format="PNG")
    atomic_write(path, buffer.getvalue())
