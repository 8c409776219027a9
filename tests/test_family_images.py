"""I-JEPA: the image encoder, the image pipeline, pretraining on images and reloading."""
import dataclasses
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.helpers import MICRO_OVERRIDES, assert_saved_model_equal
from vjepa2.errors import UsageError

MICRO = MICRO_OVERRIDES


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    from vjepa2.data.images import generate_images

    folder = tmp_path_factory.mktemp("images")
    generate_images(folder / "nested", 12, size=64, seed=0)
    return folder


def _encoder(**overrides):
    from vjepa2.models import ImageEncoder

    return ImageEncoder.from_preset("tiny", **{**MICRO["encoder"], **overrides})


def test_image_encoder_is_the_video_encoder_on_a_one_frame_clip():
    from vjepa2.models import VideoEncoder

    image = np.random.default_rng(0).normal(size=(2, 64, 48, 3)).astype("float32")
    encoder = _encoder()
    config = {k: v for k, v in encoder.get_config().items() if k not in ("in_channels", "name")}
    video = VideoEncoder.from_config({**config, "tubelet_size": 1})
    video.build()
    by_path = {v.path.split("/", 1)[1]: v for v in encoder.weights}
    for variable in video.weights:
        variable.assign(by_path[variable.path.split("/", 1)[1]])
    np.testing.assert_allclose(np.asarray(encoder(image)), np.asarray(video(image[:, None])),
                               atol=1e-6)
    assert encoder.grid_size(image.shape) == (1, 4, 3)
    with pytest.raises(ValueError, match="divisible"):
        encoder(np.zeros((1, 60, 64, 3), "float32"))


def test_two_d_rope_scores_depend_only_on_the_offset_between_patches():
    # Tokens at time 0: a query-key score is unchanged when both patches shift together.
    from vjepa2.layers.rope import apply_rope, rope_angles

    rng = np.random.default_rng(1)
    q, k = (rng.normal(size=(1, 1, 1, 24)).astype("float32") for _ in range(2))

    def score(pq, pk):
        cq, sq = rope_angles(np.array([[0, *pq]]), 24)
        ck, sk = rope_angles(np.array([[0, *pk]]), 24)
        return float(np.sum(np.asarray(apply_rope(q, cq, sq)) * np.asarray(apply_rope(k, ck, sk))))

    assert score((1, 2), (3, 5)) == pytest.approx(score((4, 0), (6, 3)), abs=1e-4)
    assert score((1, 2), (3, 5)) != pytest.approx(score((1, 2), (5, 3)), abs=1e-3)


def test_spectrogram_encoder_takes_one_channel_and_round_trips_exactly(tmp_path):
    encoder = _encoder(in_channels=1)
    spectrogram = np.random.default_rng(2).normal(size=(2, 32, 64, 1)).astype("float32")
    assert encoder(spectrogram).shape == (2, 8, 48)
    assert_saved_model_equal(encoder, spectrogram, tmp_path)


def test_image_folders_are_searched_recursively_and_bad_files_skipped(images, tmp_path):
    from vjepa2.data.images import list_images, make_image_dataset

    assert len(list_images(images)) == 12
    bad = tmp_path / "mixed"
    bad.mkdir()
    for i, (path, _) in enumerate(list_images(images)[:4]):
        (bad / f"good_{i}.PNG").write_bytes(Path(path).read_bytes())
    (bad / "empty.png").write_bytes(b"")
    (bad / "broken.jpg").write_bytes(b"not a jpeg")
    dataset, stats = make_image_dataset(bad, resolution=32, batch_size=3, seed=1)
    batch = next(iter(dataset.take(2)))
    assert batch.shape == (3, 32, 32, 3) and np.all(np.isfinite(batch))
    assert stats.counts == {"empty": 1, "unreadable": 1}
    other = tmp_path / "other"
    other.mkdir()
    Image.new("RGB", (4, 4)).save(other / "not_listed.bmp")
    with pytest.raises(UsageError, match="no image files"):
        list_images(other)


def test_pretraining_on_images_runs_and_the_saved_encoder_reloads_equal(images, tmp_path):
    from vjepa2.models import VideoEncoder
    from vjepa2.train.checkpoint import CheckpointManager
    from vjepa2.train.pretrain import PretrainConfig, build_trainer, pretrain

    config = PretrainConfig(images=str(images), out=str(tmp_path / "run"), steps=3,
                            batch_size=2, resolution=64, checkpoint_every=3, warmup_steps=1,
                            decay_steps=1, workers=1)
    pretrain(config, verbose=0, preset_overrides=MICRO)
    records = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert len(records) == 3 and '"loss_mask0"' in records[-1]
    reloaded = VideoEncoder.from_preset(tmp_path / "run" / "encoder")
    assert type(reloaded).__name__ == "ImageEncoder"
    trainer = build_trainer(config, MICRO)  # the trained state, from the last checkpoint
    CheckpointManager(tmp_path / "run" / "checkpoints").restore(trainer, trainer.optimizer)
    image = np.random.default_rng(3).normal(size=(2, 64, 64, 3)).astype("float32")
    np.testing.assert_array_equal(np.asarray(reloaded(image)),
                                  np.asarray(trainer.teacher(image)))


