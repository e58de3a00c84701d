"""What a style transfer's config must satisfy, checked before torch is loaded.

`check(cfg)` runs in the app before the task module is imported, so a missing or unreadable image,
a bad number or an unknown layer name is refused in one line at once; `run` calls it again for code
that runs the task directly. Checks that need the network or the images' pixels stay in the task.
"""

from omegaconf import DictConfig, ListConfig, OmegaConf

from nst_research.errors import UserInputError, check_nonnegative
from nst_research.features.layers import check_layers
from nst_research.nst.sources import MIN_IMAGE_SIZE, check_image_file
from nst_research.nst.styles import style_list

BATCH_KEYS = ("style_weight", "content_weight", "tv_weight", "seed")  # what a batched sweep may vary
INIT_CHOICES = ("content", "noise", "style")


def check(cfg: DictConfig) -> None:
    check_run_settings(cfg)
    check_one_device(cfg.trainer)
    check_one_precision(cfg.trainer)
    check_layer_names(cfg)
    check_images(cfg)


def check_run_settings(cfg: DictConfig) -> None:
    for key, minimum in (("iterations", 1), ("save_every", 1), ("image_size", MIN_IMAGE_SIZE)):
        value = cfg[key]
        if not isinstance(value, int) or value < minimum:
            raise UserInputError(f"{key}={value} must be an integer >= {minimum}")
    for key in BATCH_KEYS:
        if isinstance(cfg[key], ListConfig) and not cfg.get("batch_sweep"):
            raise UserInputError(f"{key}={cfg[key]} is a list: add batch_sweep=true to optimise one image per "
                                 f"value in one batch (Adam or SGD), or sweep it with -m {key}=...,...")
    for key in ("content_weight", "style_weight", "tv_weight"):
        for value in list(cfg[key]) if isinstance(cfg[key], ListConfig) else [cfg[key]]:
            check_nonnegative(**{key: value})


def check_one_device(trainer: DictConfig) -> None:
    """Style transfer optimises one image on one device: refuse a multi-device or multi-process trainer."""
    strategy, devices, nodes = trainer.get("strategy", "auto"), trainer.get("devices", 1), trainer.get("num_nodes", 1)
    one_device = devices in (1, "1") or (isinstance(devices, ListConfig) and len(devices) == 1)
    if strategy != "auto" or not one_device or nodes != 1:
        raise UserInputError(f"task=nst optimises one image on one device, but the trainer asks for "
                             f"strategy={strategy} devices={devices} num_nodes={nodes}; "
                             "use trainer=default, cpu, gpu or mps")


def check_one_precision(trainer: DictConfig) -> None:
    """Style transfer's number format is `precision=` alone (bf16 for the objective, the image and optimizer in
    fp32, L-BFGS included); Lightning's `trainer.precision`, which would autocast the whole step, stays fp32."""
    value = trainer.get("precision", "32-true")
    if str(value) not in ("32", "32-true"):
        raise UserInputError(f"task=nst sets its number format with precision=32, bf16, fp16 or auto, not "
                             f"trainer.precision={value}; drop that override and use e.g. precision=bf16")


def check_layer_names(cfg: DictConfig) -> None:
    """Every name in layers.content and layers.style is a layer of the network (before any count check)."""
    names = [name for kind in ("content", "style") for name in OmegaConf.to_object(cfg.layers[kind])]
    check_layers(cfg.model.get("arch", "vgg19"), names)


def check_images(cfg: DictConfig) -> None:
    """Every input image exists and is readable, from its header alone."""
    limit = cfg.max_megapixels
    check_image_file(cfg.content, limit)
    for spec in style_list(OmegaConf.to_object(cfg.style) if OmegaConf.is_config(cfg.style) else cfg.style):
        check_image_file(spec, limit)
    masks = cfg.masks
    for spec in ([masks] if isinstance(masks, str) else list(masks or [])):
        check_image_file(spec, limit, what="mask")
    if cfg.init not in INIT_CHOICES:
        try:
            check_image_file(cfg.init, limit)
        except UserInputError as error:
            raise UserInputError(f"init={cfg.init}: {error}; or use init=content, noise or style") from None
