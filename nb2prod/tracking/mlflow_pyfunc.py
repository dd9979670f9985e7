"""The MLflow pyfunc model of an nb2prod run: the package's own `load_model` and `predict`.

MLflow stores this file with the model ("models from code") and executes it when the model is
loaded; it imports only the run's package (shipped beside it as code) and MLflow. The run folder is
an artifact of the model: the package's `load_model` verifies it (sha256) before loading.
"""

import importlib

import mlflow.models
import mlflow.pyfunc


class PackagePredict(mlflow.pyfunc.PythonModel):  # type: ignore[name-defined,misc]
    def load_context(self, context):
        package = context.model_config["package"]
        predict_module = importlib.import_module(f"{package}.predict")
        self._predict = predict_module.predict
        self._model = predict_module.load_model(context.artifacts["run"])

    def predict(self, context, model_input, params=None):
        return self._predict(self._model, model_input)


mlflow.models.set_model(PackagePredict())
