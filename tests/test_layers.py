import numpy as np
import pytest
import tensorflow as tf
import keras

from enet_keras.layers import (BatchNormalization, ChannelPadding, ClipLogits, LeakyPReLU, MaxPoolingWithArgmax2D,
                               MaxUnpooling2D)
from helpers import run_layer_test


def reference_pool_unpool(x):
    """tf.nn.max_pool_with_argmax, then a scatter of the maxima back to their flat indices."""
    pooled, argmax = tf.nn.max_pool_with_argmax(x, 2, 2, padding="VALID", include_batch_in_index=True)
    flat = tf.scatter_nd(tf.reshape(argmax, (-1, 1)), tf.reshape(pooled, (-1,)), (tf.size(x, out_type=tf.int64),))
    return pooled.numpy(), argmax.numpy(), tf.reshape(flat, tf.shape(x)).numpy()


def local_index(argmax, shape):
    """Window-local position (0..3) of tf.nn's flat indices."""
    _, height, width, channels = shape
    y = (argmax // (width * channels)) % height
    x = (argmax // channels) % width
    return (y % 2) * 2 + (x % 2)


def pool_unpool(x):
    pooled, indices = MaxPoolingWithArgmax2D()(x)
    return pooled.numpy(), indices.numpy(), MaxUnpooling2D()([pooled, indices]).numpy()


@pytest.mark.parametrize(
    "kind", ["random", "ties", "all_equal"],
)
def test_matches_tf_nn_reference(kind):
    rng = np.random.default_rng(1)
    shape = (2, 12, 16, 5)
    if kind == "random":
        x = rng.normal(size=shape).astype("float32")
    elif kind == "ties":
        x = rng.integers(0, 3, size=shape).astype("float32")  # many tied maxima per window
    else:
        x = np.ones(shape, "float32")
    ref_pooled, ref_argmax, ref_unpooled = reference_pool_unpool(x)
    pooled, indices, unpooled = pool_unpool(x)
    np.testing.assert_array_equal(pooled, ref_pooled)
    np.testing.assert_array_equal(indices, local_index(ref_argmax, shape))
    np.testing.assert_array_equal(unpooled, ref_unpooled)


def test_tie_rule_is_first_in_row_major_order():
    x = np.array([[[[0.0], [5.0]], [[5.0], [5.0]]]], "float32")  # max at 1, 2 and 3
    _, indices = MaxPoolingWithArgmax2D()(x)
    assert int(indices[0, 0, 0, 0]) == 1


def test_gradients_flow_to_values_not_indices():
    x = tf.constant(np.random.default_rng(2).normal(size=(1, 4, 4, 3)).astype("float32"))
    weights = tf.constant(np.random.default_rng(3).normal(size=(1, 4, 4, 3)).astype("float32"))
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        pooled, indices = MaxPoolingWithArgmax2D()(x)
        tape.watch(pooled)
        out = tf.reduce_sum(MaxUnpooling2D()([pooled, indices]) * weights)
    grad_values = tape.gradient(out, pooled).numpy()
    # d out / d pooled is the weight at the position each value was put back to.
    w = weights.numpy()
    corners = [w[:, 0::2, 0::2], w[:, 0::2, 1::2], w[:, 1::2, 0::2], w[:, 1::2, 1::2]]
    expected = np.choose(indices.numpy(), corners)
    np.testing.assert_allclose(grad_values, expected, rtol=1e-6)
    # The input's gradient lands only on each window's maximum.
    grad_x = tape.gradient(out, x).numpy()
    assert np.count_nonzero(grad_x) == pooled.numpy().size
    assert tape.gradient(out, indices) is None


def test_dynamic_batch_and_size_and_xla():
    inputs = keras.Input((None, None, 4))
    pooled, indices = MaxPoolingWithArgmax2D()(inputs)
    model = keras.Model(inputs, MaxUnpooling2D()([pooled, indices]))
    xla = tf.function(lambda t: model(t), jit_compile=True)
    for shape in [(1, 8, 8, 4), (3, 6, 10, 4), (2, 32, 16, 4)]:
        x = np.random.default_rng(sum(shape)).integers(0, 3, size=shape).astype("float32")
        expected = reference_pool_unpool(x)[2]
        np.testing.assert_array_equal(model(x).numpy(), expected)
        np.testing.assert_array_equal(xla(tf.constant(x)).numpy(), expected)


def test_odd_size_is_a_clear_error():
    with pytest.raises(ValueError, match="even height"):
        MaxPoolingWithArgmax2D(name="pool")(np.zeros((1, 5, 4, 1), "float32"))
    with pytest.raises(ValueError, match="even width"):
        MaxPoolingWithArgmax2D()(keras.Input((4, 7, 1)))


def test_unpooling_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="same 4-D shape"):
        MaxUnpooling2D()([keras.Input((4, 4, 2)), keras.Input((4, 4, 3), dtype="int32")])


def test_pooling_layer_contract(tmp_path):
    run_layer_test(MaxPoolingWithArgmax2D, {}, [(8, 8, 3)], tmp_path)


def test_unpooling_layer_contract(tmp_path):
    run_layer_test(MaxUnpooling2D, {}, [(4, 4, 3), (4, 4, 3)], tmp_path, input_dtypes=["float32", "int32"])


def test_channel_padding_contract(tmp_path):
    layer = run_layer_test(ChannelPadding, {"channels": 5}, [(4, 4, 3)], tmp_path)
    out = layer(np.ones((1, 2, 2, 3), "float32")).numpy()
    assert out.shape == (1, 2, 2, 8) and out[..., 3:].sum() == 0 and out[..., :3].sum() == 12
    with pytest.raises(ValueError, match="channels must be >= 0"):
        ChannelPadding(-1)


def test_maximum_prelu_equals_prelu_on_random_and_tied_inputs():
    from enet_keras.layers import MaximumPReLU

    rng = np.random.default_rng(4)
    alpha = np.concatenate([[0.0, 1.0, -0.3], rng.uniform(-1, 1, 5)]).astype("float32").reshape(1, 1, 8)
    steep = np.concatenate([[1.0, 1.03, 2.5], rng.uniform(-1, 3, 5)]).astype("float32").reshape(1, 1, 8)
    random = rng.normal(size=(2, 4, 4, 8)).astype("float32")
    tied = rng.integers(-1, 2, size=(2, 4, 4, 8)).astype("float32")  # zeros: x == alpha * x
    for slopes, maximum in ((alpha, MaximumPReLU()), (alpha, MaximumPReLU(slopes_above_one=True)),
                            (steep, MaximumPReLU(slopes_above_one=True))):
        prelu = keras.layers.PReLU(shared_axes=[1, 2])
        for layer in (prelu, maximum):
            layer.build((None, 4, 4, 8))
            layer.alpha.assign(slopes)
        for x in (random, tied):
            if maximum.slopes_above_one:  # x + (alpha - 1) * x rounds differently from alpha * x
                np.testing.assert_allclose(maximum(x).numpy(), prelu(x).numpy(), rtol=1e-6, atol=1e-7)
            else:
                np.testing.assert_array_equal(maximum(x).numpy(), prelu(x).numpy())


def test_maximum_prelu_layer_contract(tmp_path):
    from enet_keras.layers import MaximumPReLU

    run_layer_test(MaximumPReLU, {}, [(4, 4, 3)], tmp_path)
    run_layer_test(MaximumPReLU, {"slopes_above_one": True}, [(4, 4, 3)], tmp_path)


def test_leaky_prelu_contract(tmp_path):
    # Negative slopes too, which keras.layers.LeakyReLU refuses and training can reach.
    layer = run_layer_test(LeakyPReLU, {"slope": -0.25}, [(4, 4, 3)], tmp_path)
    out = keras.ops.convert_to_numpy(layer(np.array([[[[-2.0, 0.0, 3.0]]]], "float32")))
    np.testing.assert_array_equal(out, [[[[0.5, 0.0, 3.0]]]])


def _bn_pair(**kwargs):
    """Our fused BatchNormalization and Keras' own, built alike with the same random variables."""
    rng = np.random.default_rng(5)
    fused, plain = BatchNormalization(momentum=0.9, **kwargs), keras.layers.BatchNormalization(momentum=0.9, **kwargs)
    for layer in (fused, plain):
        layer.build((None, 6, 8, 4))
    for name in ("gamma", "beta", "moving_mean"):
        value = rng.normal(size=4).astype("float32")
        getattr(fused, name).assign(value), getattr(plain, name).assign(value)
    value = rng.uniform(0.5, 2, size=4).astype("float32")
    fused.moving_variance.assign(value), plain.moving_variance.assign(value)
    return fused, plain


def test_fused_batch_norm_trains_like_keras_batch_norm():
    fused, plain = _bn_pair()
    x = tf.constant(np.random.default_rng(6).normal(2, 3, size=(3, 6, 8, 4)).astype("float32"))
    upstream = tf.constant(np.random.default_rng(7).normal(size=(3, 6, 8, 4)).astype("float32"))
    results = []
    for layer in (fused, plain):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x, training=True)
            loss = tf.reduce_sum(y * upstream)
        grads = tape.gradient(loss, [x, layer.gamma, layer.beta])
        results.append([y, *grads, layer.moving_mean, layer.moving_variance, layer(x, training=False)])
    for ours, theirs in zip(*results):
        np.testing.assert_allclose(np.asarray(ours), np.asarray(theirs), rtol=1e-4, atol=1e-4)
    # It really took the fused kernel: Keras' own ops have no FusedBatchNorm in their graph.
    graph = tf.function(lambda t: fused(t, training=True)).get_concrete_function(x).graph
    assert any(op.type.startswith("FusedBatchNorm") for op in graph.get_operations())


