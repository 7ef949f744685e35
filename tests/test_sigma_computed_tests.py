"""`isnotempty(extract(R, g, X))` in Sigma as `X|re: R` where group g is never empty and takes
part in every match (rmmc/backends/sigma/computed.py): pySigma's SQLite backend selects the
events the reference evaluator selects; other extract tests stay refused."""

from __future__ import annotations

import pytest
import yaml

from rmmc import translate
from rmmc.backends.sigma.computed import _never_empty
from rmmc.compiler.kql.lower import lower_text
from rmmc.compiler.rows import run

LINES = ["adduser bob sudo", "ADDUSER bob sudo", "adduser sudo", "x -enc QUJD", "x -EncodedCommand  Zm9v",
         "x -enc ", "x -enc\n", "psexec 10.1.2.3 run", "ping 1.2.3", "", None, "ünïcode 999.999.999.999"]
EVENTS = [{"ProcessCommandLine": v, "DeviceName": f"d{i}"} if v is not None else {"DeviceName": f"d{i}"}
          for i, v in enumerate(LINES)]


@pytest.mark.parametrize("test", [
    'isnotempty(extract("adduser(.*) sudo", 0, ProcessCommandLine))',
    'isempty(extract("adduser(.*) sudo", 0, ProcessCommandLine))',
    r'isnotempty(extract(@"-(?:EncodedCommand|enc)\s+([A-Za-z0-9+/=]+)", 1, ProcessCommandLine))',
    r'extract(@"[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}", 0, ProcessCommandLine) != ""',
    r'extract(@"[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}", 0, ProcessCommandLine) == "" and DeviceName != "d0"',
])
def test_pysigma_selects_what_the_evaluator_selects(test: str) -> None:
    pytest.importorskip("sigma.backends.sqlite")
    from sigma.backends.sqlite import sqliteBackend
    from sigma.collection import SigmaCollection

    from rmmc.verify.engines import sigma_sqlite

    kql = f"DeviceProcessEvents\n| where {test}\n"
    expected = sorted(i for row in run(lower_text(kql).rule, EVENTS) for i in row.sources)
    assert expected and len(expected) < len(EVENTS)
    result = translate(kql, "sigma")
    assert result.ok and result.rules[0].verdict == "exact", [d.message for d in result.diagnostics]
    assert "|re" in str(yaml.safe_load(result.text)["detection"])
    (query,) = sqliteBackend().convert(SigmaCollection.from_yaml(result.text))
    conn = sigma_sqlite()
    conn.execute('CREATE TABLE logs ("i" INTEGER, "CommandLine" TEXT COLLATE NOCASE, "Computer" TEXT COLLATE NOCASE, '
                 '"DeviceName" TEXT COLLATE NOCASE)')
    conn.executemany("INSERT INTO logs VALUES (?, ?, ?, ?)",
                     [(i, e.get("ProcessCommandLine"), e["DeviceName"], e["DeviceName"]) for i, e in enumerate(EVENTS)])
    got = sorted(r[0] for r in conn.execute(str(query).replace("SELECT *", 'SELECT "i"', 1)))
    assert got == expected


def test_verify_agrees() -> None:
    pytest.importorskip("sigma.backends.sqlite")
    from rmmc.verify.runner import verify_rule

    kql = ('DeviceProcessEvents | extend E = extract(@"-(?:enc)\\s+([A-Za-z0-9+/=]+)", 1, ProcessCommandLine)'
           ' | where isnotempty(E) and ProcessId > 4')
    _, verdicts = verify_rule(lower_text(kql).rule, ["sigma"])
    assert [v.status for v in verdicts] == ["agree"], verdicts


@pytest.mark.parametrize("pattern, group, never", [
    ("adduser(.*) sudo", 0, True), ("a(.*)b", 1, False), ("a(x+)b", 1, True), ("a(x+)?b", 1, False),
    ("(a+)|(b+)", 1, False), ("a((x+))", 2, False), ("x*", 0, False), ("a(x+)", 2, False), ("(", 0, False),
    ("^$", 0, False),
])
def test_which_groups_are_never_empty(pattern: str, group: int, never: bool) -> None:
    assert _never_empty(pattern, group) is never


@pytest.mark.parametrize("test", ['isnotempty(extract("a(.*)b", 1, ProcessCommandLine))',
                                  'extract("a(x+)b", 1, ProcessCommandLine) == "xx"'])
def test_other_extract_tests_stay_refused(test: str) -> None:
    assert not translate(f"DeviceProcessEvents | where {test}", "sigma").ok


