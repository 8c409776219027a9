"""Gradient checkpointing (`remat=True`): same values and gradients, saved in the config."""
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

from vjepa2.models import MaskedPredictor, VideoEncoder

SMALL = dict(embed_dim=32, depth=2, num_heads=2, mlp_dim=64)

# One loss through an encoder on the context tokens and a predictor on the targets, and its
# gradients for every trainable weight; the same weights with and without remat.
GRADIENTS = textwrap.dedent("""
    import keras
    import numpy as np

    from vjepa2.models import MaskedPredictor, VideoEncoder

    def gradients(remat):
        keras.utils.set_random_seed(0)
        encoder = VideoEncoder(embed_dim=32, depth=1, num_heads=2, mlp_dim=64, remat=remat)
        predictor = MaskedPredictor(encoder_dim=32, embed_dim=16, depth=1, num_heads=2,
                                    mlp_dim=32, remat=remat)
        rng = np.random.default_rng(0)
        video = rng.normal(size=(2, 4, 32, 32, 3)).astype("float32")
        context = np.array([[0, 1, 2, 5, 6], [3, 4, 5, 6, 7]], "int32")
        target = np.array([[3, 4], [0, 1]], "int32")
        encoder.build()
        predictor.build()
        weights = encoder.trainable_weights + predictor.trainable_weights

        def loss_of(values):
            mapping = list(zip(weights, values))
            with keras.StatelessScope(state_mapping=mapping):
                tokens = encoder(video, token_ids=context)
                out = predictor(tokens, context, target, grid=(2, 2, 2))
                return keras.ops.mean(keras.ops.abs(out - 0.1))

        values = [w.value for w in weights]
        backend = keras.backend.backend()
        if backend == "jax":
            import jax

            loss, grads = jax.jit(jax.value_and_grad(loss_of))(values)
        else:
            import tensorflow as tf

            @tf.function  # graph mode, as in the train step
            def value_and_grad(values):
                with tf.GradientTape() as tape:
                    tape.watch(values)
                    loss = loss_of(values)
                return loss, tape.gradient(loss, values)

            loss, grads = value_and_grad(values)
        return float(loss), [np.asarray(g) for g in grads]

    loss_a, grads_a = gradients(False)
    loss_b, grads_b = gradients(True)
    assert loss_a == loss_b, (loss_a, loss_b)
    assert len(grads_a) == len(grads_b) > 10
    for a, b in zip(grads_a, grads_b):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
        assert np.abs(a).max() > 0  # every weight gets a gradient
    print("ok")
""")


def test_remat_gives_the_same_loss_and_gradients():
    namespace = {}
    exec(compile(GRADIENTS, "gradients", "exec"), namespace)


@pytest.mark.slow  # a JAX process: ~25 s on the idle 2-core machine (two compiles)
@pytest.mark.skipif(not __import__("importlib").util.find_spec("jax"),
                    reason="jax is not installed")
def test_remat_gives_the_same_loss_and_gradients_on_jax():
    env = {**os.environ, "KERAS_BACKEND": "jax", "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run([sys.executable, "-W", "error", "-c", GRADIENTS], env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().endswith("ok")


def test_remat_is_saved_in_the_config_and_off_by_default():
    encoder = VideoEncoder(**SMALL, remat=True)
    assert encoder.get_config()["remat"] is True
    assert VideoEncoder.from_config(encoder.get_config()).remat is True
    predictor = MaskedPredictor(encoder_dim=32, embed_dim=16, depth=1, num_heads=2, mlp_dim=32)
    assert predictor.get_config()["remat"] is False
    # A config saved before the option existed loads without it.
    old = {k: v for k, v in VideoEncoder(**SMALL).get_config().items() if k != "remat"}
    assert VideoEncoder.from_config(old).remat is False


def test_a_remat_encoder_gives_the_same_outputs():
    video = np.random.default_rng(1).normal(size=(1, 2, 32, 32, 3)).astype("float32")
    plain = VideoEncoder(**SMALL)
    plain(video)
    remat = VideoEncoder(**SMALL, remat=True)
    remat(video)
    remat.set_weights(plain.get_weights())
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(plain(video)),
                                  keras.ops.convert_to_numpy(remat(video)))
