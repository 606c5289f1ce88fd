"""Sequential neural posterior estimation: the round loop and its methods."""

from .proposals import ProposalError
from .rounds import SNPE, RoundRecord

__all__ = ["SNPE", "ProposalError", "RoundRecord"]
