"""Audio for A-JEPA: decode with PyAV, log-mel spectrograms, labelled tones and chirps.

A clip becomes a log-mel spectrogram as in A-JEPA (and AudioMAE): 16 kHz mono, 25 ms Hann
windows (400 samples) every 10 ms (160 samples), a 512-point FFT, the power spectrum mapped to
128 mel bins (HTK mel scale, 20 Hz - 8 kHz, the filter bank of
`tf.signal.linear_to_mel_weight_matrix`), `log(mel + 1e-6)`. The model sees a window of
`frames` spectrogram frames (rows: time, columns: frequency) as a one-channel image,
standardised per clip. Training windows start at random, evaluation windows in the middle;
clips shorter than a window are padded with their quietest value.

A source is a folder searched recursively for wav/flac/mp3/ogg, a `path[,label]` CSV or one
file. Unreadable, empty and silent files are skipped, counted and logged once (as videos are).
"""
from __future__ import annotations

import io
import math
import os
import wave
from pathlib import Path

import numpy as np

from vjepa2.data.items import ItemSampler, list_files, make_item_dataset
from vjepa2.data.video_sources import BadVideo, VideoStats, write_video_csv
from vjepa2.errors import UsageError

AUDIO_EXTENSIONS = (".wav", ".flac", ".mp3", ".ogg")
SAMPLE_RATE = 16000
WINDOW = 400  # 25 ms
HOP = 160  # 10 ms
FFT_SIZE = 512
MEL_BINS = 128
LOWER_HZ, UPPER_HZ = 20.0, 8000.0
SILENCE = 1e-4  # peak amplitude (of 1.0) below which a file counts as silent

# Pitch contours of the generated clips; the index is the label.
CONTOURS = ("flat", "rising", "falling", "vibrato")


def list_audio(source: str | os.PathLike) -> list[tuple[str, int | None]]:
    """`(path, label)` pairs of a folder of audio files, a `path[,label]` CSV or one file."""
    return list_files(source, AUDIO_EXTENSIONS, "audio")


def hz_to_mel(hz):
    """HTK mel scale: `1127 * ln(1 + hz / 700)`."""
    return 1127.0 * np.log1p(np.asarray(hz, np.float64) / 700.0)


def mel_filterbank(num_mel_bins=MEL_BINS, num_spectrogram_bins=FFT_SIZE // 2 + 1,
                   sample_rate=SAMPLE_RATE, lower_hz=LOWER_HZ, upper_hz=UPPER_HZ):
    """(num_spectrogram_bins, num_mel_bins) triangular filters, equally spaced in mel.

    The definition of `tf.signal.linear_to_mel_weight_matrix`: filter m rises from mel edge m
    to m + 1 and falls to m + 2 (num_mel_bins + 2 edges from `lower_hz` to `upper_hz`), weights
    read at each FFT bin's mel frequency, the DC bin zero.
    """
    bins = np.linspace(0.0, sample_rate / 2.0, num_spectrogram_bins)[1:]
    mel = hz_to_mel(bins)[:, None]
    edges = np.linspace(hz_to_mel(lower_hz), hz_to_mel(upper_hz), num_mel_bins + 2)
    lower, center, upper = edges[:-2], edges[1:-1], edges[2:]
    weights = np.maximum(0.0, np.minimum((mel - lower) / (center - lower),
                                         (upper - mel) / (upper - center)))
    return np.pad(weights, ((1, 0), (0, 0))).astype(np.float32)


def log_mel_spectrogram(samples, sample_rate=SAMPLE_RATE):
    """(frames, 128) log-mel spectrogram of mono float samples (see the module docstring)."""
    samples = np.asarray(samples, np.float32)
    if sample_rate != SAMPLE_RATE:
        raise ValueError(f"samples must be at {SAMPLE_RATE} Hz; received {sample_rate}")
    if len(samples) < WINDOW:
        samples = np.pad(samples, (0, WINDOW - len(samples)))
    count = 1 + (len(samples) - WINDOW) // HOP
    starts = np.arange(count)[:, None] * HOP + np.arange(WINDOW)[None]
    # Periodic Hann window, as tf.signal.hann_window.
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(WINDOW) / WINDOW)
    spectrum = np.fft.rfft(samples[starts] * window.astype(np.float32), n=FFT_SIZE)
    power = np.abs(spectrum).astype(np.float32) ** 2
    return np.log(power @ mel_filterbank() + 1e-6)


