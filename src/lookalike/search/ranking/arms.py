"""A/B arms: which ranker a session gets while a candidate ranker is tried on a share of
traffic (`ranker_candidate`, `ranker_candidate_share`).

A session's arm follows from a hash of its (already hashed) id alone, so it stays the same
on every search, worker and replica, and a larger share only adds sessions to the
candidate arm. Searches without a session, and requests that name a ranker or hand
weights themselves, stay outside the experiment (arm None).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from lookalike.config import Settings

CONTROL = "control"
CANDIDATE = "candidate"


@dataclass(frozen=True)
class Assignment:
    ranker: str | None  # the ranker to use; None = the settings' default
    arm: str | None  # CONTROL, CANDIDATE, or None outside the experiment


def bucket(session: str) -> float:
    """A stable number in [0, 1) for a session."""
    digest = hashlib.blake2b(f"ab-arm\0{session}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def assign_arm(
    settings: Settings, requested: str | None, session: str | None, *, overridden: bool = False
) -> Assignment:
    """The ranker and arm for a search (`overridden`: the request brought hand weights)."""
    if requested is not None or overridden:
        return Assignment(requested, None)
    candidate, share = settings.ranker_candidate, settings.ranker_candidate_share
    if not candidate or share <= 0 or not session:
        return Assignment(None, None)
    if bucket(session) < share:
        return Assignment(candidate, CANDIDATE)
    return Assignment(None, CONTROL)
