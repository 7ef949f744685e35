"""`$` that PCRE and Python read as RE2 does (rmmc/compiler/regexes.py `dollar_is_the_end`).

PCRE's and Python's `$` also match before a final line break; RE2's (KQL's) only at the very
end.  After a starred class that matches a line break, the two readings accept the same texts:
checked on generated texts with Python's `re` as PCRE reads `$`, and through pySigma's SQLite
backend on a translated rule.
"""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rmmc.compiler.evaluator import re2_dollar
from rmmc.compiler.regexes import dollar_is_the_end
from rmmc.translation import translate_text


@pytest.mark.parametrize("pattern, same", [
    (r"(?s)\\[^\\]*[eE][xX][eE][^\\]*$", True),      # rmmc's basename form
    (r"(a[^/]*$)|b[\s\S]*$", True),
    (r"(?s)\\(?:[^\\]*[^0-9A-Za-z])?net\.exe(?:[^0-9A-Za-z][^\\]*)?$", True),  # basename has
    (r"(^|[^0-9A-Za-z])ProcessCreated($|[^0-9A-Za-z])", True),                 # a term
    (r"a(?:[^\n][^\\]*)?$", False), (r"a(?:[^\\]x*)?$", False), (r"a($|x)", False),
    (r"no anchor", True), (r"[$]", True), (r"a\$", True),
    (r"\.exe$", False),                                # '.exe\n' matches in PCRE, not in RE2
    (r"a[^\\\n]*$", False), (r"a[^\s]*$", False),    # the class stops at the line break
    (r"x[^a-z]*$", True), (r"x[^\x00-z]*$", False),   # a range from an escape: not judged
    (r"a[^\\]*$\n", False), (r"(a[^\\]*$)+", False),   # something after the '$'
    (r"(a[^/]*$)|b$", False),
])
def test_which_dollars_mean_the_very_end(pattern, same):
    assert dollar_is_the_end(pattern) is same


SAME = [r"(?s)\\[^\\]*ab[^\\]*$", r"a[\s\S]*$", r"(?i)x[^/]*?$", r"(a[^\\]*$)|b[\w\W]*$",
        r"(?s)\\(?:[^\\]*[^0-9A-Za-z])?ab(?:[^0-9A-Za-z][^\\]*)?$", r"(^|[^0-9A-Za-z])ab($|[^0-9A-Za-z])"]
TEXT = st.text(alphabet="ab\\/\nxX", max_size=10)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(SAME), TEXT)
def test_pcre_reading_agrees_with_re2_where_judged_the_same(pattern, text):
    assert dollar_is_the_end(pattern)
    python_reads = re.search(pattern, text) is not None  # '$' also before a final '\n'
    re2_reads = re.search(re2_dollar(pattern), text) is not None
    assert python_reads == re2_reads, (pattern, text)


def test_a_basename_contains_to_sigma_is_exact_and_pysigma_agrees():
    """`FileName contains 'excavator.exe'` in the sigma environment is a regex on Image that
    ends `[^\\\\]*$`: exact (it was refused as lossy), and pySigma's SQLite backend matches the
    events whose file name contains it, a trailing line break or not."""
    sqlite = pytest.importorskip("sigma.backends.sqlite")
    from sigma.collection import SigmaCollection

    from rmmc.verify.engines import sigma_sqlite

    (result,) = translate_text("DeviceProcessEvents | where FileName contains 'excavator.exe'", "sigma")
    assert result.verdict == "exact", [d.message for d in result.diagnostics]
    assert "Image|re:" in result.text and "[^\\\\]*$" in result.text
    (query,) = sqlite.sqliteBackend().convert(SigmaCollection.from_yaml(result.text))
    table = str(query).split()[3]
    images = {r"C:\x\EXCAVATOR.exe": True, "C:\\x\\excavator.exe\n": True, r"C:\excavator.exe\y.exe": False,
              "C:\\x\\excavator.ex\ne": False, "C:\\x\\a excavator.exe b": True}
    conn = sigma_sqlite()
    conn.execute(f'CREATE TABLE {table} (i INTEGER, Image TEXT COLLATE NOCASE)')
    conn.executemany(f"INSERT INTO {table} VALUES (?, ?)", list(enumerate(images)))
    got = {r[0] for r in conn.execute(str(query).replace("SELECT *", "SELECT i", 1))}
    assert got == {i for i, want in enumerate(images.values()) if want}
