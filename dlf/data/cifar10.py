"""CIFAR-10 as uint8 NHWC arrays in the original order, from tensorflow-datasets or a local directory."""
from __future__ import annotations

import importlib
import io
import pickle
from pathlib import Path

import numpy as np

from dlf.data.spiral import Split
from dlf.errors import ConfigError

SOURCES = ("tfds", "local")
NAMES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_FILE = "test_batch"
HOW_TO_GET = ("download https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz and extract it "
              "(dataset.source=local dataset.path=.../cifar-10-batches-py), or prepare it once with "
              "`python -m dlf.data.prepare_cifar10 <tarball or cifar-10-batches-py> --data_dir D` "
              "(dataset.source=tfds dataset.data_dir=D); see docs/cifar10.md")


def load(source: str, path: str | None, data_dir: str | None, subset: int | None) -> tuple[Split, Split]:
    """(train, test) with x uint8 [N, 32, 32, 3] and y int32 [N], in the original CIFAR-10 order.
    source='local' reads the cifar-10-batches-py directory `path`; source='tfds' reads the
    tensorflow-datasets `cifar10` prepared under `data_dir` (None: the tfds default directory).
    subset=n keeps a class-balanced draw of n images of each split (fixed seed; all of a split that
    has fewer), in the original order: a file stored class by class gives every class."""
    if source not in SOURCES:
        raise ConfigError(f"dataset.source={source!r} is not allowed; choose one of: {', '.join(SOURCES)}")
    if subset is not None and subset <= 0:
        raise ConfigError(f"dataset.subset={subset} must be a positive number of images, or null for all")
    where = f"dataset.path={path}" if source == "local" else f"dataset.data_dir={data_dir}"
    try:
        train, test = read_batches_py(path) if source == "local" else read_tfds(data_dir, subset)
    except ValueError as e:
        raise ConfigError(f"dataset.source={source} {where}: {e}; {HOW_TO_GET}") from None
    if subset is not None and source == "local":
        train, test = (Split(s.x[keep].copy(), s.y[keep].copy()) for s in (train, test)
                       for keep in [balanced(s.y, subset)])
    return train, test


