"""Scoring on Spark local[2] (one session for every Spark test: it is slow to start)."""

from __future__ import annotations

import json

from nb2prod.scale import score

from .conftest import read_scores, transactions


def test_spark_scores_like_the_local_engine_and_in_process_predict(fraud, data, expected, spark, tmp_path):
    result = score(
        "production",
        data["parts"],
        tmp_path / "spark",
        store=fraud["store"],
        engine="spark",
        chunk_rows=2_000,
        id_column="txn_id",
    )
    local = score(
        "production", data["parts"], tmp_path / "local", store=fraud["store"], chunk_rows=2_000, id_column="txn_id"
    )
    assert result.engine == "spark" and result.workers == 2
    on_spark, on_local = read_scores(tmp_path / "spark"), read_scores(tmp_path / "local")
    assert on_spark["txn_id"].tolist() == on_local["txn_id"].tolist() == transactions(12_000)["txn_id"].tolist()
    assert on_spark["prediction"].tolist() == on_local["prediction"].tolist() == expected
    assert set(on_spark["run_id"]) == {fraud["run_id"]} and set(on_spark["model_sha256"]) == {local.model_sha256}
    manifest = json.loads((tmp_path / "spark" / "_manifest.json").read_text())
    assert manifest["engine"] == "spark" and manifest["engine_address"] == "local[2]"
    # Spark reuses its Python workers: the model is loaded once per worker process, not per chunk
    assert manifest["model_loads"] == len(manifest["chunks_by_worker"]) <= 2
    assert spark.sparkContext._jsc is not None  # a session the job did not start is left running


def test_spark_sets_bad_rows_aside(fraud, spark, tmp_path):
    frame = transactions(5_000).astype({"distance_from_home": object})
    frame.loc[10, "distance_from_home"] = "far"
    frame.loc[4_000, "distance_from_home"] = None
    path = tmp_path / "in.csv"
    frame.to_csv(path, index=False)
    result = score(
        "production",
        path,
        tmp_path / "out",
        store=fraud["store"],
        engine="spark",
        chunk_rows=1_000,
        id_column="txn_id",
        bad_rows=tmp_path / "bad.jsonl",
    )
    assert (result.rows, result.scored, result.bad_rows) == (5_000, 4_998, 2)
    bad = [json.loads(line) for line in (tmp_path / "bad.jsonl").read_text().splitlines()]
    assert [(b["row"], b["id"], b["rule"]) for b in bad] == [(11, 10_010, "not-a-number"), (4001, 14_000, "null")]
    assert len(read_scores(tmp_path / "out")) == 4_998
