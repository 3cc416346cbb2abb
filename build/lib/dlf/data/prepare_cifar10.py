"""Prepare tensorflow-datasets' cifar10 from a local copy, offline and without TensorFlow.

    python -m dlf.data.prepare_cifar10 SOURCE [--data_dir D]

SOURCE is cifar-10-binary.tar.gz (what the stock builder downloads), cifar-10-python.tar.gz, or an
extracted cifar-10-batches-py directory. The stock builder needs TensorFlow to prepare the dataset;
this subclass of it reads SOURCE itself and writes the array_record format, the layout that the
stock `tfds.data_source('cifar10', data_dir=D)` reads without TensorFlow (dataset.source=tfds).
"""
from __future__ import annotations

import argparse
import io
import tarfile
from pathlib import Path

import numpy as np

from dlf.data.cifar10 import NAMES, TEST_FILE, TRAIN_FILES, Split, concat, read_batches_py, unpickle_batch

BIN_DIR, PY_DIR = "cifar-10-batches-bin", "cifar-10-batches-py"
WANT = "want cifar-10-binary.tar.gz, cifar-10-python.tar.gz or a cifar-10-batches-py directory"


def parse_bin(blob: bytes, name: str) -> Split:
    """One file of the binary version: records of 1 label byte then 3072 bytes, channel-major."""
    if len(blob) == 0 or len(blob) % 3073:
        raise ValueError(f"{name}: {len(blob)} bytes is not a whole number of 3073-byte records")
    rows = np.frombuffer(blob, np.uint8).reshape(-1, 3073)
    if rows[:, 0].max() >= 10:
        raise ValueError(f"{name}: labels outside 0..9")
    x = rows[:, 1:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return Split(np.ascontiguousarray(x), rows[:, 0].astype(np.int32))


def read_tarball(path: Path) -> tuple[Split, Split]:
    """(train, test) from the binary or the python tarball of the CIFAR-10 website."""
    try:
        tar = tarfile.open(path)
    except tarfile.TarError:
        raise ValueError(f"{path} is not a tar archive ({WANT})") from None
    with tar:
        names = set(tar.getnames())
        binary = f"{BIN_DIR}/{TEST_FILE}.bin" in names
        folder, suffix = (BIN_DIR, ".bin") if binary else (PY_DIR, "")

        def read(stem):
            member = f"{folder}/{stem}{suffix}"
            if member not in names:
                raise ValueError(f"{path} has no {member} ({WANT})")
            blob = tar.extractfile(member).read()
            return parse_bin(blob, member) if binary else unpickle_batch(io.BytesIO(blob), member)

        return concat([read(stem) for stem in TRAIN_FILES]), read(TEST_FILE)


def read_source(source: str) -> tuple[Split, Split]:
    """(train, test) from a tarball or a cifar-10-batches-py directory."""
    path = Path(source).expanduser()
    return read_batches_py(str(path)) if path.is_dir() else read_tarball(path)


def prepare(source: str, data_dir: str | None) -> Path:
    """Write cifar10 (train, test; ids train_00000.. in the original order) under data_dir in the
    array_record format; returns the dataset directory. If it is already there, SOURCE is not read."""
    if not Path(source).expanduser().exists():
        raise ValueError(f"{source}: no such file or directory ({WANT})")
    import PIL.Image
    from tensorflow_datasets.image_classification.cifar import Cifar10

    class LocalCifar10(Cifar10, skip_registration=True):
        """The stock builder (same name, version, features, keys and ids) fed from SOURCE."""
        name = "cifar10"

        def _split_generators(self, dl_manager):
            self.info.features["label"].names = list(NAMES)
            train, test = read_source(source)
            return {"train": self._generate_examples("train_", train),
                    "test": self._generate_examples("test_", test)}

        def _generate_examples(self, prefix, split):
            for i, (image, label) in enumerate(zip(split.x, split.y)):
                yield i, {"id": f"{prefix}{i:05d}", "image": PIL.Image.fromarray(image), "label": int(label)}

    data_dir = None if data_dir is None else str(Path(data_dir).expanduser())
    builder = LocalCifar10(data_dir=data_dir, file_format="array_record")
    builder.download_and_prepare()
    return Path(builder.data_dir)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m dlf.data.prepare_cifar10",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("source", help="cifar-10-binary.tar.gz, cifar-10-python.tar.gz or cifar-10-batches-py")
    parser.add_argument("--data_dir", default=None, help="tfds data directory (default: tfds' own)")
    args = parser.parse_args(argv)
    try:
        out = prepare(args.source, args.data_dir)
    except (OSError, ValueError) as e:
        parser.exit(2, f"prepare_cifar10: {' '.join(str(e).split())}\n")
    print(f"cifar10 is in {out}; use dataset.source=tfds dataset.data_dir={out.parent.parent}")


if __name__ == "__main__":
    main()
