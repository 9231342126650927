"""An external, offline judge of sentiment for the IMDB task (paper §4, Table 3: % positive continuations).

VADER (Hutto & Gilbert, ICWSM 2014; the `vaderSentiment` package, whose lexicon ships in its wheel, so it works
offline) reads the whole review, opening and continuation, as the self-judge does. Its compound score is in
[-1, 1]; the package's documented convention calls a text positive when compound >= 0.05, negative when
<= -0.05, neutral in between. `python -m rain eval --judge vader` stores the compound score per answer, and
`positive_share` turns a method's scores into Table 3's "% positive".
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

VADER = "vader"                      # the --judge name
POSITIVE_AT = 0.05                   # vaderSentiment's README: compound >= 0.05 is positive


@dataclass
class VaderScorer:
    """rain.tools.evaluation's Scorer protocol: score = VADER compound of question + answer (the review) in [-1, 1]."""

    name: str = "vaderSentiment 3.3.2 (compound of the whole review)"
    analyzer: Any = field(default=None, repr=False)

    def __post_init__(self):
        if self.analyzer is None:
            from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

            self.analyzer = SentimentIntensityAnalyzer()

    def score(self, question: str, answer: str) -> float:
        return float(self.analyzer.polarity_scores(question + answer)["compound"])


def positive_share(scores: Sequence[float], at: float = POSITIVE_AT) -> float | None:
    """Share of scores at or above `at` (Table 3's % positive, as a fraction); None without scores."""
    return sum(1 for s in scores if s >= at) / len(scores) if scores else None
