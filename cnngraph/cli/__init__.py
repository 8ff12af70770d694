"""The command line; only this package prints or exits."""
from .main import main

__all__ = ["main"]