def test_fused_batch_norm_falls_back_where_the_fused_kernel_does_not_apply():
    x = tf.constant(np.random.default_rng(8).normal(size=(3, 6, 8, 4)).astype("float32"))
    for kwargs in ({"synchronized": True}, {"center": False}, {"axis": 1}):
        layer = BatchNormalization(**kwargs)
        graph = tf.function(lambda t: layer(t, training=True)).get_concrete_function(x).graph
        assert not any(op.type.startswith("FusedBatchNorm") for op in graph.get_operations()), kwargs


def test_fused_batch_norm_under_mixed_precision():
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        fused, plain = _bn_pair()
    finally:
        keras.mixed_precision.set_global_policy("float32")
    x = np.random.default_rng(9).normal(size=(3, 6, 8, 4)).astype("float16")
    ours, theirs = fused(x, training=True), plain(x, training=True)
    assert ours.dtype == theirs.dtype == "float16"
    np.testing.assert_allclose(np.asarray(ours, "float32"), np.asarray(theirs, "float32"), atol=1e-2)
    np.testing.assert_allclose(fused.moving_variance.numpy(), plain.moving_variance.numpy(), rtol=1e-3)


def test_fused_batch_norm_layer_contract(tmp_path):
    run_layer_test(BatchNormalization, {"momentum": 0.9, "epsilon": 1e-3}, [(4, 4, 3)], tmp_path)


def test_clip_logits_contract(tmp_path):
    layer = run_layer_test(ClipLogits, {"lower": -1.5, "upper": 2.0}, [(4, 4, 3)], tmp_path)
    out = keras.ops.convert_to_numpy(layer(np.array([[[[-9.0, 0.25, 9.0]]]], "float32")))
    np.testing.assert_array_equal(out, [[[[-1.5, 0.25, 2.0]]]])
    with pytest.raises(ValueError, match="lower < upper"):
        ClipLogits(2.0, 2.0)
