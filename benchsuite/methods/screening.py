"""``screening``: PMO's screening baseline (Gao et al. 2022, arXiv 2206.12411), which scores molecules drawn at random
from the prior's data set (ZINC 250k there) and ranks them. Here the prior is the task's pretrained model, so
screening is exactly best-of-N: sample the frozen prior, query every sample, keep the best. This class is that alias
(same config, same rules, same reported KL; see ``benchsuite.methods.best_of_n``) under the name the molecular
optimization field uses, so a PMO table can list it. It differs from PMO's screening in what it samples: the
pretrained model's samples, not a fixed library (repeats are free under a card's PMO accounting, as in PMO).
"""

from __future__ import annotations

from .best_of_n import BestOfN


class Screening(BestOfN):
    """PMO's screening: sample the pretrained prior, score everything, keep the best (an alias of best-of-n)."""

    name = "screening"
    display_name = "screening"
    # its own colour in every figure (a dark grey: the prior itself, apart from every other method's hue; the
    # pretrained model's grey is lighter); best-of-N's colour and marker are not inherited (Method.IDENTITY)
    colour, marker = "#555555", "o"
    leaderboard = False  # best-of-N under PMO's name: the black-box tier compares it (issue 24)