ADDRESSES = ["10.0.0.1", "10.255.255.255", "172.16.0.1", "172.31.9.9", "172.32.0.1", "192.168.1.1", "192.169.1.1",
             "8.8.8.8", " 10.1.2.3 ", "10.1.2.3/24", "10.1.2.3/x y", "10.1.2.3 /24", "\u200a10.1.2.3\u3000",
             "10.1.2.3\n", "010.1.2.3", "10.1.2.256", "10.1.2", "fe80::1", "::ffff:10.0.0.1", "", None,
             "1.2.3.4/8", "١٠.0.0.1"]
IP_EVENTS = [{"RemoteIP": v, "DeviceName": f"d{i}"} if v is not None else {"DeviceName": f"d{i}"}
             for i, v in enumerate(ADDRESSES)]


@pytest.mark.parametrize("test", ["ipv4_is_private(RemoteIP)", "not(ipv4_is_private(RemoteIP))",
                                  "ipv4_is_private(RemoteIP) == false", "ipv4_is_private(RemoteIP) != true",
                                  "not(ipv4_is_private(RemoteIP) or RemoteIP == '8.8.8.8')"])
def test_ipv4_is_private_as_a_regex(test: str) -> None:
    pytest.importorskip("sigma.backends.sqlite")
    from sigma.backends.sqlite import sqliteBackend
    from sigma.collection import SigmaCollection

    from rmmc.verify.engines import sigma_sqlite

    kql = f"DeviceNetworkEvents\n| where {test}\n"
    expected = sorted(i for row in run(lower_text(kql).rule, IP_EVENTS) for i in row.sources)
    assert expected and len(expected) < len(IP_EVENTS)
    result = translate(kql, "sigma")
    assert result.ok and result.rules[0].verdict == "exact", [d.message for d in result.diagnostics]
    (query,) = sqliteBackend().convert(SigmaCollection.from_yaml(result.text))
    conn = sigma_sqlite()
    conn.execute('CREATE TABLE logs ("i" INTEGER, "DestinationIp" TEXT COLLATE NOCASE)')
    conn.executemany("INSERT INTO logs VALUES (?, ?)", [(i, e.get("RemoteIP")) for i, e in enumerate(IP_EVENTS)])
    got = sorted(r[0] for r in conn.execute(str(query).replace("SELECT *", 'SELECT "i"', 1)))
    assert got == expected, ([ADDRESSES[i] for i in got], [ADDRESSES[i] for i in expected])


@pytest.mark.parametrize("pattern, same", [("a[ \\t\\n]*$", True), ("a[\\nx]*$", True), ("a[xn]*$", False),
                                           ("a[\\\\n]*$", False), ("a[ \\t]*$", False), ("a[^\\n]*$", False)])
def test_a_dollar_after_a_class_naming_a_line_break_is_the_end(pattern: str, same: bool) -> None:
    """PCRE and Python also match `$` before a final line break; a starred class that takes
    the line break makes that match one that ends at the very end, as RE2's `$` does."""
    import re

    from rmmc.compiler.evaluator import re2_dollar
    from rmmc.compiler.regexes import dollar_is_the_end

    assert dollar_is_the_end(pattern) is same
    if same:  # checked on texts ending in a line break: Python's `$` and RE2's (`\Z`) agree
        for text in ("a\n", "a \n", "ax\n", "a\nb\n", "a\n\n"):
            assert bool(re.search(pattern, text)) == bool(re.search(re2_dollar(pattern), text)), text


PATHS = ["C:\\a\\b.doc", "C:\\a\\b.DOC", "C:\\a\\b.docx", "C:\\a.doc\\b", "C:\\a\\b.tar.doc", "C:\\a\\.doc",
         "C:\\a\\b.doc:Zone.Identifier", "C:\\a\\b.txt:x.doc", "C:a.doc", "/usr/x.doc", "http://h/x.doc",
         "ab://x:y.doc", "b.doc", "b.doc\n", "C:\\a\\b.doc \n", "C:\\a\\b.xls", "C:\\a\\b", "", None, "ü.doc"]
PATH_EVENTS = [{"FolderPath": v, "DeviceName": f"d{i}"} if v is not None else {"DeviceName": f"d{i}"}
               for i, v in enumerate(PATHS)]


@pytest.mark.parametrize("test", ["parse_path(FolderPath).Extension == 'doc'",
                                  "parse_path(FolderPath).Extension in ('doc', 'xls')",
                                  "tostring(parse_path(FolderPath).Extension) =~ 'DOC'",
                                  "parse_path(FolderPath).Extension != 'doc'",
                                  "not(parse_path(FolderPath).Extension in~ ('doc')) and DeviceName != 'd0'"])
