"""Feed tests on a column the `sigma` environment holds inside another field, as placeholders.

`SHA256 in (<feed>)` (Sysmon keeps digests in `Hashes` as `SHA256=...,MD5=...`) is written
`Hashes|contains|expand: '%name%'` and `FileName in (<feed>)` (the end of `Image`)
`Image|endswith|expand: '%name%'`; the placeholder's subquery writes the feed's values as the
field holds them (`SHA256=<digest>`, `\\<name>`), leaving out those no column value can equal
(environments/forms.py `feed_entries`).  pySigma's SQLite backend, with the pipeline
`rmmc placeholders` writes from the feed text, must select the events the reference evaluator
selects with the KQL rule over the same feed text.
"""

from __future__ import annotations

import pytest
import yaml

pytest.importorskip("sigma.backends.sqlite")

from sigma.backends.sqlite import sqliteBackend  # noqa: E402
from sigma.collection import SigmaCollection  # noqa: E402

from rmmc import translate  # noqa: E402
from rmmc.backends.sigma.fill import FillError, pipeline, pysigma_pipeline  # noqa: E402
from rmmc.compiler.kql.lower import lower_text  # noqa: E402
from rmmc.compiler.rows import run  # noqa: E402
from rmmc.verify.engines import sigma_sqlite  # noqa: E402

HASH_URI = "https://feeds.example/iocs/sha256.txt"
NAME_URI = "https://feeds.example/iocs/names.txt"
A = "ab" * 32                       # a digest in the feed (lower case)
B = "CD" * 32                       # another (upper case)
SHORT = "abcd"                      # hex, but no SHA256: no digest equals it
HASH_FEED = f"{A}\n{B}\n{SHORT}\nnot-a-digest\n{'ef' * 31}\n"
NAME_FEED = "cmd.exe\nPsExec.exe\nx*y.exe\na\\b.exe\nÉvil.exe\n"
LETS = (f'let Hashes256 = externaldata(sha256:string)["{HASH_URI}"] with (format="txt");\n'
        f'let Names = externaldata(name:string)["{NAME_URI}"] with (format="txt");\n')
DIGESTS = [A, A.upper(), B, B.lower(), SHORT + "0" * 60, "ef" * 32, "12" * 32, None]
NAMES = ["cmd.exe", "CMD.EXE", "notcmd.exe", "cmd.exe.bak", "psexec.exe", "x*y.exe", "xzy.exe",
         "b.exe", "évil.exe", "Évil.exe", "other.exe", None]


def _events() -> list[dict]:
    """Defender-shaped events: every digest with every other name, so both tests matter."""
    out = []
    for i, digest in enumerate(DIGESTS):
        for j, name in enumerate(NAMES):
            if (i + j) % 3 == 0 or name is None or digest is None:
                e = {"DeviceName": f"d{i}-{j}"}
                if digest is not None:
                    e["SHA256"] = digest
                if name is not None:
                    e["FileName"] = name
                    e["FolderPath"] = "C:\\a\\" + name
                out.append(e)
    return out


EVENTS = _events()


def _kql(test: str) -> str:
    return LETS + f"DeviceProcessEvents\n| where {test}\n"


def _expected(kql: str) -> list[int]:
    rule = lower_text(kql).rule
    rows = run(rule, EVENTS, external={HASH_URI: HASH_FEED, NAME_URI: NAME_FEED})
    return sorted(i for row in rows for i in row.sources)


def _selected(kql: str) -> list[int]:
    """The events pySigma's SQLite query selects, the events written as Sysmon holds them
    (`Image` the path, `Hashes` the digest list)."""
    result = translate(kql, "sigma")
    assert result.ok and result.rules[0].verdict == "exact", [d.message for d in result.diagnostics]
    body, _ = pipeline(list(yaml.safe_load_all(result.text)), {HASH_URI: HASH_FEED, NAME_URI: NAME_FEED})
    queries = sqliteBackend(pysigma_pipeline(body)).convert(SigmaCollection.from_yaml(result.text))
    assert len(queries) == 1
    conn = sigma_sqlite()
    conn.execute('CREATE TABLE logs ("i" INTEGER, "Image" TEXT COLLATE NOCASE, "Hashes" TEXT COLLATE NOCASE, '
                 '"Computer" TEXT COLLATE NOCASE)')
    rows = []
    for i, e in enumerate(EVENTS):
        hashes = f"MD5={'0' * 32},SHA256={e['SHA256']},IMPHASH={'1' * 32}" if "SHA256" in e else None
        rows.append((i, e.get("FolderPath"), hashes, e["DeviceName"]))
    conn.executemany("INSERT INTO logs VALUES (?, ?, ?, ?)", rows)
    return sorted(r[0] for r in conn.execute(str(queries[0]).replace("SELECT *", 'SELECT "i"', 1)))


