"""Variable-length batches: PackedSequence and the utilities of torch.nn.utils.rnn, on NumPy."""

from __future__ import annotations

from typing import Any, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np

from ._arrays import as_array
from ._errors import InputError
from ._sizes import as_int64, checked_sum


class PackedSequence(NamedTuple):
    """A batch of sequences of different lengths, stored without padding, as torch stores it.

    data: (sum of lengths, *) rows of every sequence at step 0, then step 1, ...; within a step,
    sequences in decreasing length order. batch_sizes: int64 (max length,), how many sequences
    are still running at each step. sorted_indices / unsorted_indices: the permutation from the
    caller's order to the sorted one and back (None when the input was already sorted).
    """

    data: np.ndarray
    batch_sizes: np.ndarray
    sorted_indices: Optional[np.ndarray] = None
    unsorted_indices: Optional[np.ndarray] = None


def is_packed_sequence(value: Any) -> bool:
    """True for a fastlstm PackedSequence or a torch one (recognised by its fields, no import)."""
    return isinstance(value, PackedSequence) or (
        type(value).__name__ == "PackedSequence"
        and all(hasattr(value, f) for f in ("data", "batch_sizes", "sorted_indices", "unsorted_indices"))
    )


def as_packed_sequence(value: Any, data_reader: Any = None) -> PackedSequence:
    """`value`'s fields as NumPy arrays, validated: batch_sizes positive, non-increasing and summing
    to len(data); the indices permutations of the batch. `data_reader(data, name)` reads the data
    (default: as a NumPy array; a CUDA model reads GPU data in place)."""
    data = (data_reader or as_array)(value.data, "data")
    if data.ndim < 1:
        raise InputError(f"PackedSequence.data: expected at least 1 dimension, got {data.ndim}")
    batch_sizes = _as_indices(value.batch_sizes, "PackedSequence.batch_sizes")
    if batch_sizes.ndim != 1:
        raise InputError(
            f"PackedSequence.batch_sizes: expected a 1-D array of sizes, got shape {batch_sizes.shape}"
        )
    if batch_sizes.size == 0 or np.any(batch_sizes < 1) or np.any(np.diff(batch_sizes) > 0):
        raise InputError(
            f"PackedSequence.batch_sizes: expected positive, non-increasing sizes, got {batch_sizes.tolist()}"
        )
    total = checked_sum(batch_sizes, "PackedSequence.batch_sizes")
    if total != data.shape[0]:
        raise InputError(f"PackedSequence.batch_sizes: sum is {total} but data has {data.shape[0]} rows")
    batch = int(batch_sizes[0])
    sorted_indices = _optional_permutation(value.sorted_indices, "sorted_indices", batch)
    unsorted_indices = _optional_permutation(value.unsorted_indices, "unsorted_indices", batch)
    if sorted_indices is not None and unsorted_indices is None:
        unsorted_indices = invert_permutation(sorted_indices)
    return PackedSequence(data, batch_sizes, sorted_indices, unsorted_indices)


def invert_permutation(permutation: Optional[np.ndarray]) -> Optional[np.ndarray]:
    if permutation is None:
        return None
    inverse = np.empty_like(permutation)
    inverse[permutation] = np.arange(permutation.size, dtype=permutation.dtype)
    return inverse


def pack_padded_sequence(
    input: Any, lengths: Any, batch_first: bool = False, enforce_sorted: bool = True
) -> PackedSequence:
    """Packs a padded batch (L, N, *) (or (N, L, *) with batch_first) of sequences of `lengths`.

    With enforce_sorted=True the lengths must be in decreasing order; otherwise the batch is sorted
    here and the permutation kept in the result.
    """
    padded = as_array(input, "input")
    if padded.ndim < 2:
        raise InputError(f"input: expected at least 2 dimensions (L, N, *), got {padded.ndim}")
    lengths = _as_indices(lengths, "lengths")
    if lengths.ndim != 1:
        raise InputError(f"lengths: expected a 1-D sequence, got {lengths.ndim} dimensions")
    if batch_first:
        padded = np.swapaxes(padded, 0, 1)
    steps, batch = padded.shape[0], padded.shape[1]
    if lengths.size != batch:
        raise InputError(f"Expected `len(lengths)` to be equal to batch_size, but got {lengths.size} (batch_size={batch})")
    if enforce_sorted:
        if np.any(np.diff(lengths) > 0):
            raise InputError(
                "`lengths` array must be sorted in decreasing order when `enforce_sorted` is True. You can "
                "pass `enforce_sorted=False` to pack_padded_sequence and/or pack_sequence to sidestep this "
                "requirement if you do not need ONNX exportability."
            )
        sorted_indices = None
    else:
        sorted_indices = np.argsort(-lengths, kind="stable").astype(np.int64)
        lengths = lengths[sorted_indices]
        padded = padded[:, sorted_indices]
    if batch == 0:
        raise InputError("input: a packed batch needs at least one sequence, got batch size 0")
    if lengths[-1] <= 0:
        raise InputError(
            "Length of all samples has to be greater than 0, but found an element in 'lengths' that is <= 0"
        )
    if lengths[0] > steps:
        raise InputError(f"lengths: the longest length {int(lengths[0])} exceeds the padded length {steps}")
    batch_sizes = _batch_sizes(lengths)
    data = np.concatenate([padded[t, : batch_sizes[t]] for t in range(batch_sizes.size)], axis=0)
    return PackedSequence(data, batch_sizes, sorted_indices, invert_permutation(sorted_indices))


