"""Frozen evaluation: the attentive probe and `vjepa2 probe`."""
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.helpers import MICRO_OVERRIDES, assert_saved_model_equal, micro_encoder
from vjepa2.errors import UsageError


def test_attentive_probe_round_trips_exactly_and_refuses_bad_heads(tmp_path):
    from vjepa2.models import AttentiveProbe

    probe = AttentiveProbe(num_classes=3, dim=12, num_heads=3, num_queries=2)
    tokens = np.random.default_rng(0).normal(size=(4, 5, 12)).astype("float32")
    assert probe(tokens).shape == (4, 3)
    assert_saved_model_equal(probe, tokens, tmp_path)
    with pytest.raises(ValueError, match="num_heads must divide dim; received dim=10"):
        AttentiveProbe(num_classes=3, dim=10, num_heads=3)


def test_position_embedding_lets_the_probe_read_where_a_token_is(tmp_path):
    # The class is where a marker token sits (first or second half of 8 positions). A probe
    # over a bag of tokens cannot tell; with a position embedding it learns it.
    import keras

    from vjepa2.models import AttentiveProbe

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 400)
    where = labels * 4 + rng.integers(0, 4, 400)
    background, marker = rng.normal(size=12), rng.normal(size=12)
    tokens = (background + 0.3 * rng.normal(size=(400, 8, 12))).astype("float32")
    tokens[np.arange(400), where] = marker + 0.3 * rng.normal(size=(400, 12))
    accuracy = {}
    for name, num_tokens in (("bag", None), ("placed", 8)):
        keras.utils.set_random_seed(0)
        probe = AttentiveProbe(num_classes=2, dim=12, num_heads=3, num_tokens=num_tokens)
        probe.compile(optimizer=keras.optimizers.AdamW(3e-3),
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        probe.fit(tokens[:300], labels[:300], batch_size=32, epochs=30, verbose=0)
        predicted = np.argmax(np.asarray(probe(tokens[300:])), axis=-1)
        accuracy[name] = float(np.mean(predicted == labels[300:]))
    assert accuracy["bag"] < 0.7 and accuracy["placed"] > 0.9, accuracy
    assert probe.get_config()["num_tokens"] == 8
    assert_saved_model_equal(probe, tokens[:4], tmp_path)
    with pytest.raises(ValueError, match="positions for 8 tokens; received 5"):
        probe(tokens[:2, :5])
    with pytest.raises(ValueError, match="num_tokens must be None or >= 1; received 0"):
        AttentiveProbe(num_classes=3, dim=12, num_heads=3, num_tokens=0)


def test_probe_finds_the_one_token_that_carries_the_class():
    # The class is written in one token among many distractors: mean pooling blurs it, cross
    # attention can pick it out.
    from vjepa2.train.probe import ProbeConfig, score, train_probe

    rng = np.random.default_rng(1)
    labels = rng.integers(0, 3, 300)
    tokens = rng.normal(size=(300, 8, 12)).astype("float32")
    tokens[np.arange(300), rng.integers(0, 8, 300), :3] += 6 * np.eye(3)[labels]
    config = ProbeConfig(encoder="-", data="-", out="-", epochs=40, batch_size=32, lr=3e-3)
    probe = train_probe(tokens[:200], labels[:200], 3, config)
    result = score(probe, tokens[200:], labels[200:])
    assert result["top1"] > 0.8
    lo, hi = result["ci95"]
    assert lo < result["top1"] < hi


def test_probe_positions_option_places_the_tokens():
    from vjepa2.train.probe import ProbeConfig, train_probe

    tokens = np.random.default_rng(2).normal(size=(8, 5, 12)).astype("float32")
    labels = np.arange(8) % 2
    for positions, expected in ((False, None), (True, 5)):
        config = ProbeConfig(encoder="-", data="-", out="-", epochs=1, positions=positions)
        assert train_probe(tokens, labels, 2, config).num_tokens == expected


def test_wilson_interval_matches_the_formula():
    from vjepa2.train.probe import wilson_interval

    lo, hi = wilson_interval(80, 100)
    assert lo == pytest.approx(0.7112, abs=1e-4) and hi == pytest.approx(0.8666, abs=1e-4)


def test_difference_interval_adds_the_probe_seeds_spread():
    from vjepa2.train.probe import difference

    one = difference({"top1": 0.6, "items": 400}, {"top1": 0.5, "items": 400})
    half = 1.96 * np.sqrt(0.6 * 0.4 / 400 + 0.5 * 0.5 / 400)
    assert one["top1"] == pytest.approx(0.1)
    assert one["ci95"] == pytest.approx([0.1 - half, 0.1 + half])
    assert one["margin_exceeds_interval"]
    # The same means from probes that disagree across seeds: the interval widens past the
    # margin.
    seeds = difference({"top1": 0.62, "top1_mean": 0.6, "top1_std": 0.08, "seeds": [0.62] * 3,
                        "items": 400},
                       {"top1": 0.5, "top1_mean": 0.5, "top1_std": 0.08, "seeds": [0.5] * 3,
                        "items": 400})
    wider = 1.96 * np.sqrt(0.6 * 0.4 / 400 + 0.5 * 0.5 / 400 + 2 * 0.08 ** 2 / 3)
    assert seeds["ci95"] == pytest.approx([0.1 - wider, 0.1 + wider])
    assert not seeds["margin_exceeds_interval"]


def test_split_is_seeded_and_needs_labels():
    from vjepa2.train.probe import split_items

    items = [(f"f{i}", i % 2) for i in range(10)]
    train, held = split_items(items, 0.3, seed=0)
    assert len(held) == 3 and len(train) == 7 and not set(train) & set(held)
    assert split_items(items, 0.3, seed=0) == (train, held)
    with pytest.raises(UsageError, match="label"):
        split_items([("a", None), ("b", 1)], 0.5, 0)


def test_probe_command_writes_results_for_an_image_encoder(tmp_path):
    from vjepa2.cli import main
    from vjepa2.data.images import generate_images
    from vjepa2.models import ImageEncoder

    generate_images(tmp_path / "data", 16, size=32, seed=3)
    ImageEncoder.from_preset("tiny", **MICRO_OVERRIDES["encoder"]).save_to_preset(
        tmp_path / "encoder")
    code = main(["probe", "--encoder", str(tmp_path / "encoder"), "--data",
                 str(tmp_path / "data" / "labels.csv"), "--out", str(tmp_path / "probe"),
                 "--resolution", "32", "--epochs", "2", "--heldout", "0.25",
                 "--probe-seeds", "3"])
    assert code == 0
    results = json.loads((tmp_path / "probe" / "results.json").read_text())
    assert results["kind"] == "image" and results["train_items"] == 12
    for name in ("pretrained", "random_init"):
        r = results[name]
        assert r["items"] == 4 and 0 <= r["top1"] <= 1
        assert len(r["seeds"]) == 3 and r["seeds"][0] == r["top1"]
        assert r["top1_mean"] == pytest.approx(np.mean(r["seeds"]))
    assert results["difference"]["top1"] == pytest.approx(
        results["pretrained"]["top1_mean"] - results["random_init"]["top1_mean"])
    assert (tmp_path / "probe" / "heldout.csv").read_text().count("\n") == 4
    assert main(["probe", "--encoder", str(tmp_path / "missing"), "--data", "x.csv",
                 "--out", str(tmp_path / "p2")]) == 2


def test_a_video_encoder_reads_images_as_one_repeated_tubelet(tmp_path):
    # MC-JEPA's content is evaluated on images: `--items image` on a video encoder feeds each
    # image as a clip of one tubelet, the image repeated, and the probe scores those tokens.
    from vjepa2.cli import main
    from vjepa2.data.images import generate_images
    from vjepa2.train.probe import ProbeConfig, _dataset, encode_items

    generate_images(tmp_path / "data", 12, size=32, seed=5)
    encoder = micro_encoder()
    encoder.save_to_preset(tmp_path / "encoder")
    config = ProbeConfig(encoder="-", data="-", out="-", resolution=32, items="image")
    csv = str(tmp_path / "data" / "labels.csv")
    clips = next(iter(_dataset("image", csv, config, tubelet=encoder.tubelet_size)))[0]
    images = next(iter(_dataset("image", csv, config)))[0]
    assert clips.shape == (12, encoder.tubelet_size, 32, 32, 3)
    for t in range(encoder.tubelet_size):
        np.testing.assert_array_equal(clips[:, t], images)
    tokens, labels = encode_items([encoder], _dataset("image", csv, config, encoder.tubelet_size))
    assert tokens[0].shape[:2] == (12, 4) and len(labels) == 12
    args = ["probe", "--encoder", str(tmp_path / "encoder"), "--data", csv,
            "--resolution", "32", "--epochs", "1", "--heldout", "0.25"]
    assert main(args + ["--out", str(tmp_path / "probe"), "--items", "image"]) == 0
    results = json.loads((tmp_path / "probe" / "results.json").read_text())
    assert (results["kind"], results["encoder_kind"]) == ("image", "video")
    assert results["pretrained"]["items"] == 3
    assert main(args + ["--out", str(tmp_path / "p2"), "--items", "audio"]) == 2
    assert not (tmp_path / "p2" / "results.json").exists()
    with pytest.raises(UsageError, match="items must be one of"):
        ProbeConfig(encoder="-", data="-", out="-", items="pictures")


def test_digits_are_the_real_scans_and_the_probe_keeps_their_fixed_split(tmp_path, capsys):
    from sklearn.datasets import load_digits

    from vjepa2.cli import main
    from vjepa2.data.video import list_videos
    from vjepa2.models import ImageEncoder

    assert main(["make-family-data", "--kind", "digits", "--out", str(tmp_path / "digits"),
                 "--count", "40"]) == 0
    train = list_videos(str(tmp_path / "digits" / "train.csv"))
    held = list_videos(str(tmp_path / "digits" / "heldout.csv"))
    assert len(train) == 28 and len(held) == 12 and not {p for p, _ in train} & {p for p, _ in held}
    scans = load_digits()
    for path, label in train[:5] + held[:5]:
        index = int(Path(path).stem.split("_")[1])
        assert label == scans.target[index]
        image = Image.open(path).convert("L")
        assert image.size == (64, 64)
        small = np.asarray(image.resize((8, 8), Image.BOX), np.float32)
        assert np.corrcoef(small.ravel(), scans.images[index].ravel())[0, 1] > 0.9
    ImageEncoder.from_preset("tiny", **MICRO_OVERRIDES["encoder"]).save_to_preset(
        tmp_path / "encoder")
    args = ["probe", "--encoder", str(tmp_path / "encoder"), "--data",
            str(tmp_path / "digits" / "train.csv"), "--resolution", "32", "--epochs", "1"]
    assert main(args + ["--out", str(tmp_path / "probe"), "--heldout-data",
                        str(tmp_path / "digits" / "heldout.csv")]) == 0
    results = json.loads((tmp_path / "probe" / "results.json").read_text())
    assert results["train_items"] == 28 and results["pretrained"]["items"] == 12
    assert list_videos(str(tmp_path / "probe" / "heldout.csv")) == held
    (tmp_path / "unlabelled.csv").write_text(f"{held[0][0]}\n{held[1][0]}\n")
    assert main(args + ["--out", str(tmp_path / "p2"), "--heldout-data",
                        str(tmp_path / "unlabelled.csv")]) == 2
    assert "unlabelled.csv needs a label on every row" in capsys.readouterr().err


def test_family_eval_members_are_valid_runs_on_data_their_generators_write(tmp_path):
    from tests.helpers import load_script
    from vjepa2.data.digits import write_digits
    from vjepa2.data.family_data import KINDS
    from vjepa2.data.moving_digits import write_moving_digits
    from vjepa2.train.pretrain import PretrainConfig

    family_eval = load_script("family_eval")
    for name, run in family_eval.RUNS.items():
        assert run["data"] in KINDS, name
        stills = {"images": "stills"} if "stills" in run else {}
        config = PretrainConfig(out=str(tmp_path / name), preset="family-tiny",
                                **{run["source"]: "data"}, **stills, **run["pretrain"])
        assert (config.motion_weight > 0) == (run["data"] in family_eval.FLOW_PAIRS), name
    run = family_eval.RUNS["moving-digits"]
    write_moving_digits(tmp_path / "moving-digits", 1, frames=4, count=6, seed=run["split_seed"])
    write_digits(tmp_path / "digits", 20, seed=run["split_seed"])
    for name in ("moving-digits", "moving-digits-ijepa-20k"):
        # The clips beside the pretraining list (the extra probes); the member with stills
        # probes the still digits of the same split, the other the clips.
        pretrain_csv, probe_csv, heldout = family_eval.make_data(name, tmp_path)
        assert pretrain_csv == tmp_path / "moving-digits" / run["pretrain_csv"]
        folder = tmp_path / ("digits" if "stills" in family_eval.RUNS[name] else "moving-digits")
        assert (probe_csv, heldout) == (folder / "train.csv", str(folder / "heldout.csv"))
        csvs = [csv for pair in family_eval.RUNS[name]["extra_probes"].values() for csv in pair]
        assert all((pretrain_csv.with_name(csv)).is_file() for csv in csvs + ["heldout.csv"])


def test_validation_record_gathers_the_run_the_probe_and_the_commands(tmp_path):
    from tests.helpers import load_script

    record_script = load_script("validation_record")
    run, probe_out = tmp_path / "run", tmp_path / "probe"
    run.mkdir()
    probe_out.mkdir()
    (run / "config.json").write_text(json.dumps({"preset": "family-tiny-p8", "steps": 4}))
    (run / "metrics.jsonl").write_text("".join(
        json.dumps({"step": s, "time": 2.0 * s, "loss": float(s), "jepa": 1.0}) + "\n"
        for s in range(1, 5)))
    (probe_out / "results.json").write_text(json.dumps({"difference": {"top1": 0.1}}))
    out = tmp_path / "record.json"
    args = ["--run", str(run), "--probe", str(probe_out), "--what", "a try", "--window", "2",
            "--command", "vjepa2 pretrain", "--command", "vjepa2 probe", "--out", str(out)]
    assert record_script.main(args) == 0
    record = json.loads(out.read_text())
    assert record["commands"] == ["vjepa2 pretrain", "vjepa2 probe"]
    assert record["pretrain"]["preset"] == "family-tiny-p8"
    assert (record["pretrain"]["step"], record["pretrain"]["seconds"]) == (4, 8.0)
    assert record["pretrain"]["first_2_steps"] == {"loss": 1.5, "jepa": 1.0}
    assert record["pretrain"]["last_2_steps"]["loss"] == 3.5
    assert record["probe"] == {"difference": {"top1": 0.1}}
    with pytest.raises(SystemExit, match="results.json not found"):
        record_script.main(args[:2] + ["--probe", str(tmp_path / "none")] + args[4:])
