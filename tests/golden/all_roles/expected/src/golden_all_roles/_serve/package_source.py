"""The model source of a generated package: a run (id or alias) of a run store, loaded by the
package's runtime loader (`_runtime`, which verifies the run before loading it) and predicted
with the package's own `predict`.

Standard library only: the runtime module and the predict function are handed in.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Sequence

from .model import LoadedModel, limit_n_jobs
from .shaping import outputs_list, shape_records


class PackageRunSource:
    def __init__(
        self,
        runtime: Any,
        predict: Callable[[Any, Any], Any],
        store: str | Path,
        ref: str,
        package: str = "",
        explain: Callable[[Any, Any], Any] | None = None,
    ) -> None:
        self.runtime = runtime
        self.predict_function = predict
        self.explain_function = explain
        self.store = Path(store)
        self.ref = ref
        self.package = package
        self.target = f"{self.store}/{ref}"
        self.alias = None if (self.store / ref / "run.json").is_file() else ref

    def resolve(self) -> str:
        run = self.runtime.find_run(self.store / self.ref)
        if run is None:
            raise LookupError(
                f"no run or alias {self.ref!r} in the run store {self.store}"
            )
        return run.name

    def load(self, run: str) -> LoadedModel:
        folder = self.store / run
        record = json.loads((folder / "run.json").read_text(encoding="utf-8"))
        if record.get("model") is None:
            raise LookupError(f"run {run} recorded no model")
        model = self.runtime.load_model(folder)  # the runtime's verified loader
        changed = limit_n_jobs(model)
        contract = self.runtime.run_input_contract(record)
        predict = self.predict_function

        def predict_records(records: list[dict[str, Any]]) -> list[Any]:
            return outputs_list(predict(model, shape_records(records, contract)))

        explain = self.explain_function
        explain_rows = getattr(self.runtime, "explain_rows", None)

        def explain_records(records: list[dict[str, Any]]) -> list[Any]:
            # never called by /predict: the explainer is built on the first call, then cached
            assert explain is not None and explain_rows is not None
            return explain_rows(explain, model, shape_records(records, contract))

        can_explain = explain is not None and explain_rows is not None
        alias_file = self.store / "aliases" / f"{self.ref}.json"
        return LoadedModel(
            run=run,
            alias=self.ref if alias_file.is_file() else None,
            model_sha256=record["model"]["sha256"],
            code_sha256=(record.get("source") or {}).get("code_sha256"),
            model=model,
            predict=predict_records,
            contract=contract,
            examples=contract.examples if contract is not None else (),
            info=_info(model, changed, self.package),
            loaded_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            run_dir=str(folder),
            explain=explain_records if can_explain else None,
        )

    def validate(
        self, records: Sequence[Any], contract: Any, strict_ranges: bool
    ) -> list[Any]:
        return self.runtime.validate_records(
            records, contract, strict_ranges=strict_ranges
        )

    def watch_files(self) -> list[str]:
        return [str(self.store / "aliases" / f"{self.ref}.json")] if self.alias else []


def _info(model: Any, changed: dict[str, Any], package: str) -> dict[str, Any]:
    kind = type(model)
    return {
        "model_type": f"{kind.__module__}.{kind.__qualname__}",
        "n_jobs": (
            {"set_to_1": sorted(changed), "was": changed}
            if changed
            else {"set_to_1": [], "was": {}}
        ),
        "code": "package " + package if package else "package",
    }
