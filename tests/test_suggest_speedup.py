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


def test_close_match_as_difflib_over_every_name():
    """`_close_match` drops names by length and by the characters they share with the word
    (bounds on difflib's `real_quick_ratio` and `quick_ratio`): the same answer as difflib
    over every name, for misspelt names and for words sharing few or no characters."""
    from rmmc.environments.fieldsets import _by_length, _close_match

    rng = random.Random(23)
    schemas = [schema_for([s], (), (), (), None) for s in sorted(set_names())]
    pools = [sorted(s.names) for s in schemas if s.names][:8]
    assert pools
    alphabet = "aAbeEiImnNoOrstT._-xyzQ0é"
    for names in pools:
        by_length = _by_length(names)
        words = ["", "a", "zzzz", "é", *names[:5]]
        for _ in range(60):
            words.append("".join(rng.choice(alphabet) for _ in range(rng.randrange(1, 16))))
            word = list(rng.choice(names))
            rng.shuffle(word)  # the same characters in another order: the bound lets it through
            words.append("".join(word[:rng.randrange(1, len(word) + 1)]))
        for word in words:
            for cutoff in (0.6, 0.75, 0.8):
                close = difflib.get_close_matches(word, names, n=1, cutoff=cutoff)
                assert _close_match(word, by_length, cutoff) == (close[0] if close else None), (word, cutoff)


def test_pools_kept_for_the_last_schema_are_its_own():
    """`_pools` keeps the last schema's pools: asked of schemas in turn, each answer equals the
    pools built afresh for that schema."""
    from rmmc.environments.fieldsets import _build_pools, _pools

    schemas = [s for s in (schema_for([n], (), (), (), None) for n in sorted(set_names())) if s.names][:4]
    assert len(schemas) >= 2
    for schema in [*schemas, schemas[0], schemas[0], schemas[1], *schemas]:
        assert _pools(schema) == _build_pools(schema)
