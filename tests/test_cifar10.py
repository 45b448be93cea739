"""CIFAR-10 loader, on small archives written here in the official format.

The official ``cifar-10-python.tar.gz`` holds ``cifar-10-batches-py/{data_batch_1..5, test_batch,
batches.meta}``, each a protocol-2 pickle of a dict with ``data`` (uint8, n x 3072, CHW order),
``labels``, ``batch_label`` and ``filenames``.  The real archive is not on these machines.
"""

import hashlib
import io
import os
import pickle
import tarfile

import numpy as np
import pytest

from sgn import datasets
from sgn.datasets import DatasetError, load_cifar10

NAMES = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]


@pytest.fixture(autouse=True)
def _isolated(monkeypatch, tmp_path):
    monkeypatch.delenv("SGN_DATA_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


def _batches(n_per_batch=3, seed=0):
    rng = np.random.default_rng(seed)
    out = {}
    for name in NAMES:
        data = rng.integers(0, 256, (n_per_batch, 3072), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, 10, n_per_batch)]
        out[name] = {b"batch_label": f"{name} of 5".encode(), b"labels": labels, b"data": data,
                     b"filenames": [f"img_{name}_{i}.png".encode() for i in range(n_per_batch)]}
    return out


def _pickled(batch):
    return pickle.dumps(batch, protocol=2)  # the official files are protocol-2 (cPickle, highest)


def _write_archive(path, batches, extra=None):
    with tarfile.open(path, "w:gz") as tar:
        members = {name: _pickled(b) for name, b in batches.items()}
        members["batches.meta"] = _pickled({b"label_names": [b"airplane"] * 10, b"num_vis": 3072})
        members.update(extra or {})
        for name, raw in members.items():
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(raw)
            tar.addfile(info, io.BytesIO(raw))
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _write_folder(folder, batches):
    folder.mkdir(parents=True)
    for name, b in batches.items():
        (folder / name).write_bytes(_pickled(b))


def _expected(batches, names):
    x = np.concatenate([batches[n][b"data"] for n in names])
    y = np.concatenate([batches[n][b"labels"] for n in names])
    return x, y


def test_archive_is_read_in_the_official_layout(monkeypatch, tmp_path):
    batches = _batches()
    digest = _write_archive(tmp_path / "cifar-10-python.tar.gz", batches)
    monkeypatch.setattr(datasets, "_CIFAR10_SHA256", digest)
    d = load_cifar10(tmp_path, flatten=True, floatX="float64", download=False)
    x_train, y_train = _expected(batches, NAMES[:5])
    x_test, y_test = _expected(batches, NAMES[5:])
    # Train = the five data batches in order; flattened rows keep the CHW byte order; scaled by 255.
    np.testing.assert_array_equal(d.x_train * 255.0, x_train)
    np.testing.assert_array_equal(d.y_train, y_train)
    np.testing.assert_array_equal(d.x_test * 255.0, x_test)
    np.testing.assert_array_equal(d.y_test, y_test)
    assert d.y_train.dtype == np.int32 and d.x_train.dtype == np.float64


