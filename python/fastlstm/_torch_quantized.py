"""torch's dynamically quantized LSTM (``torch.ao.nn.quantized.dynamic.LSTM``, from
``torch.ao.quantization.quantize_dynamic``) read as a fastlstm model's weights: qint8 matrices as
their integers times their scales (one per tensor, or per output channel), float16 ones as their
float16 values; biases as they are."""

from __future__ import annotations

from typing import Any, Dict, Tuple

import numpy as np


def is_quantized_lstm(module: Any) -> bool:
    """Whether `module` is torch's dynamically quantized LSTM."""
    return type(module).__module__.startswith("torch.ao.nn.quantized") and hasattr(module, "_weight_bias")


def quantized_weights(module: Any) -> Tuple[str, Dict[str, np.ndarray], Dict[str, np.ndarray]]:
    """(weight_format, float32 values of every parameter, row scales of each int8 matrix)."""
    import torch

    packed = module._weight_bias()
    values: Dict[str, np.ndarray] = {}
    scales: Dict[str, np.ndarray] = {}
    weight_format = "int8" if module.dtype == torch.qint8 else "float16"
    for name, weight in packed["weight"].items():
        if weight.is_quantized:
            integers, row_scales = _integers_and_scales(name, weight, torch)
            scales[name] = row_scales
            values[name] = (integers.astype(np.float32) * row_scales[:, None]).astype(np.float32)
        else:
            values[name] = weight.detach().float().numpy().copy()
    for name, bias in packed["bias"].items():
        values[name] = bias.detach().float().numpy().copy()
    return weight_format, values, scales


def _integers_and_scales(name: str, weight: Any, torch: Any) -> Tuple[np.ndarray, np.ndarray]:
    rows = weight.shape[0]
    scheme = weight.qscheme()
    if scheme in (torch.per_tensor_affine, torch.per_tensor_symmetric):
        if weight.q_zero_point() != 0:
            raise ValueError(f"{name}: zero point {weight.q_zero_point()}; fastlstm's int8 weights are symmetric "
                             "(zero point 0)")
        row_scales = np.full(rows, weight.q_scale(), np.float32)
    elif scheme in (torch.per_channel_affine, torch.per_channel_symmetric) and weight.q_per_channel_axis() == 0:
        if bool((weight.q_per_channel_zero_points() != 0).any()):
            raise ValueError(f"{name}: nonzero zero points; fastlstm's int8 weights are symmetric (zero point 0)")
        row_scales = weight.q_per_channel_scales().float().numpy().astype(np.float32)
    else:
        raise ValueError(f"{name}: quantization scheme {scheme} is not one scale per tensor or per output row")
    return weight.int_repr().numpy().astype(np.int8), row_scales