def balanced(y: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """Sorted indices of n of the labels y, as even over the classes as they allow (n // C each, the
    rest to the classes that still have images), each class's picks drawn with a fixed seed."""
    y = np.asarray(y)
    if n >= y.size:
        return np.arange(y.size)
    rng = np.random.default_rng(seed)
    pools = {c: list(rng.permutation(np.flatnonzero(y == c))) for c in np.unique(y)}
    picks: list[int] = []
    while len(picks) < n:  # round robin over the classes that have images left
        for c in sorted(pools):
            if pools[c] and len(picks) < n:
                picks.append(int(pools[c].pop()))
    return np.sort(np.asarray(picks))


def channel_stats(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel (mean[C], std[C]) in float64 of uint8 images [..., C], exact: from value counts,
    so no float copy of the images is made."""
    counts = np.stack([np.bincount(c.ravel(), minlength=256) for c in np.moveaxis(x, -1, 0)])
    values = np.arange(256, dtype=np.float64)
    n = counts.sum(axis=1)
    mean = counts @ values / n
    var = (counts * (values[None, :] - mean[:, None]) ** 2).sum(axis=1) / n
    return mean, np.sqrt(var)


def concat(splits: list[Split]) -> Split:
    """The splits one after the other."""
    return Split(np.concatenate([s.x for s in splits]), np.concatenate([s.y for s in splits]))


# --- source=local: the cifar-10-batches-py pickles ---------------------------------------------

_NUMPY_CORE = "numpy._core" if hasattr(np, "_core") else "numpy.core"


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles only what a CIFAR batch holds (numpy arrays, lists, bytes): no code runs."""
    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")}

    def find_class(self, module, name):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"unexpected object {module}.{name}")
        # The official files (numpy 1) name numpy.core, which numpy 2 renamed numpy._core.
        module = module.replace("numpy._core", "numpy.core").replace("numpy.core", _NUMPY_CORE)
        return getattr(importlib.import_module(module), name)


def unpickle_batch(f, name: str) -> Split:
    """One batch from an open binary file: dict with b'data' uint8 [n, 3072] (the 1024 red values of
    an image, then green, then blue, rows first) and b'labels' [n] in 0..9. ValueError if malformed."""
    try:
        d = _ArrayUnpickler(f, encoding="bytes").load()
    except Exception as e:  # truncated or foreign files raise many kinds of errors
        raise ValueError(f"{name} is not a CIFAR-10 python batch ({type(e).__name__}: {e})") from None
    data = d.get(b"data") if isinstance(d, dict) else None
    labels = np.asarray(d.get(b"labels", [])) if isinstance(d, dict) else np.zeros(0)
    if not (isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.ndim == 2
            and data.shape[1] == 3072 and labels.shape == (len(data),) and labels.dtype.kind in "iu"
            and (len(labels) == 0 or 0 <= labels.min() <= labels.max() < 10)):
        shape = getattr(data, "shape", None)
        raise ValueError(f"{name} is not a CIFAR-10 python batch (want b'data' uint8 [n, 3072] and "
                         f"b'labels' [n] in 0..9; got data {shape}, labels {labels.shape})")
    x = np.ascontiguousarray(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
    return Split(x, labels.astype(np.int32))


def read_batches_py(path: str | None) -> tuple[Split, Split]:
    """(train, test) from a cifar-10-batches-py directory (or a directory that contains one);
    ValueError naming the file if one is missing or malformed."""
    if path is None:
        raise ValueError("no directory given (want a cifar-10-batches-py directory)")
    root = Path(path).expanduser()
    if (root / "cifar-10-batches-py").is_dir():
        root = root / "cifar-10-batches-py"
    missing = [f for f in (*TRAIN_FILES, TEST_FILE) if not (root / f).is_file()]
    if missing:
        raise ValueError(f"no cifar-10-batches-py data in {root} (missing {', '.join(missing)})")

    def read(name):
        with open(root / name, "rb") as f:
            return unpickle_batch(f, str(root / name))

    return concat([read(f) for f in TRAIN_FILES]), read(TEST_FILE)


# --- source=tfds: tensorflow-datasets' cifar10, prepared in the array_record format -----------

def read_tfds(data_dir: str | None, subset: int | None = None) -> tuple[Split, Split]:
    """(train, test) from tensorflow-datasets' cifar10 under data_dir (None: tfds' default), as
    tfds.data_source('cifar10', data_dir=data_dir) reads it: without TensorFlow, without downloading,
    only the array_record format. A class-balanced draw of `subset` images of each split (None: all)."""
    try:
        import tensorflow_datasets as tfds
    except ImportError:
        raise ValueError("tensorflow-datasets is not installed (pip install -e '.[cifar]')") from None
    if data_dir is not None:
        data_dir = str(Path(data_dir).expanduser())
    builder = tfds.builder("cifar10", data_dir=data_dir)  # the stock builder, used here to read only
    if not builder.is_prepared():
        raise ValueError(f"no prepared cifar10 in {builder.data_dir}")
    if builder.info.file_format != tfds.core.FileFormat.ARRAY_RECORD:
        raise ValueError(f"cifar10 in {builder.data_dir} is in the {builder.info.file_format.value} format, "
                         "which tfds reads only with TensorFlow; prepare it again in another dataset.data_dir")
    try:  # PNG bytes out: ids are read for all records, images decoded only for those kept
        sources = builder.as_data_source(decoders={"image": tfds.decode.SkipDecoding()})
        return _ordered(sources["train"], "train_", subset), _ordered(sources["test"], "test_", subset)
    except Exception as e:  # a damaged dataset fails in many ways, inside tfds or array_record
        msg = (str(e).splitlines() or [""])[0][:200]
        raise ValueError(f"cannot read cifar10 in {builder.data_dir} ({type(e).__name__}: {msg})") from None


def _ordered(source, prefix: str, subset: int | None) -> Split:
    """The first `subset` records of a tfds split in the original order: records are shuffled on
    disk, and their 'id' field (train_00042) gives the original index."""
    import PIL.Image

    records = source.__getitems__(range(len(source)))
    ids = np.array([int(r["id"].decode().removeprefix(prefix)) for r in records])
    if not np.array_equal(np.sort(ids), np.arange(len(ids))):
        raise ValueError(f"ids of split {prefix[:-1]} are not {prefix}00000..{len(ids) - 1}")
    order = np.argsort(ids)
    keep = order if subset is None else order[balanced(np.array([records[i]["label"] for i in order]), subset)]
    x = np.stack([np.asarray(PIL.Image.open(io.BytesIO(records[i]["image"])).convert("RGB"))
                  for i in keep])
    y = np.array([records[i]["label"] for i in keep], dtype=np.int32)
    return Split(x, y)


def load_config(cfg) -> tuple[Split, Split]:
    """The registered loader (dlf.data.DATASETS["cifar10"])."""
    return load(cfg.source, cfg.path, cfg.data_dir, cfg.subset)
