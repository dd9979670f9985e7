"""Build the bundled example notebooks and the test fixture notebooks.

The notebooks are generated, not hand-edited, so that every cell, tag and id is reviewable here and
the files are byte-for-byte reproducible. Outputs are always empty.

    python examples/make_examples.py            # (re)write every notebook
    python examples/make_examples.py --check    # exit 1 if a committed notebook differs
    python examples/make_examples.py --run      # also execute both examples with papermill

Written files:
    examples/fraud/fraud_detection.ipynb   tags in cell metadata (`metadata.tags`)
    examples/churn/churn.ipynb             `#|` directive lines only
    tests/fixtures/*.ipynb                 small notebooks for the error paths
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
FIXTURES = ROOT / "tests" / "fixtures"

PYTHON_KERNEL = {"display_name": "Python 3", "language": "python", "name": "python3"}
PYTHON_LANGUAGE = {"name": "python"}


@dataclass(frozen=True)
class Cell:
    """One cell to generate: a stable id, its kind, its source and its role tags."""

    id: str
    source: str
    kind: str = "code"  # "code" | "markdown"
    tags: tuple[str, ...] = ()


@dataclass(frozen=True)
class Notebook:
    path: Path
    cells: tuple[Cell, ...]
    kernelspec: dict[str, str] = field(default_factory=lambda: dict(PYTHON_KERNEL))
    language_info: dict[str, str] = field(default_factory=lambda: dict(PYTHON_LANGUAGE))
    extra_metadata: dict[str, Any] = field(default_factory=dict)


def md(cell_id: str, source: str) -> Cell:
    return Cell(cell_id, source.strip("\n"), kind="markdown")


def code(cell_id: str, source: str, *tags: str) -> Cell:
    return Cell(cell_id, source.strip("\n"), kind="code", tags=tuple(tags))


def to_nbformat(spec: Notebook) -> nbformat.NotebookNode:
    """A v4.5 notebook node with explicit cell ids and empty outputs."""
    nb = new_notebook()
    nb.nbformat, nb.nbformat_minor = 4, 5
    nb.metadata["kernelspec"] = dict(spec.kernelspec)
    nb.metadata["language_info"] = dict(spec.language_info)
    nb.metadata.update(spec.extra_metadata)
    for cell in spec.cells:
        if cell.kind == "markdown":
            node = new_markdown_cell(cell.source)
        else:
            node = new_code_cell(cell.source)
        node["id"] = cell.id
        if cell.tags:
            node.metadata["tags"] = list(cell.tags)
        nb.cells.append(node)
    return nb


def render(spec: Notebook) -> str:
    nb = to_nbformat(spec)
    nbformat.validate(nb)
    return nbformat.writes(nb) + "\n"


def render_raw(data: dict[str, Any]) -> str:
    """JSON laid out the way nbformat writes it, for notebooks nbformat would refuse to write."""
    return json.dumps(data, indent=1, sort_keys=True, ensure_ascii=False) + "\n"


# ---------------------------------------------------------------------------------------------
# Example 1: fraud detection, roles given by cell tags
# ---------------------------------------------------------------------------------------------

FRAUD_CELLS = (
    md(
        "intro",
        """
# Card fraud detection

A random forest that flags fraudulent card transactions. The data is synthetic and generated in
this notebook (seeded, no downloads): about 2% of transactions are fraud, and fraud tends to be
larger, at night, far from home, card-not-present, in risky merchant categories and in bursts.

Cells carry their role in `metadata.tags` (View → Cell Toolbar → Tags, or the property
inspector), which is also what papermill reads:

| tag | cells |
|---|---|
| `parameters` | knobs of the training job and its quality gates |
| `export` | imports, constants, `make_transactions`, `build_features` |
| `train` | generate data, split, fit `model` |
| `metrics` | held-out precision, recall, F1, ROC AUC and the quality gates |
| `predict` | `predict(model, inputs)` on raw transaction columns |
| `explain` | `explain(model, inputs)`: the top three reasons each transaction was flagged |
| `test` | checks of the feature function |

Untagged cells are exploration: `nb2prod` leaves them out of the package.
""",
    ),
    code(
        "parameters",
        """
