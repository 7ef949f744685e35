"""An environment's "did you mean" guess (`FieldSchema.suggest`) asks difflib only about names
whose length can reach the cutoff: the same guess as asking about every name."""

from __future__ import annotations

import difflib
import random

from rmmc.environments.fieldsets import _suggest, schema_for, set_names


def _every_name_guess(schema, name: str) -> str | None:
    """The guess as it was made before: difflib over the whole pool."""
    pool = sorted(schema.names | {f"{c}.{m}" for c in schema.dynamic for m in schema.members})
    lowered = {n.lower(): n for n in pool}
    if name.lower() in lowered and lowered[name.lower()] != name:
        return lowered[name.lower()]
    close = difflib.get_close_matches(name, pool, n=1, cutoff=0.75)
    if close:
        return close[0]
    squashed = {n.lower().replace("_", "").replace(".", ""): n for n in pool}
    key = name.lower().replace("_", "").replace(".", "")
    close = difflib.get_close_matches(key, list(squashed), n=1, cutoff=0.8)
    return squashed[close[0]] if close else None


def test_suggest_guesses_as_difflib_over_every_name():
    rng = random.Random(16)
    schemas = [schema_for([s], (), (), (), None) for s in sorted(set_names())]
    schemas = [s for s in schemas if s.names][:8]
    assert schemas
    for schema in schemas:
        names = sorted(schema.names)
        words = ["", "x", "Image", "CommandLine", "ParentImage", "process.name", "TargetFilename"]
        for _ in range(40):  # real names misspelt: a letter dropped, doubled or swapped in case
            word = list(rng.choice(names))
            i = rng.randrange(len(word))
            change = rng.choice(("drop", "double", "case"))
            if change == "drop" and len(word) > 1:
                del word[i]
            elif change == "double":
                word.insert(i, word[i])
            else:
                word[i] = word[i].swapcase()
            words.append("".join(word))
        for word in words:
            assert _suggest.__wrapped__(schema, word) == _every_name_guess(schema, word), word