def decode_audio(path: str) -> np.ndarray:
    """A file's first audio stream as mono float32 samples at 16 kHz (PyAV resampling)."""
    import av

    try:
        if os.path.getsize(path) == 0:
            raise BadVideo("empty", "file has 0 bytes")
        with av.open(path) as container:
            if not container.streams.audio:
                raise BadVideo("unreadable", "no audio stream")
            resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
            chunks = []
            for frame in container.decode(container.streams.audio[0]):
                chunks += [f.to_ndarray().reshape(-1) for f in resampler.resample(frame)]
            chunks += [f.to_ndarray().reshape(-1) for f in resampler.resample(None)]
    except FileNotFoundError as err:
        raise BadVideo("missing", f"{type(err).__name__}: {err}") from None
    except (av.FFmpegError, OSError, ValueError) as err:
        raise BadVideo("unreadable", f"{type(err).__name__}: {err}") from None
    if not chunks:
        raise BadVideo("unreadable", "no decodable audio")
    return np.concatenate(chunks).astype(np.float32)


def file_spectrogram(path: str) -> np.ndarray:
    """The log-mel spectrogram of a whole file; raises `BadVideo` for silent files too."""
    samples = decode_audio(path)
    if not len(samples) or float(np.max(np.abs(samples))) < SILENCE:
        raise BadVideo("silent", f"peak amplitude below {SILENCE:g}")
    return log_mel_spectrogram(samples)


class SpectrogramCache:
    """Whole-file spectrograms kept in memory up to `max_bytes`, least recently used out.

    Decoding and the STFT cost more than a training step of a small encoder, so a data set
    that fits (3000 clips of 1.5 s: 230 MB) is decoded once per process instead of once per
    epoch. Keyed by path, size and modification time: a changed file is decoded again. Bad
    files are not kept (they raise every time). Thread-safe: tf.data loads from many threads.
    """

    def __init__(self, max_bytes: int = 512 * 2**20):
        import collections
        import threading

        self.max_bytes = int(max_bytes)
        self.bytes = 0
        self.decodes = 0
        self._items = collections.OrderedDict()
        self._lock = threading.Lock()

    def get(self, path: str) -> np.ndarray:
        try:
            stat = os.stat(path)
            key = (path, stat.st_size, stat.st_mtime_ns)
        except OSError:
            key = None  # decode_audio reports why
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        mel = file_spectrogram(path)
        mel.flags.writeable = False
        with self._lock:
            self.decodes += 1
            if key is not None and mel.nbytes <= self.max_bytes and key not in self._items:
                self._items[key] = mel
                self.bytes += mel.nbytes
                while self.bytes > self.max_bytes:
                    self.bytes -= self._items.popitem(last=False)[1].nbytes
        return mel


def audio_loader(frames: int, cache_bytes: int = 512 * 2**20):
    """A loader for `ItemSampler`: path -> float32 (frames, 128, 1) standardised log-mels,
    with whole-file spectrograms cached up to `cache_bytes` (0: none)."""
    cache = SpectrogramCache(cache_bytes)

    def load(path: str, rng: np.random.Generator, training: bool) -> np.ndarray:
        u_start = rng.random()
        mel = cache.get(path)
        if len(mel) < frames:
            mel = np.pad(mel, ((0, frames - len(mel)), (0, 0)), constant_values=mel.min())
        spare = len(mel) - frames
        start = min(int(u_start * (spare + 1)), spare) if training else spare // 2
        window = mel[start:start + frames]
        window = (window - window.mean()) / (window.std() + 1e-5)
        return window[..., None].astype(np.float32)

    return load


