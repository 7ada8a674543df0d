"""Shared test helpers: one layer test, one model-saving check and PReLU slopes, reused instead of copied."""

import numpy as np
import keras

from enet_keras import _internals


def assert_model_round_trip(model, inputs, tmp_path, atol=1e-6):
    """Saves `model` to a `.keras` file, reloads it in safe mode and checks equal outputs."""
    path = tmp_path / f"{model.name}.keras"
    model.save(path)
    reloaded = keras.saving.load_model(path, safe_mode=True)
    expected = model(inputs, training=False)
    actual = reloaded(inputs, training=False)
    for e, a in zip(keras.tree.flatten(expected), keras.tree.flatten(actual)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(e), atol=atol)
    assert not any(isinstance(layer, keras.layers.Lambda) for layer in reloaded.layers)
    return reloaded


def run_layer_test(layer_cls, init_kwargs, input_shapes, tmp_path, input_dtypes=None, input_data=None):
    """Builds `layer_cls` on symbolic inputs, calls it eagerly, fits one step through it,
    round-trips it through get_config/from_config and a `.keras` file, and checks outputs."""
    input_dtypes = input_dtypes or ["float32"] * len(input_shapes)
    rng = np.random.default_rng(0)
    if input_data is None:
        input_data = [
            rng.integers(0, 4, size=(2, *s)).astype(d) if d.startswith("int") else rng.normal(size=(2, *s)).astype(d)
            for s, d in zip(input_shapes, input_dtypes)
        ]
    symbolic = [keras.Input(shape=s, dtype=d) for s, d in zip(input_shapes, input_dtypes)]
    layer = layer_cls(**init_kwargs)
    call_input = symbolic if len(symbolic) > 1 else symbolic[0]
    outputs = layer(call_input)
    eager = layer([keras.ops.convert_to_tensor(x) for x in input_data] if len(input_data) > 1 else input_data[0])
    first = keras.tree.flatten(outputs)[0]
    assert tuple(keras.tree.flatten(eager)[0].shape)[1:] == tuple(
        d if d is not None else keras.tree.flatten(eager)[0].shape[i + 1] for i, d in enumerate(first.shape[1:])
    )

    # One fit step: a trainable head after the layer so there is something to fit.
    head = keras.layers.Dense(1)(keras.tree.flatten(outputs)[0] if first.dtype.startswith("float") else keras.ops.cast(first, "float32"))
    model = keras.Model(call_input, head)
    model.compile(optimizer="sgd", loss="mse")
    feed = input_data if len(input_data) > 1 else input_data[0]
    history = model.fit(feed, np.zeros((2, *head.shape[1:]), "float32"), epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])

    config = layer.get_config()
    clone = layer_cls.from_config(config)
    assert clone.get_config() == config
    assert_model_round_trip(model, feed, tmp_path)
    return layer


def with_random_slopes(model, low, high, seed=0):
    """Sets every PReLU's slopes to uniform random values in [low, high) (trained slopes are
    spread, untrained ones are all 0); returns `model`."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, keras.layers.PReLU):
            layer.alpha.assign(rng.uniform(low, high, layer.alpha.shape).astype("float32"))
    return model


def with_slopes_above_one(model, layer_name="bottleneck1_1_act", low=0.5, high=1.5):
    """Spreads one PReLU's slopes evenly over [low, high], across 1 (the shipped CamVid weights
    have a slope of 1.03); returns `model`."""
    alpha = model.get_layer(layer_name).alpha
    alpha.assign(np.linspace(low, high, alpha.shape[-1], dtype="float32").reshape(alpha.shape))
    return model


def per_pixel_prelu_model():
    """A convolution and a PReLU layer `per_pixel_slopes` with a slope per pixel (not shared over
    height and width), which has no int8 export form."""
    x = inputs = keras.Input((8, 8, 3))
    x = keras.layers.PReLU(name="per_pixel_slopes")(keras.layers.Conv2D(4, 1)(x))
    return keras.Model(inputs, x)


def with_random_statistics(model, seed=0):
    """Sets every BatchNormalization's scale, offset and moving statistics to random values (a
    fresh model's are the identity, which hides mistakes in folding them); returns `model`."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            shape = layer.gamma.shape
            layer.set_weights([rng.uniform(0.5, 2.0, shape), rng.normal(0, 0.5, shape), rng.normal(0, 0.5, shape),
                               rng.uniform(0.5, 2.0, shape)])
    return model


