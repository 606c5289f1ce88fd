"""Diagnostics: calibration (SBC, expected coverage, TARP), two-sample comparison (C2ST),
posterior-predictive checks and a model-misspecification test."""

from pyro_lfi.diagnostics.c2st import c2st
from pyro_lfi.diagnostics.coverage import CoverageResult, expected_coverage, tarp
from pyro_lfi.diagnostics.draws import CalibrationDraws, CalibrationOptions, calibration_draws
from pyro_lfi.diagnostics.misspecification import MisspecificationResult, misspecification
from pyro_lfi.diagnostics.predictive import PredictiveCheck, predictive_check
from pyro_lfi.diagnostics.sbc import SBCResult, sbc

__all__ = [
    "CalibrationDraws",
    "CalibrationOptions",
    "CoverageResult",
    "MisspecificationResult",
    "PredictiveCheck",
    "SBCResult",
    "c2st",
    "calibration_draws",
    "expected_coverage",
    "misspecification",
    "predictive_check",
    "sbc",
    "tarp",
]
