"""Batch and layer normalisation compiled with numba, for arrays (N, C, P): the
positions of maps of any rank flattened, which sums them in the order of the
2-D maps' (rules/norm.py defines both).

Batch: each map is one task of the parallel loop (prange over maps), and a map's
sums run over images, then positions, in one fixed order in float64, so the bits
never depend on the thread count: the statistics of a batch come from that batch
alone, summed the same way on 1 thread or 16.  Layer: each image is one task,
its sums over maps, then positions.  (A one-pass form, chunks of a group combined
by Chan's update, was no faster here: these loops run at about 1 ns a value.)
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from .numba_conv import FASTMATH

_jit = dict(fastmath=FASTMATH, cache=True, error_model="numpy")


@njit(inline="always")
def _moments(x, c, eps):
    """(μ, 1/sqrt(σ² + eps)) of map c, σ² biased, both in float64."""
    count = x.shape[0] * x.shape[2]
    total = 0.0
    for n in range(x.shape[0]):
        for p in range(x.shape[2]):
            total += x[n, c, p]
    mean = total / count
    squares = 0.0
    for n in range(x.shape[0]):
        for p in range(x.shape[2]):
            d = x[n, c, p] - mean
            squares += d * d
    return mean, 1.0 / math.sqrt(squares / count + eps)


@njit(parallel=True, **_jit)
def norm_batch(x, eps):
    """x̂ = (x − μ_c) / sqrt(σ²_c + eps) per map c."""
    out = np.empty_like(x)
    for c in prange(x.shape[1]):
        mean, inv = _moments(x, c, eps)
        for n in range(x.shape[0]):
            for p in range(x.shape[2]):
                out[n, c, p] = (x[n, c, p] - mean) * inv
    return out


@njit(parallel=True, **_jit)
def norm_batch_grad(x, delta, eps):
    """δ_x = (δ − mean δ − x̂ · mean(δ ∘ x̂)) / s per map."""
    out = np.empty_like(delta)
    count = x.shape[0] * x.shape[2]
    for c in prange(x.shape[1]):
        mean, inv = _moments(x, c, eps)
        plain, weighted = 0.0, 0.0
        for n in range(x.shape[0]):
            for p in range(x.shape[2]):
                plain += delta[n, c, p]
                weighted += delta[n, c, p] * ((x[n, c, p] - mean) * inv)
        plain, weighted = plain / count, weighted / count
        for n in range(x.shape[0]):
            for p in range(x.shape[2]):
                xhat = (x[n, c, p] - mean) * inv
                out[n, c, p] = (delta[n, c, p] - plain - xhat * weighted) * inv
    return out


@njit(inline="always")
def _image_moments(x, n, eps):
    """(μ, 1/sqrt(σ² + eps)) of image n over its maps and positions, in float64."""
    count = x.shape[1] * x.shape[2]
    total = 0.0
    for c in range(x.shape[1]):
        for p in range(x.shape[2]):
            total += x[n, c, p]
    mean = total / count
    squares = 0.0
    for c in range(x.shape[1]):
        for p in range(x.shape[2]):
            d = x[n, c, p] - mean
            squares += d * d
    return mean, 1.0 / math.sqrt(squares / count + eps)


@njit(parallel=True, **_jit)
def norm_layer(x, eps):
    """x̂ = (x − μ_n) / sqrt(σ²_n + eps) per image n."""
    out = np.empty_like(x)
    for n in prange(x.shape[0]):
        mean, inv = _image_moments(x, n, eps)
        for c in range(x.shape[1]):
            for p in range(x.shape[2]):
                out[n, c, p] = (x[n, c, p] - mean) * inv
    return out


@njit(parallel=True, **_jit)
def norm_layer_grad(x, delta, eps):
    """δ_x = (δ − mean δ − x̂ · mean(δ ∘ x̂)) / s per image."""
    out = np.empty_like(delta)
    count = x.shape[1] * x.shape[2]
    for n in prange(x.shape[0]):
        mean, inv = _image_moments(x, n, eps)
        plain, weighted = 0.0, 0.0
        for c in range(x.shape[1]):
            for p in range(x.shape[2]):
                plain += delta[n, c, p]
                weighted += delta[n, c, p] * ((x[n, c, p] - mean) * inv)
        plain, weighted = plain / count, weighted / count
        for c in range(x.shape[1]):
            for p in range(x.shape[2]):
                xhat = (x[n, c, p] - mean) * inv
                out[n, c, p] = (delta[n, c, p] - plain - xhat * weighted) * inv
    return out
