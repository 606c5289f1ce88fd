"""The package layout: modules that moved keep their old import paths."""

import importlib

import pytest

import pyro_lfi


@pytest.mark.parametrize("old,new", sorted(pyro_lfi.MOVED_MODULES.items()))
def test_old_module_paths_import_the_moved_module(old, new):
    assert importlib.import_module(f"pyro_lfi.{old}") is importlib.import_module(f"pyro_lfi.{new}")


def test_old_paths_leave_the_public_functions_alone():
    import pyro_lfi.compare
    import pyro_lfi.simulate

    assert callable(pyro_lfi.simulate) and callable(pyro_lfi.compare)
    from pyro_lfi.sites import ModelSites

    assert ModelSites is pyro_lfi.model.ModelSites
