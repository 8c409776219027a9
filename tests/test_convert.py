"""`vjepa2.convert` against Meta's reference code: the fixture holds small random models built
with the reference (github.com/facebookresearch/vjepa2 at the commit in `reference.json`), saved
with `torch.save`, and their outputs on fixed inputs (`scripts/make_reference_fixture.py`).
No PyTorch is needed here."""
from __future__ import annotations

import json
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest

from vjepa2.convert import (IGNORED_KEYS, REFERENCE_COMMIT, convert_checkpoint,
                            load_reference_state, read_torch_checkpoint)
from vjepa2.errors import UsageError
from vjepa2.models import ActionConditionedPredictor, MaskedPredictor, VideoEncoder
from vjepa2.models.world_model import WorldModel, WorldModelConventions, load_world_model
from vjepa2.presets import (RELEASED, ac_predictor_param_count, encoder_param_count,
                            predictor_param_count)

FIXTURE = Path(__file__).parent / "fixtures" / "vjepa2_ref"
TOLERANCE = 1e-4  # max abs difference in float32 (measured: < 2e-6)


@pytest.fixture(scope="module")
def reference():
    return json.loads((FIXTURE / "reference.json").read_text())


@pytest.fixture(scope="module")
def outputs():
    with np.load(FIXTURE / "outputs.npz") as data:
        return dict(data)


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    root = tmp_path_factory.mktemp("converted")
    heads = dict(encoder_heads=2, predictor_heads=2)
    pretrain = convert_checkpoint(FIXTURE / "pretrain.pt", root / "pretrain", **heads)
    ac = convert_checkpoint(FIXTURE / "ac.pt", root / "ac", image_size=32, **heads)
    return {"root": root, "pretrain": pretrain, "ac": ac}


def max_diff(a, b):
    return float(np.max(np.abs(np.asarray(a, "float32") - b)))


def test_fixture_is_small_and_pinned(reference):
    assert reference["commit"] == REFERENCE_COMMIT
    assert sum(p.stat().st_size for p in FIXTURE.iterdir()) < 2_000_000


def test_encoders_match_the_reference(converted, outputs):
    root = converted["root"] / "pretrain"
    encoder = VideoEncoder.from_preset(root / "encoder")
    target = VideoEncoder.from_preset(root / "target_encoder")
    assert encoder.rope_layout == "reference"
    assert max_diff(encoder(outputs["video"]), outputs["encoder_tokens"]) <= TOLERANCE
    masked = encoder(outputs["video"], token_ids=outputs["keep_ids"])
    assert max_diff(masked, outputs["encoder_masked_tokens"]) <= TOLERANCE
    assert max_diff(target(outputs["video"]), outputs["target_encoder_tokens"]) <= TOLERANCE


def test_predictor_matches_the_reference(converted, outputs, reference):
    predictor = MaskedPredictor.from_preset(converted["root"] / "pretrain" / "predictor")
    # The reference picks mask token `mask_index % num_mask_tokens`.
    index = reference["mask_index"] % predictor.num_mask_tokens
    out = predictor(outputs["context_tokens"], outputs["context_ids"], outputs["target_ids"],
                    grid=tuple(reference["grid"]), mask_index=index)
    assert max_diff(out, outputs["predictor_out"]) <= TOLERANCE


def test_ac_predictor_matches_the_reference(converted, outputs):
    predictor = ActionConditionedPredictor.from_preset(converted["root"] / "ac" / "ac_predictor")
    assert predictor.normalize_output
    # Teacher forcing compares the raw outputs of the reference module.
    raw = ActionConditionedPredictor.from_preset(converted["root"] / "ac" / "ac_predictor",
                                                 normalize_output=False)
    out = raw(outputs["z"], outputs["actions"], outputs["states"])
    assert max_diff(out, outputs["ac_out"]) <= TOLERANCE
    # The rollout: the world model's cached rollout, predictions normalized and fed back,
    # states propagated by the conventions, against the reference's autoregressive loop.
    encoder = VideoEncoder.from_preset(converted["root"] / "ac" / "encoder")
    conventions = WorldModelConventions.from_json(
        json.loads((converted["root"] / "ac" / "conventions.json").read_text()))
    model = WorldModel(encoder, predictor, conventions)
    rolled = model.rollout(outputs["z"][:, :1], outputs["rollout_states"][:, :1],
                           outputs["rollout_actions"][:, :3])
    assert max_diff(rolled, outputs["ac_rollout"]) <= TOLERANCE


def test_converted_ac_folder_is_a_world_model(converted):
    model = load_world_model(converted["root"] / "ac")
    assert (model.action_dim, model.state_dim, model.image_size) == (7, 7, 32)
    assert model.conventions["action_high"][:3] == [0.075] * 3


