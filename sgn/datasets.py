"""Datasets of the paper's experiments.

The sine-wave regression task of §4.2 (generated) and MNIST / Fashion-MNIST (official IDX files),
Boston housing and CIFAR-10 (the official python archive or its extracted folder, read without
executing pickled code).  Every loader takes the same path: search ``data_dir``,
``$SGN_DATA_DIR/<name>/`` and the user cache, check the files' sha256, and otherwise download the
official files into the cache with `pooch <https://www.fatiando.org/pooch/>`_ (hash-checked,
cached, with a progress bar and mirrors).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ._validation import Boolean, Interval, Options, check_value

__all__ = ["Split", "DatasetError", "load_sine", "load_mnist", "load_boston", "load_cifar10", "read_idx"]


class Split(NamedTuple):
    """A train/test split of NumPy arrays."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


def load_sine(n_samples: int = 10000, freq: float = 10.0, noise: float = 0.01, test_fraction: float = 0.3,
              seed: int = 0, floatX: str = "float64") -> Split:
    """The paper's sine-wave task (§4.2): ``x ~ U(-1, 1)``, ``y = sin(freq x) + N(0, noise²)``.

    Parameters
    ----------
    n_samples : int
        Total number of samples (the paper: 10,000).
    freq : float
        Frequency (the paper: 10).
    noise : float
        Standard deviation of the Gaussian noise (the paper: 0.01).
    test_fraction : float
        The first ``round(test_fraction * n_samples)`` samples form the test split,
        as in the original generator (0.3: 7,000 train and 3,000 test points).
    seed : int
        Seed of the generator; the same seed gives the same data.
    floatX : {"float32", "float64"}
        dtype of the returned arrays.

    Returns
    -------
    Split
        ``x_*`` and ``y_*`` of shape (n, 1) and dtype ``floatX``.
    """
    check_value("n_samples", n_samples, Interval("int", 2, None), "load_sine")
    check_value("freq", freq, Interval("real", 0, None, "neither"), "load_sine")
    check_value("noise", noise, Interval("real", 0, None), "load_sine")
    check_value("test_fraction", test_fraction, Interval("real", 0, 1, "neither"), "load_sine")
    check_value("seed", seed, Interval("int", 0, None), "load_sine")
    check_value("floatX", floatX, Options(("float32", "float64")), "load_sine")
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1.0, 1.0, size=(n_samples, 1))
    y = np.sin(freq * x) + rng.normal(0.0, noise, size=(n_samples, 1))
    n_test = max(1, min(n_samples - 1, int(round(test_fraction * n_samples))))
    x, y = x.astype(floatX), y.astype(floatX)
    return Split(x[n_test:], y[n_test:], x[:n_test], y[:n_test])


# ---------------------------------------------------------------------------------------------
# MNIST and Fashion-MNIST: the official IDX .gz files.

_IDX_FILES = {
    "mnist": {
        "url": "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "mirrors": ("https://storage.googleapis.com/cvdf-datasets/mnist/",),
        "files": {
            "train-images-idx3-ubyte.gz": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
            "train-labels-idx1-ubyte.gz": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
            "t10k-images-idx3-ubyte.gz": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
            "t10k-labels-idx1-ubyte.gz": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
        },
    },
    "fashion_mnist": {
        "url": "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        "mirrors": ("https://github.com/zalandoresearch/fashion-mnist/raw/master/data/fashion/",),
        "files": {
            "train-images-idx3-ubyte.gz": "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
            "train-labels-idx1-ubyte.gz": "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
            "t10k-images-idx3-ubyte.gz": "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
            "t10k-labels-idx1-ubyte.gz": "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
        },
    },
}


class DatasetError(OSError):
    """A dataset's files are missing (and could not be downloaded) or fail their checksum."""


def _cache_dir(name: str) -> str:
    import os
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(root, "sgn", name)


def _search_folders(name: str, data_dir: str | None) -> list[str]:
    """The search order of every loader: ``data_dir``, ``$SGN_DATA_DIR/<name>``, the user cache (last)."""
    import os
    folders = [os.fspath(data_dir)] if data_dir is not None else []
    if os.environ.get("SGN_DATA_DIR"):
        folders.append(os.path.join(os.environ["SGN_DATA_DIR"], name))
    folders.append(_cache_dir(name))
    return folders


