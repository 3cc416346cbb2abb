"""Datasets; each returns train and validation (CIFAR-10: test) splits as numpy arrays."""
from dlf.data.spiral import Split, spiral  # noqa: F401


def build(cfg):
    """(train, val) splits for a DatasetConfig."""
    if cfg.name == "spiral":
        return spiral(cfg.classes, cfg.per_class, cfg.noise, cfg.turns, cfg.train_seed, cfg.val_seed)
    if cfg.name == "cifar10":
        from dlf.data import cifar10

        return cifar10.load(cfg.source, cfg.path, cfg.data_dir, cfg.subset)
    raise ValueError(f"dataset.name={cfg.name!r} is not allowed; choose one of: spiral, cifar10")
