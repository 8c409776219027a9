"""The JEPA family in `vjepa2 pretrain`: which member a config asks for, and its inputs.

One objective (`JEPAPretrainer`: context encoder, predictor, EMA target encoder, L1 on the
target encoder's normalised tokens) and one trainer serve every member; what changes is the
encoder's input and the masks:

- `video` (V-JEPA 2): clips, the two multi-block 3D mask sets of `vjepa2.masks`; with
  `--images` too, a batch of images (each repeated to one tubelet) joins every clip batch;
- `image` (I-JEPA, `--images`): an `ImageEncoder` on RGB images, the I-JEPA masks of
  `vjepa2.masks_2d` (4 target blocks, one context block);
- `audio` (A-JEPA, `--audio`): an `ImageEncoder` with one channel on log-mel spectrograms
  (rows time, columns 128 mel bins), the A-JEPA masking curriculum;
- `motion` (MC-JEPA, `--videos` with `--motion-weight` > 0): the video member plus a flow head
  trained on frame pairs (`vjepa2.train.mc_jepa`).
"""
from __future__ import annotations

from vjepa2.errors import UsageError

MEMBERS = ("video", "image", "audio", "motion")
MEL_BINS = 128
# Where images are mixed into clips: what the content (JEPA) loss reads (both, as V-JEPA 2; or
# the images alone, as MC-JEPA's paper) and the images' masks (V-JEPA 2's or I-JEPA's).
CONTENT = ("all", "images")
IMAGE_MASKS = ("multiblock", "ijepa")


def member_of(config) -> str:
    """The family member a `PretrainConfig` trains."""
    if config.audio:
        return "audio"
    if config.images and not config.videos:
        return "image"  # (with --videos, images are mixed into the clips)
    return "motion" if config.motion_weight > 0 else "video"


def check_sources(config) -> None:
    """Lists the config's sources, so a missing or empty one fails before anything is built."""
    from vjepa2.data.video import list_videos

    if config.videos:
        list_videos(config.videos)
    if config.images:
        from vjepa2.data.images import list_images

        list_images(config.images)
    if config.audio:
        from vjepa2.data.audio import list_audio

        list_audio(config.audio)


def encoder_class(member: str):
    from vjepa2.models import ImageEncoder, VideoEncoder

    return ImageEncoder if member in ("image", "audio") else VideoEncoder


def build_encoder(config, overrides: dict):
    """The member's student encoder from `config.preset` (sizes shared by every member)."""
    member = member_of(config)
    extra = {"in_channels": 1} if member == "audio" else {}
    return encoder_class(member).from_preset(config.preset, **{**extra, **overrides})


def input_shape(config) -> tuple:
    """One sample's encoder input shape for the config's member."""
    member = member_of(config)
    if member == "image":
        return (config.resolution, config.resolution, 3)
    if member == "audio":
        return (config.audio_frames, MEL_BINS, 1)
    return (config.frames, config.resolution, config.resolution, 3)


