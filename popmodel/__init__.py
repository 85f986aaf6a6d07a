"""popmodel: population-level hierarchical inference of galaxy demographics."""
from popmodel._version import __version__

__all__ = ["__version__"]
