"""Read a torch.save() state dict (the zip format) into numpy arrays, without torch.

A .pt file is a zip: `<root>/data.pkl` pickles the dict and names each tensor's storage by a
key whose bytes lie in `<root>/data/<key>`. The unpickler below resolves only the few globals
a state dict needs (as torch.load(weights_only=True) does), so a crafted file cannot run code.
"""
from __future__ import annotations

import collections
import pickle
import zipfile
from pathlib import Path

import numpy as np

_DTYPES = {
    "FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
    "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16,
    "CharStorage": np.int8, "ByteStorage": np.uint8, "BoolStorage": np.bool_,
}


class TorchZipError(ValueError):
    """The file is not a torch zip state dict, or uses something this reader does not allow."""


class _StorageType:
    def __init__(self, name: str):
        self.dtype = np.dtype(_DTYPES[name])


def _rebuild_tensor(storage: np.ndarray, offset: int, size: tuple, stride: tuple,
                    *_ignored) -> np.ndarray:
    """torch._utils._rebuild_tensor_v2: a strided view of the storage, copied to own its data."""
    item = storage.itemsize
    view = np.lib.stride_tricks.as_strided(storage[offset:], shape=tuple(size),
                                           strides=tuple(s * item for s in stride))
    return np.array(view)


class _Unpickler(pickle.Unpickler):
    def __init__(self, file, archive: zipfile.ZipFile, root: str):
        super().__init__(file)
        self._archive, self._root = archive, root

    def find_class(self, module: str, name: str):
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor
        if module == "torch" and name in _DTYPES:
            return _StorageType(name)
        raise TorchZipError(f"{module}.{name} is not allowed in a weights file")

    def persistent_load(self, pid):
        kind, storage_type, key, _location, numel = pid
        if kind != "storage" or not isinstance(storage_type, _StorageType):
            raise TorchZipError(f"unexpected persistent id {pid!r}")
        raw = self._archive.read(f"{self._root}/data/{key}")
        return np.frombuffer(raw, dtype=storage_type.dtype, count=numel)


def load_state_dict(path: Path) -> dict[str, np.ndarray]:
    """Name -> array for every tensor in a torch zip checkpoint (little-endian, as torch writes)."""
    try:
        with zipfile.ZipFile(path) as archive:
            [pkl] = [n for n in archive.namelist() if n.endswith("/data.pkl")] or [None]
            if pkl is None:
                raise TorchZipError(f"{path}: no data.pkl (a legacy, non-zip torch file?)")
            root = pkl.rsplit("/", 1)[0]
            with archive.open(pkl) as f:
                state = _Unpickler(f, archive, root).load()
    except zipfile.BadZipFile as e:
        raise TorchZipError(f"{path}: not a zip ({e}); only torch's zip format is read") from None
    if not isinstance(state, dict):
        raise TorchZipError(f"{path}: holds a {type(state).__name__}, not a state dict")
    return dict(state)
