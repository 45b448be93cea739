"""MNIST / Fashion-MNIST loaders: real files, search order, checksums and the download path."""

import gzip
import hashlib
import os
import shutil

import numpy as np
import pytest

from sgn import datasets
from sgn.datasets import DatasetError, load_mnist, read_idx

FILES = ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz",
         "t10k-labels-idx1-ubyte.gz"]


@pytest.fixture(autouse=True)
def _isolated(monkeypatch, tmp_path):
    monkeypatch.delenv("SGN_DATA_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


def test_real_mnist_shapes_and_preprocessing(dataset):
    d = load_mnist(dataset("mnist"), download=False)
    assert d.x_train.shape == (60000, 784) and d.x_test.shape == (10000, 784)
    assert d.x_train.dtype == np.float32 and d.y_train.dtype == np.int32
    assert d.x_train.min() == 0 and d.x_train.max() == 1
    assert np.bincount(d.y_test).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def test_fashion_conv_preprocessing_standardises_each_image(dataset):
    d = load_mnist(dataset("fashion_mnist"), fashion=True, flatten=False, floatX="float64",
                   download=False)
    assert d.x_test.shape == (10000, 1, 28, 28)
    assert np.allclose(d.x_test.mean(axis=(2, 3)), 0, atol=1e-9)
    assert np.allclose(d.x_test.std(axis=(2, 3)), 1, atol=1e-9)
    assert np.bincount(d.y_train).tolist() == [6000] * 10


def test_sgn_data_dir_is_searched(monkeypatch, tmp_path, dataset):
    root = tmp_path / "data"
    shutil.copytree(dataset("mnist"), root / "mnist")
    monkeypatch.setenv("SGN_DATA_DIR", str(root))
    assert load_mnist(download=False).x_test.shape == (10000, 784)


def test_missing_files_say_what_to_put_where(tmp_path):
    with pytest.raises(DatasetError, match="mnist files not found.*train-images-idx3-ubyte.gz.*SGN_DATA_DIR"):
        load_mnist(tmp_path, download=False)


def test_corrupt_file_names_the_file_and_the_expected_checksum(tmp_path, dataset):
    folder = tmp_path / "m"
    shutil.copytree(dataset("mnist"), folder)
    target = folder / "t10k-labels-idx1-ubyte.gz"
    os.chmod(target, 0o644)
    target.write_bytes(target.read_bytes()[:-100])
    expected = datasets._IDX_FILES["mnist"]["files"]["t10k-labels-idx1-ubyte.gz"]
    with pytest.raises(DatasetError, match=f"t10k-labels-idx1-ubyte.gz is corrupt or truncated.*{expected}"):
        load_mnist(folder, download=False)


def _write_idx(path, array):
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    with gzip.open(path, "wb") as fh:
        fh.write(header + array.astype(np.uint8).tobytes())


def test_download_path_verifies_and_caches(monkeypatch, tmp_path, file_server):
    # A tiny fake release on a local HTTP server stands in for the official mirror.
    server, url = file_server
    rng = np.random.default_rng(0)
    _write_idx(server / FILES[0], rng.integers(0, 256, (6, 28, 28)))
    _write_idx(server / FILES[1], np.arange(6) % 10)
    _write_idx(server / FILES[2], rng.integers(0, 256, (4, 28, 28)))
    _write_idx(server / FILES[3], np.arange(4))
    table = {f: hashlib.sha256((server / f).read_bytes()).hexdigest() for f in FILES}
    # The first mirror is down (nothing listens there): the second one serves the files.
    monkeypatch.setitem(datasets._IDX_FILES, "mnist", {"url": "http://127.0.0.1:9/", "mirrors": (url,),
                                                       "files": table})
    d = load_mnist()
    assert d.x_train.shape == (6, 784) and d.y_test.tolist() == [0, 1, 2, 3]
    cache = tmp_path / "cache" / "sgn" / "mnist"
    assert sorted(os.listdir(cache)) == sorted(FILES)
    assert load_mnist(download=False).y_test.tolist() == [0, 1, 2, 3]  # cached: found offline now
    # A bad checksum on download leaves no partial file, and no empty cache folder, behind.
    shutil.rmtree(cache)
    table[FILES[0]] = "0" * 64
    with pytest.raises(DatasetError, match="download failed.*0000"):
        load_mnist()
    assert not cache.exists()


def test_boston_downloads_the_official_npz_when_missing(monkeypatch, tmp_path, file_server):
    server, url = file_server
    x = np.arange(506 * 13, dtype=np.float64).reshape(506, 13) % 17
    y = np.linspace(5, 50, 506)
    np.savez(server / "boston_housing.npz", x=x, y=y)
    digest = hashlib.sha256((server / "boston_housing.npz").read_bytes()).hexdigest()
    monkeypatch.setattr(datasets, "_BOSTON", datasets._BOSTON._replace(
        sha256={**datasets._BOSTON.sha256, "boston_housing.npz": digest},
        downloads={"boston_housing.npz": (url + "boston_housing.npz",)}))
    d = datasets.load_boston()
    assert d.x_train.shape == (404, 13) and d.y_test.shape == (102, 1)
    assert os.listdir(tmp_path / "cache" / "sgn" / "boston") == ["boston_housing.npz"]


def test_read_idx_rejects_truncated_data(tmp_path):
    path = tmp_path / "x.gz"
    _write_idx(path, np.zeros((3, 2, 2)))
    raw = gzip.decompress(path.read_bytes())
    path.write_bytes(gzip.compress(raw[:-3]))
    with pytest.raises(DatasetError, match="truncated"):
        read_idx(str(path))
