"""Small files in the exact CIFAR layout: Python 2 pickles of numpy arrays inside the official ``.tar.gz``.

The official batches were written by Python 2's cPickle at protocol 2 with numpy 1: strings
are byte strings (``SHORT_BINSTRING``/``BINSTRING`` opcodes, ``str`` keys included) and
arrays are rebuilt by ``numpy.core.multiarray._reconstruct``. :func:`python2_pickle` writes
the same opcodes from Python 3, so the tests read what the real files hold.
"""

from __future__ import annotations

import io
import pickle
import struct
import tarfile
from pathlib import Path

import numpy as np


class Python2Pickler(pickle._Pickler):
    """Protocol 2 as Python 2 wrote it: ``str`` and ``bytes`` both as byte strings."""

    dispatch = pickle._Pickler.dispatch.copy()

    def _save_byte_string(self, obj: str | bytes) -> None:
        data = obj.encode("latin1") if isinstance(obj, str) else obj
        if len(data) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(data)]) + data)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(data)) + data)
        self.memoize(obj)

    dispatch[str] = _save_byte_string
    dispatch[bytes] = _save_byte_string


def python2_pickle(obj: object) -> bytes:
    """``obj`` pickled as Python 2 with numpy 1 would: numpy 2's module path is renamed to numpy 1's."""
    buffer = io.BytesIO()
    Python2Pickler(buffer, protocol=2).dump(obj)
    return buffer.getvalue().replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n")


def add_dir(tar: tarfile.TarFile, name: str) -> None:
    info = tarfile.TarInfo(name)
    info.type, info.mode = tarfile.DIRTYPE, 0o755
    tar.addfile(info)


def add_file(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def random_images(rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` CIFAR rows: uint8 ``[n, 3072]``, each R, G, B planes of 32x32 in row-major order."""
    return rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)


def cifar10_archive(path: Path, per_batch: int = 4, test_size: int = 3, seed: int = 0) -> dict[str, np.ndarray]:
    """Write ``cifar-10-python.tar.gz`` at ``path``; return the images and labels of each split."""
    rng = np.random.default_rng(seed)
    split = {"train_images": [], "train_labels": [], "test_images": [], "test_labels": []}
    with tarfile.open(path, "w:gz") as tar:
        add_dir(tar, "cifar-10-batches-py")
        names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
        for name in names:
            n = test_size if name == "test_batch" else per_batch
            data, labels = random_images(rng, n), rng.integers(0, 10, size=n).tolist()
            kind = "test" if name == "test_batch" else "train"
            split[f"{kind}_images"].append(data)
            split[f"{kind}_labels"].append(labels)
            batch = {"batch_label": f"{name} of 6", "labels": labels, "data": data,
                     "filenames": [f"image_{i}.png" for i in range(n)]}
            add_file(tar, f"cifar-10-batches-py/{name}", python2_pickle(batch))
        meta = {"num_cases_per_batch": per_batch, "num_vis": 3072, "label_names": list(CIFAR10_NAMES)}
        add_file(tar, "cifar-10-batches-py/batches.meta", python2_pickle(meta))
        add_file(tar, "cifar-10-batches-py/readme.html", b"<meta HTTP-EQUIV='REFRESH'>")
    return {key: np.concatenate(value) for key, value in split.items()}


def cifar100_archive(path: Path, train_size: int = 6, test_size: int = 4, seed: int = 0) -> dict[str, np.ndarray]:
    """Write ``cifar-100-python.tar.gz`` at ``path``; return the images and both labels of each split."""
    rng = np.random.default_rng(seed)
    split = {}
    with tarfile.open(path, "w:gz") as tar:
        add_dir(tar, "cifar-100-python")
        for kind, n in (("train", train_size), ("test", test_size)):
            data = random_images(rng, n)
            fine = rng.integers(0, 100, size=n).tolist()
            coarse = [label // 5 for label in fine]
            split |= {f"{kind}_images": data, f"{kind}_fine": np.array(fine), f"{kind}_coarse": np.array(coarse)}
            batch = {"filenames": [f"image_{i}.png" for i in range(n)], "batch_label": f"{kind} batch 1 of 1",
                     "fine_labels": fine, "coarse_labels": coarse, "data": data}
            add_file(tar, f"cifar-100-python/{kind}", python2_pickle(batch))
        meta = {"fine_label_names": [f"fine_{i}" for i in range(100)],
                "coarse_label_names": [f"coarse_{i}" for i in range(20)]}
        add_file(tar, "cifar-100-python/meta", python2_pickle(meta))
        add_file(tar, "cifar-100-python/file.txt~", b"")
    return split


CIFAR10_NAMES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