class _Source(NamedTuple):
    """Where one dataset's files come from.

    ``layouts``: the sets of files that hold the dataset offline, in order of preference
    (any one set, all in one folder, suffices).  ``sha256``: the checksum of every file that
    has an official one (checked before a file is used).  ``downloads``: the files fetched
    into the user cache when nothing is found, each with its mirrors, tried in order.
    """

    name: str
    title: str
    layouts: tuple[tuple[str, ...], ...]
    sha256: dict[str, str]
    downloads: dict[str, tuple[str, ...]]


def _sha256(path: str) -> str:
    import pooch
    return pooch.file_hash(path, alg="sha256")


def _fetch(source: _Source, folder: str) -> None:
    """Download ``source``'s missing files into ``folder`` with pooch (hash-checked, progress bar).

    Each file's mirrors are tried in order.  A file is moved into place only once its
    sha256 matches, so an interrupted or corrupt download leaves nothing behind, and a
    folder this call created is removed again when nothing could be fetched into it.
    """
    import os
    import shutil

    import pooch

    # The folders this call creates (the cache and its parents), removed again if left empty.
    created, parent = [], os.path.abspath(folder)
    while not os.path.isdir(parent):
        created.append(parent)
        parent = os.path.dirname(parent)
    try:
        for fname, urls in source.downloads.items():
            if os.path.isfile(os.path.join(folder, fname)):
                continue
            errors = []
            for url in urls:
                try:
                    pooch.retrieve(url, known_hash=f"sha256:{source.sha256[fname]}", fname=fname, path=folder,
                                   progressbar=True)
                    break
                except Exception as exc:  # requests' errors, pooch's hash mismatch (ValueError), OSError
                    reason = str(exc).split(" (Caused by")[0]
                    errors.append(f"{url}: {type(exc).__name__}: {reason[:300]}")
            else:
                raise DatasetError("; ".join(errors))
    except BaseException:
        for path in created:  # innermost first
            if os.path.isdir(path) and not any(not f.startswith(".") for f in os.listdir(path)):
                shutil.rmtree(path, ignore_errors=True)
        raise


def _locate(source: _Source, data_dir: str | None, download: bool) -> tuple[str, tuple[str, ...]]:
    """The one search -> check -> fetch path of every loader.

    Looks in ``data_dir``, then ``$SGN_DATA_DIR/<name>/``, then the user cache
    (``~/.cache/sgn/<name>``) for a folder holding one of the dataset's layouts, verifies
    every file that has an official sha256, and otherwise downloads into the cache when
    allowed.

    Returns
    -------
    (folder, layout)
        The folder and the file names (one of ``source.layouts``) found there.
    """
    import os
    candidates = _search_folders(source.name, data_dir)
    for folder in candidates:
        for layout in source.layouts:
            if all(os.path.isfile(os.path.join(folder, f)) for f in layout):
                for f in layout:
                    digest = source.sha256.get(f)
                    path = os.path.join(folder, f)
                    if digest is not None and (got := _sha256(path)) != digest:
                        raise DatasetError(f"{path} is corrupt or truncated: sha256 {got}, expected {digest}. "
                                           "Delete it and load again.")
                return folder, layout
    reason = ""
    if download and source.downloads:
        try:
            _fetch(source, candidates[-1])
            return _locate(source, candidates[-1], download=False)
        except OSError as exc:
            reason = f" (download failed: {exc})"
    wanted = " or ".join(", ".join(layout) for layout in source.layouts)
    raise DatasetError(
        f"{source.title} not found{reason}. Put {wanted} in one folder and pass it as data_dir, or set "
        f"SGN_DATA_DIR so that they are in $SGN_DATA_DIR/{source.name}/; searched: {candidates}.")


def _idx_source(name: str) -> _Source:
    spec = _IDX_FILES[name]
    bases = (spec["url"], *spec.get("mirrors", ()))
    files = tuple(spec["files"])
    return _Source(name, f"{name} files", (files,), dict(spec["files"]),
                   {f: tuple(base + f for base in bases) for f in files})