n_transactions = 20000  # number of synthetic transactions
fraud_rate = 0.02  # share of fraudulent transactions
test_size = 0.25  # share of transactions held out for evaluation
n_estimators = 100  # number of trees in the random forest
max_depth = 8  # maximum depth of each tree
seed = 42  # random seed for the data, the split and the model
min_recall = 0.5  # quality gate: recall on the held-out set
min_precision = 0.3  # quality gate: precision on the held-out set
recent_transactions = ""  # optional CSV of recent labelled transactions (raw columns and is_fraud) added to the data
""",
        "parameters",
    ),
    code(
        "imports",
        """
import numpy as np
import pandas as pd

# Raw columns of a transaction as the payment system sends them.
RAW_COLUMNS = [
    "amount",
    "hour",
    "merchant_category",
    "distance_from_home",
    "card_present",
    "velocity_1h",
]
LABEL = "is_fraud"
# Merchant category codes 0-9; 7 = electronics, 8 = online marketplaces, 9 = travel.
HIGH_RISK_MERCHANTS = (7, 8, 9)
FEATURES = [
    "log_amount",
    "is_night",
    "hour_sin",
    "hour_cos",
    "merchant_category",
    "high_risk_merchant",
    "log_distance",
    "card_present",
    "velocity_1h",
    "amount_per_velocity",
]
""",
        "export",
    ),
    code(
        "make-transactions",
        """
def make_transactions(n: int, fraud_rate: float, seed: int) -> pd.DataFrame:
    \"\"\"`n` synthetic card transactions with the RAW_COLUMNS and the `is_fraud` label.\"\"\"
    rng = np.random.default_rng(seed)
    is_fraud = rng.random(n) < fraud_rate
    amount = np.where(is_fraud, rng.lognormal(4.6, 1.1, n), rng.lognormal(3.4, 1.0, n))
    day_hour = np.clip(rng.normal(14.0, 4.0, n), 0, 23).astype(int)
    night_or_any_hour = np.where(rng.random(n) < 0.5, rng.integers(0, 6, n), rng.integers(0, 24, n))
    hour = np.where(is_fraud, night_or_any_hour, day_hour)
    legit_mix = [0.18, 0.16, 0.14, 0.12, 0.10, 0.10, 0.08, 0.05, 0.04, 0.03]
    fraud_mix = [0.04, 0.04, 0.05, 0.05, 0.06, 0.06, 0.10, 0.20, 0.20, 0.20]
    merchant = np.where(is_fraud, rng.choice(10, n, p=fraud_mix), rng.choice(10, n, p=legit_mix))
    distance = np.where(is_fraud, rng.exponential(60.0, n), rng.exponential(8.0, n))
    card_present = np.where(is_fraud, rng.random(n) < 0.35, rng.random(n) < 0.75)
    velocity = np.where(is_fraud, rng.poisson(3.0, n), rng.poisson(1.0, n))
    return pd.DataFrame(
        {
            "amount": amount.round(2),
            "hour": hour.astype(int),
            "merchant_category": merchant.astype(int),
            "distance_from_home": distance.round(1),
            "card_present": card_present.astype(int),
            "velocity_1h": velocity.astype(int),
            LABEL: is_fraud.astype(int),
        }
    )
""",
        "export",
    ),
    code(
        "build-features",
        """
def build_features(df: pd.DataFrame) -> pd.DataFrame:
    \"\"\"Model features from raw transaction columns; used by training and by prediction.\"\"\"
    amount = df["amount"].astype(float)
    hour = df["hour"].astype(float)
    velocity = df["velocity_1h"].astype(float)
    features = pd.DataFrame(index=df.index)
    features["log_amount"] = np.log1p(amount)
    features["is_night"] = (hour < 6).astype(int)
    features["hour_sin"] = np.sin(2 * np.pi * hour / 24)
    features["hour_cos"] = np.cos(2 * np.pi * hour / 24)
    features["merchant_category"] = df["merchant_category"].astype(int)
    features["high_risk_merchant"] = df["merchant_category"].isin(HIGH_RISK_MERCHANTS).astype(int)
    features["log_distance"] = np.log1p(df["distance_from_home"].astype(float))
    features["card_present"] = df["card_present"].astype(int)
    features["velocity_1h"] = velocity.astype(int)
    features["amount_per_velocity"] = amount / (velocity + 1)
    return features[FEATURES]
