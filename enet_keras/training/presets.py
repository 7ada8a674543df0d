"""Named training recipes, as data: `TrainConfig.from_preset(name, **overrides)` builds one,
`list_presets()` lists them, and `tools/train.py --preset NAME` (by default the preset named
like `--dataset`) runs one, so Python users and the command line get the same run."""

# name: description and the TrainConfig fields that differ from its defaults (the paper's).
PRESETS = {
    "synthetic": {
        "description": "The README's main job: the embedded synthetic road scenes at 128x160, both "
                       "stages, small enough to finish in minutes on 2 CPU cores and still learn visibly",
        "config": {
            "dataset": "synthetic", "height": 128, "width": 160, "batch_size": 8, "encoder_epochs": 6,
            "decoder_epochs": 8, "learning_rate": 5e-3, "dataset_options": {"height": 128, "width": 160},
        },
    },
    "camvid": {
        "description": "PyTorch-ENet's one-stage CamVid recipe (docs/training.md): full 360x480 frames, "
                       "Adam 5e-4, weight decay 2e-4, batch 10, 100 epochs of poly decay, random flips",
        "config": {
            "dataset": "camvid", "height": 360, "width": 480, "batch_size": 10, "encoder_epochs": 0,
            "decoder_epochs": 100, "learning_rate": 5e-4, "scale_range": (1.0, 1.0), "flip": True,
            "color_jitter": False,
        },
    },
    "cityscapes": {
        "description": "The paper's two stages on Cityscapes (19 classes): 100 encoder and 100 decoder "
                       "epochs, Adam 5e-4, weight decay 2e-4, batch 10, c = 1.2 then 1.02; 512x1024 "
                       "crops of the full frames (the paper downsampled frames to that size; crops keep "
                       "the scale that validation at full 1024x2048 sees), random flips",
        "config": {
            "dataset": "cityscapes", "height": 512, "width": 1024, "batch_size": 10, "encoder_epochs": 100,
            "decoder_epochs": 100, "learning_rate": 5e-4, "scale_range": (1.0, 1.0), "flip": True,
            "color_jitter": False,
        },
    },
}


def list_presets():
    """The preset names, for `TrainConfig.from_preset`.

    Example:

    >>> list_presets()
    ('synthetic', 'camvid', 'cityscapes')
    """
    return tuple(PRESETS)


def get_preset(name):
    """The `{"description", "config"}` entry of preset `name`.

    Raises:
        ValueError: naming the preset and listing the valid names.
    """
    if name not in PRESETS:
        raise ValueError(f"Unknown preset {name!r}; valid presets: {', '.join(PRESETS)}")
    return PRESETS[name]
