"""The black-box data site: a Pyro distribution that samples by simulation and cannot score."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from pyro.distributions import TorchDistribution, constraints
from pyro.ops.provenance import ProvenanceTensor, detach_provenance, get_provenance

from ..errors import DeclaredShapeError, SimulatorLikelihoodError, SimulatorShapeError

__all__ = ["DeclaredShapeError", "Simulator", "SimulatorLikelihoodError", "SimulatorShapeError"]


def _event_dims_of(param: torch.Tensor, batch_shape: torch.Size) -> int:
    """Smallest number of rightmost dims of ``param`` whose removal leaves a shape that
    broadcasts to ``batch_shape``: the parameter's own event dims."""
    for k in range(param.dim() + 1):
        leading = param.shape[: param.dim() - k]
        if len(leading) <= len(batch_shape) and all(
            a in (1, b) for a, b in zip(reversed(leading), reversed(batch_shape))
        ):
            return k
    return param.dim()  # pragma: no cover - k = param.dim() always matches


class Simulator(TorchDistribution):
    r"""A data site whose distribution :math:`p(x \mid \theta)` can be sampled but not scored.

    ``Simulator(fn, *params)`` samples by calling ``fn(*params)``. The calling convention:

    * ``batched=True`` (default): ``fn`` is always called with exactly one leading batch dim,
      each parameter of shape ``(N, *param_event_shape)`` with ``N >= 1`` (also for a single
      simulation), and must return ``(N, *event_shape)``: one row per parameter row, as sbi
      and sbibm simulators are written (``theta[:, 0]``, ``theta.shape[0]``). The dims of
      enclosing plates are flattened into ``N`` before the call and restored after it.
    * ``batched=False``: ``fn`` receives one parameter set, ``param_event_shape`` each, and
      returns one output of ``event_shape``; the rows are looped over in Python.

    ``fn`` may take and return torch tensors or numpy arrays.

    The batch shape comes from the enclosing :class:`pyro.plate` (Pyro expands the site), and
    each parameter is broadcast to it: its own event dims are inferred as the fewest rightmost
    dims whose removal leaves a shape broadcastable to the batch shape. Where a plate size equals
    a parameter's event size this is ambiguous; pass ``param_event_dims`` to say it explicitly.

    ``log_prob`` raises :class:`SimulatorLikelihoodError`: train a neural posterior with
    :class:`pyro_lfi.NPE` instead of running likelihood-based inference on this site. Model
    inspection (:func:`pyro.render_model`, :func:`pyro.infer.inspect.get_dependencies`) works:
    it only reads which sites the simulator's parameters depend on.

    :param fn: the simulator.
    :param params: its parameters (tensors, arrays or numbers).
    :param event_shape: shape of one output; inferred from the first simulation if omitted and
        checked against every later one.
    :param batched: whether ``fn`` is vectorized over leading dims.
    :param param_event_dims: event dims of each parameter (an int for all, or one per parameter).
    """

    arg_constraints: dict = {}
    support = constraints.real
    has_rsample = False

    def __init__(
        self,
        fn: Callable,
        *params,
        event_shape: Sequence[int] | None = None,
        batched: bool = True,
        param_event_dims: int | Sequence[int] | None = None,
        batch_shape: Sequence[int] = (),
        validate_args: bool | None = None,
    ):
        if not callable(fn):
            raise TypeError(f"Simulator needs a callable simulator function, got {type(fn).__name__}")
        self.fn = fn
        self.params = tuple(torch.as_tensor(p) for p in params)
        self.batched = batched
        self.declared_event_shape = None if event_shape is None else torch.Size(event_shape)
        if isinstance(param_event_dims, int):
            param_event_dims = (param_event_dims,) * len(self.params)
        if param_event_dims is not None and len(param_event_dims) != len(self.params):
            raise ValueError(
                f"param_event_dims has {len(param_event_dims)} entries for {len(self.params)} parameters"
            )
        self.param_event_dims = None if param_event_dims is None else tuple(param_event_dims)
        super().__init__(
            torch.Size(batch_shape),
            self.declared_event_shape or torch.Size(),
            validate_args=False,
        )

    def expand(self, batch_shape, _instance=None) -> Simulator:
        return Simulator(
            self.fn,
            *self.params,
            event_shape=self.declared_event_shape,
            batched=self.batched,
            param_event_dims=self.param_event_dims,
            batch_shape=batch_shape,
        )

    # -- sampling -------------------------------------------------------------------------------

    def broadcast_params(self, batch_shape: torch.Size) -> tuple[torch.Tensor, ...]:
        """The parameters, each expanded to ``batch_shape + its event shape``."""
        dims = self.param_event_dims or tuple(_event_dims_of(p, batch_shape) for p in self.params)
        out = []
        for p, k in zip(self.params, dims):
            event = p.shape[p.dim() - k :]
            try:
                out.append(p.expand(batch_shape + event))
            except RuntimeError as err:
                raise SimulatorShapeError(
                    f"Simulator parameter of shape {tuple(p.shape)} (event dims {k}) does not "
                    f"broadcast to the site's batch shape {tuple(batch_shape)}"
                ) from err
        return tuple(out)

    def sample(self, sample_shape=torch.Size()) -> torch.Tensor:
        shape = torch.Size(sample_shape) + self.batch_shape
        n = shape.numel()
        params = detach_provenance(self.broadcast_params(shape))  # plain tensors for fn, even under inspection
        flat = tuple(p.reshape((n,) + p.shape[len(shape) :]) for p in params)
        if n == 0:
            return torch.empty(shape + (self.declared_event_shape or torch.Size()))
        with torch.no_grad():
            x = _as_tensor(self.fn(*flat)) if self.batched else self._loop(flat, n)
        return self._checked(x, n).reshape(shape + x.shape[1:])

    def _loop(self, flat: tuple[torch.Tensor, ...], n: int) -> torch.Tensor:
        outputs = [_as_tensor(self.fn(*(p[i] for p in flat))) for i in range(n)]
        first = outputs[0].shape
        for i, o in enumerate(outputs):
            if o.shape != first:
                raise SimulatorShapeError(
                    f"simulator returned shape {tuple(o.shape)} for simulation {i} but "
                    f"{tuple(first)} for simulation 0: every simulation must have the same shape"
                )
        return torch.stack(outputs)

    def _checked(self, x: torch.Tensor, n: int) -> torch.Tensor:
        """``x`` of shape ``(n, *event_shape)``, in the default float dtype."""
        if x.dim() == 0 or x.shape[0] != n:
            raise SimulatorShapeError(
                f"simulator {self._name} returned shape {tuple(x.shape)} for {n} parameter row(s): a batched "
                f"simulator is called with parameters of shape (N, *param_shape) and must return (N, *event_shape), "
                f"here N = {n} (use batched=False for a simulator of one parameter set at a time)"
            )
        event = x.shape[1:]
        if self.declared_event_shape is not None and event != self.declared_event_shape:
            raise DeclaredShapeError(
                f"simulator returned outputs of event shape {tuple(event)}, "
                f"but event_shape={tuple(self.declared_event_shape)} was declared"
            )
        if x.dtype != torch.get_default_dtype() and x.is_floating_point():
            x = x.to(torch.get_default_dtype())
        return x

    # -- no likelihood --------------------------------------------------------------------------

    def log_prob(self, value):
        if isinstance(value, ProvenanceTensor):
            return self._dependencies()
        raise SimulatorLikelihoodError(
            "a Simulator site has no likelihood: p(x | theta) can be sampled but not evaluated, "
            "so likelihood-based inference (SVI, MCMC, log_prob) cannot run on it. Train a neural "
            "posterior instead: pyro_lfi.NPE(model, pyro_lfi.NeuralPosterior(model, observed=...)). "
            "For a tractable version of the model, replace the Simulator site by a distribution."
        )

    def _dependencies(self) -> torch.Tensor:
        """What :mod:`pyro.infer.inspect` (``pyro.render_model``, ``get_dependencies``) reads from
        ``log_prob`` while it traces the model with provenance-tracking values: which sites the
        parameters depend on. Its values are zeros, never a likelihood, and never seen elsewhere."""
        return ProvenanceTensor(torch.zeros(self.batch_shape), get_provenance(self.params))

    @property
    def _name(self) -> str:
        return getattr(self.fn, "__name__", type(self.fn).__name__)

    def __repr__(self) -> str:
        return f"Simulator({self._name}, batch_shape={tuple(self.batch_shape)}, batched={self.batched})"


def _as_tensor(x) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x
    if isinstance(x, np.ndarray | np.generic | float | int | list | tuple):
        return torch.as_tensor(np.asarray(x), dtype=torch.get_default_dtype())
    raise SimulatorShapeError(
        f"simulator returned {type(x).__name__}; it must return a torch tensor or numpy array"
    )
