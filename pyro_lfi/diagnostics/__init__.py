"""Diagnostics for comparing posterior samples."""

from pyro_lfi.diagnostics.c2st import c2st

__all__ = ["c2st"]
