"""CIFAR-10 data layer: the local pickle directory, tfds prepared offline, the real images, errors."""
from __future__ import annotations

import io
import pickle
import socket
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest

from dlf.data import cifar10
from dlf.data.prepare_cifar10 import main as prepare_main
from dlf.data.prepare_cifar10 import read_source
from dlf.errors import ConfigError

REAL = Path(__file__).resolve().parents[2] / "shared" / "data"
BATCHES = [f"data_batch_{i}" for i in range(1, 6)]


def fake_cifar(n_train=10, n_test=4, seed=0):
    """Random images (NHWC uint8) and labels, split by split."""
    rng = np.random.default_rng(seed)
    return [cifar10.Split(rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8),
                          rng.integers(0, 10, n).astype(np.int32)) for n in (n_train, n_test)]


def rows(x):
    """The CIFAR row layout written independently of the loader: R plane, G plane, B plane."""
    return np.concatenate([x[..., c].reshape(len(x), 1024) for c in range(3)], axis=1)


def batch_pickle(x, y, name):
    """A batch as the official files hold it: protocol 2, bytes keys, numpy 1 module names."""
    blob = pickle.dumps({b"batch_label": name.encode(), b"labels": [int(v) for v in y], b"data": rows(x),
                         b"filenames": [f"img_{i}.png".encode() for i in range(len(y))]}, protocol=2)
    return blob.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")


def write_batches_py(root, train, test):
    """A cifar-10-batches-py directory: 5 train batches (train split in order), test_batch, meta."""
    root.mkdir(parents=True)
    for name, idx in zip(BATCHES, np.array_split(np.arange(len(train.y)), 5)):
        (root / name).write_bytes(batch_pickle(train.x[idx], train.y[idx], name))
    (root / "test_batch").write_bytes(batch_pickle(test.x, test.y, "testing batch 1 of 1"))
    meta = {b"label_names": [n.encode() for n in cifar10.NAMES], b"num_cases_per_batch": 10000,
            b"num_vis": 3072}
    (root / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))
    return root


def write_binary_tarball(path, train, test):
    """cifar-10-binary.tar.gz: cifar-10-batches-bin/*.bin, records of 1 label byte + 3072 bytes."""
    def record_bytes(s):
        return np.concatenate([s.y[:, None].astype(np.uint8), rows(s.x)], axis=1).tobytes()

    files = {f"{b}.bin": cifar10.Split(train.x[i], train.y[i])
             for b, i in zip(BATCHES, np.array_split(np.arange(len(train.y)), 5))}
    files["test_batch.bin"] = test
    with tarfile.open(path, "w:gz") as tar:
        for name, blob in [*((n, record_bytes(s)) for n, s in files.items()),
                           ("batches.meta.txt", "\n".join(cifar10.NAMES).encode() + b"\n")]:
            info = tarfile.TarInfo(f"cifar-10-batches-bin/{name}")
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
    return path