def read_idx(path: str) -> np.ndarray:
    """Read an IDX file (optionally gzip-compressed) as a NumPy array (uint8 data)."""
    import gzip
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as fh:
        raw = fh.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 8:
        raise DatasetError(f"{path} is not an unsigned-byte IDX file")
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise DatasetError(f"{path} is truncated: {data.size} values for shape {tuple(dims)}")
    return data.reshape(dims)


def _preprocess_images(x: np.ndarray, flatten: bool, floatX: str) -> np.ndarray:
    """uint8 images (n, C, H, W) -> ``floatX``, as the paper's scripts preprocess them.

    ``flatten``: (n, C*H*W) scaled to [0, 1] by 255 (mlp.py).  Otherwise (n, C, H, W), each
    image and channel standardised by its own mean and std (conv_net.py's ``normalize_meanstd``).
    """
    x = x.astype(np.float64)
    if flatten:
        return (x.reshape(len(x), -1) / 255.0).astype(floatX)
    mean = x.mean(axis=(2, 3), keepdims=True)
    std = x.std(axis=(2, 3), keepdims=True)
    return ((x - mean) / np.where(std > 0, std, 1.0)).astype(floatX)


def load_mnist(data_dir: str | None = None, fashion: bool = False, flatten: bool = True,
               floatX: str = "float32", download: bool = True) -> Split:
    """MNIST or Fashion-MNIST from the official IDX ``.gz`` files.

    Parameters
    ----------
    data_dir : str, optional
        Folder holding the four files; otherwise ``$SGN_DATA_DIR/mnist`` (or
        ``fashion_mnist``), then ``~/.cache/sgn/<name>``.
    fashion : bool
        Fashion-MNIST instead of MNIST.
    flatten : bool
        True: images as (n, 784), scaled to [0, 1] by 255 (the paper's MLP
        preprocessing).  False: (n, 1, 28, 28), each image standardised per
        channel by its own mean and std (the original conv_net.py preprocessing).
    floatX : {"float32", "float64"}
    download : bool
        Download missing files from the official mirrors (sha256-verified).

    Returns
    -------
    Split
        ``x_*`` of dtype ``floatX``; ``y_*`` int32 class indices of shape (n,).

    Raises
    ------
    DatasetError
        Files missing and not downloadable, or failing their checksum (the message
        names the file and the expected sha256).
    """
    check_value("floatX", floatX, Options(("float32", "float64")), "load_mnist")
    import os
    name = "fashion_mnist" if fashion else "mnist"
    folder, _ = _locate(_idx_source(name), data_dir, download)

    def images(f):
        x = read_idx(os.path.join(folder, f))
        return _preprocess_images(x[:, None, :, :], flatten, floatX)

    def labels(f):
        return read_idx(os.path.join(folder, f)).astype(np.int32)

    return Split(images("train-images-idx3-ubyte.gz"), labels("train-labels-idx1-ubyte.gz"),
                 images("t10k-images-idx3-ubyte.gz"), labels("t10k-labels-idx1-ubyte.gz"))


# ---------------------------------------------------------------------------------------------
# Boston housing.

_BOSTON_CSV = ("boston_housing.csv", "79ac716620024011b03c0c44d2bf99069b8173649181926d9109c25475a3804c")
_BOSTON_NPZ = ("boston_housing.npz", "f553886a1f8d56431e820c5b82552d9d95cfcb96d1e678153f8839538947dff5",
               "https://storage.googleapis.com/tensorflow/tf-keras-datasets/boston_housing.npz")


_BOSTON = _Source("boston", "Boston housing", ((_BOSTON_CSV[0],), (_BOSTON_NPZ[0],)),
                  {_BOSTON_CSV[0]: _BOSTON_CSV[1], _BOSTON_NPZ[0]: _BOSTON_NPZ[1]},
                  {_BOSTON_NPZ[0]: (_BOSTON_NPZ[2],)})


def _boston_arrays(data_dir: str | None, download: bool) -> tuple[np.ndarray, np.ndarray]:
    import os
    folder, (fname,) = _locate(_BOSTON, data_dir, download)
    path = os.path.join(folder, fname)
    if fname.endswith(".csv"):  # a header row, 13 features then MEDV
        table = np.loadtxt(path, delimiter=",", skiprows=1)
        return table[:, :13], table[:, 13]
    with np.load(path, allow_pickle=False) as data:
        return np.asarray(data["x"], dtype=np.float64), np.asarray(data["y"], dtype=np.float64)


