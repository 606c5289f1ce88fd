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

__all__ = ["ValidityClassifier", "fit_classifier", "out_of_fold_probabilities", "validity_rows"]


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


def validity_rows(guide, simulations) -> tuple[torch.Tensor, torch.Tensor]:
    """The rows of ``simulations`` with finite latents, as the guide's unconstrained latents
    ``z`` ``[n, D]``, and whether each is usable by ``guide`` (valid) ``[n]``."""
    usable = guide.usable(simulations)
    z = guide.sites.to_unconstrained(simulations.latents)
    finite = torch.isfinite(z).all(-1)
    return z[finite], usable[finite]


def out_of_fold_probabilities(z: torch.Tensor, valid: torch.Tensor, config: TrainingConfig, folds: int) -> torch.Tensor:
    r""":math:`P(\text{valid} \mid z_i)` at every row from a classifier that did not see it:
    the rows are split into ``folds`` random folds (from ``config.seed``) and each fold is predicted by a classifier
    fitted to the others (cross-fitting). A classifier's predictions at its own training rows
    are optimistic; these are what it predicts at parameters it has not seen."""
    generator = None if config.seed is None else torch.Generator().manual_seed(config.seed)  # None: global RNG
    fold = torch.empty(len(z), dtype=torch.long)
    fold[torch.randperm(len(z), generator=generator)] = torch.arange(len(z)) % folds
    probabilities = torch.empty(len(z), dtype=z.dtype)
    for k in range(folds):
        held_out = fold == k
        classifier = fit_classifier(z[~held_out], valid[~held_out], config)
        with torch.no_grad():
            probabilities[held_out] = classifier.log_prob_valid(z[held_out]).exp()
    return probabilities
