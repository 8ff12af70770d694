"""A generated check's outcome (tools/check_ops.py, tools/check_forms.py) and the error
measure the checks share."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class SlotReport:
    op: str
    check: str       # 'shape', 'gradient', 'curvature', 'in_place', 'shared_input', 'epilogue',
                     # 'times', 'scaled', 'reads_scaled', 'times_upsampled'
    slot: str
    error: float     # norm-wise relative error, or 0/1 for shape
    ok: bool
    detail: str = ""


def relative_error(got: np.ndarray, want: np.ndarray) -> float:
    """‖g − ĝ‖ / max(‖g‖, ‖ĝ‖), 0 when both vanish."""
    scale = max(np.linalg.norm(got), np.linalg.norm(want))
    return 0.0 if scale == 0 else float(np.linalg.norm(got - want) / scale)