def load_boston(data_dir: str | None = None, floatX: str = "float64", download: bool = True) -> Split:
    """Boston housing (13 features, median house value), split and scaled as in the paper's scripts.

    Parameters
    ----------
    data_dir : str, optional
        Folder holding ``boston_housing.csv`` (header row, 13 features then MEDV) or
        Keras' ``boston_housing.npz``; otherwise ``$SGN_DATA_DIR/boston``, then the
        user cache, then a download of the ``.npz`` (sha256-verified).
    floatX : {"float32", "float64"}
    download : bool

    Returns
    -------
    Split
        404 training and 102 test samples (Keras' split: rows shuffled by
        ``RandomState(113)``, first 80% for training); ``x`` of shape (n, 13),
        ``y`` of shape (n, 1).

    Notes
    -----
    As the original scripts, features are divided by one global maximum and targets
    by their maximum; unlike them, both splits use the *training* maxima (the original
    scaled the test split by its own maxima).
    """
    check_value("floatX", floatX, Options(("float32", "float64")), "load_boston")
    x, y = _boston_arrays(data_dir, download)
    order = np.arange(len(x))
    np.random.RandomState(113).shuffle(order)
    x, y = x[order], y[order]
    n_train = int(len(x) * 0.8)
    x_max, y_max = x[:n_train].max(), y[:n_train].max()
    x, y = x / x_max, (y / y_max)[:, None]
    return Split(x[:n_train].astype(floatX), y[:n_train].astype(floatX), x[n_train:].astype(floatX),
                 y[n_train:].astype(floatX))


# ---------------------------------------------------------------------------------------------
# CIFAR-10: the official python archive (pickled dicts, read by a restricted unpickler).

_CIFAR10_ARCHIVE = "cifar-10-python.tar.gz"
_CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
_CIFAR10_SHA256 = "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce"
_CIFAR10_FOLDER = "cifar-10-batches-py"
_CIFAR10_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))
_CIFAR10_TEST = "test_batch"


def _numpy_unpickle_globals() -> dict[tuple[str, str], object]:
    """The only globals a CIFAR-10 batch may reference: NumPy's array reconstructors.

    Found from NumPy itself, so that pickles written under ``numpy.core`` (NumPy 1, as the
    official archive was) and ``numpy._core`` (NumPy 2) both resolve.
    """
    import codecs
    probe = np.zeros(1, dtype=np.uint8)
    reconstruct = probe.__reduce__()[0]
    frombuffer = probe.__reduce_ex__(5)[0]
    allowed: dict[tuple[str, str], object] = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype,
                                              ("_codecs", "encode"): codecs.encode}
    for core in ("numpy.core", "numpy._core"):
        allowed[(f"{core}.multiarray", "_reconstruct")] = reconstruct
        allowed[(f"{core}.numeric", "_frombuffer")] = frombuffer
    return allowed


