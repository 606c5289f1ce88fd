"""Sequential neural posterior estimation: the round loop (:class:`SNPE`) and its methods, each a
:class:`SequentialMethod` (:data:`METHODS` by name)."""

from .apt import APT
from .method import RoundLoss, SequentialMethod
from .proposals import ProposalError
from .registry import METHODS, make_method
from .rounds import SNPE, RoundRecord
from .snpe_a import SNPEA
from .tsnpe import TSNPE

__all__ = ["APT", "METHODS", "SNPE", "SNPEA", "TSNPE", "ProposalError", "RoundLoss", "RoundRecord",
           "SequentialMethod", "make_method"]
