"""The package version, in a module of its own so that submodules can read it without importing the package
``__init__`` (which loads ``benchsuite.api`` on demand)."""

__version__ = "0.1.0"
