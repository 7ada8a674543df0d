"""Tests of enet_keras.data: sources, pipeline, class weights, TFRecords, bad input."""

import importlib.util
import json
import re
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from enet_keras import data
from enet_keras.data import class_balance

CAMVID_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "camvid"
REPO = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------- fixtures written on the fly

def _png(path, array, mode=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(array, np.uint8), mode).save(path)
    return path


def _blocky_example(rng, h, w, num_classes, ignore, block=8):
    """A label of block x block squares of random classes (some ignored) and an image whose
    R channel is label * 20 (250 where ignored), so alignment can be read off the image."""
    grid = rng.integers(0, num_classes + 1, size=(h // block + 1, w // block + 1))
    grid = np.where(grid == num_classes, ignore, grid)
    label = np.kron(grid, np.ones((block, block), np.int64))[:h, :w].astype(np.uint8)
    image = rng.integers(0, 256, size=(h, w, 3)).astype(np.uint8)
    image[..., 0] = np.where(label == ignore, 250, label.astype(np.int64) * 20)
    return image, label


def _folder_dataset(root, split="train", n=4, h=32, w=48, num_classes=5, ignore=255, seed=0):
    rng = np.random.default_rng(seed)
    examples = []
    for i in range(n):
        image, label = _blocky_example(rng, h, w, num_classes, ignore)
        _png(root / split / "images" / f"img{i}.png", image)
        _png(root / split / "masks" / f"img{i}.png", label)
        examples.append((image, label))
    return examples


def _as_numpy(source):
    return [(i.numpy(), l.numpy()) for i, l in source.dataset()]


@pytest.fixture
def folder(tmp_path):
    examples = _folder_dataset(tmp_path)
    return tmp_path, examples


# ---------------------------------------------------------------- get_source

def test_unknown_source_lists_valid_names():
    with pytest.raises(ValueError, match="valid names: synthetic, camvid, cityscapes, tfds"):
        data.get_source("kitti", "train")


def test_missing_data_dir_names_flag_and_path(tmp_path):
    with pytest.raises(ValueError, match="--data_dir"):
        data.get_source("camvid", "train")
    missing = tmp_path / "nowhere"
    with pytest.raises(ValueError, match=re.escape(str(missing))):
        data.get_source("cityscapes", "train", data_dir=missing)


def test_unknown_option_and_split():
    with pytest.raises(ValueError, match="valid options"):
        data.get_source("synthetic", "train", colour=3)
    with pytest.raises(ValueError, match="split"):
        data.get_source("synthetic", "training")


# ---------------------------------------------------------------- synthetic

def test_synthetic_is_deterministic_and_splits_differ():
    kw = dict(num_examples=3, height=36, width=48, seed=1)
    a = _as_numpy(data.get_source("synthetic", "train", **kw))
    b = _as_numpy(data.get_source("synthetic", "train", **kw))
    v = _as_numpy(data.get_source("synthetic", "val", **kw))
    src = data.get_source("synthetic", "train", **kw)
    assert (src.num_classes, src.ignore_label, src.num_examples) == (8, 255, 3)
    assert len(src.palette) == len(src.class_names) == 8
    assert len(a) == 3
    for (ia, la), (ib, lb) in zip(a, b):
        np.testing.assert_array_equal(ia, ib)
        np.testing.assert_array_equal(la, lb)
    assert not np.array_equal(a[0][0], v[0][0])
    labels = np.concatenate([l.ravel() for _, l in a + v])
    assert set(np.unique(labels)) <= set(range(8)) | {255}
    assert a[0][0].shape == (36, 48, 3) and a[0][0].dtype == np.uint8 and a[0][1].dtype == np.uint8
    assert data.get_source("synthetic", "val").num_examples == 50


def test_synthetic_scene_has_several_classes():
    image, label = data.render_scene(0, "train", 180, 240, seed=0)
    assert image.shape == (180, 240, 3)
    assert len(set(np.unique(label)) - {255}) >= 4


# ---------------------------------------------------------------- CamVid (real data)

@pytest.mark.skipif(not CAMVID_DIR.is_dir(), reason=f"CamVid not found at {CAMVID_DIR}")
def test_camvid_real_counts_and_labels():
    train = data.get_source("camvid", "train", data_dir=CAMVID_DIR)
    val = data.get_source("camvid", "val", data_dir=CAMVID_DIR)
    assert (train.num_examples, val.num_examples) == (367, 101)
    assert (val.num_classes, val.ignore_label, val.class_names[0]) == (11, 11, "Sky")
    assert val.palette[3] == (128, 64, 128)
    seen = set()
    for image, label in val.dataset().take(20):
        assert image.shape == (360, 480, 3) and label.shape == (360, 480)
        seen |= set(np.unique(label.numpy()).tolist())
    assert seen <= set(range(12)) and len(seen) > 5


def test_camvid_layout_fixture(tmp_path):
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for i in range(2):
            image, label = _blocky_example(rng, 32, 48, 11, 11)
            _png(tmp_path / split / f"0001TP_{i}.png", image)
            _png(tmp_path / f"{split}annot" / f"0001TP_{i}.png", label)
    src = data.get_source("camvid", "val", data_dir=str(tmp_path))
    got = _as_numpy(src)
    assert src.num_examples == 2 and len(got) == 2
    assert got[0][1].max() <= 11
    # R channel = label * 20 (250 for void): image and label are the matching pair.
    np.testing.assert_array_equal(got[0][0][..., 0], np.where(got[0][1] == 11, 250, got[0][1] * 20))


def _drive_names(split):
    return {"train": ["0001TP_1", "0001TP_2", "0006R0_1", "0016E5_1"], "val": ["0016E5_9"]}[split]


def test_camvid_holdout_drive_and_trainval(tmp_path):
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for name in _drive_names(split):
            image, label = _blocky_example(rng, 16, 16, 11, 11)
            _png(tmp_path / split / f"{name}.png", image)
            _png(tmp_path / f"{split}annot" / f"{name}.png", label)

    def names(split, **options):
        src = data.get_source("camvid", split, data_dir=str(tmp_path), **options)
        examples = list(src.dataset())
        assert src.num_examples == len(examples)
        return src, examples

    # Leave-one-drive-out over train+val: the drive is the val split, and only the val split.
    train, examples = names("train", holdout_drive="0001TP")
    val, held = names("val", holdout_drive="0001TP")
    assert (train.num_examples, val.num_examples) == (3, 2)
    assert val.options["holdout_drive"] == "0001TP"
    images = {bytes(np.asarray(x).tobytes()) for x, _ in examples}
    assert not images & {bytes(np.asarray(x).tobytes()) for x, _ in held}
    assert names("train", holdout_drive="0016E5")[0].num_examples == 3  # 0016E5 from train and val
    assert names("val", holdout_drive="0016E5")[0].num_examples == 2
    # train+val for final weights; val stays the SegNet val.
    assert names("train", trainval=True)[0].num_examples == 5
    assert names("val", trainval=True)[0].num_examples == 1
    # Plain CamVid keeps its options (and so the cache keys of existing runs).
    assert data.get_source("camvid", "train", data_dir=str(tmp_path)).options == {"invalid_labels": "error"}
    with pytest.raises(ValueError, match=r"holdout_drive must be one of the drives of train\+val "
                                         r"\['0001TP', '0006R0', '0016E5'\]. Received: holdout_drive='Seq05VD'"):
        data.get_source("camvid", "val", data_dir=str(tmp_path), holdout_drive="Seq05VD")
    with pytest.raises(ValueError, match="holdout_drive and trainval exclude each other"):
        data.get_source("camvid", "train", data_dir=str(tmp_path), holdout_drive="0001TP", trainval=True)
    with pytest.raises(ValueError, match="trainval must be true or false"):
        data.get_source("camvid", "train", data_dir=str(tmp_path), trainval="yes")


@pytest.mark.skipif(not CAMVID_DIR.is_dir(), reason=f"CamVid not found at {CAMVID_DIR}")
def test_camvid_real_holdout_folds():
    counts = {drive: data.get_source("camvid", "val", data_dir=CAMVID_DIR, holdout_drive=drive).num_examples
              for drive in ("0001TP", "0006R0")}
    assert counts == {"0001TP": 62, "0006R0": 101}
    assert data.get_source("camvid", "train", data_dir=CAMVID_DIR, holdout_drive="0006R0").num_examples == 367
    assert data.get_source("camvid", "train", data_dir=CAMVID_DIR, trainval=True).num_examples == 468


# ---------------------------------------------------------------- Cityscapes

def test_cityscapes_maps_label_ids_to_train_ids(tmp_path):
    ids = np.array([[7, 8, 26, 33], [0, 1, 9, 24], [23, 21, 255, 11]], np.uint8)  # labelIds
    for split, city in (("val", "lindau"), ("val", "munster")):
        stem = f"{city}_000000_000019"
        _png(tmp_path / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png",
             np.zeros((3, 4, 3)))
        _png(tmp_path / "gtFine" / split / city / f"{stem}_gtFine_labelIds.png", ids)
    src = data.get_source("cityscapes", "val", data_dir=tmp_path)
    assert (src.num_classes, src.ignore_label, src.num_examples) == (19, 255, 2)
    assert src.class_names[13] == "car" and src.palette[0] == (128, 64, 128)
    label = _as_numpy(src)[0][1]
    np.testing.assert_array_equal(
        label, [[0, 1, 13, 18], [255, 255, 255, 11], [10, 8, 255, 2]])


# ---------------------------------------------------------------- TFDS (error path only)

def test_tfds_missing_archives_says_what_to_put_where(tmp_path):
    import tensorflow_datasets  # noqa: F401  (make test installs the tfds extra: fail, not skip)
    manual = tmp_path / "manual"
    manual.mkdir()
    (manual / "gtFine_trainvaltest.zip").write_bytes(b"")
    with pytest.raises(ValueError) as err:
        data.get_source("tfds", "train", data_dir=manual, tfds_data_dir=str(tmp_path / "tfds"))
    msg = str(err.value)
    assert "leftImg8bit_trainvaltest.zip" in msg and str(manual) in msg and "--data_dir" in msg
    assert f"missing: {manual / 'leftImg8bit_trainvaltest.zip'}." in msg


# ---------------------------------------------------------------- folder source

def test_folder_ids(folder):
    root, examples = folder
    src = data.get_source("folder", "train", data_dir=root, num_classes=5)
    assert (src.num_classes, src.ignore_label, src.num_examples) == (5, 255, 4)
    assert src.class_names[0] == "class_0" and len(src.palette) == 5
    for (image, label), (ei, el) in zip(_as_numpy(src), examples):
        np.testing.assert_array_equal(image, ei)
        np.testing.assert_array_equal(label, el)


def test_folder_indexed_png_masks_read_as_indices(tmp_path):
    ids = np.array([[0, 1], [2, 255]], np.uint8)
    _png(tmp_path / "val" / "images" / "a.jpg", np.zeros((2, 2, 3)))
    mask = Image.fromarray(ids, "P")
    mask.putpalette([255 - (i % 256) for i in range(768)])  # colours unrelated to the ids
    (tmp_path / "val" / "masks").mkdir(parents=True)
    mask.save(tmp_path / "val" / "masks" / "a.png")
    label = _as_numpy(data.get_source("folder", "val", data_dir=tmp_path, num_classes=3))[0][1]
    np.testing.assert_array_equal(label, ids)


@pytest.mark.parametrize("fmt", ["json", "txt"])
def test_folder_colour_masks_with_palette(tmp_path, fmt):
    palette = [(0, 0, 0), (255, 0, 0), (0, 255, 0)]
    if fmt == "json":
        pfile = tmp_path / "palette.json"
        pfile.write_text(json.dumps([list(c) for c in palette]))
    else:
        pfile = tmp_path / "palette.txt"
        pfile.write_text("# r g b name\n0 0 0 bg\n255,0,0 car\n0 255 0 tree\n")
    ids = np.array([[0, 1, 2], [2, 1, 0]])
    _png(tmp_path / "train" / "images" / "a.png", np.zeros((2, 3, 3)))
    _png(tmp_path / "train" / "masks" / "a.png", np.array(palette, np.uint8)[ids])
    src = data.get_source("folder", "train", data_dir=tmp_path, palette_file=pfile)
    assert src.num_classes == 3 and tuple(src.palette) == tuple(palette)
    if fmt == "txt":
        assert src.class_names == ("bg", "car", "tree")
    np.testing.assert_array_equal(_as_numpy(src)[0][1], ids)


# ---------------------------------------------------------------- TFRecord

def test_tfrecord_round_trip_keeps_order_and_classes(folder):
    root, examples = folder
    src = data.get_source("folder", "train", data_dir=root, num_classes=5)
    out = root / "records"
    result = data.write_tfrecords(src, str(out), num_shards=3, progress=False)
    assert result["num_examples"] == 4 and len(result["files"]) == 3
    assert not list(out.glob(".tmp-*"))
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["num_classes"] == 5 and meta["splits"]["train"]["num_examples"] == 4
    back = data.get_source("tfrecord", "train", data_dir=str(out))
    assert (back.num_classes, back.ignore_label, back.class_names) == (5, 255, src.class_names)
    for (image, label), (ei, el) in zip(_as_numpy(back), examples):
        np.testing.assert_array_equal(image, ei)
        np.testing.assert_array_equal(label, el)
    shuffled = [l.numpy() for _, l in back.dataset(shuffle_seed=1)]
    assert len(shuffled) == 4
    with pytest.raises(ValueError, match="'val' is not in"):
        data.get_source("tfrecord", "val", data_dir=str(out))


def test_convert_tfrecord_tool(tmp_path):
    spec = importlib.util.spec_from_file_location("convert_tfrecord",
                                                  REPO / "tools" / "convert_tfrecord.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    for action in tool.build_parser()._actions:
        if action.help and action.dest != "help":
            assert re.search(r"\(default: [^)]*\)\.?$", action.help), action.help
    out = tmp_path / "out"
    assert tool.main(["--dataset", "synthetic", "--splits", "train", "val", "--output_dir", str(out),
                      "--num_shards", "2", "--dataset_option", "num_examples=3", "--dataset_option", "height=16",
                      "--dataset_option", "width=24", "--no_progress"])[0]["split"] == "train"
    val = data.get_source("tfrecord", "val", data_dir=out)
    assert val.num_examples == 3 and val.class_names == data.SYNTHETIC_CLASSES
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["splits"]["train"]["config"]["num_shards"] == 2


def test_tfrecord_missing_metadata_names_file(tmp_path):
    with pytest.raises(ValueError, match=re.escape(str(tmp_path / "metadata.json"))):
        data.get_source("tfrecord", "train", data_dir=tmp_path)


# ---------------------------------------------------------------- pipeline

def _aligned_source(tmp_path, n=4, h=48, w=64):
    _folder_dataset(tmp_path, n=n, h=h, w=w, num_classes=5, seed=3)
    return data.get_source("folder", "train", data_dir=tmp_path, num_classes=5)


def test_training_augmentation_keeps_image_and_label_aligned(tmp_path):
    src = _aligned_source(tmp_path)
    ds = data.make_pipeline(src, 4, crop_size=(48, 64), seed=7, color_jitter=False)
    checked = total = agree = 0
    for _ in range(3):  # epochs: different flips, scales and crops
        for images, labels in ds:
            r, y = images.numpy()[..., 0], labels.numpy()
            assert images.shape == (4, 48, 64, 3) and labels.dtype == tf.int32
            valid = y != 255
            total += valid.sum()
            agree += (np.round(r / 20) == y)[valid].sum()
            # Where the 5x5 neighbourhood has one label, bilinear sampling only mixes pixels of
            # that label (scale >= 0.5), so the image value must be exactly label * 20.
            pad = np.pad(y, ((0, 0), (2, 2), (2, 2)), constant_values=-1)
            windows = np.lib.stride_tricks.sliding_window_view(pad, (5, 5), axis=(1, 2))
            uniform = (windows == y[..., None, None]).all(axis=(-1, -2)) & valid
            np.testing.assert_allclose(r[uniform], 20.0 * y[uniform], atol=1e-3)
            checked += uniform.sum()
    assert checked > 0.2 * total and agree > 0.9 * total


def test_color_jitter_changes_image_only_and_seed_is_deterministic(tmp_path):
    src = _aligned_source(tmp_path)

    def first(**kw):
        images, labels = next(iter(data.make_pipeline(src, 4, crop_size=(48, 64), **kw)))
        return images.numpy(), labels.numpy()

    i1, l1 = first(seed=5)
    i2, l2 = first(seed=5)
    i3, l3 = first(seed=5, color_jitter=False)
    i4, _ = first(seed=6)
    np.testing.assert_array_equal(i1, i2)
    np.testing.assert_array_equal(l1, l2)
    np.testing.assert_array_equal(l1, l3)  # jitter leaves labels (and geometry) alone
    assert not np.allclose(i1, i3)
    assert not np.array_equal(i1, i4)
    assert 0.0 <= i1.min() and i1.max() <= 255.0


def test_label_downsample_is_nearest_after_augmentation(tmp_path):
    src = _aligned_source(tmp_path)
    _, full = next(iter(data.make_pipeline(src, 4, crop_size=(48, 64), seed=2)))
    _, small = next(iter(data.make_pipeline(src, 4, crop_size=(48, 64), seed=2,
                                            label_downsample=8)))
    assert small.shape == (4, 6, 8)
    np.testing.assert_array_equal(small.numpy(), full.numpy()[:, 4::8, 4::8])
    _, evl = next(iter(data.make_pipeline(src, 2, crop_size=(48, 64), training=False,
                                          label_downsample=8)))
    assert evl.shape == (2, 6, 8)


def test_eval_center_crop_pad_and_order(folder):
    root, examples = folder  # 32x48 images
    src = data.get_source("folder", "train", data_dir=root, num_classes=5)
    images, labels = next(iter(data.make_pipeline(src, 4, crop_size=(48, 40), training=False)))
    assert images.dtype == tf.float32 and labels.dtype == tf.int32
    img0, lab0 = examples[0]
    np.testing.assert_array_equal(labels[0, 8:40].numpy(), lab0[:, 4:44])
    np.testing.assert_array_equal(images[0, 8:40, :, 0].numpy(), img0[:, 4:44, 0])
    assert (labels[:, :8].numpy() == 255).all() and (labels[:, 40:].numpy() == 255).all()
    batches = list(data.make_pipeline(src, 3, crop_size=None, training=False, cache=False))
    assert [b[1].shape[0] for b in batches] == [3, 1]  # no drop_remainder in evaluation
    np.testing.assert_array_equal(batches[1][1][0].numpy(), examples[3][1])


def test_uncached_training_pipeline_sees_every_example(folder):
    root, _ = folder
    src = data.get_source("folder", "train", data_dir=root, num_classes=5)
    ds = data.make_pipeline(src, 2, crop_size=(32, 48), cache=False, scale_range=(1.0, 1.0),
                            flip=False, color_jitter=False)
    seen = sorted(np.round(i[:, :, 1].numpy()).astype(int).tobytes() for i, _ in ds.unbatch())
    want = sorted(e[0][:, :, 1].astype(int).tobytes() for e in folder[1])
    assert seen == want  # scale 1, no crop: every example exactly once


@pytest.mark.parametrize("crop_size", [(30, 48), (0, 48), (-8, 48), (32,), "32x48"])
def test_bad_crop_size(folder, crop_size):
    src = data.get_source("folder", "train", data_dir=folder[0], num_classes=5)
    with pytest.raises(ValueError, match="crop_size"):
        data.make_pipeline(src, 2, crop_size=crop_size, label_downsample=8)


# ---------------------------------------------------------------- class weights

def _weights_fixture(root):
    a = np.array([[0, 0, 0, 0], [0, 0, 0, 0], [1, 1, 1, 1], [255, 255, 255, 255]])
    b = np.array([[0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0], [255, 255, 255, 255]])
    for name, label in (("a", a), ("b", b)):
        _png(root / "train" / "images" / f"{name}.png", np.zeros((4, 4, 3)))
        _png(root / "train" / "masks" / f"{name}.png", label)
    # Pixels: class 0 = 20, class 1 = 4, class 2 = 0; 12 labelled pixels per image.
    return data.get_source("folder", "train", data_dir=root, num_classes=3)


def test_class_weights_by_hand(tmp_path):
    src = _weights_fixture(tmp_path)
    with pytest.warns(UserWarning, match="class_2"):
        enet = data.class_weights(src, method="enet", c=1.02)
    expected = [1 / np.log(1.02 + 20 / 24), 1 / np.log(1.02 + 4 / 24), 0.0]
    np.testing.assert_allclose(enet, expected, rtol=1e-6)
    assert enet.dtype == np.float32
    with pytest.warns(UserWarning):
        median = data.class_weights(src, method="median")
    # freq0 = 20 / 24, freq1 = 4 / 12; median = 7 / 12.
    np.testing.assert_allclose(median, [0.7, 1.75, 0.0], rtol=1e-6)
    with pytest.raises(ValueError, match="method"):
        data.class_weights(src, method="log")


def test_class_weights_cache_is_reused(tmp_path, monkeypatch):
    src = _weights_fixture(tmp_path / "data")
    cache = tmp_path / "cache"
    with pytest.warns(UserWarning):
        first = data.class_weights(src, cache_dir=cache)
    files = list(cache.glob("class_weights_*.json"))
    assert len(files) == 1 and not list(cache.glob(".tmp-*"))
    assert json.loads(files[0].read_text())["key"]["method"] == "enet"

    def no_counting(source):
        raise AssertionError("counted again")

    monkeypatch.setattr(class_balance, "count_pixels", no_counting)
    np.testing.assert_array_equal(data.class_weights(src, cache_dir=cache), first)
    with pytest.raises(AssertionError, match="counted again"):  # other key: counts again
        data.class_weights(src, method="enet", c=1.1, cache_dir=cache)


# ---------------------------------------------------------------- bad input

def test_image_without_label_is_named(folder):
    root, _ = folder
    (root / "train" / "masks" / "img2.png").unlink()
    with pytest.raises(ValueError, match=r"have no label.*img2\.png"):
        data.get_source("folder", "train", data_dir=root, num_classes=5)


def test_label_without_image_is_named(folder):
    root, _ = folder
    (root / "train" / "images" / "img1.png").unlink()
    with pytest.raises(ValueError, match=r"have no image.*masks/img1\.png"):
        data.get_source("folder", "train", data_dir=root, num_classes=5)


def test_size_mismatch_names_both_files_and_shapes(folder):
    root, _ = folder
    _png(root / "train" / "masks" / "img3.png", np.zeros((30, 48)))
    with pytest.raises(ValueError) as err:
        data.get_source("folder", "train", data_dir=root, num_classes=5)
    msg = str(err.value)
    assert "images/img3.png is 32x48" in msg and "masks/img3.png is 30x48" in msg
    # Without the eager check, the tf.data map still names both files.
    src = data.get_source("folder", "train", data_dir=root, num_classes=5, check_files=False)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"img3\.png.*img3\.png"):
        _as_numpy(src)


def test_unreadable_and_truncated_images_are_named(folder):
    root, _ = folder
    bad = root / "train" / "images" / "img0.png"
    good_bytes = bad.read_bytes()
    bad.write_bytes(b"not an image at all")
    with pytest.raises(ValueError, match=r"cannot read image file .*img0\.png"):
        data.get_source("folder", "train", data_dir=root, num_classes=5)
    bad.write_bytes(good_bytes[: len(good_bytes) // 2])
    with pytest.raises(ValueError, match=r"img0\.png is truncated"):
        data.get_source("folder", "train", data_dir=root, num_classes=5)


def test_invalid_label_values_error_or_ignore(folder):
    root, _ = folder
    label = np.zeros((32, 48), np.uint8)
    label[0, :3] = (7, 9, 255)
    _png(root / "train" / "masks" / "img1.png", label)
    src = data.get_source("folder", "train", data_dir=root, num_classes=5)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"masks/img1\.png.*\[7 9\]"):
        _as_numpy(src)
    src = data.get_source("folder", "train", data_dir=root, num_classes=5, invalid_labels="ignore")
    fixed = _as_numpy(src)[1][1]
    np.testing.assert_array_equal(fixed[0, :4], [255, 255, 255, 0])
    with pytest.raises(ValueError, match="invalid_labels"):
        data.get_source("folder", "train", data_dir=root, num_classes=5, invalid_labels="skip")


def test_unknown_mask_colour_is_named(tmp_path):
    (tmp_path / "p.json").write_text("[[0, 0, 0], [255, 0, 0]]")
    _png(tmp_path / "train" / "images" / "a.png", np.zeros((2, 2, 3)))
    _png(tmp_path / "train" / "masks" / "a.png", [[[0, 0, 0], [1, 2, 3]], [[0, 0, 0]] * 2])
    src = data.get_source("folder", "train", data_dir=tmp_path, palette_file=tmp_path / "p.json")
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"a\.png.*\[\[1 2 3\]\]"):
        _as_numpy(src)


def test_empty_or_missing_folder_is_named(tmp_path):
    (tmp_path / "train" / "images").mkdir(parents=True)
    (tmp_path / "train" / "masks").mkdir(parents=True)
    with pytest.raises(ValueError, match=r"no image files .* in folder .*train/images"):
        data.get_source("folder", "train", data_dir=tmp_path, num_classes=2)
    with pytest.raises(ValueError, match=r"image folder .*val/images does not exist"):
        data.get_source("folder", "val", data_dir=tmp_path, num_classes=2)
    with pytest.raises(ValueError, match="num_classes"):
        data.get_source("folder", "train", data_dir=tmp_path)


def test_evaluation_batches_images_of_different_sizes(tmp_path):
    # Validation and evaluate() batch a split at its own size: a folder of mixed sizes once crashed.
    rng = np.random.default_rng(0)
    for name, (h, w) in {"a": (30, 44), "b": (40, 56), "c": (16, 16)}.items():
        _png(tmp_path / "val" / "images" / f"{name}.png", rng.integers(0, 256, (h, w, 3)))
        _png(tmp_path / "val" / "masks" / f"{name}.png", np.full((h, w), 1))
    src = data.get_source("folder", "val", data_dir=tmp_path, num_classes=3)
    batches = list(data.make_pipeline(src, 2, None, training=False, pad_to_multiple=8))
    assert [tuple(i.shape) for i, _ in batches] == [(2, 40, 56, 3), (1, 16, 16, 3)]
    images, labels = batches[0]
    assert (labels[0, :30, :44].numpy() == 1).all() and (labels[0, 30:].numpy() == 255).all()
    assert (images[0, 30:].numpy() == 0).all()
    _, small = next(iter(data.make_pipeline(src, 2, None, training=False, pad_to_multiple=8, label_downsample=8)))
    assert small.shape == (2, 5, 7)  # labels of the padded images, downsampled
    assert [tuple(i.shape) for i, _ in data.make_pipeline(src, 3, None, training=False)] == [(3, 40, 56, 3)]


def test_fixed_scale_crops_and_pads_by_slicing(tmp_path):
    src = _aligned_source(tmp_path, n=4, h=48, w=64)
    originals = {img[..., 1].tobytes(): (img, lab) for img, lab in
                 ((i.numpy(), l.numpy()) for i, l in src.dataset())}
    ds = data.make_pipeline(src, 4, crop_size=(56, 40), seed=3, scale_range=(1.0, 1.0), color_jitter=False)
    for images, labels in ds:
        for image, label in zip(images.numpy(), labels.numpy()):
            # 56 > 48: 8 rows of padding (label 255, image 0); 40 < 64: a window of the columns.
            valid = label != 255
            rows = np.flatnonzero(valid.any(axis=1))
            assert len(rows) == 48 and (image[~valid.any(axis=1)] == 0).all()
            found = False
            for original, original_label in originals.values():
                for flipped_image, flipped_label in ((original, original_label), (original[:, ::-1], original_label[:, ::-1])):
                    for left in range(64 - 40 + 1):
                        if np.array_equal(image[rows], flipped_image[:, left:left + 40]):
                            np.testing.assert_array_equal(label[rows], flipped_label[:, left:left + 40])
                            found = True
                            break
                    if found:
                        break
                if found:
                    break
            assert found, "the crop is not a window of a source image"


def test_cache_modes_follow_the_budget_and_a_disk_cache_replays_the_split(tmp_path):
    src = data.get_source("synthetic", "train", num_examples=4, height=32, width=48)
    size = 4 * 32 * 48 * 4  # uint8 image (3 channels) and label per example
    assert data.choose_cache(src, "auto", budget=size) == "memory"
    assert data.choose_cache(src, "auto", str(tmp_path), budget=size - 1) == "disk"
    assert data.choose_cache(src, "auto", budget=size - 1) == "none"
    assert (data.choose_cache(src, True), data.choose_cache(src, False)) == ("memory", "none")
    with pytest.raises(ValueError, match="cache must be one of"):
        data.choose_cache(src, "ssd")
    with pytest.raises(ValueError, match="needs cache_dir"):
        data.choose_cache(src, "disk")
    (tmp_path / "notes.txt").write_text("not a cache")

    def batches(**kwargs):
        ds = data.make_pipeline(src, 4, None, training=False, **kwargs)
        return [(x.numpy(), y.numpy()) for x, y in ds]

    def same(a, b):
        return len(a) == len(b) and all(np.array_equal(u, v) for x, y in zip(a, b) for u, v in zip(x, y))

    expected = batches(cache="none")
    assert same(batches(cache="disk", cache_dir=str(tmp_path)), expected)  # writes the cache
    (index,) = tmp_path.glob("synthetic_train_*.index")
    assert same(batches(cache="disk", cache_dir=str(tmp_path)), expected)  # reads it
    # A cache a killed run left half written (its lock file still there) is written again, not read.
    prefix = str(index)[:-len(".index")]
    lock = Path(prefix + "_0.lockfile")
    lock.write_text("")
    assert same(batches(cache="disk", cache_dir=str(tmp_path)), expected)
    assert not lock.exists() and index.exists() and (tmp_path / "notes.txt").exists()


def _big_folder(root, n=40, size=(1024, 1536)):
    """A `folder` train split of `n` large, cheaply encoded images: about 6.3 MB each decoded."""
    rng = np.random.default_rng(0)
    for i in range(n):
        label = np.kron(rng.integers(0, 3, (size[0] // 64, size[1] // 64)), np.ones((64, 64))).astype(np.uint8)
        _png(root / "train" / "images" / f"{i:03d}.png", np.stack([label * 80, 255 - label * 80, label], -1))
        _png(root / "train" / "masks" / f"{i:03d}.png", label)


def _rss_mb():
    with open("/proc/self/status") as f:
        return int(next(line for line in f if line.startswith("VmRSS:")).split()[1]) // 1024


def test_data_over_the_memory_budget_is_cached_on_disk_and_memory_stays_bounded(tmp_path):
    _big_folder(tmp_path / "data")  # 40 x 6.3 MB = 250 MB decoded
    src = data.get_source("folder", "train", str(tmp_path / "data"), num_classes=3)
    budget = 10 * 2**20
    assert data.choose_cache(src, "auto", str(tmp_path / "cache"), budget=budget) == "disk"

    def growth(**cache):
        """RSS added by one epoch of the pipeline, while the pipeline is alive."""
        ds = data.make_pipeline(src, 8, (64, 64), training=True, cache_budget=budget, **cache)
        before = _rss_mb()
        assert sum(1 for _ in ds) == 5
        grown = _rss_mb() - before
        del ds
        return grown

    disk = growth(cache="auto", cache_dir=str(tmp_path / "cache"))
    memory = growth(cache="memory")
    assert any(p.name.endswith(".index") for p in (tmp_path / "cache").iterdir())
    # The in-memory cache holds the 250 MB of decoded images; from disk, only the shuffle
    # buffer that fits the budget (one image here) stays.
    print(f"RSS growth: disk cache {disk} MB, memory cache {memory} MB")
    assert memory > 180 and disk < 100 and memory - disk > 120, (memory, disk)
