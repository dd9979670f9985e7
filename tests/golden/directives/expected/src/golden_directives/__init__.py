"""golden-directives: built by nb2prod from notebook.ipynb."""

from .geometry import area_of_square
from .shapes import Shape
from .explain import explain

__version__ = "0.1.0"
__all__ = ["Shape", "area_of_square", "explain"]
