"""External, offline judges of sentiment for the IMDB task (paper §4, Table 3: % positive continuations).

VADER (Hutto & Gilbert, ICWSM 2014; the `vaderSentiment` package, whose lexicon ships in its wheel, so it works
offline) reads the whole review, opening and continuation, as the self-judge does. Its compound score is in
[-1, 1]; the package's documented convention calls a text positive when compound >= 0.05, negative when
<= -0.05, neutral in between. `python -m rain eval --judge vader` stores the compound score per answer, and
`positive_share` turns a method's scores into Table 3's "% positive".

AFINN (Nielsen 2011; the `afinn` package ships its word list) is a second lexicon that no search uses as its
evaluator, so lanes searched against VADER are not graded only by VADER: each of its words carries a valence
from -5 to +5; our score is the mean valence of the review's AFINN words divided by 5, in [-1, 1] (0 when it has
none), and a review is positive when that is above 0.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

from rain.backends.evaluators import VaderScorer

VADER, AFINN = "vader", "afinn"      # the --judge names
POSITIVE_AT = 0.05                   # vaderSentiment's README: compound >= 0.05 is positive
AFINN_MAX = 5.0                      # AFINN's valences lie in [-5, 5]
__all__ = ["AFINN", "POSITIVE_AT", "VADER", "AfinnScorer", "VaderScorer", "positive_share"]


@dataclass
class AfinnScorer:
    """eval's Scorer: the mean AFINN valence of question + answer's words / 5, in [-1, 1] (0: no AFINN word)."""

    name: str = "afinn 0.1 (mean word valence / 5 of the whole review)"
    afinn: Any = field(default=None, repr=False)

    def __post_init__(self):
        if self.afinn is None:
            from afinn import Afinn

            self.afinn = Afinn()

    def score(self, question: str, answer: str) -> float:
        words = self.afinn.find_all(question + answer)
        if not words:
            return 0.0
        return sum(self.afinn.score(word) for word in words) / (len(words) * AFINN_MAX)


def positive_share(scores: Sequence[float], at: float = POSITIVE_AT) -> float | None:
    """Share of scores at or above `at` (Table 3's % positive, as a fraction); None without scores."""
    return sum(1 for s in scores if s >= at) / len(scores) if scores else None
