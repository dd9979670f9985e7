"""nb2prod's model source for the server: runs of a run store, loaded only through `load_run`
(which verifies the run), predicted by the run's own code snapshot as `nb2prod predict` does."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

from nb2prod.runs.contract import serving_contract, validate_records
from nb2prod.runs.predicting import load_run
from nb2prod.runs.store import RunStore
from nb2prod.serve.shipped.model import LoadedModel, limit_n_jobs
from nb2prod.serve.shipped.shaping import outputs_list


class RunStoreSource:
    """The run `ref` (run id, prefix or alias) of the run store `store`."""

    def __init__(self, store: str | Path, ref: str) -> None:
        self.store = RunStore(Path(store))
        self.ref = ref
        self.target = f"{self.store.root}/{ref}"
        self.alias = None if (self.store.root / ref / "run.json").is_file() else ref

    def resolve(self) -> str:
        return self.store.resolve(self.ref)

    def load(self, run: str) -> LoadedModel:
        loaded = load_run(self.store, run)
        manifest = loaded.run.manifest
        changed = limit_n_jobs(loaded.model)
        contract = serving_contract(manifest)
        shape, predict, model = loaded.shape, loaded.predict_function, loaded.model

        def predict_records(records: list[dict[str, Any]]) -> list[Any]:
            return outputs_list(predict(model, shape(records)))

        def explain_records(records: list[dict[str, Any]]) -> list[Any]:
            # never called by /predict: the explainer (SHAP) is built on the first call, then cached per model
            return loaded.explain_rows(records, "instances")

        alias_file = self.store.root / "aliases" / f"{self.ref}.json"
        kind = type(model)
        return LoadedModel(
            run=loaded.run.run_id,
            alias=self.ref if alias_file.is_file() else None,
            model_sha256=manifest.model.sha256 if manifest.model else "",
            code_sha256=manifest.source.code_sha256,
            model=model,
            predict=predict_records,
            contract=contract,
            examples=contract.examples if contract is not None else (),
            info={
                "model_type": f"{kind.__module__}.{kind.__qualname__}",
                "n_jobs": {"set_to_1": sorted(changed), "was": changed},
                "code": "the run's code snapshot (code/src)",
                "package": manifest.source.package,
            },
            loaded_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            run_dir=str(loaded.run.path),
            explain=explain_records if loaded.explain_function is not None else None,
        )

    def validate(self, records: Sequence[Any], contract: Any, strict_ranges: bool) -> list[Any]:
        return validate_records(records, contract, strict_ranges=strict_ranges)

    def watch_files(self) -> list[str]:
        return [str(self.store.root / "aliases" / f"{self.ref}.json")] if self.alias else []


def run_store_source(store: str, ref: str) -> RunStoreSource:
    """The factory named in the source spec (each worker process builds its own source)."""
    return RunStoreSource(store, ref)
