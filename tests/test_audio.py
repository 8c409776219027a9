"""A-JEPA: log-mel spectrograms against TensorFlow's signal ops, the audio pipeline, training."""
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from tests.helpers import MICRO_OVERRIDES
from vjepa2.data.audio import (CONTOURS, FFT_SIZE, HOP, MEL_BINS, SAMPLE_RATE, WINDOW,
                               decode_audio, generate_audio, log_mel_spectrogram,
                               make_audio_dataset, mel_filterbank, synthesize_audio, wav_bytes)


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    folder = tmp_path_factory.mktemp("audio")
    generate_audio(folder / "nested", 8, seconds=1.0, seed=0)
    return folder


def test_mel_filter_bank_matches_tensorflows_reference():
    reference = tf.signal.linear_to_mel_weight_matrix(
        MEL_BINS, FFT_SIZE // 2 + 1, SAMPLE_RATE, 20.0, 8000.0).numpy()
    ours = mel_filterbank()
    assert ours.shape == (257, 128)
    np.testing.assert_allclose(ours, reference, atol=1e-4)


def test_log_mel_spectrogram_matches_tensorflows_stft_pipeline():
    samples, _ = synthesize_audio(seed=3, index=1, seconds=1.0)
    stft = tf.signal.stft(samples, frame_length=WINDOW, frame_step=HOP, fft_length=FFT_SIZE)
    weights = tf.signal.linear_to_mel_weight_matrix(MEL_BINS, FFT_SIZE // 2 + 1, SAMPLE_RATE,
                                                    20.0, 8000.0)
    reference = np.log(np.abs(stft.numpy()) ** 2 @ weights.numpy() + 1e-6)
    ours = log_mel_spectrogram(samples)
    assert ours.shape == reference.shape == (1 + (16000 - 400) // 160, 128)  # 10 ms hop
    np.testing.assert_allclose(ours, reference, atol=2e-3)


def test_pitch_contours_move_the_spectral_peak_as_labelled():
    for index in range(40):
        samples, label = synthesize_audio(seed=0, index=index, seconds=1.5)
        mel = log_mel_spectrogram(samples)
        loud = mel.max(axis=1) > mel.max() - 3
        power = np.exp(mel[loud] - mel[loud].max(axis=1, keepdims=True))
        peaks = power @ np.arange(128) / power.sum(axis=1)  # mel-bin centroid per frame
        slope = np.polyfit(np.flatnonzero(loud), peaks, 1)[0]
        if CONTOURS[label] == "rising":
            assert slope > 0
        elif CONTOURS[label] == "falling":
            assert slope < 0
        elif CONTOURS[label] == "flat":
            assert abs(slope) < 0.02


def test_wav_round_trips_through_pyav_at_16_khz(tmp_path):
    samples, _ = synthesize_audio(seed=1, index=2, seconds=0.5)
    (tmp_path / "a.wav").write_bytes(wav_bytes(samples))
    decoded = decode_audio(str(tmp_path / "a.wav"))
    assert decoded.shape == samples.shape
    np.testing.assert_allclose(decoded, samples, atol=1e-4)


def test_corrupt_empty_and_silent_files_are_skipped_and_counted(clips, tmp_path):
    from vjepa2.data.audio import list_audio

    folder = tmp_path / "mixed"
    folder.mkdir()
    for i, (path, _) in enumerate(list_audio(clips)[:3]):
        (folder / f"good_{i}.WAV").write_bytes(Path(path).read_bytes())
    (folder / "empty.flac").write_bytes(b"")
    (folder / "corrupt.mp3").write_bytes(b"\x00garbage" * 50)
    (folder / "silent.wav").write_bytes(wav_bytes(np.zeros(16000, np.float32)))
    dataset, stats = make_audio_dataset(folder, frames=32, batch_size=3, seed=2)
    for batch in dataset.take(3):
        assert batch.shape == (3, 32, 128, 1)
        np.testing.assert_allclose(np.mean(batch, axis=(1, 2, 3)), 0.0, atol=1e-3)
    assert stats.counts == {"empty": 1, "unreadable": 1, "silent": 1}


def test_pretraining_on_audio_runs_and_the_saved_encoder_reloads_equal(clips, tmp_path):
    from vjepa2.models import VideoEncoder
    from vjepa2.train.checkpoint import CheckpointManager
    from vjepa2.train.pretrain import PretrainConfig, build_trainer, pretrain

    config = PretrainConfig(audio=str(clips), out=str(tmp_path / "run"), steps=3, batch_size=2,
                            audio_frames=64, checkpoint_every=3, warmup_steps=1, decay_steps=1,
                            workers=1, mask_curriculum=2)
    pretrain(config, verbose=0, preset_overrides=MICRO_OVERRIDES)
    reloaded = VideoEncoder.from_preset(tmp_path / "run" / "encoder")
    assert type(reloaded).__name__ == "ImageEncoder" and reloaded.in_channels == 1
    trainer = build_trainer(config, MICRO_OVERRIDES)
    CheckpointManager(tmp_path / "run" / "checkpoints").restore(trainer, trainer.optimizer)
    spectrogram = np.random.default_rng(4).normal(size=(2, 64, 128, 1)).astype("float32")
    np.testing.assert_array_equal(np.asarray(reloaded(spectrogram)),
                                  np.asarray(trainer.teacher(spectrogram)))


def test_spectrogram_cache_decodes_each_file_once_and_notices_a_change(tmp_path):
    import os

    from vjepa2.data.audio import SpectrogramCache, file_spectrogram
    from vjepa2.data.video_sources import BadVideo

    paths = []
    for i in range(3):
        samples, _ = synthesize_audio(seed=3, index=i, seconds=0.5)
        paths.append(tmp_path / f"c{i}.wav")
        paths[-1].write_bytes(wav_bytes(samples))
    one = file_spectrogram(str(paths[0])).nbytes
    cache = SpectrogramCache(max_bytes=2 * one)
    first = cache.get(str(paths[0]))
    assert cache.get(str(paths[0])) is first and cache.decodes == 1
    np.testing.assert_array_equal(first, file_spectrogram(str(paths[0])))
    with pytest.raises(ValueError):
        first[0, 0] = 0.0  # shared between loads: read-only
    cache.get(str(paths[1]))
    cache.get(str(paths[2]))  # over the budget: the least recently used (c0) goes
    assert cache.bytes <= 2 * one and cache.decodes == 3
    cache.get(str(paths[0]))
    assert cache.decodes == 4
    samples, _ = synthesize_audio(seed=4, index=0, seconds=0.5)
    paths[0].write_bytes(wav_bytes(samples))
    os.utime(paths[0], ns=(1, 10**18))
    changed = cache.get(str(paths[0]))
    assert cache.decodes == 5 and not np.array_equal(changed, first)
    (tmp_path / "silent.wav").write_bytes(wav_bytes(np.zeros(8000, np.float32)))
    for _ in range(2):
        with pytest.raises(BadVideo):
            cache.get(str(tmp_path / "silent.wav"))
    assert cache.decodes == 5
