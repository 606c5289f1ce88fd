"""Saving and loading a trained :class:`~pyro_lfi.NeuralPosterior`: the file format, and the
check that a saved guide fits the model it is loaded into."""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable

import torch
from pyro.distributions import MultivariateNormal

from ..errors import SiteError
from ..model.sites import ModelSites
from ..seeding import preserved_rng

__all__ = ["SAVE_FORMAT", "check_same_sites", "load_guide", "read_correction", "read_saved", "saved_state"]

#: Version of :meth:`NeuralPosterior.save` files; 2 since the default NSF has a conditional
#: affine layer and the default embedding is a SkipMLP.
SAVE_FORMAT = 2


def saved_state(guide) -> dict:
    """What :meth:`~pyro_lfi.NeuralPosterior.save` writes: options, site layout and weights (not
    the model, nor the code of a custom embedding net or estimator)."""
    return {
        "format": SAVE_FORMAT,
        "observed": guide.observed,
        "estimator": guide.estimator_spec if isinstance(guide.estimator_spec, str) else None,
        "estimator_kwargs": guide.estimator_kwargs,
        "embedding_features": guide.embedding_features,
        "standardize": guide.standardize,
        "missing": guide.missing,
        "bounded": guide.bounded,
        "custom_embedding": guide._custom_embedding,
        "sites": guide.sites,
        "x_shape": tuple(guide.x_standardize.mean.shape),
        "state_dict": guide.state_dict(),
        "correction": guide.correction,
    }


def read_saved(path: str | os.PathLike, map_location=None) -> dict:
    """The contents of a guide file, refused if it is not one or of another format."""
    saved = torch.load(path, map_location=map_location, weights_only=False)
    if not isinstance(saved, dict) or "format" not in saved:
        raise ValueError(f"{path} is not a guide saved by NeuralPosterior.save")
    if saved["format"] != SAVE_FORMAT:
        raise ValueError(
            f"{path} was saved in format {saved['format']}, and this version of pyro_lfi reads "
            f"format {SAVE_FORMAT}: its default networks differ (format 1 had an MLP embedding and "
            "no conditional affine layer). Retrain the guide, or load it with the version that saved it"
        )
    return saved


def check_same_sites(path, saved: ModelSites, model: Callable, args: tuple, kwargs: dict) -> None:
    """Refuse to attach a saved guide to a model whose sites differ from those it was trained on."""
    placeholders = {name: torch.zeros(shape) for name, shape in saved.observed.items()}
    fix = "load it with the model it was trained on, or train a guide of this model"
    try:
        with preserved_rng():  # loading leaves the caller's random streams alone
            current = ModelSites.from_model(model, tuple(saved.observed), placeholders, *args, **kwargs)
    except SiteError as error:
        raise SiteError(f"the guide in {path} does not fit this model: {error}; {fix}") from None
    except Exception as error:
        warnings.warn(
            f"could not run the model to check its sites against the guide in {path} ({type(error).__name__}: "
            f"{error}); pass NeuralPosterior.load(..., model_args=..., model_kwargs=...) to check them",
            stacklevel=3,
        )
        return
    differences = saved.differences(current)
    if differences:
        raise SiteError(
            f"the guide in {path} was trained on a model with other sites than this one: "
            + "; ".join(differences) + f" (saved -> this model). Sampling from it would draw the sites it "
            f"does not know from the prior: {fix}"
        )


def read_correction(saved: dict):
    """The guide's :attr:`~pyro_lfi.NeuralPosterior.correction`; files written before it was an
    object hold SNPE-A's Gaussian as ``(loc, covariance)``."""
    if saved.get("proposal_correction") is None:
        return saved.get("correction")
    from ..infer.sequential.snpe_a import GaussianDivision

    loc, cov = saved["proposal_correction"]
    return GaussianDivision(MultivariateNormal(loc, covariance_matrix=cov))


def load_guide(
    cls, path, model: Callable, embedding_net, estimator, map_location, model_args: tuple, model_kwargs: dict
):
    """:meth:`~pyro_lfi.NeuralPosterior.load`: a guide of class ``cls`` from ``path``, attached
    to ``model`` once its sites are checked against the saved ones."""
    saved = read_saved(path, map_location)
    if saved["custom_embedding"] and embedding_net is None:
        raise ValueError("this guide was trained with a custom embedding net: pass embedding_net=")
    if saved["estimator"] is None and estimator is None:
        raise ValueError("this guide was trained with a custom estimator: pass estimator=")
    guide = cls(
        model,
        saved["observed"],
        estimator or saved["estimator"],
        embedding_net,
        saved["embedding_features"],
        saved["standardize"],
        saved.get("missing", "drop"),
        bounded=saved.get("bounded", "transform"),
        **saved["estimator_kwargs"],
    )
    check_same_sites(path, saved["sites"], model, model_args, model_kwargs)
    guide.create_networks(saved["sites"], torch.Size(saved["x_shape"]))
    guide.load_state_dict(saved["state_dict"])
    guide.correction = read_correction(saved)
    guide.eval()
    return guide