def make_audio_dataset(source, frames=128, batch_size=16, training=True, seed=0, start_index=0,
                       repeat=True, with_labels=False, gate=None, num_parallel_calls=None,
                       shard=(1, 0)):
    """Batches of (B, frames, 128, 1) spectrograms; returns (dataset, stats)."""
    if frames < 1 or batch_size < 1:
        raise UsageError(f"frames and batch_size must be >= 1; received {frames}, {batch_size}")
    stats = VideoStats(str(source))
    sampler = ItemSampler(list_audio(source), audio_loader(frames), seed, training, stats,
                          str(source))
    dataset = make_item_dataset(sampler, (frames, MEL_BINS, 1), batch_size, start_index, repeat,
                                with_labels, gate, num_parallel_calls, shard)
    return dataset, stats


def synthesize_audio(seed: int, index: int, seconds: float = 1.5):
    """One clip of a harmonic tone whose pitch follows a contour; returns (samples, label).

    The label is the contour (`CONTOURS`): flat, rising or falling (a chirp over 0.5-1.5
    octaves) or vibrato (5-9 Hz, +-1-3 semitones). Base pitch 150-1500 Hz, 1-4 harmonics, a
    random onset, attack and decay, and background noise at 20-35 dB below the tone.
    """
    rng = np.random.default_rng([seed, index])
    label = int(rng.integers(len(CONTOURS)))
    n = int(seconds * SAMPLE_RATE)
    t = np.arange(n) / SAMPLE_RATE
    base = 150.0 * 10 ** rng.uniform(0, 1)
    octaves = rng.uniform(0.5, 1.5) * seconds / 1.5
    if CONTOURS[label] == "rising":
        log2_pitch = octaves * t / seconds
    elif CONTOURS[label] == "falling":
        log2_pitch = -octaves * t / seconds
    elif CONTOURS[label] == "vibrato":
        depth = rng.uniform(1, 3) / 12
        log2_pitch = depth * np.sin(2 * np.pi * rng.uniform(5, 9) * t + rng.uniform(0, 2 * np.pi))
    else:
        log2_pitch = np.zeros(n)
    phase = 2 * np.pi * np.cumsum(base * 2.0 ** log2_pitch) / SAMPLE_RATE
    tone = sum(rng.uniform(0.3, 1.0) / k * np.sin(k * phase)
               for k in range(1, int(rng.integers(1, 5)) + 1))
    onset = rng.uniform(0, 0.2 * seconds)
    envelope = np.clip((t - onset) / 0.02, 0, 1) * np.exp(-np.maximum(t - onset, 0)
                                                          * rng.uniform(0, 1.5))
    signal = tone * envelope
    signal = signal / (np.abs(signal).max() + 1e-9) * rng.uniform(0.2, 0.9)
    noise = rng.normal(size=n) * np.sqrt(np.mean(signal ** 2)) * 10 ** (-rng.uniform(20, 35) / 20)
    return np.clip(signal + noise, -1, 1).astype(np.float32), label


def wav_bytes(samples) -> bytes:
    """16-bit PCM mono wav at 16 kHz of float samples in [-1, 1]."""
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(SAMPLE_RATE)
        out.writeframes((np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes())
    return buffer.getvalue()


def generate_audio(out_dir, count, seconds=1.5, seed=0, csv_name="labels.csv"):
    """Writes `count` labelled wav clips (`synthesize_audio`) and a `path,label` CSV."""
    from vjepa2.files import atomic_write

    if count < 1 or not math.isfinite(seconds) or seconds <= 0:
        raise UsageError(f"count must be >= 1 and seconds > 0; received {count}, {seconds}")
    out_dir = Path(out_dir)
    paths, labels = [], []
    for index in range(count):
        samples, label = synthesize_audio(seed, index, seconds)
        paths.append(atomic_write(out_dir / f"clip_{index:05d}.wav", wav_bytes(samples)))
        labels.append(label)
    write_video_csv(out_dir / csv_name, paths, labels)
    return paths