def assert_same(got, want):
    assert got.x.dtype == np.uint8 and got.x.shape == want.x.shape and got.x.flags.c_contiguous
    assert got.y.dtype == np.int32
    np.testing.assert_array_equal(got.x, want.x)
    np.testing.assert_array_equal(got.y, want.y)


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a connection fails the test."""
    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args}")
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


# --- source=local -----------------------------------------------------------------------------

def test_local_reads_the_pickle_format_exactly(tmp_path):
    train, test = fake_cifar()
    root = write_batches_py(tmp_path / "cifar-10-batches-py", train, test)
    got_train, got_test = cifar10.load("local", str(root), None, None)
    assert_same(got_train, train)
    assert_same(got_test, test)
    # one pixel by hand: row i, byte c*1024 + h*32 + w is channel c of pixel (h, w)
    data = pickle.loads((root / "data_batch_1").read_bytes(), encoding="bytes")[b"data"]
    assert got_train.x[1, 5, 7, 2] == data[1, 2 * 1024 + 5 * 32 + 7]
    # the directory that holds cifar-10-batches-py (where the tarball was extracted) works too
    assert_same(cifar10.load("local", str(tmp_path), None, None)[1], test)


def test_subset_is_a_class_balanced_draw_in_the_original_order(tmp_path):
    train, test = fake_cifar()
    root = write_batches_py(tmp_path / "b", train, test)
    sub_train, sub_test = cifar10.load("local", str(root), None, 3)
    keep = cifar10.balanced(train.y, 3)
    assert_same(sub_train, cifar10.Split(train.x[keep], train.y[keep]))
    assert len(set(sub_train.y.tolist())) == min(3, len(set(train.y.tolist())))
    sub_train, sub_test = cifar10.load("local", str(root), None, 7)  # more than the 4 test images
    assert len(sub_train.y) == 7
    assert_same(sub_test, test)


def test_balanced_subset_of_a_file_stored_class_by_class():
    """The first n images of a class-sorted file are one class; the draw has every class, n // C
    each (the rest to the first classes that still have images), and is the same every time."""
    y = np.repeat(np.arange(10), 50)
    keep = cifar10.balanced(y, 25)
    counts = np.bincount(y[keep], minlength=10)
    assert counts.sum() == 25 and counts.min() == 2 and counts.max() == 3
    assert np.array_equal(keep, np.sort(keep)) and np.array_equal(keep, cifar10.balanced(y, 25))
    y_few = np.array([0] * 2 + [1] * 20)
    assert np.bincount(y_few[cifar10.balanced(y_few, 10)]).tolist() == [2, 8]


# --- source=tfds, prepared offline without TensorFlow -----------------------------------------

def test_tfds_prepared_offline_from_the_binary_tarball(tmp_path, no_network):
    train, test = fake_cifar(n_train=12, n_test=5)
    tarball = write_binary_tarball(tmp_path / "cifar-10-binary.tar.gz", train, test)
    prepare_main([str(tarball), "--data_dir", str(tmp_path / "tfds")])
    got_train, got_test = cifar10.load("tfds", None, str(tmp_path / "tfds"), None)
    assert_same(got_train, train)
    assert_same(got_test, test)
    sub_train, sub_test = cifar10.load("tfds", None, str(tmp_path / "tfds"), 4)
    k_train, k_test = cifar10.balanced(train.y, 4), cifar10.balanced(test.y, 4)  # as the local source draws
    assert_same(sub_train, cifar10.Split(train.x[k_train], train.y[k_train]))
    assert_same(sub_test, cifar10.Split(test.x[k_test], test.y[k_test]))


def test_prepare_reads_all_three_inputs_alike(tmp_path):
    train, test = fake_cifar()
    root = write_batches_py(tmp_path / "cifar-10-batches-py", train, test)
    with tarfile.open(tmp_path / "cifar-10-python.tar.gz", "w:gz") as tar:
        tar.add(root, arcname="cifar-10-batches-py")
    binary = write_binary_tarball(tmp_path / "cifar-10-binary.tar.gz", train, test)
    for source in (root, tmp_path / "cifar-10-python.tar.gz", binary):
        got_train, got_test = read_source(str(source))
        assert_same(got_train, train)
        assert_same(got_test, test)


# --- the real images (a JPEG copy of CIFAR-10 in ../shared/data) ------------------------------

@pytest.fixture(scope="session")
def real_batches(tmp_path_factory):
    if not (REAL / "cifar10_jpeg.npz").exists():
        pytest.skip(f"no {REAL / 'cifar10_jpeg.npz'}")
    out = tmp_path_factory.mktemp("real") / "cifar-10-batches-py"
    subprocess.run([sys.executable, str(REAL / "cifar10_jpeg_to_batches.py"), str(out)], check=True,
                   capture_output=True, timeout=300)
    return out


@pytest.mark.slow  # > ~10 s on 2 busy cores: make test only
def test_real_cifar10_through_local(real_batches):
    train, test = cifar10.load("local", str(real_batches), None, None)
    assert train.x.shape == (50000, 32, 32, 3) and test.x.shape == (10000, 32, 32, 3)
    assert np.bincount(train.y).tolist() == [5000] * 10 and np.bincount(test.y).tolist() == [1000] * 10
    mean, std = cifar10.channel_stats(train.x)
    np.testing.assert_allclose(mean / 255, [0.4914, 0.4822, 0.4465], atol=3e-3)
    np.testing.assert_allclose(std / 255, [0.2470, 0.2435, 0.2616], rtol=3e-2)  # the JPEG copy is ~1% lower


# --- bad inputs: one line naming the key, both sources and how to get the data ------------------

def corrupt(tmp_path, how):
    root = write_batches_py(tmp_path / "b", *fake_cifar())
    if how == "truncated":
        blob = (root / "test_batch").read_bytes()
        (root / "test_batch").write_bytes(blob[: len(blob) // 2])
    elif how == "wrong shape":
        d = {b"data": np.zeros((4, 3000), np.uint8), b"labels": [0] * 4}
        (root / "test_batch").write_bytes(pickle.dumps(d, protocol=2))
    elif how == "code":  # a pickle that would run a command when loaded
        (root / "test_batch").write_bytes(b"cos\nsystem\n(S'echo pwned'\ntR.")
    return root


@pytest.mark.parametrize("how, expected", [("truncated", "test_batch is not a CIFAR-10 python batch"),
                                           ("wrong shape", "data (4, 3000)"),
                                           ("code", "unexpected object os.system")])
def test_malformed_file_is_one_line_naming_it(tmp_path, how, expected):
    root = corrupt(tmp_path, how)
    with pytest.raises(ConfigError) as e:
        cifar10.load("local", str(root), None, None)
    msg = str(e.value)
    assert "\n" not in msg and expected in msg and str(root / "test_batch") in msg
    assert "dataset.path=" in msg and "cifar-10-python.tar.gz" in msg and "dataset.source=tfds" in msg


@pytest.mark.parametrize("path", ["missing", "empty", None])
def test_missing_directory_is_one_line_naming_both_sources(tmp_path, path):
    if path is not None:
        (tmp_path / "empty").mkdir()
        path = str(tmp_path / path)
    with pytest.raises(ConfigError) as e:
        cifar10.load("local", path, None, None)
    msg = str(e.value)
    assert "\n" not in msg and f"dataset.path={path}" in msg
    assert "dataset.source=local" in msg and "dataset.source=tfds" in msg
    assert "cifar-10-python.tar.gz" in msg and "python -m dlf.data.prepare_cifar10" in msg
    if path is not None:
        assert "missing data_batch_1" in msg


def test_tfds_without_prepared_data_is_one_line(tmp_path, no_network):
    with pytest.raises(ConfigError) as e:
        cifar10.load("tfds", None, str(tmp_path), None)
    msg = str(e.value)
    assert "\n" not in msg and f"dataset.data_dir={tmp_path}" in msg and "no prepared cifar10" in msg
    assert "dataset.source=local" in msg and "prepare_cifar10" in msg


@pytest.mark.parametrize("source, subset, expected", [("hf", None, "dataset.source='hf' is not allowed"),
                                                       ("local", 0, "dataset.subset=0 must be a positive"),
                                                       ("tfds", -5, "dataset.subset=-5 must be a positive")])
def test_bad_values(source, subset, expected):
    with pytest.raises(ConfigError, match=expected.replace("(", r"\(")) as e:
        cifar10.load(source, "/nowhere", None, subset)
    assert "\n" not in str(e.value)


def test_prepare_cli_reports_a_bad_source_in_one_line(tmp_path, capsys):
    (tmp_path / "x.tar.gz").write_bytes(b"not a tarball")
    with pytest.raises(SystemExit) as e:
        prepare_main([str(tmp_path / "x.tar.gz"), "--data_dir", str(tmp_path / "d")])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.count("\n") == 1 and "x.tar.gz" in err


# --- channel statistics ------------------------------------------------------------------------

def test_channel_stats_match_numpy():
    x = np.random.default_rng(1).integers(0, 256, (9, 5, 4, 3), dtype=np.uint8)
    x[0, 0, 0] = [0, 255, 7]
    mean, std = cifar10.channel_stats(x)
    ref = x.reshape(-1, 3).astype(np.float64)
    assert mean.dtype == std.dtype == np.float64 and mean.shape == std.shape == (3,)
    np.testing.assert_allclose(mean, ref.mean(axis=0), rtol=1e-13)
    np.testing.assert_allclose(std, ref.std(axis=0), rtol=1e-13)