def assert_same_function(other, model, images, rel=1e-5):
    """Asserts that `other` (an export form or a tf_keras twin of the ENet `model`) computes
    `model`'s function on `images`, to `rel` times the largest value: the initial block as a
    whole (which `other` may fold), then every later layer of `other` on its own, fed `model`'s
    values of the tensors it is wired to (by producing layer name and output index).

    Comparing only the final outputs is flaky: two forms round differently, and where two values
    of a pooling window are within that rounding the first maximum can flip, which moves one
    unpooled value and, through the dilated convolutions, changes most of the output. Layer by
    layer there is nothing to flip, yet a wrong weight, fold or wire still fails.
    """
    def tolerance(expected):
        return rel * max(1.0, float(np.abs(expected).max()))

    def initial_act(m):  # type(m): a Keras 3 or a tf_keras model
        return np.asarray(type(m)(m.inputs[0], m.get_layer("initial_act").output)(images, training=False))

    expected = initial_act(model)
    np.testing.assert_allclose(initial_act(other), expected, atol=tolerance(expected))

    def keys(layer):  # the (producing layer, output index) of each input of `layer`
        (node,) = _internals.inbound_nodes(layer)
        return [(_internals.history(t)[0].name, _internals.history(t)[2]) for t in keras.tree.flatten(node.input_tensors)]

    tensors = {(l.name, i): t for l in model.layers for i, t in enumerate(keras.tree.flatten(l.output))}
    probe = keras.Model(model.inputs[0], list(tensors.values()))
    values = dict(zip(tensors, probe(images, training=False)))
    names = [l.name for l in other.layers]
    for layer in other.layers[names.index("initial_act") + 1:]:
        inputs = [values[k] for k in keys(layer)]
        actual = keras.tree.flatten(layer(inputs if len(inputs) > 1 else inputs[0], training=False))
        assert len(actual) == len(keras.tree.flatten(model.get_layer(layer.name).output)), layer.name
        for i, a in enumerate(actual):
            expected = np.asarray(values[(layer.name, i)])
            np.testing.assert_allclose(np.asarray(a), expected, atol=tolerance(expected), err_msg=layer.name)


def near_ties(logits, eps=1e-4):
    """Pixels whose two best logits are within eps: another CPU's kernels may flip their argmax."""
    top2 = np.sort(np.asarray(logits), axis=-1)[..., -2:]
    return (top2[..., 1] - top2[..., 0]) <= eps


def assert_same_confusion_up_to_near_ties(confusion, expected, model, source, eps=1e-4):
    """Two runtimes' confusion matrices on `source` differ by no more pixels than the float
    `model` has argmax near-ties there (labelled pixels only); exact equality fails on CPUs whose
    kernels round differently (AVX-512 against AVX2)."""
    ties = 0
    for image, label in source.dataset():
        logits = model(np.asarray(image, np.float32)[None], training=False)
        ties += int((near_ties(logits, eps)[0] & (np.asarray(label) != source.ignore_label)).sum())
    confusion, expected = np.asarray(confusion), np.asarray(expected)
    assert confusion.sum() == expected.sum()
    # A flipped pixel moves one count from one cell to another: |difference| sums to 2 per flip.
    assert np.abs(confusion - expected).sum() <= 2 * ties, (np.abs(confusion - expected).sum(), ties)


def small_segmenter(num_classes=3):
    """A convolution, batch norm and a 1x1 classifier on any-size images: a model that exports
    in seconds, for tests of what happens around a conversion rather than of ENet's graph."""
    x = inputs = keras.Input((None, None, 3), name="image")
    x = keras.layers.Conv2D(4, 3, padding="same")(x)
    x = keras.layers.BatchNormalization()(x)
    return keras.Model(inputs, keras.layers.Conv2D(num_classes, 1)(x), name="small_segmenter")


def tiny_camvid(root, size=32):
    """A tiny CamVid in the SegNet layout, with the real drive prefixes (fold 0006R0 holds out two
    frames): labels of 8x8 blocks, so a 1/8-size label is one class per cell, and images whose
    R channel is label * 20, so the classes can be learnt. Returns `root`."""
    from PIL import Image

    rng = np.random.default_rng(0)
    names = {"train": ["0001TP_1", "0001TP_2", "0006R0_1", "0006R0_2", "0016E5_1"], "val": ["0016E5_9"]}
    for split, stems in names.items():
        for stem in stems:
            grid = rng.integers(0, 12, size=(size // 8, size // 8))  # 11 = void
            label = np.kron(grid, np.ones((8, 8), np.int64)).astype(np.uint8)
            image = rng.integers(0, 256, size=(size, size, 3)).astype(np.uint8)
            image[..., 0] = label * 20
            for folder, array in ((split, image), (f"{split}annot", label)):
                (root / folder).mkdir(parents=True, exist_ok=True)
                Image.fromarray(array).save(root / folder / f"{stem}.png")
    return root


def numpy_mean_iou(truth, prediction, num_classes, ignore):
    """Mean IoU over the classes present in `truth` or `prediction`, `ignore` pixels left out."""
    keep = truth != ignore
    ious = []
    for c in range(num_classes):
        t, p = truth[keep] == c, prediction[keep] == c
        if (t | p).any():
            ious.append((t & p).sum() / (t | p).sum())
    return float(np.mean(ious))
