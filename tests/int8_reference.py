"""The int8 model's arithmetic in NumPy, written from its definition (fastlstm/lstm.hpp,
WeightFormat::int8), to test the engine against: each weight matrix row as integers times a
scale; each activation row a that a matrix multiplies quantized to rint(a * levels / max|a|) with
the scale max|a| / levels (levels 32767 for the model's input, which layer 0's weight_ih
multiplies, 127 for the states h); products summed exactly, then scaled to float32; gates, cells
and states in float32."""

from __future__ import annotations

from typing import Dict, Optional, Sequence, Tuple

import numpy as np

INPUT_LEVELS = 32767
STATE_LEVELS = 127


def row_scales(w: np.ndarray) -> np.ndarray:
    """max|row| / 127 rounded up to 17 significant bits (the engine's rule)."""
    scale = (np.abs(w).max(axis=1).astype(np.float32) / np.float32(127)).astype(np.float32)
    bits = scale.view(np.uint32).copy()
    low = (bits & 0x7F) != 0
    bits[low] = (bits[low] | 0x7F) + 1
    return bits.view(np.float32)


def integers(w: np.ndarray, scales: np.ndarray) -> np.ndarray:
    """The integers that hold `w` with `scales`, as float64."""
    safe = np.where(scales > 0, scales, 1).astype(np.float32)
    q = np.clip(np.rint(w / safe[:, None]), -128, 127)
    return np.where(scales[:, None] > 0, q, 0).astype(np.float64)


def quantized_product(a: np.ndarray, w: np.ndarray, levels: int, scales: Optional[np.ndarray] = None) -> np.ndarray:
    """a (n, k) times w^T, w (rows, k) holding integers times its row scales (default: the
    engine's own, row_scales(w)): (n, rows) float32."""
    scales = row_scales(w) if scales is None else scales
    largest = np.abs(a).max(axis=1).astype(np.float32)
    inverse = np.where(largest > 0, np.float32(levels) / np.where(largest > 0, largest, 1), 0).astype(np.float32)
    q = np.rint((a * inverse[:, None]).astype(np.float32)).astype(np.float64)
    a_scales = (largest / np.float32(levels)).astype(np.float32)
    sums = (q @ integers(w, scales).T).astype(np.float32)
    return (sums * (scales[None, :] * a_scales[:, None]).astype(np.float32)).astype(np.float32)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return (1 / (1 + np.exp(-z))).astype(np.float32)


def int8_lstm(params: Dict[str, np.ndarray], x: np.ndarray, *, num_layers: int, hidden_size: int,
              bidirectional: bool = False, proj_size: int = 0, lengths: Optional[Sequence[int]] = None,
              hx: Optional[Tuple[np.ndarray, np.ndarray]] = None, scales: Optional[Dict[str, np.ndarray]] = None,
              input_levels: int = INPUT_LEVELS):
    """The int8 model over time-major x (L, N, I), sequence n running lengths[n] steps (all L by
    default): output (L, N, D * H_out) with zeros past each length, h_n, c_n. scales: the row
    scales of matrices that have their own (default: the engine's rule for every one).
    input_levels: 32767 for 16-bit inputs (the default), 127 for 8-bit ones."""
    scales = scales or {}
    steps, batch, _ = x.shape
    lengths = np.full(batch, steps) if lengths is None else np.asarray(lengths)
    D, H = (2 if bidirectional else 1), hidden_size
    P = proj_size or H
    h_n = np.zeros((num_layers * D, batch, P), np.float32)
    c_n = np.zeros((num_layers * D, batch, H), np.float32)
    layer_input = x.astype(np.float32)
    for layer in range(num_layers):
        output = np.zeros((steps, batch, D * P), np.float32)
        for direction in range(D):
            suffix = f"_l{layer}" + ("_reverse" if direction else "")
            w_ih, w_hh = params["weight_ih" + suffix], params["weight_hh" + suffix]
            bias = params.get("bias_ih" + suffix, np.zeros(4 * H, np.float32)) + params.get(
                "bias_hh" + suffix, np.zeros(4 * H, np.float32))
            index = layer * D + direction
            levels = input_levels if layer == 0 else STATE_LEVELS
            for n in range(batch):
                h = np.zeros((1, P), np.float32) if hx is None else hx[0][index, n][None].astype(np.float32)
                c = np.zeros((1, H), np.float32) if hx is None else hx[1][index, n][None].astype(np.float32)
                order = range(lengths[n]) if direction == 0 else reversed(range(lengths[n]))
                for t in order:
                    gates = (bias.astype(np.float32) + quantized_product(layer_input[t, n][None], w_ih, levels, scales.get("weight_ih" + suffix))).astype(np.float32)
                    gates = (gates + quantized_product(h, w_hh, STATE_LEVELS, scales.get("weight_hh" + suffix))).astype(np.float32)
                    i, f, g, o = np.split(gates, 4, axis=1)
                    c = (_sigmoid(f) * c + _sigmoid(i) * np.tanh(g)).astype(np.float32)
                    h = (_sigmoid(o) * np.tanh(c)).astype(np.float32)
                    if proj_size:
                        h = quantized_product(h, params["weight_hr" + suffix], STATE_LEVELS, scales.get("weight_hr" + suffix))
                    output[t, n, direction * P:(direction + 1) * P] = h[0]
                h_n[index, n], c_n[index, n] = h[0], c[0]
        layer_input = output
    return output, (h_n, c_n)
