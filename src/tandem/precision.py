"""The precisions a model is prepared and served in: alone so that settings (and so every
command) read it without importing numpy through `tandem.model_files`."""

from __future__ import annotations

from enum import StrEnum


class Precision(StrEnum):
    FP32 = "fp32"
    INT8 = "int8"
