"""Build hook: the JupyterLab front end is built by jupyter-builder where node is installed.

Without node (pre-commit installing nb2prod from git, a server that only runs the CLI) the wheel
is built without the front end and the build says so; the command line and the server extension
work the same. CI builds with node, and its packaging test checks that the wheel carries the
bundle.
"""

from __future__ import annotations

import shutil
from typing import Any

from hatch_jupyter_builder.plugin import JupyterBuildHook


class FrontendBuildHook(JupyterBuildHook):
    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        if self.target_name == "wheel" and shutil.which("node") is None:
            self.app.display_warning(
                "nb2prod: node is not installed, so this wheel has no JupyterLab front end "
                "(the command line and the server extension are unaffected)"
            )
            self._skipped = True
            return
        super().initialize(version, build_data)


def get_build_hook() -> type[FrontendBuildHook]:
    return FrontendBuildHook
