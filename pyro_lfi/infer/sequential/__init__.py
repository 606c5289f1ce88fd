"""Sequential estimation at one observation: the posterior's round loop (:class:`SNPE`) and its
methods, each a :class:`SequentialMethod` (:data:`METHODS` by name), and the rounds of learned
likelihoods and ratios (:class:`SNLE`, :class:`SNRE`)."""

from .apt import APT
from .method import RoundLoss, SequentialMethod
from .proposals import ProposalError
from .registry import METHODS, make_method
from .restriction import Restriction
from .rounds import SNPE, RoundRecord
from .site_rounds import SNLE, SNRE, SiteRoundRecord
from .snpe_a import SNPEA
from .tsnpe import TSNPE

__all__ = ["APT", "METHODS", "SNLE", "SNPE", "SNPEA", "SNRE", "TSNPE", "ProposalError", "Restriction", "RoundLoss",
           "RoundRecord", "SequentialMethod", "SiteRoundRecord", "make_method"]
