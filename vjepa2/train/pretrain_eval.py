"""Does pretraining learn? Masked-token L1 on held-out clips against simple baselines.

For a trainer (student encoder + predictor + EMA teacher) and held-out clips with fixed masks:
- `model`: L1 between the predictor's outputs and the teacher's normalized target tokens (the
  training loss, evaluated without gradient);
- `mean_token`: L1 of predicting, for every target, the mean normalized teacher token over the
  evaluated set (a model that ignores the context can do no better than a constant; a
  collapsed teacher would drive this baseline, not only the model, to zero).
"""
from __future__ import annotations

import numpy as np
from keras import ops

from vjepa2.train.jepa import layer_norm_no_affine


def masked_prediction_l1(trainer, videos, sampler, mask_seed_offset=0):
    """Returns {"model": L1, "mean_token": L1, "ratio": model / mean_token, "clips": n}.

    Args:
        trainer: a built `JEPAPretrainer`.
        videos: iterable of float video batches (B, T, H, W, 3).
        sampler: a `MultiBlockMaskSampler` for the clips' token grid; batch i uses the masks of
            step `mask_seed_offset + i`, so every model sees the same masks.
    """
    predictions, targets = [], []
    clips = 0
    for index, video in enumerate(videos):
        video = ops.convert_to_tensor(video)
        batch = int(video.shape[0])
        grid = trainer.encoder.grid_size(video.shape)
        teacher = layer_norm_no_affine(trainer.teacher(video, training=False))
        for set_index, masks in enumerate(sampler.sample_batch(batch, mask_seed_offset + index)):
            context = trainer.encoder(video, token_ids=masks["context_ids"], training=False)
            predicted = trainer.predictor(context, masks["context_ids"], masks["target_ids"],
                                          grid=grid, mask_index=set_index, training=False)
            target = ops.take_along_axis(teacher, ops.expand_dims(masks["target_ids"], -1), 1)
            predictions.append(np.asarray(predicted, "float32").reshape(-1, predicted.shape[-1]))
            targets.append(np.asarray(target, "float32").reshape(-1, target.shape[-1]))
        clips += batch
    predictions = np.concatenate(predictions)
    targets = np.concatenate(targets)
    model = float(np.mean(np.abs(predictions - targets)))
    mean_token = float(np.mean(np.abs(targets.mean(axis=0, keepdims=True) - targets)))
    return {"model": model, "mean_token": mean_token, "ratio": model / mean_token,
            "clips": clips}
