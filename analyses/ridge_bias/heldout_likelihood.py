"""Is the flow's gap-filling an optimum of the likelihood or an underfit? Compare the mean
importance-sampled log-likelihood of all galaxies under the flow vs under the flow's p(z, M)
times the TRUE p(log SFR | log M, z)."""
import sys

import numpy as np
import torch

torch.set_num_threads(1)
from scipy.stats import norm

from popmodel.flow.data import flow_data_from_catalog
from popmodel.flow.fit import SFSConfig, fit_sfs
from popmodel.flow.mock import sequence_mock
from popmodel.flow.train import TrainConfig, galaxy_log_likelihood

seed = int(sys.argv[1]); n = int(sys.argv[2]); nf = len(sys.argv) > 3
LIMIT = (np.array([0.3, 2.7]), np.array([9.25, 9.75]))
cat, survey, truth = sequence_mock(n, n_samples=32, scatter=0.3, sfr_error=(0.15, 0.35), mass_error=0.1,
                                   log_mass_limit=LIMIT, log_mass_rolloff=8.0, schechter=(10.8, -1.0),
                                   quiescent_fraction=0.2, seed=seed)
cfg = SFSConfig(n_members=1, bootstrap=False, train=TrainConfig(progress=False, seed=seed * 100, sfs_tolerance=0.005, threads=1))
fit = fit_sfs(cat, survey, cfg)
f = fit.flows[0]
cat2, _, _ = sequence_mock(n, n_samples=32, scatter=0.3, sfr_error=(0.15, 0.35), mass_error=0.1,
                                   log_mass_limit=LIMIT, log_mass_rolloff=8.0, schechter=(10.8, -1.0),
                                   quiescent_fraction=0.2, seed=seed + 1000)
for label, c in (("train-mock", cat), ("independent mock", cat2)):
  print(label)
  data = flow_data_from_catalog(c, max_samples=32, z_jitter=0.005, seed=cfg.train.seed)
  x = torch.as_tensor(data.x, dtype=torch.float32)
  B, S, _ = x.shape
  with torch.no_grad():
      lzm = f.log_prob_zm(x[..., 0].reshape(-1), x[..., 1].reshape(-1)).reshape(B, S)
      lsf = f.log_prob_sfr(x[..., 2].reshape(-1), x[..., 0].reshape(-1), x[..., 1].reshape(-1)).reshape(B, S)
      z, m, s = (data.x[..., k] for k in range(3))
      mu = truth.ridge(m.ravel(), z.ravel()).reshape(B, S)
      pt = 0.8 * norm.pdf(s, mu, 0.3) + 0.2 * ((s > mu - 2.5) & (s < mu - 1.0)) / 1.5
      ltrue = torch.as_tensor(np.log(np.maximum(pt, 1e-300)), dtype=torch.float32)
      lw = torch.as_tensor(data.log_weight, dtype=torch.float32); lpr = torch.as_tensor(data.log_prior, dtype=torch.float32)
      for name, l in (("flow", lsf), ("true cond", ltrue)):
          for bc in (False, True):
              ll = galaxy_log_likelihood(lzm + l, lpr, lw, bc)
              print(f"{name:10s} bias_corr={bc}: mean lnL {ll.mean().item():.4f}  (sum {ll.sum().item():.1f})")
print("train epochs", len(fit.results[0].history), "best", fit.results[0].best_epoch)