""",
        "export",
    ),
    md("explore-heading", "## Exploration\n\nUntagged: useful while developing, not part of the product."),
    code(
        "explore-sample",
        """
df = make_transactions(n_transactions, fraud_rate, seed)
df.head()
""",
    ),
    code("explore-describe", "df.describe()"),
    code(
        "explore-plot",
        """
%matplotlib inline
df.groupby(LABEL)["amount"].plot.hist(bins=60, alpha=0.5, logy=True, legend=True)
""",
    ),
    code(
        "explore-timing",
        """
%time features = build_features(df)
features.groupby(df[LABEL]).mean().T
""",
    ),
    code("explore-files", "!ls"),
    code("explore-model-import", "from sklearn.ensemble import RandomForestClassifier"),
    md("train-heading", "## Training"),
    code(
        "train",
        """
from sklearn.model_selection import train_test_split

transactions = make_transactions(n_transactions, fraud_rate, seed)
if recent_transactions:  # retraining on what production saw: labelled rows of the same columns
    recent = pd.read_csv(recent_transactions)[RAW_COLUMNS + [LABEL]]
    transactions = pd.concat([transactions, recent], ignore_index=True)
train_df, test_df = train_test_split(
    transactions,
    test_size=test_size,
    stratify=transactions[LABEL],
    random_state=seed,
)
X_train = build_features(train_df)
y_train = train_df[LABEL]
model = RandomForestClassifier(
    n_estimators=n_estimators,
    max_depth=max_depth,
    class_weight="balanced",
    random_state=seed,
    n_jobs=1,
)
model.fit(X_train, y_train)
""",
        "train",
    ),
    code(
        "metrics",
        """
from sklearn.metrics import f1_score, precision_score, recall_score, roc_auc_score

X_test = build_features(test_df)
y_test = test_df[LABEL]
fraud_probability = model.predict_proba(X_test)[:, 1]
flagged = (fraud_probability >= 0.5).astype(int)
metrics = {
    "precision": float(precision_score(y_test, flagged, zero_division=0)),
    "recall": float(recall_score(y_test, flagged, zero_division=0)),
    "f1": float(f1_score(y_test, flagged, zero_division=0)),
    "roc_auc": float(roc_auc_score(y_test, fraud_probability)),
}
assert metrics["recall"] >= min_recall, "recall below gate"
assert metrics["precision"] >= min_precision, "precision below gate"
metrics
""",
        "metrics",
    ),
    code(
        "predict",
        """
def predict(model, inputs):
    \"\"\"Fraud probability of each transaction in `inputs` (raw columns, DataFrame or records).\"\"\"
    features = build_features(pd.DataFrame(inputs))
    return [float(p) for p in model.predict_proba(features)[:, 1]]
""",
        "predict",
    ),
    code("try-predict", "predict(model, test_df[RAW_COLUMNS].head())"),
    code(
        "explain",
        """
import importlib
import importlib.util


