"""The benchmark's cases: the CPU table (S1-S7, X1) and the GPU one."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict

import numpy as np


@dataclass(frozen=True)
class Case:
    """One benchmark configuration (float32, sequence-first layout)."""

    name: str
    batch: int  # N
    steps: int  # L (the longest sequence for packed cases)
    input_size: int  # I
    hidden_size: int  # H
    num_layers: int = 1
    bidirectional: bool = False
    proj_size: int = 0
    mode: str = "sequence"  # "sequence" | "stream" (L=1 calls carrying (h, c)) | "packed"
    calls: int = 1  # stream: calls per timed unit
    min_steps: int = 0  # packed: the shortest sequence

    @property
    def directions(self) -> int:
        return 2 if self.bidirectional else 1

    @property
    def h_out(self) -> int:
        return self.proj_size or self.hidden_size

    def lengths(self) -> np.ndarray:
        """Sequence lengths, longest first (all `steps` unless packed)."""
        if self.mode == "packed":
            return np.linspace(self.steps, self.min_steps, self.batch).round().astype(np.int64)
        return np.full(self.batch, self.steps, dtype=np.int64)

    def tokens(self) -> int:
        """Real (unpadded) time steps x sequences in one timed unit."""
        if self.mode == "stream":
            return self.batch * self.calls
        return int(self.lengths().sum())

    def flops_per_token(self) -> int:
        """2 x sum over layers and directions of (4H x layer_input + 4H x H_out + proj x H)."""
        h, total = self.hidden_size, 0
        for layer in range(self.num_layers):
            layer_input = self.input_size if layer == 0 else self.directions * self.h_out
            total += self.directions * (4 * h * layer_input + 4 * h * self.h_out + self.proj_size * h)
        return 2 * total

    def describe(self) -> str:
        if self.mode == "stream":
            text = f"N={self.batch} L=1 x{self.calls} calls"
        elif self.mode == "packed":
            text = f"N={self.batch} L={self.steps}..{self.min_steps}"
        else:
            text = f"N={self.batch} L={self.steps}"
        text += f" I={self.input_size} H={self.hidden_size}"
        if self.proj_size:
            text += f" P={self.proj_size}"
        if self.num_layers > 1:
            text += f" {self.num_layers}L"
        if self.bidirectional:
            text += " bi"
        return text


CASES: Dict[str, Case] = {
    c.name: c
    for c in (
        Case("S1", 1, 100, 64, 128),
        Case("S2", 1, 200, 256, 512, num_layers=2),
        Case("S3", 32, 100, 256, 512, num_layers=2),
        Case("S4", 64, 50, 1024, 1024),
        Case("S5", 8, 100, 128, 256, num_layers=2, bidirectional=True),
        Case("S6", 8, 100, 256, 1024, num_layers=2, proj_size=256),
        Case("S7", 1, 1, 256, 256, mode="stream", calls=1000),
        Case("X1", 32, 100, 256, 512, num_layers=2, mode="packed", min_steps=50),
    )
}


# The GPU cases (python -m fastlstm bench --device cuda), with S3 and S4 of the CPU table.
GPU_CASES: Dict[str, Case] = {
    c.name: c
    for c in (
        Case("G1", 1, 100, 1024, 1024, num_layers=2),
        Case("G64", 64, 100, 1024, 1024, num_layers=2),
        Case("G256", 256, 100, 1024, 1024, num_layers=2),
        CASES["S3"],
        CASES["S4"],
    )
}
