"""Reading a Paddle ``.pdparams`` checkpoint without Paddle, and without running anything the file
could ask the unpickler to run."""

from __future__ import annotations

import codecs
import importlib
import pickle
import warnings
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ._errors import CheckpointError


def _numpy_attr(name: str, *modules: str) -> Any:
    """``name`` of the first of ``modules`` that has it (numpy 2 renamed ``numpy.core``)."""
    for module in modules:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError):
            continue
    raise ImportError(f"numpy has no {name} in {modules}")


def _encode(text: str, encoding: str = "latin1") -> bytes:
    # Protocol-2 pickles spell bytes as _codecs.encode(text, "latin1"); nothing else is needed.
    if encoding not in ("latin1", "latin-1", "iso-8859-1"):
        raise pickle.UnpicklingError(f"refusing _codecs.encode(..., {encoding!r})")
    return codecs.encode(text, encoding)


def _empty_bytes(*args: Any) -> bytes:
    # Protocol-2 pickles spell b"" as bytes(); a size argument could only allocate.
    if args:
        raise pickle.UnpicklingError("refusing bytes() with arguments")
    return b""


def _allowed_globals() -> dict[tuple[str, str], Any]:
    core = ("numpy._core.multiarray", "numpy.core.multiarray")
    numeric = ("numpy._core.numeric", "numpy.core.numeric")
    reconstruct = _numpy_attr("_reconstruct", *core)
    scalar = _numpy_attr("scalar", *core)
    allowed: dict[tuple[str, str], Any] = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("collections", "OrderedDict"): OrderedDict,
        ("builtins", "tuple"): tuple,
        ("builtins", "list"): list,
        ("builtins", "dict"): dict,
        ("builtins", "set"): set,
        ("builtins", "frozenset"): frozenset,
        ("builtins", "bytes"): _empty_bytes,
        ("_codecs", "encode"): _encode,
    }
    for module in core:
        allowed[module, "_reconstruct"] = reconstruct
        allowed[module, "scalar"] = scalar
    try:
        frombuffer = _numpy_attr("_frombuffer", *numeric)
    except ImportError:  # numpy < 1.17 pickles no _frombuffer
        pass
    else:
        for module in numeric:
            allowed[module, "_frombuffer"] = frombuffer
    return allowed


class _RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that builds numpy arrays, dtypes and plain containers, and nothing else.

    Every global a pickle names goes through :meth:`find_class`; those outside a fixed list
    (numpy's array and dtype reconstruction, ``OrderedDict``, the builtin containers) are refused
    before anything is called, so a crafted file cannot run code (``os.system`` via
    ``__reduce__``, ``eval`` ...).
    """

    _allowed: dict[tuple[str, str], Any] | None = None

    def find_class(self, module: str, name: str) -> Any:
        if module == "__builtin__":  # protocol 2: Python 2 spelling of builtins
            module = "builtins"
        if _RestrictedUnpickler._allowed is None:
            _RestrictedUnpickler._allowed = _allowed_globals()
        found = _RestrictedUnpickler._allowed.get((module, name))
        if found is None:
            raise pickle.UnpicklingError(
                f"refusing to load {module}.{name}: a checkpoint may hold only numpy arrays, "
                "numbers, strings and containers of them"
            )
        return found

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError("refusing a persistent id: not a plain pickle of numpy arrays")


_NAME_TABLE = "StructuredToParameterName@@"  # paddle.save: key -> parameter name
_UNPACK_INFO = "UnpackBigParamInfor@@"  # paddle.save, protocol 2/3: arrays > 4 GB in slices


def _pack_big_arrays(state: dict[str, Any], where: str) -> None:
    """Reassemble the arrays ``paddle.save`` split into ``key@@.i`` slices (protocol 2 and 3)."""
    info = state.pop(_UNPACK_INFO, None)
    if info is None:
        return
    if not isinstance(info, Mapping):
        raise CheckpointError(f"{where}: {_UNPACK_INFO} is not a mapping", _UNPACK_INFO)
    for key, entry in info.items():
        try:
            parts = [state.pop(part) for part in entry["slices"]]
            shape = tuple(int(n) for n in entry["OriginShape"])
            state[key] = np.concatenate([np.ravel(p) for p in parts]).reshape(shape)
        except (KeyError, TypeError, ValueError) as error:
            raise CheckpointError(
                f"{where}: cannot reassemble the sliced array {key!r}: {error}", key
            ) from None


def _as_state(obj: Any, where: str) -> dict[str, np.ndarray]:
    """The ``{key: array}`` model state in a loaded checkpoint object.

    Accepts a state dict as ``paddle.save(model.state_dict())`` writes it, and a training
    checkpoint (``{"model": state, "optimizer": ..., ...}``, UFO's ``Checkpointer.save``), whose
    tensors ``paddle.save`` writes as ``(name, array)`` pairs.
    """
    if isinstance(obj, Mapping):
        for wrapper in ("model", "state_dict"):
            if isinstance(obj.get(wrapper), Mapping):
                obj = obj[wrapper]
                break
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{where} holds a {type(obj).__name__}, not a state dict")
    state: dict[str, Any] = dict(obj)
    state.pop(_NAME_TABLE, None)
    _pack_big_arrays(state, where)
    out: dict[str, np.ndarray] = {}
    for key, value in state.items():
        if not isinstance(key, str):
            raise CheckpointError(f"{where}: key {key!r} is not a string")
        if (
            isinstance(value, tuple)
            and len(value) == 2
            and isinstance(value[0], str)
            and isinstance(value[1], np.ndarray)
        ):
            value = value[1]  # a paddle Tensor pickled as (name, numpy array)
        if not isinstance(value, np.ndarray):
            raise CheckpointError(f"{where}: {key} is a {type(value).__name__}, not an array", key)
        if value.dtype.kind not in "biuf":
            raise CheckpointError(f"{where}: {key} has dtype {value.dtype}, not a numeric array", key)
        out[key] = value
    return out


def read_pdparams(path: str | Path) -> dict[str, np.ndarray]:
    """The model state in a PaddlePaddle checkpoint, read without Paddle.

    ``.pdparams`` / ``.pdmodel`` / ``.pkl`` files are pickles (``paddle.save``; protocols 2 to 5)
    of a state dict or of a training checkpoint holding one under ``"model"``; ``.npz`` files
    (``numpy.savez``) are read too. The unpickler builds numpy arrays and plain containers only.

    Returns:
        Key -> array, in the file's order.

    Raises:
        CheckpointError: The file cannot be read, is not such a pickle, names anything but numpy's
            array reconstruction (refused unrun), or holds a value that is not a numeric array.
    """
    path = Path(path)
    where = str(path)
    try:
        if path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as archive:
                return _as_state({key: archive[key] for key in archive.files}, where)
        with open(path, "rb") as handle:
            obj = _RestrictedUnpickler(handle).load()
    except OSError as error:
        raise CheckpointError(f"cannot read {where}: {error.strerror or error}") from None
    except CheckpointError:
        raise
    except Exception as error:  # malformed pickles raise many types (UnpicklingError, EOFError ...)
        raise CheckpointError(
            f"{where} is not a Paddle checkpoint (a pickle of numpy arrays): {error}"
        ) from None
    return _as_state(obj, where)