def explain(model, inputs):
    \"\"\"Why each transaction in `inputs` got its fraud probability: every feature's contribution
    (largest first, with the feature's value), and the top three reasons it was flagged.

    The contributions come from the forest's TreeSHAP when shap is installed (`pip install shap`),
    else from the trees' decision paths: each split adds the change of the fraud share from a node
    to its child to the split's feature, averaged over the trees ("path contributions"). Either
    way the base value plus the contributions is the fraud probability predict returns.\"\"\"
    features = build_features(pd.DataFrame(inputs))
    fraud = list(model.classes_).index(1)
    if importlib.util.find_spec("shap") is not None:
        shap = importlib.import_module("shap")
        explainer = shap.TreeExplainer(model)
        contributions = np.asarray(explainer.shap_values(features))[:, :, fraud]
        base = float(np.atleast_1d(explainer.expected_value)[fraud])
        method = "shap-tree"
    else:
        contributions, base = path_contributions(model, features.to_numpy(dtype=np.float32), fraud)
        method = "tree-path"
    scores = model.predict_proba(features)[:, fraud]
    explanations = []
    for row in range(len(features)):
        order = np.argsort(-np.abs(contributions[row]), kind="stable")
        items = [
            {
                "feature": FEATURES[i],
                "value": float(features.iloc[row, i]),
                "contribution": float(contributions[row, i]),
            }
            for i in order
        ]
        reasons = [
            f"{item['feature']} = {item['value']:.4g} ({item['contribution']:+.3f})"
            for item in items
            if item["contribution"] > 0
        ][:3]
        explanations.append(
            {
                "base_value": base,
                "value": float(scores[row]),
                "contributions": items,
                "reasons": reasons,
                "method": method,
            }
        )
    return explanations


def path_contributions(model, X, fraud):
    \"\"\"Each feature's contribution to the forest's fraud probability along each row's decision paths.\"\"\"
    contributions = np.zeros(X.shape)
    base = 0.0
    for tree in model.estimators_:
        nodes = tree.tree_
        share = nodes.value[:, 0, fraud] / nodes.value[:, 0, :].sum(axis=1)
        base += share[0]
        paths = tree.decision_path(X)
        for row in range(X.shape[0]):
            path = paths.indices[paths.indptr[row] : paths.indptr[row + 1]]  # root to leaf
            parents, children = path[:-1], path[1:]
            np.add.at(contributions[row], nodes.feature[parents], share[children] - share[parents])
    count = len(model.estimators_)
    return contributions / count, base / count
""",
        "explain",
    ),
    code("try-explain", '[e["reasons"] for e in explain(model, test_df[RAW_COLUMNS].head(3))]'),
    md("tests-heading", "## Tests\n\nTagged `test`: these become pytest tests of the package."),
    code(
        "test-build-features",
        """
sample = pd.DataFrame(
    {
        "amount": [12.5, 2400.0],
        "hour": [14, 3],
        "merchant_category": [0, 8],
        "distance_from_home": [1.5, 420.0],
        "card_present": [1, 0],
        "velocity_1h": [0, 6],
    }
)
sample_features = build_features(sample)
assert list(sample_features.columns) == FEATURES
assert len(sample_features) == 2
assert sample_features["is_night"].tolist() == [0, 1]
assert sample_features["high_risk_merchant"].tolist() == [0, 1]
assert sample_features["log_amount"].iloc[1] > sample_features["log_amount"].iloc[0]
assert not sample_features.isna().any().any()
""",
        "test",
    ),
    code(
        "test-functions",
        """
def test_no_fraud_on_empty_batch():
    empty = make_transactions(0, fraud_rate=0.5, seed=0)
    assert len(empty) == 0
    assert int(empty[LABEL].sum()) == 0
    assert list(build_features(empty).columns) == FEATURES


def test_fraud_rate_is_respected():
    batch = make_transactions(5000, fraud_rate=0.1, seed=1)
    assert 0.08 < batch[LABEL].mean() < 0.12
""",
        "test",
    ),
    code(
        "run-tests",
        """
test_no_fraud_on_empty_batch()
test_fraud_rate_is_respected()
""",
    ),
)

FRAUD = Notebook(
    EXAMPLES / "fraud" / "fraud_detection.ipynb",
    FRAUD_CELLS,
    extra_metadata={"nb2prod": {"name": "fraud-detection"}},
)


# ---------------------------------------------------------------------------------------------
# Example 2: customer churn, roles given by `#|` directive lines only (no tags)
# ---------------------------------------------------------------------------------------------

CHURN_CELLS = (
    md(
        "intro",
        """
# Customer churn

A logistic regression that predicts which subscribers will cancel. The customers are synthetic
(seeded, generated below). Roles are given by `#|` directive lines at the top of code cells, the
nbdev/Quarto style, instead of cell tags: `#| parameters`, `#| export`, `#| export: features`
(a second module, `features`), `#| train`, `#| metrics`, `#| predict`, `#| test`.
""",
    ),
    code(
        "parameters",
        """
#| parameters
n_customers = 3000  # number of synthetic customers
test_size = 0.3  # share of customers held out for evaluation
C = 1.0  # inverse regularisation strength of the logistic regression
seed = 7  # random seed for the data, the split and the model
min_accuracy = 0.7  # quality gate: accuracy on the held-out set
min_roc_auc = 0.75  # quality gate: ROC AUC on the held-out set
""",
    ),
    code(
        "customers",
        """
#| export
import numpy as np
import pandas as pd

# Contract codes: 0 = month-to-month, 1 = one year, 2 = two years.
CONTRACTS = (0, 1, 2)


def make_customers(n: int, seed: int) -> pd.DataFrame:
    \"\"\"`n` synthetic subscribers with a `churned` label driven by tenure, price and support.\"\"\"
    rng = np.random.default_rng(seed)
    tenure_months = rng.integers(1, 73, n)
    monthly_charges = rng.uniform(20.0, 120.0, n).round(2)
    support_calls = rng.poisson(1.5, n)
    contract = rng.choice(CONTRACTS, n, p=[0.5, 0.3, 0.2])
    logit = (
        0.5
        - 0.05 * tenure_months
        + 0.025 * (monthly_charges - 70.0)
        + 0.45 * support_calls
        - 1.2 * contract
    )
    churned = rng.random(n) < 1.0 / (1.0 + np.exp(-logit))
    return pd.DataFrame(
        {
            "tenure_months": tenure_months,
            "monthly_charges": monthly_charges,
            "support_calls": support_calls,
            "contract": contract,
            "churned": churned.astype(int),
        }
    )
""",
    ),
    code(
        "features",
        """
#| export: features
import numpy as np
import pandas as pd

FEATURES = ["tenure_years", "monthly_charges_100", "support_calls", "month_to_month", "log_total_spend"]


def build_features(df: pd.DataFrame) -> pd.DataFrame:
    \"\"\"Scaled model features from raw customer columns.\"\"\"
    features = pd.DataFrame(index=df.index)
    features["tenure_years"] = df["tenure_months"].astype(float) / 12.0
    features["monthly_charges_100"] = df["monthly_charges"].astype(float) / 100.0
    features["support_calls"] = df["support_calls"].astype(float)
    features["month_to_month"] = (df["contract"] == 0).astype(int)
    total_spend = df["tenure_months"].astype(float) * df["monthly_charges"].astype(float)
    features["log_total_spend"] = np.log1p(total_spend) / 10.0
    return features[FEATURES]
""",
    ),
    code(
        "explore",
        """
customers = make_customers(n_customers, seed)
customers.groupby("contract")["churned"].mean()
""",
    ),
    code(
        "train",
        """
#| train
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split

customers = make_customers(n_customers, seed)
train_df, test_df = train_test_split(
    customers, test_size=test_size, stratify=customers["churned"], random_state=seed
)
model = LogisticRegression(C=C, max_iter=1000)
model.fit(build_features(train_df), train_df["churned"])
""",
    ),
    code(
        "metrics",
        """
#| metrics
from sklearn.metrics import accuracy_score, roc_auc_score

churn_probability = model.predict_proba(build_features(test_df))[:, 1]
metrics = {
    "accuracy": float(accuracy_score(test_df["churned"], churn_probability >= 0.5)),
    "roc_auc": float(roc_auc_score(test_df["churned"], churn_probability)),
}
assert metrics["accuracy"] >= min_accuracy, "accuracy below gate"
assert metrics["roc_auc"] >= min_roc_auc, "ROC AUC below gate"
metrics
""",
    ),
    code(
        "predict",
        """
#| predict
def predict(model, inputs):
    \"\"\"Churn probability of each customer in `inputs` (raw columns, DataFrame or records).\"\"\"
    features = build_features(pd.DataFrame(inputs))
    return [float(p) for p in model.predict_proba(features)[:, 1]]
""",
    ),
    code("try-predict", "predict(model, test_df.head())"),
    code(
        "test",
        """
#| test
one = pd.DataFrame(
    {"tenure_months": [24], "monthly_charges": [50.0], "support_calls": [2], "contract": [0]}
)
row = build_features(one).iloc[0]
assert list(build_features(one).columns) == FEATURES
assert row["tenure_years"] == 2.0
assert row["month_to_month"] == 1
assert make_customers(10, seed=0)["churned"].isin([0, 1]).all()
""",
    ),
)

CHURN = Notebook(EXAMPLES / "churn" / "churn.ipynb", CHURN_CELLS)


# ---------------------------------------------------------------------------------------------
# Fixtures for the error paths (tests/fixtures/)
# ---------------------------------------------------------------------------------------------

FIXTURE_NOTEBOOKS = (
    # `train` uses `load_points`, defined only in an untagged cell (cell 2, id "helpers").
    Notebook(
        FIXTURES / "broken_dependency.ipynb",
        (
            code("params", "n_points = 10  # how many points to load", "parameters"),
            code("imports", "import math", "export"),
            code("helpers", "def load_points(n):\n    return [math.sqrt(i) for i in range(n)]"),
            code("train", "points = load_points(n_points)\nmodel = sum(points) / len(points)", "train"),
        ),
    ),
    # nbdev markers: default_exp names the module, exporti is a private export, hide is excluded.
    Notebook(
        FIXTURES / "nbdev_style.ipynb",
        (
            code("default-exp", "#| default_exp core"),
            md("title", "# core\n\n> Helpers exported the nbdev way."),
            code("hidden", "#| hide\nfrom pprint import pprint"),
            code(
                "public",
                "#| export\ndef greet(name: str) -> str:\n" '    "Say hello."\n    return f"Hello, {_clean(name)}!"',
            ),
            code("private", "#| exporti\ndef _clean(name: str) -> str:\n    return name.strip().title()"),
            code("check", 'assert greet("  ada ") == "Hello, Ada!"'),
        ),
    ),
    # Kubeflow Kale tags: imports, functions, pipeline-parameters, block:/prev:, pipeline-metrics, skip.
    # As in Kale, the pipeline-metrics cell only prints the metric variables (no `metrics` dict).
    Notebook(
        FIXTURES / "kale_style.ipynb",
        (
            code("imports", "import statistics", "imports"),
            code(
                "functions",
                "def fit_threshold(values):\n    return statistics.mean(values)",
                "functions",
            ),
            code("params", "n = 20  # number of points\nscale = 2.0  # multiplier", "pipeline-parameters"),
            code(
                "train",
                "values = [scale * i for i in range(n)]\nmodel = fit_threshold(values)",
                "block:train",
            ),
            code(
                "evaluate",
                "accuracy = sum(v > model for v in values) / len(values)",
                "block:evaluate",
                "prev:train",
            ),
            code("metrics", "print(accuracy)", "pipeline-metrics"),
            code("scratch", "values[:3]", "skip"),
        ),
    ),
    # A notebook for the R kernel: nb2prod only converts Python notebooks.
    Notebook(
        FIXTURES / "r_kernel.ipynb",
        (
            code("params", "alpha <- 0.5", "parameters"),
            code("train", "model <- lm(dist ~ speed, data = cars)", "train"),
        ),
        kernelspec={"display_name": "R", "language": "R", "name": "ir"},
        language_info={"name": "R"},
    ),
    # `def area(r:` on line 2 of an export cell.
    Notebook(
        FIXTURES / "syntax_error.ipynb",
        (code("broken", "import math\ndef area(r:\n    return math.pi * r ** 2", "export"),),
    ),
    # Parameters must be literals; line 2 calls a function.
    Notebook(
        FIXTURES / "bad_parameters.ipynb",
        (
            code(
                "params",
                "alpha = 0.5  # a literal is fine\nx = compute()  # not a literal",
                "parameters",
            ),
            code("train", "model = alpha", "train"),
        ),
    ),
    # `exprot` is a typo of `export`.
    Notebook(
        FIXTURES / "typo_tag.ipynb",
        (
            code("helper", "def double(x):\n    return 2 * x", "exprot"),
            code("train", "model = 1", "train"),
        ),
    ),
    # A destructive shell escape inside a tagged cell.
    Notebook(
        FIXTURES / "shell_escape.ipynb",
        (
            code("params", "n = 3  # size of the model", "parameters"),
            code("train", "!rm -rf data\nmodel = [0] * n", "train"),
        ),
    ),
)


def duplicate_ids_fixture() -> str:
    """Two cells share the id "same"; written as raw JSON since nbformat would repair the ids."""
    spec = Notebook(
        FIXTURES / "duplicate_ids.ipynb",
        (
            code("same", "def double(x):\n    return 2 * x", "export"),
            code("same-placeholder", "model = double(2)", "train"),
        ),
    )
    data = json.loads(render(spec))
    data["cells"][1]["id"] = "same"
    return render_raw(data)


def v3_fixture() -> str:
    """A valid nbformat 3 notebook (worksheets, `input`, heading cell) with tags in cell metadata."""
    data = {
        "metadata": {"name": "v3_notebook"},
        "nbformat": 3,
        "nbformat_minor": 0,
        "worksheets": [
            {
                "cells": [
                    {"cell_type": "heading", "level": 1, "metadata": {}, "source": ["An old notebook"]},
                    {
                        "cell_type": "code",
                        "collapsed": False,
                        "input": ["alpha = 0.5  # smoothing factor"],
                        "language": "python",
                        "metadata": {"tags": ["parameters"]},
                        "outputs": [],
                    },
                    {
                        "cell_type": "code",
                        "collapsed": False,
                        "input": ["def smooth(x, a):\n", "    return a * x"],
                        "language": "python",
                        "metadata": {"tags": ["export"]},
                        "outputs": [],
                    },
                    {
                        "cell_type": "code",
                        "collapsed": False,
                        "input": ["model = smooth(2.0, alpha)"],
                        "language": "python",
                        "metadata": {"tags": ["train"]},
                        "outputs": [],
                    },
                ],
                "metadata": {},
            }
        ],
    }
    nbformat.validate(nbformat.from_dict(data), version=3)
    return render_raw(data)


def v2_fixture() -> str:
    """An nbformat 2 notebook (IPython 0.12 era), which nb2prod refuses."""
    data = {
        "metadata": {"name": "v2_notebook"},
        "nbformat": 2,
        "worksheets": [
            {
                "cells": [
                    {
                        "cell_type": "code",
                        "collapsed": False,
                        "input": "x = 1",
                        "language": "python",
                        "outputs": [],
                    }
                ]
            }
        ],
    }
    return render_raw(data)


def invalid_json_fixture() -> str:
    """A notebook file cut off in the middle, as after an interrupted save."""
    spec = Notebook(
        FIXTURES / "invalid_json.ipynb",
        (code("params", "alpha = 0.5  # smoothing", "parameters"), code("train", "model = alpha", "train")),
    )
    text = render(spec)
    return text[: len(text) // 2] + "\n"


def all_files() -> dict[Path, str]:
    """Every generated file and its exact content."""
    files = {FRAUD.path: render(FRAUD), CHURN.path: render(CHURN)}
    for spec in FIXTURE_NOTEBOOKS:
        files[spec.path] = render(spec)
    files[FIXTURES / "duplicate_ids.ipynb"] = duplicate_ids_fixture()
    files[FIXTURES / "v3_notebook.ipynb"] = v3_fixture()
    files[FIXTURES / "v2_notebook.ipynb"] = v2_fixture()
    files[FIXTURES / "invalid_json.ipynb"] = invalid_json_fixture()
    return files


def run_examples() -> None:
    """Execute both examples top to bottom with papermill and a real python3 kernel."""
    import papermill  # heavy: only when asked to run

    with tempfile.TemporaryDirectory() as tmp:
        for spec in (FRAUD, CHURN):
            out = Path(tmp) / spec.path.name
            print(f"running {spec.path.relative_to(ROOT)} ...", flush=True)
            papermill.execute_notebook(
                str(spec.path), str(out), kernel_name="python3", cwd=str(spec.path.parent), progress_bar=False
            )
            executed = nbformat.read(out, as_version=4)
            for cell in executed.cells:
                if cell.get("id") == "metrics":
                    for output in cell.outputs:
                        if output.output_type == "execute_result":
                            print("  metrics:", output.data["text/plain"].replace("\n", " "))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if a written notebook differs")
    parser.add_argument("--run", action="store_true", help="execute both examples with papermill")
    args = parser.parse_args(argv)

    files = all_files()
    if args.check:
        stale = [p for p, text in files.items() if not p.exists() or p.read_text(encoding="utf-8") != text]
        for path in stale:
            print(f"{path.relative_to(ROOT)} is out of date; run python examples/make_examples.py")
        if stale:
            return 1
    else:
        for path, text in files.items():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path.relative_to(ROOT)}")
    if args.run:
        run_examples()
    return 0


if __name__ == "__main__":
    sys.exit(main())