def test_a_path_extension_as_tests_on_the_path(test: str) -> None:
    pytest.importorskip("sigma.backends.sqlite")
    from sigma.backends.sqlite import sqliteBackend
    from sigma.collection import SigmaCollection

    from rmmc.verify.engines import sigma_sqlite

    kql = f"DeviceFileEvents\n| where {test}\n"
    expected = sorted(i for row in run(lower_text(kql).rule, PATH_EVENTS) for i in row.sources)
    assert expected and len(expected) < len(PATH_EVENTS)
    result = translate(kql, "sigma")
    assert result.ok and result.rules[0].verdict == "exact", [d.message for d in result.diagnostics]
    (query,) = sqliteBackend().convert(SigmaCollection.from_yaml(result.text))
    conn = sigma_sqlite()
    conn.execute('CREATE TABLE logs ("i" INTEGER, "TargetFilename" TEXT COLLATE NOCASE, "DeviceName" TEXT COLLATE NOCASE,'
                 ' "Computer" TEXT COLLATE NOCASE)')
    conn.executemany("INSERT INTO logs VALUES (?, ?, ?, ?)",
                     [(i, e.get("FolderPath"), e["DeviceName"], e["DeviceName"]) for i, e in enumerate(PATH_EVENTS)])
    got = sorted(r[0] for r in conn.execute(str(query).replace("SELECT *", 'SELECT "i"', 1)))
    assert got == expected, ([PATHS[i] for i in got], [PATHS[i] for i in expected])


@pytest.mark.parametrize("value", ["", "tar.doc", "a\\b", "x:y", "a/b"])
def test_other_extension_tests_stay_refused(value: str) -> None:
    assert not translate(f"DeviceFileEvents | where parse_path(FolderPath).Extension == @'{value}'", "sigma").ok


DOLLAR_TEXTS = ["x AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "x AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\n", "x AAAA", "abc",
                "abc\n", "xabc", "abc\nabc", "ABC", "", None, "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA x"]
DOLLAR_EVENTS = [{"ProcessCommandLine": v} if v is not None else {} for v in DOLLAR_TEXTS]


@pytest.mark.parametrize("test", ["ProcessCommandLine matches regex @'\\s+([A-Za-z0-9+/]{20}\\S+$)'",
                                  "not(ProcessCommandLine matches regex @'abc$')",
                                  "ProcessCommandLine matches regex @'(?i)abc$'",
                                  "isnotempty(extract(@'\\s+([A-Za-z0-9+/]{20}\\S+$)', 1, ProcessCommandLine))"])
def test_a_dollar_after_no_line_break_is_exact(test: str) -> None:
    """RE2's `$` is the very end; pySigma's (Python's) also matches before a final line break:
    such a regex is written with `not |re: '\\n$'` (regexes.ends_at_dollar_after_no_line_break)."""
    pytest.importorskip("sigma.backends.sqlite")
    from sigma.backends.sqlite import sqliteBackend
    from sigma.collection import SigmaCollection

    from rmmc.verify.engines import sigma_sqlite

    kql = f"DeviceProcessEvents\n| where {test}\n"
    expected = sorted(i for row in run(lower_text(kql).rule, DOLLAR_EVENTS) for i in row.sources)
    assert expected and len(expected) < len(DOLLAR_EVENTS)
    result = translate(kql, "sigma")
    assert result.ok and result.rules[0].verdict == "exact", [d.message for d in result.diagnostics]
    (query,) = sqliteBackend().convert(SigmaCollection.from_yaml(result.text))
    conn = sigma_sqlite()
    conn.execute('CREATE TABLE logs ("i" INTEGER, "CommandLine" TEXT COLLATE NOCASE)')
    conn.executemany("INSERT INTO logs VALUES (?, ?)",
                     [(i, e.get("ProcessCommandLine")) for i, e in enumerate(DOLLAR_EVENTS)])
    got = sorted(r[0] for r in conn.execute(str(query).replace("SELECT *", 'SELECT "i"', 1)))
    assert got == expected, ([DOLLAR_TEXTS[i] for i in got], [DOLLAR_TEXTS[i] for i in expected])


@pytest.mark.parametrize("pattern, ok", [("\\s+([A-Za-z0-9+/]{20}\\S+$)", True), ("abc$", True), ("a\\n$", False),
                                         ("a|b$", False), ("a[^x]+$", False), ("a\\S*$", False), ("a$b", False),
                                         ("a[^\\n]+$", True), ("a\\s$", False)])
def test_which_dollars_follow_no_line_break(pattern: str, ok: bool) -> None:
    from rmmc.compiler.regexes import ends_at_dollar_after_no_line_break

    assert ends_at_dollar_after_no_line_break(pattern) is ok
