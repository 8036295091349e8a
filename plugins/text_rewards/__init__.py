"""Reward scorers on text alone (no video needed): cheap enough for every RL step and for evaluation.

- faithfulness: MiniLM cosine between the simple and the enhanced prompt
- keep: share of the user's content words (and annotated keep words) still present
- quote: quoted strings carried verbatim            - style: the style the user asked for, kept
- coverage: cinematic dimensions decided             - budget: inside the target's length budget and form
- clean: no chatter, meta text, markup, loops, cut-off endings or leaked instructions
- text: all of the above as one reward, their mean (the eval's composite with equal weights)

Combine them with weights in a recipe (`reward_weights`), e.g. `--reward keep,coverage,clean`. The scorers
themselves live in the core (`enhancer.scoring`), which uses them for its own checks; this plugin registers them
under their names, the way any scorer is registered.
"""

from __future__ import annotations

from enhancer import hookimpl
from enhancer.scoring import TEXT_SCORERS

SCORERS = dict(TEXT_SCORERS)


@hookimpl
def enhancer_reward_scorers():
    return dict(SCORERS)
