"""Benchmark a training run of the fraud example: papermill engine vs python engine vs a bare script.

    python benchmarks/train_bench.py                 # print the table
    python benchmarks/train_bench.py --write         # also replace the section in docs/benchmarks.md
    python benchmarks/train_bench.py --repeat 5 -p n_estimators 200

Every number is the median of --repeat runs, wall clock, each approach in a fresh process as a user
would start it (`nb2prod train BUILD`, `nb2prod train BUILD --engine python`, `python bare.py`).
From the run manifests it also reports the engine's time (kernel start, cells, collection) and
nb2prod's bookkeeping (hashing, provenance, pins, code snapshot, writing and freezing the run
folder), and the fixed cost of a kernel (papermill executing a one-cell notebook).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DOC = REPO / "docs" / "benchmarks.md"
START = "<!-- train-bench:start -->"
END = "<!-- train-bench:end -->"


@dataclass(frozen=True)
class Sample:
    wall_s: float
    execute_s: float | None = None
    bookkeeping_s: float | None = None
    cells_s: float | None = None
    collect_s: float | None = None


def _run(cmd: list[str], cwd: Path, env: dict[str, str] | None = None) -> tuple[float, str]:
    started = time.perf_counter()
    done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"benchmark step failed: {' '.join(cmd)}\n{done.stderr}")
    return wall, done.stdout


def bare_script(build: Path, params: dict[str, object]) -> str:
    """The job's cells as one plain script, with the parameters inlined and a joblib dump at the end."""
    nb = json.loads((build / "job" / "train.ipynb").read_text())
    parts = [f"{name} = {value!r}" for name, value in params.items()]
    for cell in nb["cells"]:
        source = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
        tags = cell.get("metadata", {}).get("tags", [])
        if cell["cell_type"] != "code" or "parameters" in tags or "NB2PROD_OUTPUT_DIR" in source:
            continue
        parts.append(source)
    parts.append("import joblib\njoblib.dump(model, 'bare-model.joblib')\nprint(metrics)")
    return "\n\n".join(parts) + "\n"


def kernel_fixed_cost(workdir: Path) -> float:
    """papermill executing a notebook whose only cell is `pass`: kernel start, connect, shut down."""
    code = (
        "import time, nbformat, papermill\n"
        "nb = nbformat.v4.new_notebook(); nb.cells.append(nbformat.v4.new_code_cell('pass'))\n"
        "nb.metadata['kernelspec'] = {'name': 'python3', 'display_name': 'Python 3', 'language': 'python'}\n"
        "nbformat.write(nb, 'empty.ipynb')\n"
        "t = time.perf_counter()\n"
        "papermill.execute_notebook('empty.ipynb', 'empty-out.ipynb', progress_bar=False, kernel_name='python3')\n"
        "print(time.perf_counter() - t)\n"
    )
    _, out = _run([sys.executable, "-c", code], workdir)
    return float(out.strip().splitlines()[-1])


