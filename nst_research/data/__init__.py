"""LightningDataModules of images in [-1, 1] for GANs; `conf/data/*.yaml` names one by `_target_`."""