def test_conv_preprocessing_is_per_image_per_channel(monkeypatch, tmp_path):
    batches = _batches()
    monkeypatch.setattr(datasets, "_CIFAR10_SHA256", _write_archive(tmp_path / "cifar-10-python.tar.gz", batches))
    d = load_cifar10(tmp_path, download=False)
    assert d.x_train.shape == (15, 3, 32, 32) and d.x_test.shape == (3, 3, 32, 32)
    assert d.x_train.dtype == np.float32
    raw = batches["data_batch_2"][b"data"][1].reshape(3, 32, 32).astype(np.float64)
    # Channel c of image 1 of batch 2 is bytes [1024 c, 1024 (c + 1)) of its row.
    want = (raw - raw.mean(axis=(1, 2), keepdims=True)) / raw.std(axis=(1, 2), keepdims=True)
    np.testing.assert_allclose(d.x_train[4], want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("nested", [True, False])
def test_extracted_folder_gives_the_same_arrays(monkeypatch, tmp_path, nested):
    batches = _batches(seed=1)
    monkeypatch.setattr(datasets, "_CIFAR10_SHA256", _write_archive(tmp_path / "cifar-10-python.tar.gz", batches))
    from_archive = load_cifar10(tmp_path, download=False)
    root = tmp_path / "x"
    _write_folder(root / "cifar-10-batches-py" if nested else root, batches)
    from_folder = load_cifar10(root, download=False)
    for a, b in zip(from_archive, from_folder):
        np.testing.assert_array_equal(a, b)


def test_sgn_data_dir_is_searched(monkeypatch, tmp_path):
    batches = _batches()
    _write_folder(tmp_path / "data" / "cifar10" / "cifar-10-batches-py", batches)
    monkeypatch.setenv("SGN_DATA_DIR", str(tmp_path / "data"))
    assert load_cifar10(download=False).x_test.shape == (3, 3, 32, 32)


def test_unofficial_archive_is_refused_before_anything_is_unpickled(monkeypatch, tmp_path):
    _write_archive(tmp_path / "cifar-10-python.tar.gz", _batches())
    monkeypatch.setattr(datasets, "_read_cifar_batch", lambda *a: pytest.fail("unpickled an unverified archive"))
    with pytest.raises(DatasetError, match=f"cifar-10-python.tar.gz is corrupt.*expected {datasets._CIFAR10_SHA256}"):
        load_cifar10(tmp_path, download=False)


class _Exploit:
    """Unpickling this calls ``open(path, "w")``: the classic pickle attack, made harmless."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_a_pickle_that_runs_code_is_refused(tmp_path):
    batches = _batches()
    target = tmp_path / "pwned"
    batches["test_batch"][b"data"] = _Exploit(str(target))
    _write_folder(tmp_path / "d", batches)
    with pytest.raises(DatasetError, match="test_batch is not a CIFAR-10 batch: global .*open is not allowed"):
        load_cifar10(tmp_path / "d", download=False)
    assert not target.exists()


@pytest.mark.parametrize("field, value, message", [
    (b"data", np.zeros((3, 3071), np.uint8), "uint8 array of shape \\(n, 3072\\)"),
    (b"data", np.zeros((3, 3072), np.float32), "uint8 array"),
    (b"labels", [0, 1], "3 class indices"),
    (b"labels", [0, 1, 10], "class indices in 0..9"),
])
def test_malformed_batches_name_the_file_and_the_problem(tmp_path, field, value, message):
    batches = _batches()
    batches["data_batch_3"][field] = value
    _write_folder(tmp_path / "d", batches)
    with pytest.raises(DatasetError, match=f"data_batch_3.*{message}"):
        load_cifar10(tmp_path / "d", download=False)


def test_truncated_batch_is_an_error(tmp_path):
    _write_folder(tmp_path / "d", _batches())
    path = tmp_path / "d" / "data_batch_1"
    path.write_bytes(path.read_bytes()[:-50])
    with pytest.raises(DatasetError, match="data_batch_1 is not a CIFAR-10 batch"):
        load_cifar10(tmp_path / "d", download=False)


def test_missing_files_say_what_to_put_where(tmp_path):
    with pytest.raises(DatasetError,
                       match="CIFAR-10 not found.*cifar-10-python.tar.gz.*cifar-10-batches-py.*SGN_DATA_DIR"):
        load_cifar10(tmp_path, download=False)


def test_download_path_verifies_and_caches(monkeypatch, tmp_path, file_server):
    server, url = file_server
    batches = _batches(seed=2)
    digest = _write_archive(server / "cifar-10-python.tar.gz", batches)
    monkeypatch.setattr(datasets, "_CIFAR10_URL", url + "cifar-10-python.tar.gz")
    monkeypatch.setattr(datasets, "_CIFAR10_SHA256", digest)
    d = load_cifar10(flatten=True, floatX="float64")
    np.testing.assert_array_equal(d.y_test, batches["test_batch"][b"labels"])
    cache = tmp_path / "cache" / "sgn" / "cifar10"
    assert os.listdir(cache) == ["cifar-10-python.tar.gz"]
    # A download whose checksum is wrong leaves no file behind.
    os.unlink(cache / "cifar-10-python.tar.gz")
    monkeypatch.setattr(datasets, "_CIFAR10_SHA256", "0" * 64)
    with pytest.raises(DatasetError, match="download failed.*0000"):
        load_cifar10()
    assert not cache.exists() or os.listdir(cache) == []


def test_bad_arguments_name_the_parameter(tmp_path):
    with pytest.raises(ValueError, match="floatX"):
        load_cifar10(tmp_path, floatX="float16")
    with pytest.raises(ValueError, match="flatten"):
        load_cifar10(tmp_path, flatten=1)
