"""Diagnostics: calibration (SBC, expected coverage, TARP), two-sample comparison (C2ST) and
posterior-predictive checks."""

from pyro_lfi.diagnostics.c2st import c2st
from pyro_lfi.diagnostics.coverage import CoverageResult, expected_coverage, tarp
from pyro_lfi.diagnostics.draws import CalibrationDraws, CalibrationOptions, calibration_draws
from pyro_lfi.diagnostics.predictive import PredictiveCheck, predictive_check
from pyro_lfi.diagnostics.sbc import SBCResult, sbc

__all__ = [
    "CalibrationDraws",
    "CalibrationOptions",
    "CoverageResult",
    "PredictiveCheck",
    "SBCResult",
    "c2st",
    "calibration_draws",
    "expected_coverage",
    "predictive_check",
    "sbc",
    "tarp",
]
