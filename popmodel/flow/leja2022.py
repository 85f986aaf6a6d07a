r"""The released normalizing flow of Leja et al. (2022), reimplemented to read its weights.

Leja et al. 2022 (ApJ 936, 165) released the flow that describes the density of their
training sample in (z, log M, log SFR) as a PyTorch ``state_dict``
(``trained_flow_nsamp100.pth`` in github.com/jrleja/sfs_leja_trained_flow). This module is an
independent implementation of that architecture (the released ``code/torch_light.py``),
written from the description of the layers, that loads the file and evaluates the density:

* input ``x = (z, log M - 10, log SFR, d)`` with ``d`` a dummy coordinate that makes the
  dimension even; base distribution N(0, I_4);
* five units of [Glow invertible 1x1 convolution, ``y = x W`` with
  ``W = P L (U + diag S)`` (Kingma & Dhariwal 2018), ``log|det| = sum log|S|``] followed by a
  neural-spline coupling layer (Durkan et al. 2019): the upper half is transformed by a
  rational-quadratic spline whose parameters come from an MLP of the lower half, then the lower
  half by a spline conditioned on the new upper half;
* K = 8 bins on [-3, 3], identity outside, unit boundary derivatives, minimum bin width,
  height and derivative 1e-3; each conditioner is Linear(2, 16)-LeakyReLU(0.2)-Linear(16, 16)-
  LeakyReLU-Linear(16, 16)-LeakyReLU-Linear(16, 46);
* the released weights need two quirks of the original code: widths and heights pass through
  ``2 B softmax`` before the spline's own softmax, and the interior derivatives through
  ``softplus`` before the spline's own ``softplus``.

The dummy coordinate is marginalised by trapezoid quadrature (the released script's
N(0, 1)-weighted *average* gives 0.282 = 1/(2 sqrt(pi)) times the marginal). The density is
that of Leja's training sample (its redshift distribution included, e.g. the jump at z = 0.8)
and is an extrapolation below the mass-completeness limits: use it for the conditional
p(log SFR | log M, z) above completeness, never as a population (it is not a volume density).

The weights file has no licence, so it is not shipped with popmodel: pass its path.

References:
    | Leja et al. 2022, ApJ 936, 165 (arXiv:2110.04314)
    | Durkan et al. 2019, Neural Spline Flows (arXiv:1906.04032)
    | Kingma & Dhariwal 2018, Glow (arXiv:1807.03039)
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor, nn

__all__ = [
    "LEJA2022_COMPLETENESS_3DHST",
    "LEJA2022_COMPLETENESS_COSMOS2015",
    "Leja2022Flow",
    "leja2022_mass_limit",
]

#: Mass-completeness limits of 3D-HST converted to Prospector masses (Leja et al. 2022,
#: released script ``sample_nf_probability_density.py``; Tal et al. 2014 limits): redshifts and
#: log10 M_c [Msun], linear interpolation, flat beyond the ends.
LEJA2022_COMPLETENESS_3DHST = {
    "z": (0.65, 1.0, 1.5, 2.1, 3.0),
    "log_mass": (8.86614882, 9.07108637, 9.63281923, 9.89486727, 10.15444536),
}
#: The same for COSMOS-2015 (Laigle et al. 2016 Table 6 converted to Prospector masses).
LEJA2022_COMPLETENESS_COSMOS2015 = {
    "z": (0.175, 0.5, 0.8, 1.125, 1.525, 2.0),
    "log_mass": (8.57779419, 9.13212072, 9.54630419, 9.75007079, 10.10434753, 10.30023359),
}

_N_UNITS = 5
_DIM = 4
_BINS = 8
_TAIL = 3.0
_HIDDEN = 16
_MIN = 1e-3  # minimum bin width, bin height and derivative


def leja2022_mass_limit(z: np.ndarray | float) -> np.ndarray:
    """Mass-completeness limit of Leja et al. 2022's training sample [log10 Msun].

    COSMOS-2015 below z = 0.8 and 3D-HST above (Leja et al. 2022's released code:
    COSMOS-2015 covers 0.2 < z < 0.8 and 3D-HST 0.5 < z < 3, 3D-HST being deeper in the
    overlap, so the smaller limit applies there).

    Args:
        z: Redshift(s).

    Returns:
        log10 M_c(z).
    """
    z = np.asarray(z, dtype=np.float64)
    c = np.interp(z, LEJA2022_COMPLETENESS_COSMOS2015["z"], LEJA2022_COMPLETENESS_COSMOS2015["log_mass"])
    h = np.interp(z, LEJA2022_COMPLETENESS_3DHST["z"], LEJA2022_COMPLETENESS_3DHST["log_mass"])
    return np.where(z < 0.5, c, np.where(z > 0.8, h, np.minimum(c, h)))


def _softmax(x: Tensor) -> Tensor:
    """Softmax over the last axis (explicitly: torch's CPU kernel is slow for 8-wide rows)."""
    e = torch.exp(x - x.amax(dim=-1, keepdim=True))
    return e / e.sum(dim=-1, keepdim=True)


def _softplus(x: Tensor) -> Tensor:
    """log(1 + exp(x)), stable."""
    return torch.clamp(x, min=0.0) + torch.log1p(torch.exp(-torch.abs(x)))


def _rq_spline(x: Tensor, raw_w: Tensor, raw_h: Tensor, raw_d: Tensor) -> tuple[Tensor, Tensor]:
    """Rational-quadratic spline on [-B, B] (identity outside), released-flow parametrisation.

    Args:
        x: ``(n, m)`` inputs.
        raw_w, raw_h: ``(n, m, K)`` widths and heights after the coupling layer's
            ``2 B softmax``.
        raw_d: ``(n, m, K - 1)`` interior derivative parameters after its ``softplus``.

    Returns:
        Outputs and elementwise log-derivatives, both ``(n, m)``.
    """
    k = raw_w.shape[-1]
    span = 2.0 * _TAIL

    def knots(raw: Tensor) -> tuple[Tensor, Tensor]:
        frac = _MIN + (1.0 - _MIN * k) * _softmax(raw)
        cum = torch.cumsum(frac, dim=-1)
        cum = torch.cat([torch.zeros_like(cum[..., :1]), cum[..., :-1], torch.ones_like(cum[..., :1])], -1)
        cum = span * cum - _TAIL
        return cum, cum[..., 1:] - cum[..., :-1]

    xk, widths = knots(raw_w)
    yk, heights = knots(raw_h)
    # boundary derivatives are exactly 1: MIN + softplus(log(exp(1 - MIN) - 1)) = 1
    edge = torch.full_like(raw_d[..., :1], 1.0)
    deriv = torch.cat([edge, _MIN + _softplus(raw_d), edge], dim=-1)

    inside = (x >= -_TAIL) & (x <= _TAIL)
    xc = x.clamp(-_TAIL, _TAIL)
    idx = (xc[..., None] >= xk[..., 1:k]).sum(-1, keepdim=True)  # bin index in [0, K-1]

    def take(t: Tensor) -> Tensor:
        return t.gather(-1, idx)[..., 0]

    x0, w, y0, h = take(xk), take(widths), take(yk), take(heights)
    d0, d1 = take(deriv[..., :-1]), take(deriv[..., 1:])
    s = h / w
    t = (xc - x0) / w
    t1t = t * (1.0 - t)
    denom = s + (d0 + d1 - 2.0 * s) * t1t
    y = y0 + h * (s * t * t + d0 * t1t) / denom
    log_dy = 2.0 * torch.log(s) + torch.log(d1 * t * t + 2.0 * s * t1t + d0 * (1.0 - t) ** 2)
    log_dy = log_dy - 2.0 * torch.log(denom)
    return torch.where(inside, y, x), torch.where(inside, log_dy, torch.zeros_like(x))


class _Conditioner(nn.Module):
    """MLP 2 -> 16 -> 16 -> 16 -> 46 with LeakyReLU(0.2) (attribute ``net`` as in the file)."""

    def __init__(self) -> None:
        super().__init__()
        half = _DIM // 2
        self.net = nn.Sequential(
            nn.Linear(half, _HIDDEN),
            nn.LeakyReLU(0.2),
            nn.Linear(_HIDDEN, _HIDDEN),
            nn.LeakyReLU(0.2),
            nn.Linear(_HIDDEN, _HIDDEN),
            nn.LeakyReLU(0.2),
            nn.Linear(_HIDDEN, (3 * _BINS - 1) * half),
        )

    def spline_params(self, cond: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Widths, heights and interior derivatives, each with the released pre-transforms."""
        out = self.net(cond).reshape(cond.shape[0], _DIM // 2, 3 * _BINS - 1)
        raw_w, raw_h, raw_d = out[..., :_BINS], out[..., _BINS : 2 * _BINS], out[..., 2 * _BINS :]
        raw_w = 2.0 * _TAIL * _softmax(raw_w)
        raw_h = 2.0 * _TAIL * _softmax(raw_h)
        return raw_w, raw_h, _softplus(raw_d)


class _SplineCoupling(nn.Module):
    """Two-step spline coupling: upper | f1(lower), then lower | f2(new upper)."""

    def __init__(self) -> None:
        super().__init__()
        self.f1 = _Conditioner()
        self.f2 = _Conditioner()

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        half = _DIM // 2
        lower, upper = x[:, :half], x[:, half:]
        upper, ld1 = _rq_spline(upper, *self.f1.spline_params(lower))
        lower, ld2 = _rq_spline(lower, *self.f2.spline_params(upper))
        return torch.cat([lower, upper], dim=1), ld1.sum(1) + ld2.sum(1)


class _LUConv(nn.Module):
    """Invertible 1x1 convolution, ``y = x P L (U + diag S)``; ``P`` is a fixed permutation."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("P", torch.eye(_DIM))
        self.L = nn.Parameter(torch.eye(_DIM))
        self.S = nn.Parameter(torch.ones(_DIM))
        self.U = nn.Parameter(torch.zeros(_DIM, _DIM))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        eye = torch.eye(_DIM, dtype=self.L.dtype, device=self.L.device)
        lower = torch.tril(self.L, diagonal=-1) + eye
        upper = torch.triu(self.U, diagonal=1) + torch.diag(self.S)
        w = self.P @ lower @ upper
        log_det = torch.log(torch.abs(self.S)).sum()
        return x @ w, log_det.expand(x.shape[0])


class Leja2022Flow(nn.Module):
    """The Leja et al. (2022) flow over ``x = (z, log M - 10, log SFR, d)``.

    Example:
        >>> flow = Leja2022Flow.load("trained_flow_nsamp100.pth")  # doctest: +SKIP
        >>> flow.log_prob(torch.tensor([[1.0, 0.0, 0.5, 0.0]]))  # doctest: +SKIP
        tensor([-2.8524])
    """

    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for _ in range(_N_UNITS):
            layers += [_LUConv(), _SplineCoupling()]
        self.bij = nn.ModuleList(layers)

    @classmethod
    def load(cls, path: str | os.PathLike, dtype: torch.dtype = torch.float64) -> Leja2022Flow:
        """Read the released ``state_dict`` (``trained_flow_nsamp100.pth``).

        Args:
            path: Path of the weights file (not shipped with popmodel: it has no licence).
            dtype: Evaluation precision; the weights are float32, float64 evaluation changes
                log p by < 1e-5.

        Returns:
            The flow in evaluation mode, gradients off.

        Raises:
            FileNotFoundError: If ``path`` does not exist.
            ValueError: If the file's keys or shapes do not match the architecture.
        """
        if not os.path.exists(path):
            raise FileNotFoundError(
                f"Leja et al. 2022 flow weights not found at {path!s}; download "
                "data/trained_flow_nsamp100.pth from github.com/jrleja/sfs_leja_trained_flow"
            )
        state = torch.load(path, map_location="cpu", weights_only=True)
        flow = cls()
        expected = set(flow.state_dict())
        got = set(state)
        if expected != got:
            raise ValueError(
                f"{path!s} is not the Leja et al. 2022 flow: missing keys "
                f"{sorted(expected - got)[:5]}, unexpected keys {sorted(got - expected)[:5]}"
            )
        for key, value in flow.state_dict().items():
            if tuple(state[key].shape) != tuple(value.shape):
                raise ValueError(f"{path!s}: {key} has shape {tuple(state[key].shape)}")
        flow.load_state_dict(state)
        flow = flow.to(dtype).eval()
        for p in flow.parameters():
            p.requires_grad_(False)
        return flow

    @property
    def dtype(self) -> torch.dtype:
        """Floating-point type of the parameters."""
        return self.bij[0].S.dtype

    def log_prob(self, x: Tensor) -> Tensor:
        """Natural-log density of ``x = (z, log M - 10, log SFR, d)``.

        Args:
            x: ``(n, 4)`` points.

        Returns:
            ``(n,)`` log density per unit z per dex^2 per unit d.
        """
        if x.ndim != 2 or x.shape[1] != _DIM:
            raise ValueError(f"x must have shape (n, 4) = (z, logM-10, logSFR, d), got {tuple(x.shape)}")
        y = x.to(self.dtype)
        log_det = torch.zeros(y.shape[0], dtype=y.dtype, device=y.device)
        for layer in self.bij:
            y, ld = layer(y)
            log_det = log_det + ld
        log_base = -0.5 * (y * y).sum(1) - 0.5 * _DIM * math.log(2.0 * math.pi)
        return log_base + log_det

    def log_prob_3d(
        self,
        z: np.ndarray | Sequence[float] | float,
        log_mass: np.ndarray | Sequence[float] | float,
        log_sfr: np.ndarray | Sequence[float] | float,
        n_dummy: int = 49,
        dummy_max: float = 6.0,
        chunk: int = 400_000,
    ) -> np.ndarray:
        r"""log p(z, log M, log SFR) with the dummy coordinate marginalised by quadrature.

        :math:`p(x) = \int p(x, d)\,dd` by the trapezoid rule on ``n_dummy`` evenly spaced
        nodes in ``[-dummy_max, dummy_max]``. The spline kinks in d make Gauss-Hermite converge
        slowly (errors ~1e-3 in log p with 16-64 nodes); the default 49 nodes on [-6, 6] (the
        rule of the reference values in the test suite) are within 3e-4 of the converged
        integral, and 9 nodes on [-4, 4] within ~3e-3 (enough to draw mocks).

        Args:
            z: Redshift(s).
            log_mass: log10 M* [Msun].
            log_sfr: log10 SFR [Msun/yr].
            n_dummy: Number of quadrature nodes (odd numbers include d = 0).
            dummy_max: Half-width of the quadrature range.
            chunk: Flow evaluations per batch.

        Returns:
            Natural-log density per unit z per dex^2, with the broadcast shape of the inputs.
        """
        if n_dummy < 2:
            raise ValueError(f"n_dummy must be at least 2, got {n_dummy}")
        zz, mm, ss = np.broadcast_arrays(
            np.asarray(z, np.float64), np.asarray(log_mass, np.float64), np.asarray(log_sfr, np.float64)
        )
        shape = zz.shape
        base = np.stack([zz.ravel(), mm.ravel() - 10.0, ss.ravel()], axis=1)
        nodes = np.linspace(-dummy_max, dummy_max, n_dummy)
        weights = np.full(n_dummy, nodes[1] - nodes[0])
        weights[[0, -1]] *= 0.5
        log_w = torch.as_tensor(np.log(weights), dtype=self.dtype)
        d = torch.as_tensor(nodes, dtype=self.dtype)
        out = np.empty(base.shape[0])
        per = max(1, chunk // n_dummy)
        with torch.no_grad():
            for start in range(0, base.shape[0], per):
                b = torch.as_tensor(base[start : start + per], dtype=self.dtype)
                n = b.shape[0]
                x = torch.cat([b.repeat_interleave(n_dummy, 0), d.repeat(n)[:, None]], dim=1)
                lp = self.log_prob(x).reshape(n, n_dummy)
                out[start : start + n] = torch.logsumexp(lp + log_w, dim=1).numpy()
        return out.reshape(shape)

    def conditional_log_density(
        self,
        log_mass: np.ndarray | float,
        z: np.ndarray | float,
        log_sfr_grid: np.ndarray,
        n_dummy: int = 49,
        dummy_max: float = 6.0,
    ) -> np.ndarray:
        """log p(log SFR | log M, z) on a grid, normalised numerically over the grid.

        Args:
            log_mass: ``(n,)`` log10 M* [Msun] (or a scalar).
            z: ``(n,)`` redshifts (or a scalar).
            log_sfr_grid: ``(g,)`` increasing log10 SFR grid [Msun/yr].
            n_dummy: Quadrature nodes for the dummy coordinate (see :meth:`log_prob_3d`).
            dummy_max: Half-width of the dummy quadrature range.

        Returns:
            ``(n, g)`` natural-log density per dex, integrating to 1 over the grid (trapezoid).
        """
        m, zz = np.broadcast_arrays(np.atleast_1d(np.asarray(log_mass, float)), np.atleast_1d(np.asarray(z, float)))
        grid = np.asarray(log_sfr_grid, float)
        lp = self.log_prob_3d(
            zz[:, None], m[:, None], grid[None, :], n_dummy=n_dummy, dummy_max=dummy_max
        )
        peak = lp.max(axis=1, keepdims=True)
        norm = np.log(np.trapezoid(np.exp(lp - peak), grid, axis=1))[:, None] + peak
        return lp - norm