def test_pretrain_refuses_no_source_and_mixed_audio():
    from vjepa2.train.pretrain import PretrainConfig

    with pytest.raises(UsageError, match="--videos, --images or --audio"):
        PretrainConfig(out="x", steps=1)
    with pytest.raises(UsageError, match="--audio"):
        PretrainConfig(out="x", steps=1, audio="a", images="b")


def test_images_mix_into_video_pretraining_as_clips_of_one_tubelet(images, tmp_path):
    from vjepa2.data.synthetic import generate_videos
    from vjepa2.masks_2d import IJEPAMaskSampler
    from vjepa2.train.pretrain import (PretrainConfig, build_trainer, make_mask_sampler,
                                       make_pretrain_dataset)

    generate_videos(tmp_path / "videos", 2, frames=12, size=64, fps=8)
    config = PretrainConfig(videos=str(tmp_path / "videos"), images=str(images),
                            out=str(tmp_path / "run"), steps=2, batch_size=2, frames=4,
                            resolution=64, workers=1)
    dataset, _ = make_pretrain_dataset(config, make_mask_sampler(config))
    batch = next(iter(dataset))
    assert batch["video"].shape == (2, 4, 64, 64, 3)
    assert batch["image_video"].shape == (2, 2, 64, 64, 3)
    np.testing.assert_array_equal(batch["image_video"][:, 0], batch["image_video"][:, 1])
    assert int(np.max(batch["image_target_ids_0"])) < 16  # one tubelet of 4 x 4 patches
    trainer = build_trainer(config, MICRO)
    loss, aux = trainer.compute_jepa_loss(batch, training=False)
    np.testing.assert_allclose(
        float(loss), (float(aux["loss_mask0"]) + float(aux["loss_mask1"]) +
                      float(aux["image_loss_mask0"]) + float(aux["image_loss_mask1"])) / 4,
        rtol=1e-5)
    # MC-JEPA's paper: content from the images alone, the clips for the flow loss only.
    images_only = build_trainer(dataclasses.replace(config, content="images",
                                                    motion_weight=1.0), MICRO)
    for name in ("encoder", "predictor", "teacher"):
        getattr(images_only, name).set_weights(getattr(trainer, name).get_weights())
    loss, aux = images_only.compute_jepa_loss(batch, training=False)
    np.testing.assert_allclose(float(loss), (float(aux["loss_mask0"]) +
                                             float(aux["loss_mask1"])) / 2, rtol=1e-5)
    np.testing.assert_allclose(float(loss), float(trainer._masked_loss(
        {k[len("image_"):]: v for k, v in batch.items() if k.startswith("image_")},
        training=False)[0]), rtol=1e-5)
    for bad in (dict(content="images"), dict(content="images", motion_weight=1.0, images=None),
                dict(content="clips")):
        with pytest.raises(UsageError, match="content"):
            dataclasses.replace(config, **bad)
    # I-JEPA's masks on the mixed images: one set of 4 target blocks and a context block on the
    # one-tubelet grid, the clips keeping V-JEPA 2's two sets; the content loss is that one set.
    ijepa = dataclasses.replace(config, content="images", motion_weight=1.0, image_masks="ijepa")
    batch = next(iter(make_pretrain_dataset(ijepa, make_mask_sampler(ijepa))[0]))
    assert "image_context_ids_1" not in batch and "context_ids_1" in batch
    sampler = IJEPAMaskSampler((1, 4, 4), seed=ijepa.seed + 1)
    expected = sampler.sample_batch(2, step=0)[0]
    np.testing.assert_array_equal(batch["image_target_ids_0"], expected["target_ids"])
    np.testing.assert_array_equal(batch["image_context_ids_0"], expected["context_ids"])
    loss, aux = build_trainer(ijepa, MICRO).compute_jepa_loss(batch, training=False)
    assert set(k for k in aux if k.startswith("loss_mask")) == {"loss_mask0"}
    np.testing.assert_allclose(float(loss), float(aux["loss_mask0"]), rtol=1e-6)
    with pytest.raises(UsageError, match="image-masks ijepa"):
        PretrainConfig(images=str(images), out="x", steps=1, image_masks="ijepa")