def test_a_converted_ac_model_plans_with_the_reference_budget_shape(converted):
    """`Planner.from_run` on a converted folder; the reference budget, fewer samples."""
    from planning import CEMConfig, Planner

    config = CEMConfig.reference(samples=32, iterations=2)
    planner = Planner.from_run(converted["root"] / "ac", config=config)
    rng = np.random.default_rng(0)
    frame, goal = rng.integers(0, 256, size=(2, 32, 32, 3), dtype=np.uint8)
    action = np.asarray(planner.plan(frame, np.zeros(7, "float32"), goal).first_action)
    assert action.shape == (7,) and np.all(np.isfinite(action))
    assert np.abs(action[:3]).sum() <= 0.075 + 1e-6  # the reference's L1 ball on xyz
    np.testing.assert_array_equal(action[3:6], 0.0)  # rotation held, as the reference plans


def test_reload_gives_the_converted_models_outputs(converted, outputs):
    """A model filled in memory equals the one saved and reloaded through `from_preset`."""
    state = read_torch_checkpoint(FIXTURE / "pretrain.pt")["encoder"]
    config = converted["pretrain"]["models"]["encoder"]["config"]
    fresh = VideoEncoder(**config)
    fresh.build()
    assert load_reference_state(fresh, state) == []
    reloaded = VideoEncoder.from_preset(converted["root"] / "pretrain" / "encoder")
    np.testing.assert_array_equal(np.asarray(fresh(outputs["video"])),
                                  np.asarray(reloaded(outputs["video"])))


def test_parameter_counts_equal_the_reference(converted, reference):
    small = reference["small_counts"]
    models = {**converted["pretrain"]["models"], **converted["ac"]["models"]}
    assert models["encoder"]["params"] == small["encoder"]
    assert models["predictor"]["params"] == small["predictor"]
    # The reference always builds an extrinsics embedding; without use_extrinsics it is unused.
    assert models["ac_predictor"]["params"] == small["ac_predictor"] - \
        small["ac_extrinsics_encoder"]
    assert set(models["ac_predictor"]["ignored_keys"]) == {"extrinsics_encoder.weight",
                                                          "extrinsics_encoder.bias"}
    # The exact count functions the presets are checked with agree with the built models.
    assert encoder_param_count(**models["encoder"]["config"]) == models["encoder"]["params"]
    assert predictor_param_count(**models["predictor"]["config"]) == \
        models["predictor"]["params"]
    assert ac_predictor_param_count(**models["ac_predictor"]["config"]) == \
        models["ac_predictor"]["params"]
    released = reference["released_counts"]
    arch = {"vjepa2-vitl-256": "vit_large", "vjepa2-vith-256": "vit_huge",
            "vjepa2-vitg-256": "vit_giant_xformers", "vjepa2-vitg-384": "vit_giant_xformers",
            "vjepa2-ac-vitg-256": "vit_giant_xformers"}
    for name, preset in RELEASED.items():
        counts = released[arch[name]]
        assert encoder_param_count(**preset["encoder"]) == counts["encoder"], name
        assert predictor_param_count(**preset["predictor"]) == counts["predictor"], name
    ac = released["vit_ac_giant"]
    assert ac_predictor_param_count(**RELEASED["vjepa2-ac-vitg-256"]["ac_predictor"]) == \
        ac["ac_predictor"] - ac["ac_extrinsics_encoder"]


def test_released_sizes_are_recognised_from_their_shapes(tmp_path, converted):
    # The tiny fixture matches no released size: it needs head counts.
    with pytest.raises(UsageError, match="matches no released size"):
        convert_checkpoint(FIXTURE / "pretrain.pt", tmp_path / "a")
    with pytest.raises(UsageError, match="does not match preset vjepa2-vitl-256: encoder "
                                         "embed_dim=40"):
        convert_checkpoint(FIXTURE / "pretrain.pt", tmp_path / "b", preset="vjepa2-vitl-256")
    with pytest.raises(UsageError, match="preset vjepa2-vitg-256 is not one"):
        convert_checkpoint(FIXTURE / "ac.pt", tmp_path / "c", preset="vjepa2-vitg-256")
    with pytest.raises(UsageError, match="unknown released preset 'vitq'"):
        convert_checkpoint(FIXTURE / "ac.pt", tmp_path / "d", preset="vitq")
    with pytest.raises(UsageError, match="not empty"):
        convert_checkpoint(FIXTURE / "ac.pt", converted["root"] / "ac", encoder_heads=2,
                           predictor_heads=2)


def test_wrong_files_get_one_line_errors(tmp_path):
    with pytest.raises(UsageError, match="checkpoint not found"):
        read_torch_checkpoint(tmp_path / "missing.pt")
    text = tmp_path / "notes.pt"
    text.write_text("hello")
    with pytest.raises(UsageError, match="not a PyTorch zip checkpoint"):
        read_torch_checkpoint(text)
    legacy = tmp_path / "legacy.pt"
    legacy.write_bytes(pickle.dumps({"encoder": {}}, protocol=2))
    with pytest.raises(UsageError, match="legacy pre-1.6"):
        read_torch_checkpoint(legacy)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes((FIXTURE / "ac.pt").read_bytes()[:100_000])
    with pytest.raises(UsageError, match="not a PyTorch zip checkpoint|damaged"):
        read_torch_checkpoint(truncated)