@pytest.mark.parametrize("test", [
    "SHA256 in (Hashes256)", "SHA256 in~ (Hashes256)", "SHA256 !in (Hashes256)", "SHA256 !in~ (Hashes256)",
    "FileName in (Names)", "FileName in~ (Names)", "FileName !in (Names)", "FileName !in~ (Names)",
    "FileName in~ (Names) or SHA256 in (Hashes256)",
    "not(FileName in (Names)) and SHA256 in~ (Hashes256)",
])
def test_pysigma_selects_what_the_evaluator_selects(test: str) -> None:
    kql = _kql(test)
    expected = _expected(kql)
    assert expected and len(expected) < len(EVENTS)  # the test tells events apart
    assert _selected(kql) == expected


def test_the_rule_tests_the_field_and_the_list_holds_its_entries() -> None:
    result = translate(_kql("SHA256 in (Hashes256) or FileName in~ (Names)"), "sigma")
    doc = yaml.safe_load(result.text)
    keys = [k for item in doc["detection"]["selection"] for k in item]
    assert keys == ["Hashes|contains|expand|cased", "Image|endswith|expand"]
    body, _ = pipeline([doc], {HASH_URI: HASH_FEED, NAME_URI: NAME_FEED})
    values = sorted(body["vars"].values())
    # only whole digests; names without a separator, each after one ('\\' escaped for Sigma)
    assert values == [[f"SHA256={A}", f"SHA256={B}"],
                      ["\\\\cmd.exe", "\\\\PsExec.exe", "\\\\x\\*y.exe", "\\\\Évil.exe"]]


def test_a_plain_field_and_a_held_one_get_their_own_placeholders() -> None:
    """The same feed read by a Defender column Sigma keeps (DeviceFileEvents' FileName) and by
    one it holds in a field: two lists, two names."""
    kql = LETS + "DeviceProcessEvents\n| where SHA256 in (Hashes256) or InitiatingProcessSHA256 in (Hashes256)\n"
    doc = yaml.safe_load(translate(kql, "sigma").text)
    assert len(doc["rmmc_placeholders"]) == 2


def test_an_empty_feed_value_is_refused() -> None:
    """'' in the feed matches an event with no SHA256 (or a path ending in a separator): no
    entry says that."""
    csv = "https://feeds.example/names.csv"
    kql = (f'let Listed = externaldata(name:string, note:string)["{csv}"] with (format="csv");\n'
           "DeviceProcessEvents\n| where FileName in (Listed | project name)\n")
    doc = yaml.safe_load(translate(kql, "sigma").text)
    assert pipeline([doc], {csv: "cmd.exe,x\n"})[0]["vars"]
    with pytest.raises(FillError, match="empty value"):
        pipeline([doc], {csv: "cmd.exe,x\n,y\n"})
    doc = yaml.safe_load(translate(_kql("SHA256 in (Hashes256)"), "sigma").text)
    with pytest.raises(FillError, match="no value"):  # no value is a digest: the test matches nothing
        pipeline([doc], {HASH_URI: "abcd\n"})


@pytest.mark.parametrize("test", ["SHA256 has_any (Hashes256)", "SHA256 in (DeviceFileEvents | distinct SHA256)"])
def test_other_tests_on_a_held_column_stay_refused(test: str) -> None:
    result = translate(_kql(test), "sigma")
    assert not result.ok


def test_verify_agrees() -> None:
    from rmmc.verify.runner import verify_rule

    for test in ("SHA256 in~ (Hashes256)", "FileName !in (Names)"):
        _, verdicts = verify_rule(lower_text(_kql(test)).rule, ["sigma"])
        assert [(v.status, v.engine) for v in verdicts] == [("agree", "pySigma sqlite")], verdicts