def pad_packed_sequence(
    sequence: Any, batch_first: bool = False, padding_value: float = 0.0, total_length: Optional[int] = None
) -> Tuple[np.ndarray, np.ndarray]:
    """The inverse of pack_padded_sequence: (padded, lengths), in the caller's original order."""
    packed = as_packed_sequence(sequence)
    steps = packed.batch_sizes.size
    if total_length is not None:
        if total_length < steps:
            raise ValueError(
                "Expected total_length to be at least the length of the longest sequence in input, but got "
                f"total_length={total_length} and max sequence length being {steps}"
            )
        steps = total_length
    batch = int(packed.batch_sizes[0])
    padded = np.full((steps, batch) + packed.data.shape[1:], padding_value, dtype=packed.data.dtype)
    start = 0
    for t, size in enumerate(packed.batch_sizes.tolist()):
        padded[t, :size] = packed.data[start : start + size]
        start += size
    lengths = _lengths(packed.batch_sizes)
    if packed.unsorted_indices is not None:
        padded = padded[:, packed.unsorted_indices]
        lengths = lengths[packed.unsorted_indices]
    if batch_first:
        padded = np.ascontiguousarray(np.swapaxes(padded, 0, 1))
    return padded, lengths


def pad_sequence(
    sequences: Sequence[Any], batch_first: bool = False, padding_value: float = 0.0, padding_side: str = "right"
) -> np.ndarray:
    """Stacks sequences (L_i, *) into (max L, N, *) (or (N, max L, *)), padding on `padding_side`."""
    if padding_side not in ("left", "right"):
        raise ValueError(f"Expected padding_side to be one of left or right, but got {padding_side}.")
    arrays = [as_array(s, f"sequences[{i}]") for i, s in enumerate(sequences)]
    if not arrays:
        raise ValueError("sequences: expected a non-empty list of arrays")
    trailing = arrays[0].shape[1:]
    for i, a in enumerate(arrays):
        if a.ndim < 1 or a.shape[1:] != trailing:
            raise InputError(f"sequences[{i}]: expected shape (L, {', '.join(map(str, trailing))}), got {a.shape}")
    steps = max(a.shape[0] for a in arrays)
    dtype = arrays[0].dtype  # as torch: the result has the first sequence's dtype
    padded = np.full((len(arrays), steps) + trailing, padding_value, dtype=dtype)
    for i, a in enumerate(arrays):
        if padding_side == "right":
            padded[i, : a.shape[0]] = a
        elif a.shape[0]:
            padded[i, steps - a.shape[0] :] = a
    return padded if batch_first else np.ascontiguousarray(np.swapaxes(padded, 0, 1))


def pack_sequence(sequences: Sequence[Any], enforce_sorted: bool = True) -> PackedSequence:
    """Packs a list of sequences (L_i, *) directly."""
    lengths = np.array([as_array(s, f"sequences[{i}]").shape[0] for i, s in enumerate(sequences)], dtype=np.int64)
    return pack_padded_sequence(pad_sequence(sequences), lengths, enforce_sorted=enforce_sorted)


def unpack_sequence(packed_sequences: Any) -> List[np.ndarray]:
    """The list of sequences a PackedSequence holds, in the caller's original order."""
    padded, lengths = pad_packed_sequence(packed_sequences, batch_first=True)
    return [padded[i, :length] for i, length in enumerate(lengths.tolist())]


def unpad_sequence(padded_sequences: Any, lengths: Any, batch_first: bool = False) -> List[np.ndarray]:
    """The list of sequences in a padded batch, each cut to its length."""
    padded = as_array(padded_sequences, "padded_sequences")
    if not batch_first:
        padded = np.swapaxes(padded, 0, 1)
    lengths = _as_indices(lengths, "lengths")
    if lengths.size != padded.shape[0]:
        raise InputError(f"lengths: expected {padded.shape[0]} lengths, got {lengths.size}")
    return [padded[i, :length] for i, length in enumerate(lengths.tolist())]


def _batch_sizes(sorted_lengths: np.ndarray) -> np.ndarray:
    """Sequences still running at each step, from lengths in decreasing order."""
    steps = np.arange(int(sorted_lengths[0]) if sorted_lengths.size else 0)
    return (sorted_lengths[None, :] > steps[:, None]).sum(axis=1).astype(np.int64)


def _lengths(batch_sizes: np.ndarray) -> np.ndarray:
    """The (sorted) length of every sequence, from batch_sizes."""
    batch = int(batch_sizes[0])
    return (batch_sizes[:, None] > np.arange(batch)[None, :]).sum(axis=0).astype(np.int64)


def _as_indices(value: Any, name: str) -> np.ndarray:
    if getattr(value, "is_cuda", False) or type(value).__module__.split(".")[0] == "cupy":
        value = value.cpu() if hasattr(value, "cpu") else value.get()  # small index arrays on a GPU
    array = np.asarray(as_array(value, name) if hasattr(value, "__dlpack__") else value)
    if array.dtype == object or not (np.issubdtype(array.dtype, np.integer) or array.size == 0):
        raise TypeError(f"{name}: expected integers, got dtype {array.dtype}")
    return as_int64(array, name).reshape(-1) if array.ndim == 0 else as_int64(array, name)


def _optional_permutation(value: Any, name: str, batch: int) -> Optional[np.ndarray]:
    if value is None:
        return None
    permutation = _as_indices(value, name)
    if permutation.shape != (batch,) or not np.array_equal(np.sort(permutation), np.arange(batch)):
        raise InputError(f"PackedSequence.{name}: expected a permutation of range({batch}), got {permutation.tolist()}")
    return permutation
