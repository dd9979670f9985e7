"""Monitoring: how today's inputs and scores compare with the baseline a run saved at training.

Public face: `drift(...)` (a `DriftReport`), `write_report(...)`, and the baseline format
(`baseline.Baseline`, `read_baseline`).
"""

from __future__ import annotations

from pathlib import Path

from nb2prod.monitor.drift import DEFAULT_ALPHA, DriftReport


def drift(
    store: object,
    ref: str,
    data: Path,
    *,
    alpha: float = DEFAULT_ALPHA,
    psi_threshold: float | None = None,
    since: str | None = None,
    window: int | None = None,
    score: bool = True,
) -> DriftReport:
    """Compare the rows in `data` with the baseline of run `ref` (run id, prefix or alias).

    Rows without the model's outputs (files, as opposed to a prediction log) are scored with the
    run's verified model and package predict when `score` is true, so the score distribution is
    compared too."""
    from nb2prod.errors import InputError
    from nb2prod.monitor.baseline import read_baseline
    from nb2prod.monitor.data import read_chunks
    from nb2prod.monitor.drift import DriftAccumulator
    from nb2prod.runs.store import RunStore

    run_store = store if isinstance(store, RunStore) else RunStore(Path(str(store)))
    run = run_store.get(ref)
    run_store.verify(run)  # the whole run folder, as promote and predict check it
    baseline = read_baseline(run.path)
    if baseline is None:
        raise InputError(
            f"run {run.run_id} has no baseline.json (it was trained before nb2prod saved baselines); train it again."
        )
    accumulator = DriftAccumulator(baseline)
    loaded = None
    names = {p.name for p in baseline.inputs}
    for chunk in read_chunks(Path(data), since=since, window=window):
        if not names & set(map(str, chunk.inputs.columns)):
            raise InputError(
                f"{data}: none of its columns is an input of run {run.run_id} "
                f"(expected {', '.join(p.name for p in baseline.inputs) or 'no recorded inputs'})"
            )
        scores = chunk.score
        if scores is None and score and baseline.score is not None and run.manifest.model is not None:
            if loaded is None:
                from nb2prod.runs.predicting import load_run

                loaded = load_run(run_store, run.run_id)
            scores = _scores(loaded, chunk.inputs, str(data))
        accumulator.add(chunk.inputs, scores)
    if accumulator.rows == 0:
        raise InputError(f"{data}: no rows to compare" + (f" since {since}" if since else ""))
    report = accumulator.report(run.run_id, alpha, psi_threshold)
    if not report.columns:
        raise InputError(
            f"{data}: none of its columns is an input of run {run.run_id} "
            f"(expected {', '.join(p.name for p in baseline.inputs) or 'no recorded inputs'})"
        )
    return report


def _scores(loaded: object, frame: object, source: str) -> object:
    import pandas as pd

    values = loaded.predict_rows(frame.to_dict(orient="records"), source=source)  # type: ignore[attr-defined]
    return pd.Series([v[-1] if isinstance(v, list) and v else v for v in values], name="score")


def write_report(report: DriftReport, path: Path) -> list[Path]:
    from nb2prod.monitor.report import write_report as write

    return write(report, path)


__all__ = ["DEFAULT_ALPHA", "DriftReport", "drift", "write_report"]
