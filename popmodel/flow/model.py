r"""The population flow: p(z, log M, log SFR) as two zuko neural-spline flows.

The density is factorised along the order (z, log M, log SFR),

.. math::

    p_\theta(z, \log M, \log \mathrm{SFR}) = p_\theta(z, \log M)\;
    p_\theta(\log \mathrm{SFR} \mid z, \log M),

a two-dimensional neural-spline flow (Durkan et al. 2019; zuko ``NSF``, masked autoregressive)
for the first factor and a one-dimensional neural-spline flow conditioned on (z, log M) for the
second. This is itself a normalizing flow over the three variables (an autoregressive flow in
that order), and the factorisation is what the star-forming sequence needs: the conditional
p(log SFR | log M, z) is available in closed form (no slicing and renormalising), and the
selection normalisation, which involves (z, log M) only, is a two-dimensional quadrature
(:mod:`popmodel.flow.selection`).

With ``conditional_on_z=True`` the first factor is p(log M | z) instead (a one-dimensional flow
with z as context): the redshift distribution of the sample, which is shaped by the survey and
of no interest for the sequence, is then not modelled.

All inputs are standardised, ``u = (x - loc) / scale`` with ``loc`` and ``scale`` stored as
buffers, and densities are returned per unit of the physical variables.

References:
    | Durkan et al. 2019, Neural Spline Flows (arXiv:1906.04032)
    | Papamakarios et al. 2017, Masked Autoregressive Flow (arXiv:1705.07057)
    | Rozet et al., zuko (github.com/probabilists/zuko)
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from functools import partial
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
import zuko
from torch import Tensor, nn
from torch.distributions import Transform
from zuko.distributions import DiagNormal
from zuko.flows import MaskedAutoregressiveTransform, UnconditionalDistribution
from zuko.transforms import MonotonicRQSTransform

__all__ = ["FlowConfig", "SFSFlow", "spline_flow"]


def _softmax(x: Tensor) -> Tensor:
    e = torch.exp(x - x.amax(dim=-1, keepdim=True))
    return e / e.sum(dim=-1, keepdim=True)


class _RQSTransform(MonotonicRQSTransform):
    """zuko's monotonic RQS transform with an explicit softmax.

    Mathematically identical to :class:`zuko.transforms.MonotonicRQSTransform` (same
    parametrisation, so state dicts are interchangeable); torch's CPU softmax kernel is slow on
    rows of K = 8 and took a third of the training time.
    """

    def __init__(
        self, widths: Tensor, heights: Tensor, derivatives: Tensor, bound: float = 5.0,
        slope: float = 1e-3, **kwargs: object,
    ) -> None:
        Transform.__init__(self, **kwargs)
        log_slope = math.log(slope)
        widths = widths / (1 + abs(2 * widths / log_slope))
        heights = heights / (1 + abs(2 * heights / log_slope))
        derivatives = derivatives / (1 + abs(derivatives / log_slope))
        widths = F.pad(_softmax(widths), (1, 0), value=0)
        heights = F.pad(_softmax(heights), (1, 0), value=0)
        derivatives = F.pad(derivatives, (1, 1), value=0)
        self.horizontal = bound * (2 * torch.cumsum(widths, dim=-1) - 1)
        self.vertical = bound * (2 * torch.cumsum(heights, dim=-1) - 1)
        self.derivatives = torch.exp(derivatives)


def spline_flow(
    features: int,
    context: int,
    transforms: int,
    hidden: tuple[int, ...],
    bins: int,
    affine_first: bool = True,
) -> zuko.flows.Flow:
    """A zuko masked-autoregressive neural spline flow (``zuko.flows.NSF`` layout).

    Args:
        features: Dimension of the variable.
        context: Dimension of the context (0 for none).
        transforms: Number of spline transforms.
        hidden: Hidden widths of each conditioner MLP.
        bins: Spline bins.
        affine_first: Start with a (context-dependent, autoregressive) affine transform, so
            the splines act on an approximately standardised variable: a Gaussian-like
            conditional is then the identity spline, and its location and width are learned
            by the affine layer.

    Returns:
        The flow (data -> base order: affine, then the splines, alternating the
        autoregressive order as ``zuko.flows.MAF`` does).
    """
    orders = [torch.arange(features), torch.flipud(torch.arange(features))]
    layers = []
    if affine_first:
        layers.append(MaskedAutoregressiveTransform(
            features=features, context=context, order=orders[0], hidden_features=hidden,
        ))
    for i in range(transforms):
        layers.append(MaskedAutoregressiveTransform(
            features=features, context=context, order=orders[(i + int(affine_first)) % 2],
            hidden_features=hidden, univariate=partial(_RQSTransform, slope=1e-3),
            shapes=[(bins,), (bins,), (bins - 1,)],
        ))
    base = UnconditionalDistribution(
        DiagNormal, loc=torch.zeros(features), scale=torch.ones(features), buffer=True
    )
    return zuko.flows.Flow(layers, base)


@dataclass(frozen=True)
class FlowConfig:
    """Architecture of :class:`SFSFlow`.

    The defaults are small: on a 10^4-galaxy mock with 0.4 dex SFR errors (32 samples each),
    one (16, 16) mass transform and two (32, 32) SFR transforms reached a better validation
    loss than two (32, 32) and two (48, 48) ones (2.3547 vs 2.3572 nats per galaxy, at the
    early-stopping point: larger flows overfit sooner) at 1.8x the throughput. The
    (z, log M) density is smooth and needs little capacity; the SFR conditional (bimodal,
    mass- and redshift-dependent) gets more.

    Attributes:
        conditional_on_z: Model p(log M, log SFR | z) instead of the joint density.
        mass_transforms: Spline transforms of the (z, log M) flow.
        mass_hidden: Hidden layer widths of its conditioners.
        sfr_transforms: Spline transforms of the SFR flow.
        sfr_hidden: Hidden layer widths of its conditioners.
        bins: Spline bins (K) of the (z, log M) flow.
        sfr_bins: Spline bins of the SFR flow. Few: the deconvolved SFR conditional is
            constrained only on scales above the SFR errors, and with 8 bins the flow put
            unconstrained 0.2 dex bumps at its knots (0.4 dex errors, 6x10^4 galaxies), with 4
            it followed the true Gaussian; two transforms of 4 bins still make a bimodal
            (star-forming + quiescent) conditional.
        affine_first: Each flow starts with a conditional affine transform (see
            :func:`spline_flow`).
    """

    conditional_on_z: bool = False
    mass_transforms: int = 1
    mass_hidden: tuple[int, ...] = (16, 16)
    sfr_transforms: int = 2
    sfr_hidden: tuple[int, ...] = (32, 32)
    bins: int = 8
    sfr_bins: int = 4
    affine_first: bool = True
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("mass_transforms", "sfr_transforms", "bins", "sfr_bins"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"FlowConfig.{name} must be >= 1, got {getattr(self, name)}")
        for name in ("mass_hidden", "sfr_hidden"):
            widths = tuple(int(w) for w in getattr(self, name))
            if not widths or min(widths) < 1:
                raise ValueError(f"FlowConfig.{name} must be non-empty positive widths")
            object.__setattr__(self, name, widths)

    def to_dict(self) -> dict:
        """JSON-ready dict."""
        d = asdict(self)
        d["mass_hidden"] = list(self.mass_hidden)
        d["sfr_hidden"] = list(self.sfr_hidden)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> FlowConfig:
        """Inverse of :meth:`to_dict`."""
        d = dict(d)
        for k in ("mass_hidden", "sfr_hidden"):
            if k in d:
                d[k] = tuple(d[k])
        return cls(**d)


class SFSFlow(nn.Module):
    """Normalizing flow for the galaxy population in (z, log M, log SFR).

    Args:
        config: Architecture.
        loc: ``(3,)`` standardisation offsets of (z, log M, log SFR).
        scale: ``(3,)`` standardisation scales.

    Example:
        >>> flow = SFSFlow(FlowConfig(), loc=[1.2, 10.0, 0.8], scale=[0.5, 0.5, 0.6])
        >>> x = torch.tensor([[1.0, 10.0, 1.0]])
        >>> flow.log_prob(x).shape
        torch.Size([1])
    """

    def __init__(
        self, config: FlowConfig, loc: np.ndarray | list[float], scale: np.ndarray | list[float]
    ) -> None:
        super().__init__()
        loc_t = torch.as_tensor(np.asarray(loc, dtype=np.float64), dtype=torch.float32)
        scale_t = torch.as_tensor(np.asarray(scale, dtype=np.float64), dtype=torch.float32)
        if loc_t.shape != (3,) or scale_t.shape != (3,):
            raise ValueError("loc and scale must have 3 entries (z, log_mass, log_sfr)")
        if not bool(torch.all(torch.isfinite(loc_t))) or not bool(torch.all(scale_t > 0)):
            raise ValueError(f"standardisation must be finite with positive scales: {loc}, {scale}")
        self.config = config
        self.register_buffer("loc", loc_t)
        self.register_buffer("scale", scale_t)
        if config.conditional_on_z:
            self.mass_flow = spline_flow(1, 1, config.mass_transforms, config.mass_hidden, config.bins,
                                         config.affine_first)
        else:
            self.mass_flow = spline_flow(2, 0, config.mass_transforms, config.mass_hidden, config.bins,
                                         config.affine_first)
        self.sfr_flow = spline_flow(1, 2, config.sfr_transforms, config.sfr_hidden, config.sfr_bins,
                                    config.affine_first)

    # ------------------------------------------------------------------ standardised space
    def standardize(self, x: Tensor) -> Tensor:
        """``(x - loc) / scale`` for ``x = (..., 3)`` physical (z, log M, log SFR)."""
        return (x - self.loc.to(x.dtype)) / self.scale.to(x.dtype)

    def log_prob_zm_u(self, u_zm: Tensor) -> Tensor:
        """log p(z, log M) (or log p(log M | z)) in standardised units, ``u_zm = (n, 2)``."""
        if self.config.conditional_on_z:
            return self.mass_flow(u_zm[:, :1]).log_prob(u_zm[:, 1:2])
        return self.mass_flow().log_prob(u_zm)

    def log_prob_sfr_u(self, u: Tensor) -> Tensor:
        """log p(log SFR | z, log M) in standardised units, ``u = (n, 3)``."""
        return self.sfr_flow(u[:, :2]).log_prob(u[:, 2:3])

    @property
    def log_jacobian(self) -> Tensor:
        """log of the standardisation Jacobian of the modelled variables (to subtract)."""
        logs = torch.log(self.scale)
        return logs[1:].sum() if self.config.conditional_on_z else logs.sum()

    # ------------------------------------------------------------------ physical units
    def log_prob(self, x: Tensor) -> Tensor:
        """Natural-log density at physical points ``x = (..., 3)`` = (z, log M, log SFR).

        Returns log p(z, log M, log SFR) per unit z per dex^2, or log p(log M, log SFR | z)
        per dex^2 when ``conditional_on_z``.
        """
        if x.shape[-1] != 3:
            raise ValueError(f"x must end with 3 columns (z, log_mass, log_sfr), got {tuple(x.shape)}")
        batch = x.shape[:-1]
        u = self.standardize(x.reshape(-1, 3))
        lp = self.log_prob_zm_u(u[:, :2]) + self.log_prob_sfr_u(u)
        return (lp - self.log_jacobian.to(lp.dtype)).reshape(batch)

    def log_prob_sfr(self, log_sfr: Tensor, z: Tensor, log_mass: Tensor) -> Tensor:
        """log p(log SFR | log M, z) per dex, broadcasting the three inputs."""
        s, zz, m = torch.broadcast_tensors(log_sfr, z, log_mass)
        x = torch.stack([zz, m, s], dim=-1)
        u = self.standardize(x.reshape(-1, 3))
        lp = self.log_prob_sfr_u(u) - torch.log(self.scale[2]).to(u.dtype)
        return lp.reshape(s.shape)

    def conditional_log_density(
        self, log_mass: np.ndarray, z: np.ndarray, log_sfr_grid: np.ndarray, chunk: int = 262_144
    ) -> np.ndarray:
        """``(n, g)`` log p(log SFR | log M, z) on a grid, as numpy (no gradients).

        Args:
            log_mass: ``(n,)`` log10 M* [Msun].
            z: ``(n,)`` redshifts.
            log_sfr_grid: ``(g,)`` log10 SFR grid [Msun/yr].
            chunk: Points per evaluation batch.
        """
        m, zz = np.broadcast_arrays(np.atleast_1d(np.asarray(log_mass, float)), np.atleast_1d(np.asarray(z, float)))
        g = np.asarray(log_sfr_grid, float)
        mm = np.repeat(m, g.size)
        zr = np.repeat(zz, g.size)
        ss = np.tile(g, m.size)
        out = np.empty(mm.size)
        dtype, dev = self.loc.dtype, self.loc.device
        with torch.no_grad():
            for k in range(0, mm.size, chunk):
                sl = slice(k, k + chunk)
                out[sl] = self.log_prob_sfr(
                    torch.as_tensor(ss[sl], dtype=dtype, device=dev),
                    torch.as_tensor(zr[sl], dtype=dtype, device=dev),
                    torch.as_tensor(mm[sl], dtype=dtype, device=dev),
                ).double().cpu().numpy()
        return out.reshape(m.size, g.size)

    def log_prob_zm(self, z: Tensor, log_mass: Tensor) -> Tensor:
        """log p(z, log M) per unit z per dex (or log p(log M | z) per dex)."""
        zz, m = torch.broadcast_tensors(z, log_mass)
        u_zm = torch.stack([(zz - self.loc[0]) / self.scale[0], (m - self.loc[1]) / self.scale[1]], -1)
        lp = self.log_prob_zm_u(u_zm.reshape(-1, 2)).reshape(zz.shape)
        logs = torch.log(self.scale)
        return lp - (logs[1] if self.config.conditional_on_z else logs[0] + logs[1])

    def sample_sfr(self, z: Tensor, log_mass: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Draw log SFR from p(log SFR | log M, z) at each (z, log M) (no gradients)."""
        zz, m = torch.broadcast_tensors(z, log_mass)
        u_ctx = torch.stack([(zz - self.loc[0]) / self.scale[0], (m - self.loc[1]) / self.scale[1]], -1)
        u_ctx = u_ctx.reshape(-1, 2)
        with torch.no_grad():
            dist = self.sfr_flow(u_ctx)
            eps = torch.randn(u_ctx.shape[0], 1, generator=generator, dtype=u_ctx.dtype)
            u = dist.transform.inv(eps)
        return (u[:, 0] * self.scale[2] + self.loc[2]).reshape(zz.shape)

    def describe(self) -> dict:
        """Configuration, standardisation and parameter count, JSON-ready."""
        return {
            "config": self.config.to_dict(),
            "loc": self.loc.tolist(),
            "scale": self.scale.tolist(),
            "n_parameters": int(sum(p.numel() for p in self.parameters())),
            "variables": ["z", "log_mass", "log_sfr"],
            "density": "p(log M, log SFR | z)" if self.config.conditional_on_z else "p(z, log M, log SFR)",
        }