def make_sampler(config, patch_size=16, tubelet_size=2):
    """The member's mask sampler for the token grid of its inputs."""
    member = member_of(config)
    shape = input_shape(config)
    if member in ("image", "audio"):
        grid = (1, shape[0] // patch_size, shape[1] // patch_size)
    else:
        grid = (shape[0] // tubelet_size, shape[1] // patch_size, shape[2] // patch_size)
    if member == "image":
        from vjepa2.masks_2d import IJEPAMaskSampler

        return IJEPAMaskSampler(grid, seed=config.seed)
    if member == "audio":
        from vjepa2.masks_2d import AudioMaskSampler

        curriculum = config.mask_curriculum
        curriculum = config.steps // 2 if curriculum is None else curriculum
        return AudioMaskSampler(grid, curriculum_steps=curriculum, seed=config.seed)
    from vjepa2.masks import MultiBlockMaskSampler

    return MultiBlockMaskSampler(grid, seed=config.seed,
                                 counts=getattr(config, "mask_counts", "quantile"))


def make_inputs(config, start_step: int, gate, shard=(1, 0)):
    """The member's (dataset of encoder inputs, stats); batch k depends only on (seed, k);
    `shard` picks a worker's rows of each batch (`vjepa2.data.shards`)."""
    member = member_of(config)
    start = start_step * config.batch_size
    common = dict(batch_size=config.batch_size, training=True, seed=config.seed,
                  start_index=start, gate=gate, num_parallel_calls=config.workers, shard=shard)
    if member == "image":
        from vjepa2.data.images import make_image_dataset

        return make_image_dataset(config.images, resolution=config.resolution, **common)
    if member == "audio":
        from vjepa2.data.audio import make_audio_dataset

        return make_audio_dataset(config.audio, frames=config.audio_frames, **common)
    from vjepa2.data.video import make_clip_dataset

    return make_clip_dataset(config.videos, frames=config.frames, fps=config.fps,
                             resolution=config.resolution, **common)


def with_mask_ids(dataset, sampler, batch_size: int, start_step: int, gate, shard=(1, 0)):
    """Adds each batch's mask ids: dicts of `video` (the encoder input) and, per mask set i,
    `context_ids_i` and `target_ids_i`; the masks of batch k are the sampler's for step k
    (for a global batch of `batch_size`, of which `shard` picks a worker's rows)."""
    import numpy as np
    import tensorflow as tf

    from vjepa2.data.shards import local_batch, shard_rows

    rows = local_batch(batch_size, shard)

    num_sets = len(sampler.mask_sets)
    # Per mask set (context, target) counts: fixed, or None where they vary per batch.
    if getattr(sampler, "num_context", None) is not None:
        static = list(zip(sampler.num_context, sampler.num_target))
        fallback = static
    else:
        static = [(None, None)] * num_sets
        fallback = [shapes[0] for shapes in sampler.bucket_shapes(batch_size)]

    def masks(step):
        with gate.call() as open_:
            if not open_:
                return [np.zeros((rows, n), np.int32) for i in range(num_sets)
                        for n in fallback[i]]
            out = []
            for m in sampler.sample_batch(batch_size, int(step)):
                out += [shard_rows(m[key], batch_size, shard)
                        for key in ("context_ids", "target_ids")]
            return out

    def add_masks(step, inputs):
        arrays = tf.numpy_function(masks, [step], [tf.int32] * (2 * num_sets), name="masks")
        batch = {"video": inputs}
        for i in range(num_sets):
            ctx, tgt = arrays[2 * i], arrays[2 * i + 1]
            ctx.set_shape([rows, static[i][0]])
            tgt.set_shape([rows, static[i][1]])
            batch[f"context_ids_{i}"] = ctx
            batch[f"target_ids_{i}"] = tgt
        return batch

    dataset = dataset.enumerate(start=start_step).map(add_masks, num_parallel_calls=2,
                                                      deterministic=True)
    return dataset.prefetch(2)


def check_family_fields(config) -> None:
    """The family fields of a `PretrainConfig`, checked in its `__post_init__`."""
    if not (config.videos or config.images or config.audio):
        raise UsageError("pretrain needs --videos, --images or --audio")
    if config.audio and (config.videos or config.images):
        raise UsageError("--audio trains the audio encoder alone; drop --videos/--images")
    if config.motion_weight < 0:
        raise UsageError(f"motion_weight must be >= 0; received {config.motion_weight}")
    if config.motion_weight > 0 and not config.videos:
        raise UsageError("--motion-weight (MC-JEPA) needs --videos")
    if config.motion_pairs is not None and config.motion_pairs < 1:
        raise UsageError(f"motion_pairs must be >= 1; received {config.motion_pairs}")
    if config.motion_pairs is not None and not config.motion_weight:
        raise UsageError(f"--motion-pairs {config.motion_pairs} needs --motion-weight > 0 "
                         "(MC-JEPA's flow loss)")
    for name, choices in (("content", CONTENT), ("image_masks", IMAGE_MASKS)):
        if getattr(config, name) not in choices:
            raise UsageError(f"{name} must be one of {', '.join(choices)}; received "
                             f"{getattr(config, name)!r}")
    if config.image_masks == "ijepa" and not (config.images and config.videos):
        raise UsageError("--image-masks ijepa sets the masks of images mixed into clips; it "
                         "needs --videos and --images")
    if config.content == "images" and not (config.images and config.videos and
                                           config.motion_weight > 0):
        raise UsageError("--content images needs --videos, --images and --motion-weight > 0 "
                         "(the clips then train only the flow loss)")
    if config.audio_frames < 16 or config.audio_frames % 16:
        raise UsageError(f"audio_frames must be a multiple of 16; received {config.audio_frames}")
    if config.mask_curriculum is not None and config.mask_curriculum < 0:
        raise UsageError(f"mask_curriculum must be >= 0; received {config.mask_curriculum}")


def mix_images(dataset, config, sampler, start_step: int, gate, shard=(1, 0)):
    """Adds an image batch to every clip batch (V-JEPA 2's image mixing): `batch_size` images
    of `--images`, each repeated to one tubelet of the clips' tubelet size, with the masks of a
    one-tubelet grid: V-JEPA 2's multi-block sets, or I-JEPA's one set with `--image-masks
    ijepa` (`image_video`, `image_context_ids_i`, `image_target_ids_i`)."""
    import tensorflow as tf

    from vjepa2.data.images import as_one_tubelet, make_image_dataset
    from vjepa2.masks import MultiBlockMaskSampler

    tubelet = config.frames // sampler.grid[0]
    images, _ = make_image_dataset(config.images, resolution=config.resolution,
                                   batch_size=config.batch_size, seed=config.seed,
                                   start_index=start_step * config.batch_size, gate=gate,
                                   num_parallel_calls=config.workers, shard=shard)
    images = images.map(lambda x: as_one_tubelet(x, tubelet))
    grid = (1,) + tuple(sampler.grid[1:])
    if config.image_masks == "ijepa":
        from vjepa2.masks_2d import IJEPAMaskSampler

        image_sampler = IJEPAMaskSampler(grid, seed=config.seed + 1)
    else:
        image_sampler = MultiBlockMaskSampler(grid, seed=config.seed + 1)
    images = with_mask_ids(images, image_sampler, config.batch_size, start_step, gate, shard)

    def merge(clips, image_batch):
        return {**clips, **{f"image_{k}": v for k, v in image_batch.items()}}

    return tf.data.Dataset.zip((dataset, images)).map(merge).prefetch(2)
