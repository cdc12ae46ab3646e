"""Which words would say who a person is rather than what they like.

Profiles describe tastes, never the person: the LLM's answers are checked against this list
(the prompt forbids such inferences; this catches what a model writes anyway).
"""

from __future__ import annotations

import re

# Labels that would say who a person is rather than what they like: age, gender, ethnicity,
# religion, health, sexuality, political views. The prompt forbids them; this catches the rest.
# Topics stay allowed ("Ancient History", "Black holes", "Yoga"): only inferences about the
# person match.
_SENSITIVE = re.compile(
    r"\b("
    # age
    r"middle[- ]aged|aged \d+|\d+\s*(?:-|to)?\s*\d*\s*(?:years?|yrs?)[- ]old|in (?:their|his|her) "
    r"\d0s|teens?|teenagers?|elderly|retirees?|senior citizens?|millennials?|boomers?|"
    r"gen(?:eration)?[- ]?[xyz]|"
    # gender
    r"males?|females?|wom[ae]n|gender|transgender|non-?binary|masculine|feminine|"
    r"single (?:mom|dad|mother|father|parent)s?|"
    # ethnicity
    r"ethnic(?:ity)?|racial|caucasians?|hispanics?|latin[oax]s?|african[- ]americans?|"
    # religion
    r"religio(?:n|us)|christians?|christianity|muslims?|islam(?:ic)?|jews?|jewish|judaism|"
    r"hindus?|hinduism|buddhists?|catholics?|catholicism|atheists?|"
    # health
    r"illness|disease|disorder|diabet(?:es|ic)|depress(?:ion|ed)|anxiety|cancer|"
    r"pregnan(?:t|cy)|disab(?:led|ility)|chronic(?:ally)? ill|mental health|adhd|autis(?:m|tic)|"
    r"hiv|"
    # sexuality
    r"gay|lesbians?|bisexual|lgbtq?\+?|queer|(?:homo|hetero)?sexual(?:ity| orientation)?|"
    # political views
    r"liberals|conservatives?|democrats?|democratic party|republicans?|left[- ]wing|"
    r"right[- ]wing|socialists?|libertarians?|political views?"
    r")\b",
    re.IGNORECASE,
)


def is_sensitive(label: str) -> bool:
    return bool(_SENSITIVE.search(label))
