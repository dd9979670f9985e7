"""Batch scoring and parameter sweeps on an engine: local (in this process), Dask or Spark.

    from nb2prod.scale import score, sweep

    result = score("production", "customers.parquet", "scores/", store="runs", engine="dask")
    swept = sweep("fraud.ipynb", {"max_depth": ["4", "8"]}, engine="dask", metric="f1", promote_best=True)

`score` returns a `ScoreResult`, `sweep` a `SweepResult` (frozen dataclasses with `to_dict()`).
Engines other than local are imported only when chosen (`pip install nb2prod[dask]`, `nb2prod[spark]`).
"""

from nb2prod.scale.engine import ENGINES
from nb2prod.scale.scoring import ScoreResult, score
from nb2prod.scale.sweep import SweepPoint, SweepResult, parse_grid, sweep

__all__ = ["ENGINES", "ScoreResult", "SweepPoint", "SweepResult", "parse_grid", "score", "sweep"]
