"""Deterministic prompts of about P tokens.

Approximation: common short English words, each a single token (with its leading space) in the
Llama, Mistral and GPT-style vocabularies, so W words are about W tokens. Where the server is
llama-server, its /tokenize endpoint measures the real count and the word count is corrected
(see loadgen.calibrate_prompt); the method used is reported with the results.

Each request's prompt starts with a tag unique to the run and the request ("<run>-<n>: "), then
the words in a rotation by the request index, so a server's prefix cache cannot answer a request
from an earlier one (of this level, an earlier level, or an earlier run against the same server):
every request pays its full prompt processing, as distinct users' requests would. Without the
tag, a level's prompts repeated the previous level's and llama-server answered them from its
slots' cache (measured: TTFT of a cache hit, not of a prompt).
"""

from __future__ import annotations

import secrets

_TEXT = (
    "the of and to in is it that for on was with as be at by this had not are but from or have "
    "an they which one you were all we her she there would their will when who him been has more "
    "if no out so said what up its about than into them can only other new some could time these "
    "two may then do first any my now such like our over man me even most made after also did "
    "many before must through back years where much your way well down should because each just "
    "those people how too little state good very make world still own see men work long get here "
    "between both life being under never day same another know while last might us great old "
    "year off come since against go came right used take three"
)
WORDS = tuple(_TEXT.split())


def prompt_text(n_words: int, request_index: int = 0, run_tag: str = "") -> str:
    """n_words words, after "<run_tag>-<request_index>: " when run_tag is given; the rotation by
    request_index keeps prompts distinct from their start."""
    if n_words <= 0:
        return ""
    start = (request_index * 7919) % len(WORDS)  # a prime stride: neighbours differ early
    words = " ".join(WORDS[(start + i) % len(WORDS)] for i in range(n_words))
    return f"{run_tag}-{request_index}: {words}" if run_tag else words


def run_tag() -> str:
    """A tag for one load run: different in every run, so no run reuses another's prompts."""
    return f"{secrets.randbelow(90000) + 10000}"
