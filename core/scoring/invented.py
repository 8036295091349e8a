"""The `invented` scorer: detail a rewrite makes up that changes the user's scene.

A rewrite should add camera, light and texture, not new actors or new facts. Three problems, read from the
scene part of the idea (enhancer.scoring.instructions.split_idea: an instruction's words are not the scene):

- contradiction (0.5 each): a count or colour the user gave comes back different ("three red balloons" ->
  "two balloons", "a blue balloon") and never as given;
- crowded out (0.5): the rewrite's first sentence names none of the user's subject words but a being the user
  never mentioned ("write a poem about cats" -> "A young girl in a white coat ...");
- new beings (0.1 each, at most three counted): people or animals the user never mentioned ("a tortoise crossing a
  parking lot" -> "... while a shopper watches"). Words for a crowd in the background ("passers-by", "people")
  are not counted, and any word for a person matches any other ("kid" and "boy"). The penalty is small because
  a market or a festival is rightly full of people the user did not list; the team's own stage-1 rewrites
  score 0.96 on average.

score = max(0, 1 - the penalties). None when the idea has no scene words (an instruction alone, an emoji) or is
in another language (its words cannot be compared with an English rewrite).
"""

from __future__ import annotations

import re

from enhancer.scoring.instructions import split_idea
from enhancer.scoring.text import content_words, dropped, stem, words_of
from enhancer.scoring.vocabulary import STOPWORDS

PEOPLE = frozenset(
    "man woman girl boy child kid person figure stranger lady gentleman sailor worker farmer fisherman "
    "fisher chef cook dancer musician hiker rider pilot soldier officer teacher student villager mother father "
    "grandmother grandfather grandma grandpa couple family friend player driver traveler traveller photographer "
    "artist poet writer narrator monk priest king queen knight guard baby toddler teenager teen mom dad wife "
    "husband son daughter sister brother boyfriend girlfriend shopper vendor merchant waiter barista clown "
    "detective captain pirate astronaut scientist doctor nurse".split()
)
ANIMALS = frozenset(
    "dog puppy cat kitten bird horse pony cow calf sheep lamb goat fox deer rabbit bunny bear wolf owl eagle "
    "hawk gull seagull duck swan goose fish whale dolphin mouse rat squirrel lion tiger elephant monkey "
    "butterfly bee dragon frog turtle tortoise snake lizard parrot crow raven pigeon chicken hen rooster pig "
    "penguin seal otter beaver fawn".split()
)
CROWD = frozenset("crowd people passerby passers-by pedestrian tourist audience spectator onlooker".split())
COLOURS = frozenset(
    "red orange yellow green blue purple violet pink white black grey gray brown golden gold silver teal "
    "turquoise crimson scarlet beige navy".split()
)
NUMBERS = {
    w: i
    for i, w in enumerate(
        "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
        "seventeen eighteen nineteen twenty".split()
    )
}
NEAR = 2  # a count or colour belongs to the content words at most this many words after it


def _number(word: str) -> int | None:
    if word.isdigit():
        return int(word)
    return NUMBERS.get(word)


def _attached(words: list[str], values) -> dict[str, set]:
    """noun (stemmed) -> the values (counts or colours) written within NEAR words before it."""
    found: dict[str, set] = {}
    for i, word in enumerate(words):
        value = values(word)
        if value is None:
            continue
        nouns = [w for w in words[i + 1 : i + 1 + NEAR] if w not in STOPWORDS and len(w) > 2]
        for noun in nouns:
            if _number(noun) is None and noun not in COLOURS:
                found.setdefault(stem(noun), set()).add(value)
    return found


def contradictions(scene: str, enhanced: str) -> list[str]:
    """The counts and colours of the scene that the rewrite changes: ["balloon: 3 -> 2", ...]."""
    given_words, out_words = words_of(scene), words_of(enhanced)
    found = []
    for values in (_number, lambda w: w if w in COLOURS else None):
        given, written = _attached(given_words, values), _attached(out_words, values)
        for noun, wanted in given.items():
            # only the value that comes right before the noun counts as its own (not "two red kites" -> red)
            if noun in written and not wanted & written[noun] and (written[noun] - wanted):
                found.append(
                    f"{noun}: {'/'.join(map(str, sorted(wanted)))} -> {'/'.join(map(str, sorted(written[noun])))}"
                )
    return found


def beings(words) -> set[str]:
    stems = {stem(w) for w in words}
    return {w for w in stems if w in PEOPLE or w in ANIMALS}


def new_beings(scene: str, enhanced: str) -> set[str]:
    """People and animals the rewrite brings in that the scene does not have."""
    have = beings(words_of(scene))
    new = beings(words_of(enhanced)) - have - CROWD
    if have & PEOPLE:  # the user has a person: any word for a person is that person
        new -= PEOPLE
    return new


def crowded_out(scene: str, enhanced: str) -> bool:
    first = re.split(r"(?<=[.!?])\s+", enhanced.strip(), maxsplit=1)[0]
    wanted = content_words(scene)
    if not wanted or len(dropped(wanted, first)) < len(wanted):
        return False
    return bool(new_beings(scene, first))


class InventedScorer:
    """1 when the rewrite adds craft but no new facts; see enhancer.scoring.invented for the penalties."""

    name = "invented"
    CONTRADICTION = 0.5
    CROWDED_OUT = 0.5
    NEW_BEING = 0.1
    MAX_BEINGS = 3

    def problems(self, simple: str, enhanced: str, idea=None) -> dict:
        scene = (idea or split_idea(simple)).scene_text
        return {
            "contradictions": contradictions(scene, enhanced),
            "crowded_out": crowded_out(scene, enhanced),
            "new_beings": sorted(new_beings(scene, enhanced)),
        }

    def score(self, samples):
        scores = []
        for sample in samples:
            idea = split_idea(sample.simple)
            if idea.foreign or not content_words(idea.scene_text):
                scores.append(None)
                continue
            found = self.problems(sample.simple, sample.enhanced, idea)
            penalty = (
                self.CONTRADICTION * len(found["contradictions"])
                + self.CROWDED_OUT * found["crowded_out"]
                + self.NEW_BEING * min(self.MAX_BEINGS, len(found["new_beings"]))
            )
            scores.append(round(max(0.0, 1 - penalty), 4))
        return scores