def _read_cifar_batch(raw: bytes, where: str) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 (n, 3, 32, 32), labels int32 (n,)) from one pickled CIFAR-10 batch.

    The batches are Python pickles.  Unpickling can run arbitrary code, so the unpickler
    here refuses every global except NumPy's array reconstructors: a tampered file fails
    with :class:`DatasetError` instead of executing anything.
    """
    import io
    import pickle

    allowed = _numpy_unpickle_globals()

    class _Restricted(pickle.Unpickler):
        def find_class(self, module: str, name: str) -> object:
            try:
                return allowed[(module, name)]
            except KeyError:
                raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in a CIFAR-10 batch") from None

    try:
        batch = _Restricted(io.BytesIO(raw), encoding="bytes").load()
    except Exception as exc:  # pickle raises many types on malformed input
        raise DatasetError(f"{where} is not a CIFAR-10 batch: {exc}") from exc
    if not isinstance(batch, dict):
        raise DatasetError(f"{where} is not a CIFAR-10 batch: a {type(batch).__name__}, not a dict")
    # Python 2 wrote str keys, which load as bytes here; Python 3 writers may use str.
    batch = {(k.decode("latin1") if isinstance(k, bytes) else k): v for k, v in batch.items()}
    data, labels = batch.get("data"), batch.get("labels")
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        raise DatasetError(f"{where}: 'data' must be a uint8 array of shape (n, 3072), "
                           f"got {getattr(data, 'dtype', type(data).__name__)} {getattr(data, 'shape', '')}")
    labels = np.asarray(labels if labels is not None else [], dtype=np.int64)
    if labels.shape != (len(data),) or (labels.size and (labels.min() < 0 or labels.max() > 9)):
        raise DatasetError(f"{where}: 'labels' must be {len(data)} class indices in 0..9, got shape {labels.shape}")
    return data.reshape(len(data), 3, 32, 32), labels.astype(np.int32)


def _cifar10_source() -> _Source:
    batches = _CIFAR10_TRAIN + (_CIFAR10_TEST,)
    return _Source("cifar10", "CIFAR-10",
                   ((_CIFAR10_ARCHIVE,), tuple(f"{_CIFAR10_FOLDER}/{n}" for n in batches), batches),
                   {_CIFAR10_ARCHIVE: _CIFAR10_SHA256}, {_CIFAR10_ARCHIVE: (_CIFAR10_URL,)})


def _cifar10_batches(data_dir: str | None, download: bool) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Every train and test batch, from the first place in the search order that has them."""
    import os
    import tarfile

    names = _CIFAR10_TRAIN + (_CIFAR10_TEST,)
    # The archive's checksum is checked by _locate first: nothing from an unverified archive is unpickled.
    folder, layout = _locate(_cifar10_source(), data_dir, download)
    if layout != (_CIFAR10_ARCHIVE,):
        out = {}
        for n, f in zip(names, layout):
            path = os.path.join(folder, f)
            with open(path, "rb") as fh:
                out[n] = _read_cifar_batch(fh.read(), path)
        return out
    archive = os.path.join(folder, _CIFAR10_ARCHIVE)
    out = {}
    with tarfile.open(archive, "r:gz") as tar:
        for n in names:
            member = f"{_CIFAR10_FOLDER}/{n}"
            try:
                fh = tar.extractfile(member)
            except KeyError:
                fh = None
            if fh is None:
                raise DatasetError(f"{archive} has no file {member}")
            out[n] = _read_cifar_batch(fh.read(), f"{archive}:{member}")
    return out


def load_cifar10(data_dir: str | None = None, flatten: bool = False, floatX: str = "float32",
                 download: bool = True) -> Split:
    """CIFAR-10 from the official python archive ``cifar-10-python.tar.gz`` or its extracted folder.

    Parameters
    ----------
    data_dir : str, optional
        Folder holding ``cifar-10-python.tar.gz``, or the extracted ``cifar-10-batches-py/``
        folder, or the files ``data_batch_1`` … ``data_batch_5`` and ``test_batch`` themselves;
        otherwise ``$SGN_DATA_DIR/cifar10``, then ``~/.cache/sgn/cifar10``.
    flatten : bool
        False (the paper's conv_net.py): images (n, 3, 32, 32), each image and channel
        standardised by its own mean and std.  True: (n, 3072) in CHW order, scaled by 255.
    floatX : {"float32", "float64"}
    download : bool
        Download the archive (170 MB) from the official site when it is nowhere found.

    Returns
    -------
    Split
        50,000 training images (the five data batches in order) and 10,000 test images of
        dtype ``floatX``; labels int32 class indices of shape (n,).

    Raises
    ------
    DatasetError
        Files missing and not downloadable; an archive whose sha256 is not the official one
        (checked before anything in it is read); or a batch that is not in the official
        format, including one that references any global other than NumPy's array
        reconstructors (the batches are pickles, read by a restricted unpickler).
    """
    check_value("floatX", floatX, Options(("float32", "float64")), "load_cifar10")
    check_value("flatten", flatten, Boolean(), "load_cifar10")
    batches = _cifar10_batches(data_dir, download)
    x_train = np.concatenate([batches[n][0] for n in _CIFAR10_TRAIN])
    y_train = np.concatenate([batches[n][1] for n in _CIFAR10_TRAIN])
    x_test, y_test = batches[_CIFAR10_TEST]
    return Split(_preprocess_images(x_train, flatten, floatX), y_train,
                 _preprocess_images(x_test, flatten, floatX), y_test)
