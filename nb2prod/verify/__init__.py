"""`nb2prod verify`: the notebook, run as its author ran it, and its package, run in a clean
environment made from `requirements.lock`, compute the same metrics and predictions."""

from nb2prod.verify.core import Difference, Suspect, Timings, VerifyResult, verify

__all__ = ["Difference", "Suspect", "Timings", "VerifyResult", "verify"]