def test_the_reader_refuses_arbitrary_globals(tmp_path):
    import os

    path = tmp_path / "evil.pt"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("evil/data.pkl", pickle.dumps({"encoder": os.getcwd}, protocol=2))
    with pytest.raises(UsageError, match="getcwd, which the safe reader does not load"):
        read_torch_checkpoint(path)


def test_missing_unexpected_and_misshaped_keys_are_named():
    state = dict(read_torch_checkpoint(FIXTURE / "pretrain.pt")["encoder"])
    config = dict(embed_dim=40, depth=2, num_heads=2, mlp_dim=120, patch_size=8,
                  rope_layout="reference")

    def load(s):
        model = VideoEncoder(**config)
        model.build()
        return load_reference_state(model, s, "test.pt")

    missing = {k: v for k, v in state.items() if not k.endswith("blocks.1.attn.qkv.bias")}
    with pytest.raises(UsageError, match=r"missing keys blocks\.1\.attn\.qkv\.bias"):
        load(missing)
    extra = dict(state, **{"module.backbone.head.weight": np.zeros((2, 2), "float32")})
    with pytest.raises(UsageError, match=r"unexpected keys head\.weight"):
        load(extra)
    wrong = dict(state)
    wrong["module.backbone.norm.weight"] = np.zeros(41, "float32")
    with pytest.raises(UsageError, match=r"shape mismatches norm\.weight \(41,\) -> \(40,\)"):
        load(wrong)
    # A named, ignorable key is reported, not loaded.
    ignored = dict(state, **{"module.backbone.pos_embed": np.zeros((1, 32, 40), "float32")})
    assert load(ignored) == ["pos_embed"]
    assert "pos_embed" in IGNORED_KEYS


def _text(value: str) -> bytes:
    data = value.encode()
    return b"X" + len(data).to_bytes(4, "little") + data


def _ints(values) -> bytes:
    return b"(" + b"".join(b"K" + bytes([v]) for v in values) + b"t"


def test_the_reader_handles_bfloat16_and_strides(tmp_path):
    """A hand-written pickle in torch.save's layout: a transposed (strided) bf16 tensor."""
    values = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, -0.5]], "float32")
    bits = (values.view("<u4") >> 16).astype("<u2")
    storage = (b"(" + _text("storage") + b"ctorch\nBFloat16Storage\n" + _text("0")
               + _text("cpu") + b"K\x06t" + b"Q")  # BINPERSID of the storage record
    tensor = (b"ctorch._utils\n_rebuild_tensor_v2\n(" + storage + b"K\x00" + _ints((3, 2))
              + _ints((1, 3)) + b"\x89}tR")
    data = b"\x80\x02}" + _text("w") + tensor + b"s."
    path = tmp_path / "bf16.pt"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("bf16/data.pkl", data)
        archive.writestr("bf16/byteorder", "little")
        archive.writestr("bf16/data/0", bits.tobytes())
    np.testing.assert_array_equal(read_torch_checkpoint(path)["w"], values.T)


def test_rope_layout_is_part_of_the_config():
    encoder = VideoEncoder(embed_dim=40, depth=1, num_heads=2, mlp_dim=80,
                           rope_layout="reference")
    assert VideoEncoder.from_config(encoder.get_config()).rope_layout == "reference"
    old = {k: v for k, v in encoder.get_config().items() if k != "rope_layout"}
    assert VideoEncoder.from_config(old).rope_layout == "rotation"
    with pytest.raises(ValueError, match="rope_layout must be one of .* received 'tiled'"):
        MaskedPredictor(rope_layout="tiled")


def test_a_failed_conversion_leaves_no_folder_and_overwrite_replaces(tmp_path):
    with pytest.raises(UsageError, match="num_heads must divide embed_dim; received "
                                         "embed_dim=32, num_heads=5"):
        convert_checkpoint(FIXTURE / "ac.pt", tmp_path / "ac", encoder_heads=2,
                           predictor_heads=5)
    assert list(tmp_path.iterdir()) == []
    convert_checkpoint(FIXTURE / "ac.pt", tmp_path / "ac", encoder_heads=2, predictor_heads=2)
    (tmp_path / "ac" / "stale.txt").write_text("old")
    convert_checkpoint(FIXTURE / "ac.pt", tmp_path / "ac", encoder_heads=2, predictor_heads=2,
                       overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ac"]
    assert sorted(p.name for p in (tmp_path / "ac").iterdir()) == [
        "ac_predictor", "conventions.json", "conversion.json", "encoder"]


def test_the_convert_command_writes_the_folders_and_errors_in_one_line(tmp_path, capsys):
    from vjepa2.cli import main

    source = str(FIXTURE / "pretrain.pt")
    assert main(["convert", source, "--out", str(tmp_path / "ok"), "--encoder-heads", "2",
                 "--predictor-heads", "2"]) == 0
    assert {p.name for p in (tmp_path / "ok").iterdir()} >= {
        "encoder", "target_encoder", "predictor", "conversion.json"}
    capsys.readouterr()
    assert main(["convert", source, "--out", str(tmp_path / "bad")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "matches no released size" in err
