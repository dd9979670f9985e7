"""Scoring and sweeps on a real Dask cluster (2 worker processes on 127.0.0.1)."""

from __future__ import annotations

import json

from nb2prod.runs.aliases import AliasStore
from nb2prod.runs.store import RunStore
from nb2prod.scale import score

from .conftest import cli, read_scores, transactions


def test_a_local_dask_cluster_scores_like_the_local_engine(fraud, data, expected, tmp_path):
    score("production", data["parquet"], tmp_path / "local", store=fraud["store"], chunk_rows=1_500, id_column="txn_id")
    result = score(
        "production",
        data["parquet"],
        tmp_path / "dask",
        store=fraud["store"],
        engine="dask",
        workers=2,
        chunk_rows=1_500,
        id_column="txn_id",
    )
    assert result.engine == "dask" and result.workers == 2
    on_dask, on_local = read_scores(tmp_path / "dask"), read_scores(tmp_path / "local")
    assert on_dask["txn_id"].tolist() == on_local["txn_id"].tolist() == transactions(12_000)["txn_id"].tolist()
    assert on_dask["prediction"].tolist() == on_local["prediction"].tolist() == expected
    manifest = json.loads((tmp_path / "dask" / "_manifest.json").read_text())
    assert manifest["engine"] == "dask" and len(manifest["parts"]) == 8
    # the model is loaded and verified once per worker that scored, not once per chunk
    assert manifest["model_loads"] == len(manifest["chunks_by_worker"]) <= 2
    assert sum(manifest["chunks_by_worker"].values()) == 8


def test_the_score_command_against_a_running_scheduler(fraud, data, expected, dask_cluster, tmp_path):
    out = tmp_path / "out"
    result = cli(
        "score",
        "production",
        str(data["csv"]),
        str(out),
        "--store",
        str(fraud["store"]),
        "--engine",
        "dask",
        "--scheduler",
        dask_cluster.scheduler_address,
        "--chunk-rows",
        "3000",
        "--id-column",
        "txn_id",
    )
    assert result.returncode == 0, result.stderr
    assert "on dask (2 worker(s))" in result.stdout and "12,000 of 12,000 rows" in result.stdout
    scores = read_scores(out)
    assert scores["prediction"].tolist() == expected
    assert scores["txn_id"].tolist() == transactions(12_000)["txn_id"].tolist()
    manifest = json.loads((out / "_manifest.json").read_text())
    assert manifest["engine_address"] == dask_cluster.scheduler_address


def test_a_bad_row_on_dask_is_named_and_no_output_appears(fraud, dask_cluster, tmp_path):
    frame = transactions(6_000)
    frame = frame.astype({"merchant_category": "float64"})
    frame.loc[4_321, "merchant_category"] = 3.5  # not a whole number: data row 4,322
    path = tmp_path / "bad.parquet"
    frame.to_parquet(path, index=False)
    result = cli(
        "score",
        "production",
        str(path),
        str(tmp_path / "out"),
        "--store",
        str(fraud["store"]),
        "--engine",
        "dask",
        "--scheduler",
        dask_cluster.scheduler_address,
        "--chunk-rows",
        "1000",
    )
    assert result.returncode == 2
    assert "row 4322" in result.stderr and "'merchant_category'" in result.stderr and "'type'" in result.stderr
    assert not (tmp_path / "out").exists()


def test_a_sweep_on_dask_records_every_point_and_promotes_the_best(fraud, dask_cluster, tmp_path):
    """Four points on the cluster's two workers; max_depth=3 fails the notebook's precision gate."""
    store = tmp_path / "runs"
    result = cli(
        "sweep",
        str(fraud["build"]),
        "--grid",
        "max_depth=1,3,6,10",
        "-p",
        "n_transactions",
        "6000",
        "-p",
        "n_estimators",
        "15",
        "--train-engine",
        "python",
        "--store",
        str(store),
        "--engine",
        "dask",
        "--scheduler",
        dask_cluster.scheduler_address,
        "--promote-best",
        "f1",
        "--format",
        "json",
        timeout=900,
    )
    assert result.returncode == 0, result.stderr
    swept = json.loads(result.stdout)
    points = swept["points"]
    assert len(points) == 4 and swept["workers"] == 2
    assert sorted(p["params"]["max_depth"] for p in points) == [1, 3, 6, 10]
    failed = [p for p in points if p["status"] != "succeeded"]
    assert [(p["params"]["max_depth"], p["status"]) for p in failed] == [(3, "failed-gate")]
    assert "precision below gate" in failed[0]["failure"]
    passed = [p for p in points if p["status"] == "succeeded"]
    assert [p["metrics"]["f1"] for p in passed] == sorted((p["metrics"]["f1"] for p in passed), reverse=True)
    assert points[-1] == failed[0]  # the table lists failed points last
    # every point is a normal, immutable run in the store, with the parameters it ran with
    runs = {r.run_id: r.manifest for r in RunStore(store).list()}
    assert set(runs) == {p["run_id"] for p in points}
    for p in points:
        assert runs[p["run_id"]].params["max_depth"] == p["params"]["max_depth"]
        assert runs[p["run_id"]].params["n_estimators"] == 15
        assert runs[p["run_id"]].status == p["status"]
    best = passed[0]
    assert swept["best"]["run_id"] == best["run_id"]
    assert AliasStore(RunStore(store)).target("production") == best["run_id"]
    assert len({p["worker"] for p in points}) == 2  # both workers trained points
