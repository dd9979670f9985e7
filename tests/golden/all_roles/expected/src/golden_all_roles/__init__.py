"""golden-all-roles: built by nb2prod from notebook.ipynb."""

from .core import grow
from .explain import explain

__version__ = "0.1.0"
__all__ = ["explain", "grow"]
