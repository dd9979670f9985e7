"""Runs mirrored into the experiment trackers teams already run.

`export_to_mlflow` logs nb2prod runs to an MLflow tracking server (`pip install nb2prod[mlflow]`).
"""

from nb2prod.tracking.mlflow_export import ExportedRun, MlflowExport, export_to_mlflow

__all__ = ["ExportedRun", "MlflowExport", "export_to_mlflow"]