def papermill_import_cost(workdir: Path) -> float:
    """Importing papermill (and with it nbformat and jsonschema) in a fresh interpreter."""
    code = "import time; t = time.perf_counter(); import papermill; print(time.perf_counter() - t)"
    _, out = _run([sys.executable, "-c", code], workdir)
    return float(out.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("-p", dest="pairs", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"))
    parser.add_argument("--write", action="store_true", help=f"replace the section in {DOC.relative_to(REPO)}")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="nb2prod-train-bench-") as tmp:
        root = Path(tmp)
        shutil.copy2(REPO / "examples" / "fraud" / "fraud_detection.ipynb", root / "fraud_detection.ipynb")
        _run([sys.executable, "-m", "nb2prod", "build", "fraud_detection.ipynb"], root)
        build = root / "build" / "fraud-detection"
        schema = json.loads((build / "nb2prod.json").read_text())["parameters"]
        params = {name: entry["default"] for name, entry in schema.items()}
        overrides: list[str] = []
        for name, value in args.pairs:
            params[name] = type(schema[name]["default"])(value)
            overrides += ["-p", name, value]
        (root / "bare.py").write_text(bare_script(build, params))
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(build / "src"), os.environ.get("PYTHONPATH", "")])}

        variants = {
            "papermill": ["--engine", "papermill"],
            "python": ["--engine", "python"],
            "python-joblib": ["--engine", "python", "--model-format", "joblib"],
        }
        results: dict[str, list[Sample]] = {name: [] for name in [*variants, "bare"]}
        kernel: list[float] = []
        importing: list[float] = []
        for _ in range(args.repeat):
            for name, flags in variants.items():
                wall, out = _run(
                    [
                        sys.executable,
                        "-m",
                        "nb2prod",
                        "train",
                        str(build),
                        *flags,
                        "--store",
                        str(root / "runs"),
                        "--format",
                        "json",
                        *overrides,
                    ],
                    root,
                )
                t = json.loads(out)["timings"]
                results[name].append(Sample(wall, t["execute_s"], t["bookkeeping_s"], t["cells_s"], t.get("collect_s")))
            wall, _ = _run([sys.executable, "bare.py"], root, env)
            results["bare"].append(Sample(wall))
            kernel.append(kernel_fixed_cost(root))
            importing.append(papermill_import_cost(root))

    def med(values: list[float | None]) -> float:
        return statistics.median([v for v in values if v is not None])

    bare = med([s.wall_s for s in results["bare"]])
    lines = [
        f"Fraud example, {', '.join(f'{k}={v}' for k, v in params.items())}; "
        f"median of {args.repeat}; {platform.python_version()}, {os.cpu_count()} cores, {platform.machine()}.",
        "",
        "| approach | wall (s) | vs bare script | engine (s) | of which collect (s) | bookkeeping (s) | bookkeeping share |",
        "|---|---|---|---|---|---|---|",
    ]
    labels = (
        ("bare", "bare script (`python bare.py`, joblib dump)"),
        ("python-joblib", "`nb2prod train --engine python --model-format joblib`"),
        ("python", "`nb2prod train --engine python` (skops)"),
        ("papermill", "`nb2prod train` (papermill, real kernel, skops)"),
    )
    for name, label in labels:
        samples = results[name]
        wall = med([s.wall_s for s in samples])
        if name == "bare":
            lines.append(f"| {label} | {wall:.2f} | 1.00x | - | - | - | - |")
            continue
        execute = med([s.execute_s for s in samples])
        collect = med([s.collect_s for s in samples])
        book = med([s.bookkeeping_s for s in samples])
        share = statistics.median([s.bookkeeping_s / (s.execute_s + s.bookkeeping_s) for s in samples])
        lines.append(
            f"| {label} | {wall:.2f} | {wall / bare:.2f}x | {execute:.2f} | {collect:.2f} | {book:.3f} | {share:.1%} |"
        )
    cells = med([s.cells_s for s in results["papermill"]])
    lines += [
        "",
        f"- kernel fixed cost (papermill executing a one-cell `pass` notebook): {med(kernel):.2f} s, plus "
        f"importing papermill in the trainer process: {med(importing):.2f} s",
        f"- papermill engine: sum of the job's cell times {cells:.2f} s of {med([s.execute_s for s in results['papermill']]):.2f} s "
        "in the engine; the rest is kernel start/stop, notebook I/O and the collect cell",
        "- collect = saving the model (skops: dump, reload and compare predictions on 200 training rows; "
        "or joblib), the metrics and the input contract, inside the engine",
        "- bookkeeping = data hashing, git, package pins, code snapshot, manifest, fsync and chmod of the "
        "run folder (`timings.bookkeeping_s` in run.json); share = bookkeeping / (engine + bookkeeping)",
        f"- machine load average when the run finished: {os.getloadavg()[0]:.1f} (other work on the machine "
        "inflates the import-heavy numbers)",
    ]
    table = "\n".join(lines)
    print(table)
    if args.write:
        section = f"{START}\n{table}\n{END}"
        text = DOC.read_text() if DOC.exists() else "# Benchmarks\n"
        if START in text and END in text:
            head, rest = text.split(START, 1)
            text = head + section + rest.split(END, 1)[1]
        else:
            text = text.rstrip("\n") + "\n\n## Training runs (`benchmarks/train_bench.py`)\n\n" + section + "\n"
        DOC.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
