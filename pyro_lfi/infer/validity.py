r"""Learning where the simulator fails: :math:`P(\text{valid} \mid z)` from every simulated row.

Estimators fitted to the valid rows only learn what holds *given* a valid output. Where that
differs from what is wanted, :math:`\log P(\text{valid} \mid z)` is added back:

* the atomic APT loss compares each row with the parameters of other rows, which come from
  :math:`\tilde p(z)\,P(\text{valid} \mid z)` once invalid rows are dropped (it is added to
  the prior's log density in the loss);
* a learned likelihood (or ratio) fitted to valid outputs is :math:`q(x \mid \psi,
  \text{valid})`, and an observation is a valid output, so its likelihood is
  :math:`P(\text{valid} \mid \psi)\, q(x \mid \psi, \text{valid})`.
"""

from __future__ import annotations

import dataclasses

import torch
from torch.nn.functional import binary_cross_entropy_with_logits

from ..nn.validity import ValidityClassifier
from .loop import TrainingConfig, train_loop

__all__ = ["ValidityClassifier", "fit_classifier", "fit_validity"]


def fit_classifier(z: torch.Tensor, valid: torch.Tensor, config: TrainingConfig) -> ValidityClassifier:
    """A :class:`~pyro_lfi.nn.validity.ValidityClassifier` of the rows ``z`` ``[n, D]`` (finite)
    and whether each was valid, trained by cross-entropy on the shared loop (no progress bar,
    none of the user's callbacks)."""
    classifier = ValidityClassifier(z.shape[-1])
    classifier.standardize.fit(z)
    optimizer = torch.optim.Adam(classifier.parameters(), lr=config.learning_rate)
    train_loop(
        classifier,
        lambda zb, vb: binary_cross_entropy_with_logits(classifier(zb), vb),
        (z, valid.to(z.dtype)),
        optimizer,
        dataclasses.replace(config, progress=False, callbacks=()),
    )
    return classifier


def fit_validity(guide, simulations, config: TrainingConfig) -> ValidityClassifier | None:
    r""":math:`P(\text{valid} \mid z)` of the guide's latents, trained on every row of
    ``simulations`` with finite latents; ``None`` where every row is usable by ``guide``."""
    usable = guide.usable(simulations)
    if usable.all():
        return None
    z = guide.sites.to_unconstrained(simulations.latents)
    finite = torch.isfinite(z).all(-1)
    return fit_classifier(z[finite], usable[finite], config)
