"""nb2prod: a tagged notebook becomes a package, its tests, a training job and an image."""

__version__ = "0.1.0"
