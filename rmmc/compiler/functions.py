"""The scalar functions of the detection model: their arguments, result types and meaning.

Each `ir.Call` names one of these.  The meaning is KQL's (Microsoft's documentation; where it
is silent, the behaviour duckdb-kql measured on Kusto and documents in its function table):

* Values are Python values: `str`, `int` (long / int), `float` (real), `bool`, `datetime`
  (UTC), `timedelta` (timespan), and for `dynamic` the JSON value (`dict`, `list`/`tuple`,
  `str`, numbers, `bool`, `None`).  `None` is null.
* Strings are never null: a string result that would be null is `''`, and a string argument
  that is null reads as `''`.
* Conversions (`toint`, `tolong`, `todouble` ...) give null when the value does not convert,
  never an error; integer division and modulo by zero give null; `%` is never negative.
* Regular expressions have RE2's meaning (`evaluator.re2_dollar`).

The backends decide per target which of these they can say, and how; this module is the
one place their meaning is written down.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Sequence

WHITESPACE = ("\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005"
              "\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000")
"""The characters Python's `str.strip()` removes (`str.isspace`), which the model's
`ipv4_is_private` strips (targets write them as a class: their `\\s` may be ASCII only)."""

STRING_TYPES = frozenset({"string", "guid"})
INTEGER_TYPES = frozenset({"int", "long"})
NUMERIC_TYPES = frozenset({"int", "long", "real", "double", "decimal"})
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


class EvaluationError(Exception):
    """A function applied to arguments it has no meaning for (a bad regex, say)."""


@dataclass(frozen=True)
class Function:
    """One model function: KQL `name`, accepted argument counts, result type (fixed, or
    computed from the argument types), and its meaning over Python values.  `literal_args`
    are the positions that must be constants (a regex, a delimiter ...)."""

    name: str
    min_args: int
    max_args: int | None
    result: str | Callable[[Sequence[str]], str]
    impl: Callable[..., Any]
    literal_args: tuple[int, ...] = ()
    strings: tuple[int, ...] = ()  # argument positions read as strings (null -> '')

    def result_type(self, arg_types: Sequence[str]) -> str:
        return self.result if isinstance(self.result, str) else self.result(arg_types)


# ------------------------------------------------------------------ value helpers


def fold(text: str) -> str:
    """Lower-case each character one for one (no 'İ' -> 'i̇' expansion): KQL's `tolower` and
    the folding of every case-insensitive test."""
    lowered = text.lower()
    if len(lowered) == len(text):
        return lowered
    return "".join(ch if len(ch.lower()) != 1 else ch.lower() for ch in text)


def upper(text: str) -> str:
    """Upper-case each character one for one (no 'ß' -> 'SS'): KQL's `toupper`."""
    raised = text.upper()
    if len(raised) == len(text):
        return raised
    return "".join(ch if len(ch.upper()) != 1 else ch.upper() for ch in text)


def _real_text(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


def datetime_text(value: datetime) -> str:
    """KQL's text of a datetime: ISO 8601 in UTC with seven fraction digits when there is a
    fraction (`2024-01-02T03:04:05Z`, `2024-01-02T03:04:05.1230000Z`)."""
    value = value.astimezone(timezone.utc) if value.tzinfo else value.replace(tzinfo=timezone.utc)
    text = value.strftime("%Y-%m-%dT%H:%M:%S")
    if value.microsecond:
        text += f".{value.microsecond:06d}0"
    return text + "Z"


def timespan_text(value: timedelta) -> str:
    """KQL's text of a timespan: `[-][d.]hh:mm:ss[.fffffff]`."""
    sign = "-" if value < timedelta(0) else ""
    value = abs(value)
    days, seconds = value.days, value.seconds
    text = f"{days}." if days else ""
    text += f"{seconds // 3600:02d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"
    if value.microseconds:
        text += f".{value.microseconds:06d}0"
    return sign + text


def to_text(value: Any) -> str:
    """`tostring(value)`: null is '', a dynamic string its text, an array or bag its JSON."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _real_text(value)
    if isinstance(value, datetime):
        return datetime_text(value)
    if isinstance(value, timedelta):
        return timespan_text(value)
    if isinstance(value, (list, tuple, dict)):
        import json  # (here, not at import: a translation never calls it)

        return json.dumps(_jsonable(value), separators=(",", ":"), ensure_ascii=False)
    return str(value)


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, datetime):
        return datetime_text(value)
    if isinstance(value, timedelta):
        return timespan_text(value)
    return value


def to_long(value: Any) -> int | None:
    """`tolong`: numbers truncated toward zero, numeric text read, anything else null."""
    if value is None:
        return None
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return None
        return int(value)
    if isinstance(value, str):
        text = value.strip()
        if re.fullmatch(r"[+-]?\d+", text):
            return int(text)
        try:
            number = float(text)
        except ValueError:
            return None
        return None if math.isnan(number) or math.isinf(number) else int(number)
    return None


def to_int(value: Any) -> int | None:
    """`toint`: `tolong` within 32 bits, null outside."""
    number = to_long(value)
    if number is None or not -2 ** 31 <= number < 2 ** 31:
        return None
    return number


def to_real(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            return None
    return None


def to_bool(value: Any) -> bool | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        return value != 0
    if isinstance(value, str):
        text = value.strip().lower()
        if text in ("true", "1"):
            return True
        if text in ("false", "0"):
            return False
    return None


def to_datetime(value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            return None
        return parsed.astimezone(timezone.utc) if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)
    return None


def to_dynamic(value: Any) -> Any:
    """`parse_json` / `todynamic`: JSON text parsed; text that is no JSON stays that text;
    a dynamic value stays itself."""
    if not isinstance(value, str):
        return value
    import json

    try:
        return json.loads(value)
    except (ValueError, RecursionError):
        return value


# ------------------------------------------------------------------ regexes


def _regex(pattern: str, flags: int = 0) -> re.Pattern[str]:
    from rmmc.compiler.evaluator import compiled_regex

    try:
        return compiled_regex(pattern, flags)
    except re.error as exc:
        raise EvaluationError(f"invalid regular expression {pattern!r}: {exc}") from None


def _trim(wrapper: str) -> Callable[[str, str], str]:
    """Kusto splices the regex into its own anchored pattern and removes every match of it
    (duckdb-kql measured this on Kusto: `trim('a', 'aaaa')` is 'aa')."""

    def trim(pattern: str, text: str) -> str:
        return _regex(wrapper.format(pattern)).sub("", text)

    return trim


_REWRITE_GROUP = re.compile(r"\\(\d)|\$(\d)")


def _replace_regex(text: str, pattern: str, rewrite: str) -> str:
    """Every match replaced; `\\1` .. `\\9` (and `$1`) in the rewrite name groups."""
    def expand(match: re.Match[str]) -> str:
        def group(g: re.Match[str]) -> str:
            index = int(g.group(1) or g.group(2))
            try:
                return match.group(index) or ""
            except IndexError:
                return ""
        return _REWRITE_GROUP.sub(group, rewrite)

    return _regex(pattern).sub(expand, text)


def _extract(pattern: str, group: Any, text: str, type_name: Any = None) -> Any:
    index = to_long(group)
    found = _regex(pattern).search(text)
    if found is None or index is None or index < 0 or index > (found.re.groups or 0):
        value = None
    else:
        value = found.group(index)
    if type_name is None:
        return value if value is not None else ""
    return convert(value, str(type_name))


def _extract_all(pattern: str, text: str) -> list[Any]:
    compiled = _regex(pattern)
    out: list[Any] = []
    for match in compiled.finditer(text):
        if compiled.groups == 0:
            out.append(match.group(0))
        elif compiled.groups == 1:
            out.append(match.group(1) or "")
        else:
            out.append([g or "" for g in match.groups()])
    return out


def _substring(text: str, start: Any, length: Any = ...) -> str:
    begin = to_long(start)
    if begin is None:
        return ""
    if begin < 0:
        begin += len(text)
        if begin < 0:
            return ""
    if length is ...:
        return text[begin:]
    count = to_long(length)
    if count is None or count < 0:
        return ""
    return text[begin:begin + count]


def _split(text: str, delimiter: str, index: Any = ...) -> Any:
    parts = text.split(delimiter) if delimiter else [text]
    if index is ...:
        return parts
    position = to_long(index)
    if position is None or not -len(parts) <= position < len(parts):
        return []
    return [parts[position]]


def _index(container: Any, key: Any) -> Any:
    """`x[i]` / `x['k']` on a dynamic value: out of range or absent is null."""
    container = to_dynamic(container) if isinstance(container, str) else container
    if isinstance(container, (list, tuple)):
        position = to_long(key)
        if position is None or not -len(container) <= position < len(container):
            return None
        return container[position]
    if isinstance(container, dict):
        return container.get(to_text(key))
    return None


def _strcat(*args: Any) -> str:
    return "".join(to_text(a) for a in args)


def _indexof(text: str, lookup: str) -> int:
    return text.find(lookup)


def _replace_string(text: str, lookup: str, rewrite: str) -> str:
    return text.replace(lookup, rewrite) if lookup else text


def _coalesce(*args: Any) -> Any:
    for value in args:
        if value is None or value == "":
            continue
        return value
    return args[-1] if args and args[-1] == "" else None


def _iff(condition: Any, then: Any, otherwise: Any) -> Any:
    return then if condition is True else otherwise


def _case(*args: Any) -> Any:
    pairs, default = args[:-1], args[-1]
    for i in range(0, len(pairs), 2):
        if pairs[i] is True:
            return pairs[i + 1]
    return default


def _array_length(value: Any) -> int | None:
    value = to_dynamic(value) if isinstance(value, str) else value
    return len(value) if isinstance(value, (list, tuple)) else None


def _set_has_element(array: Any, value: Any) -> bool | None:
    array = to_dynamic(array) if isinstance(array, str) else array
    if not isinstance(array, (list, tuple)):
        return None
    return any(_same_value(item, value) for item in array)


def _same_value(a: Any, b: Any) -> bool:
    """Equality of dynamic values: a bool is not a number (`true` is not `1`)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    return a == b


def _numbers(a: Any, b: Any) -> bool:
    return (isinstance(a, (int, float)) and not isinstance(a, bool)
            and isinstance(b, (int, float)) and not isinstance(b, bool))


def _add(a: Any, b: Any) -> Any:
    if a is None or b is None:
        return None
    if _numbers(a, b) or (isinstance(a, (datetime, timedelta)) and isinstance(b, timedelta)) \
            or (isinstance(a, timedelta) and isinstance(b, datetime)):
        return a + b
    raise EvaluationError(f"cannot add {type(a).__name__} and {type(b).__name__}")


def _subtract(a: Any, b: Any) -> Any:
    if a is None or b is None:
        return None
    if _numbers(a, b) or (isinstance(a, (datetime, timedelta)) and isinstance(b, timedelta)) \
            or (isinstance(a, datetime) and isinstance(b, datetime)):
        return a - b
    raise EvaluationError(f"cannot subtract {type(b).__name__} from {type(a).__name__}")


def _multiply(a: Any, b: Any) -> Any:
    if a is None or b is None:
        return None
    if _numbers(a, b):
        return a * b
    if isinstance(a, timedelta) and _numbers(b, 0):
        return a * b
    if isinstance(b, timedelta) and _numbers(a, 0):
        return b * a
    raise EvaluationError(f"cannot multiply {type(a).__name__} and {type(b).__name__}")


def _divide(a: Any, b: Any) -> Any:
    """Integers divide as integers, truncating toward zero (`-7 / 2` is -3); by zero: null."""
    if a is None or b is None:
        return None
    if isinstance(a, int) and isinstance(b, int) and not isinstance(a, bool) and not isinstance(b, bool):
        if b == 0:
            return None
        quotient = abs(a) // abs(b)
        return quotient if (a >= 0) == (b >= 0) else -quotient
    if _numbers(a, b):
        if b == 0:
            return math.copysign(math.inf, a) if a else math.nan
        return a / b
    if isinstance(a, timedelta) and isinstance(b, timedelta):
        return a / b if b else None
    if isinstance(a, timedelta) and _numbers(b, 0):
        return a / b if b else None
    raise EvaluationError(f"cannot divide {type(a).__name__} by {type(b).__name__}")


def _modulo(a: Any, b: Any) -> Any:
    """Never negative (duckdb-kql measured `-10 % 4` as 2 on Kusto); by zero: null."""
    if a is None or b is None:
        return None
    if not _numbers(a, b):
        raise EvaluationError(f"cannot take {type(a).__name__} modulo {type(b).__name__}")
    if b == 0:
        return None
    return a % abs(b)


def _negate(a: Any) -> Any:
    if a is None:
        return None
    if isinstance(a, (int, float, timedelta)) and not isinstance(a, bool):
        return -a
    raise EvaluationError(f"cannot negate {type(a).__name__}")


def _bin(value: Any, size: Any) -> Any:
    """Round down to a multiple of `size` (datetimes: since 1970-01-01 UTC)."""
    if value is None or size is None:
        return None
    if isinstance(value, datetime) and isinstance(size, timedelta):
        if size <= timedelta(0):
            return None
        value = to_datetime(value)
        return _EPOCH + ((value - _EPOCH) // size) * size
    if isinstance(value, timedelta) and isinstance(size, timedelta):
        return (value // size) * size if size > timedelta(0) else None
    if _numbers(value, size):
        if size <= 0:
            return None
        result = math.floor(value / size) * size
        return int(result) if isinstance(value, int) and isinstance(size, int) else float(result)
    return None


def _base64_decode(text: str) -> str:
    """The UTF-8 text a base64 string encodes; '' when it is no base64 or no UTF-8 (duckdb-kql
    measured Kusto answering an empty string for bytes that are not UTF-8)."""
    import base64
    import binascii

    try:
        data = base64.b64decode(text, validate=True)
        return data.decode("utf-8")
    except (binascii.Error, ValueError, UnicodeDecodeError):
        return ""


_DIFF_UNITS = {"microsecond": timedelta(microseconds=1), "millisecond": timedelta(milliseconds=1),
               "second": timedelta(seconds=1), "minute": timedelta(minutes=1), "hour": timedelta(hours=1),
               "day": timedelta(days=1)}


def _datetime_diff(part: str, first: Any, second: Any) -> int | None:
    """How many `part` boundaries lie between the two datetimes (first - second), as Kusto's
    documentation counts them: calendar years, quarters and months, whole days, and so on for
    the units of a day (each datetime truncated to the unit first)."""
    a, b = to_datetime(first), to_datetime(second)
    unit = part.strip().lower()
    if a is None or b is None:
        return None
    if unit == "year":
        return a.year - b.year
    if unit == "quarter":
        return (a.year * 4 + (a.month - 1) // 3) - (b.year * 4 + (b.month - 1) // 3)
    if unit == "month":
        return (a.year * 12 + a.month) - (b.year * 12 + b.month)
    if unit in _DIFF_UNITS:
        size = _DIFF_UNITS[unit]
        return (a - _EPOCH) // size - (b - _EPOCH) // size
    raise EvaluationError(f"datetime_diff: no period {part!r}")


_URL = re.compile(
    r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*)://"
    r"(?:(?P<user>[^:@/?#]*):(?P<password>[^@/?#]*)@)?"
    r"(?P<host>\[[^\]]*\]|[^:/?#]*)(?::(?P<port>[0-9]*))?"
    r"(?P<path>[^?#]*)(?:\?(?P<query>[^#]*))?(?:#(?P<fragment>.*))?$", re.S)


def _parse_url(text: str) -> dict[str, Any]:
    """`parse_url`: Scheme, Host, Port, Path, Username, Password, Query Parameters, Fragment,
    with the rules duckdb-kql measured on Kusto: user info splits only on a colon; query keys
    sorted, a repeated key an array, a parameter with an empty key or value dropped; a lone
    trailing `/` is the empty path only at the end of the text; nothing decoded; text that is
    no URL gives every part empty."""
    found = _URL.match(text)
    parts = found.groupdict(default="") if found else {}
    path = parts.get("path", "")
    if path == "/" and not re.search(r"[?#]", text):
        path = ""
    params: dict[str, Any] = {}
    for pair in (parts.get("query") or "").split("&") if found else ():
        key, sep, val = pair.partition("=")
        if not sep or not key or not val:
            continue
        params[key] = [*params[key], val] if isinstance(params.get(key), list) else \
            ([params[key], val] if key in params else val)
    return {"Scheme": parts.get("scheme", ""), "Host": parts.get("host", ""), "Port": parts.get("port", ""),
            "Path": path, "Username": parts.get("user", ""), "Password": parts.get("password", ""),
            "Query Parameters": dict(sorted(params.items())), "Fragment": parts.get("fragment", "")}


def _parse_path(text: str) -> dict[str, str]:
    """`parse_path`, as Kusto's documented examples split a path: an optional `scheme://`, a
    drive (`C:`) as the root, the directory up to the last `/` or `\\`, its last name, the file
    name after it (an alternate data stream after a `:` in it), and the extension after the
    file name's last dot."""
    scheme, rest = "", text
    found = re.match(r"([A-Za-z][A-Za-z0-9+.\-]*)://", text)
    if found:
        scheme, rest = found.group(1), text[found.end():]
    root = rest[:2] if re.match(r"[A-Za-z]:", rest) else ""
    cut = max(rest.rfind("/"), rest.rfind("\\"))
    directory, name = (rest[:cut], rest[cut + 1:]) if cut >= 0 else ("", rest)
    name, _, stream = name.partition(":")
    folder = re.split(r"[/\\]", directory)[-1] if directory else ""
    if folder == root:
        folder = ""
    extension = name.rsplit(".", 1)[1] if "." in name else ""
    return {"Scheme": scheme, "RootPath": root, "DirectoryPath": directory, "DirectoryName": folder,
            "Filename": name, "Extension": extension, "AlternateDataStreamName": stream}


def _startofday(value: Any) -> Any:
    value = to_datetime(value) if not isinstance(value, datetime) else value
    if value is None:
        return None
    return value.replace(hour=0, minute=0, second=0, microsecond=0)


def _abs(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, (int, float, timedelta)) and not isinstance(value, bool):
        return abs(value)
    return None


def _ipv4_is_private(value: str) -> bool | None:
    import ipaddress

    try:
        address = ipaddress.IPv4Address(value.strip().split("/")[0]) if value else None
    except ValueError:
        return None
    if address is None:
        return None
    return any(address in ipaddress.IPv4Network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"))


def _ipv4_is_match(first: str, second: str, prefix: Any = ...) -> bool | None:
    """Whether two IPv4 addresses (either may carry a /prefix) are equal on their first
    `prefix` bits (32 when none is given; the smallest prefix given wins); null when either is
    no address.  A prefix is decimal digits 0-9 (Python's int() would also read '+16', '1_6'
    or other scripts' digits, which IP-prefix notation has not)."""
    import ipaddress

    def parse(text: str) -> tuple[int, int] | None:
        address, _, bits = text.strip().partition("/")
        if bits and not re.fullmatch(r"\s*[0-9]+", bits):
            return None
        try:
            value = int(ipaddress.IPv4Address(address))
            width = int(bits) if bits else 32
        except ValueError:
            return None
        return (value, width) if 0 <= width <= 32 else None

    a, b = parse(first), parse(second)
    if a is None or b is None:
        return None
    width = min(a[1], b[1], 32 if prefix is ... else (to_long(prefix) if to_long(prefix) is not None else 32))
    if width < 0:
        return None
    mask = ((1 << width) - 1) << (32 - width) if width else 0
    return (a[0] & mask) == (b[0] & mask)


def _ipv4_is_in_range(value: str, network: str) -> bool | None:
    from rmmc.compiler.evaluator import in_networks
    import ipaddress

    try:
        ipaddress.IPv4Address(value)
        ipaddress.IPv4Network(network, strict=False)
    except ValueError:
        return None
    return in_networks(value, (network,))


_DATETIME_PARTS = {"d": 2, "f": 7, "F": 7, "h": 2, "H": 2, "m": 2, "M": 2, "s": 2, "y": 4, "t": 2}
_DATETIME_SEPARATORS = frozenset(" /-:,._[]")


def _format_datetime(value: Any, form: str) -> str:
    """`format_datetime()`: the documented elements (learn.microsoft.com/kusto/query/
    format-datetime-function) and separators; any other text in the format is an error here
    (Kusto's behaviour for it is not documented)."""
    value = to_datetime(value)
    if value is None:
        return ""
    value = value.astimezone(timezone.utc)
    out, i = [], 0
    while i < len(form):
        ch = form[i]
        if ch in _DATETIME_SEPARATORS:
            out.append(ch)
            i += 1
            continue
        run = len(form) - i - len(form[i:].lstrip(ch))
        if ch not in _DATETIME_PARTS or run > _DATETIME_PARTS[ch] or (ch == "y" and run == 3) \
                or (ch == "t" and run != 2):
            raise EvaluationError(f"format_datetime(): {ch * run!r} is not a documented format element")
        i += run
        fraction = f"{value.microsecond:06d}0"[:run]
        hour12 = value.hour % 12 or 12
        part = {"d": value.day, "h": hour12, "H": value.hour, "m": value.minute, "M": value.month,
                "s": value.second}.get(ch)
        if part is not None:
            out.append(f"{part:0{run}d}")
        elif ch == "f":
            out.append(fraction)
        elif ch == "F":
            out.append(fraction.rstrip("0"))
        elif ch == "y":
            out.append(f"{value.year:04d}" if run == 4 else f"{value.year % 100:0{run}d}")
        else:
            out.append("AM" if value.hour < 12 else "PM")
    return "".join(out)


def _looked_up(name: str, where: str) -> Callable[..., Any]:
    """The meaning of a function whose value comes from data outside the query (a geolocation
    database ...): the model holds the call, the KQL target writes it, but rmmc cannot compute
    it, so evaluating it is an error, never a guessed value."""

    def impl(*_: Any) -> Any:
        raise EvaluationError(f"{name}() looks its value up in {where}, which rmmc does not hold")

    return impl


_JSON_PATH_STEP = re.compile(r"\.([A-Za-z_][A-Za-z0-9_]*)|\[\s*'([^'\\]*)'\s*\]|\[\s*\"([^\"\\]*)\"\s*\]|\[\s*(\d+)\s*\]")


def json_path_steps(path: str) -> tuple[str | int, ...] | None:
    """The keys and indexes of a JSONPath `$.a.b`, `$['a']`, `$.a[0]` (None for any other
    form: wildcards, filters, recursive descent)."""
    if not path.startswith("$"):
        return None
    steps: list[str | int] = []
    at = 1
    while at < len(path):
        found = _JSON_PATH_STEP.match(path, at)
        if found is None:
            return None
        name, single, double, index = found.groups()
        steps.append(int(index) if index is not None else next(s for s in (name, single, double) if s is not None))
        at = found.end()
    return tuple(steps)


def _extract_json(path: str, source: Any) -> str:
    """Kusto's `extract_json(path, source)` (alias `extractjson`): the element at a JSONPath
    of a JSON text, as a string (learn.microsoft.com/kusto/query/extract-json-function: "Get a
    specified element out of a JSON text using a path expression.  Optionally convert the
    extracted string to a specific type").  A string element is itself (the page's example:
    "John"), a whole number its digits, a missing element the empty string (a Kusto string is
    never null).  The text Kusto gives any other element (an object, a bool, a real, JSON null)
    and its answer for text that is no JSON are not documented: evaluating them is an error."""
    steps = json_path_steps(path)
    if steps is None:
        raise EvaluationError(f"extract_json(): the path {path!r} is not one rmmc reads")
    document = source
    if isinstance(source, str):
        import json

        try:
            document = json.loads(source)
        except (ValueError, RecursionError):
            raise EvaluationError("extract_json() of text that is no JSON: Kusto's answer is not documented") from None
    value: Any = document
    for step in steps:
        if isinstance(step, int) and isinstance(value, list):
            value = value[step] if step < len(value) else _MISSING
        elif isinstance(step, str) and isinstance(value, dict):
            value = value.get(step, _MISSING)
        else:
            value = _MISSING
        if value is _MISSING:
            return ""
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise EvaluationError(f"extract_json() of a JSON {type(value).__name__}: the text Kusto gives it is not documented")


_MISSING = object()


_TICKS_ORIGIN = datetime(1, 1, 1, tzinfo=timezone.utc)


def _hash(value: Any, mod: Any = None) -> int:
    """Kusto's `hash(source [, mod])` (learn.microsoft.com/kusto/query/hash-function): xxhash64
    of the value, reduced to 0 .. mod-1.  What is hashed is measured on the documentation's
    examples: a string's UTF-8 bytes (hash("World") is 1846988464401551951, hash("World", 100)
    51), a datetime's 100 ns ticks since 0001-01-01 as 8 little-endian bytes
    (hash(datetime(2015-01-01)) is 1380966698541616202).  Anything the documentation does not
    pin down is an evaluation error, never a guessed value: another type (is a long 4 or 8
    bytes?), and a digest of 2^63 or more without a power-of-two `mod` (is the long it returns
    the digest's two's complement?  either way a power-of-two remainder is the same)."""
    from rmmc.compiler.xxhash64 import xxh64

    if isinstance(value, str):
        data = value.encode("utf-8", "surrogatepass")
    elif isinstance(value, datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=timezone.utc)
        delta = moment - _TICKS_ORIGIN
        ticks = (delta.days * 86_400 + delta.seconds) * 10_000_000 + delta.microseconds * 10
        data = ticks.to_bytes(8, "little", signed=True)
    else:
        raise EvaluationError(f"hash() of {type(value).__name__}: the bytes Kusto hashes for it are not documented")
    digest = xxh64(data)
    if mod is None:
        if digest >= 1 << 63:
            raise EvaluationError("hash() is 2^63 or more here: how Kusto returns it as a long is not documented")
        return digest
    if isinstance(mod, bool) or not isinstance(mod, int) or mod <= 0:
        raise EvaluationError(f"hash() takes a positive whole modulo, not {mod!r}")
    if digest >= 1 << 63 and mod & (mod - 1):
        raise EvaluationError("hash() is 2^63 or more here: its remainder by a modulo that is not a power of "
                              "two depends on how Kusto reads it as a long, which is not documented")
    return digest % mod


def convert(value: Any, type_name: str) -> Any:
    """A value as `type_name` the way `to<type>()` converts it (null when it does not)."""
    kind = type_name.lower()
    if kind in STRING_TYPES:
        return to_text(value)
    if kind == "long":
        return to_long(value)
    if kind == "int":
        return to_int(value)
    if kind in ("real", "double", "decimal"):
        return to_real(value)
    if kind in ("bool", "boolean"):
        return to_bool(value)
    if kind == "datetime":
        return to_datetime(value)
    if kind == "dynamic":
        return to_dynamic(value)
    if kind == "timespan":
        return value if isinstance(value, timedelta) else None
    return value


# ------------------------------------------------------------------ result types


def _same_as(position: int) -> Callable[[Sequence[str]], str]:
    return lambda types: types[position] if len(types) > position else "dynamic"


def _unify(types: Sequence[str]) -> str:
    kinds = {t for t in types if t != "null"}
    if not kinds:
        return "string"
    if len(kinds) == 1:
        return kinds.pop()
    if kinds <= NUMERIC_TYPES:
        return "real" if kinds & {"real", "double", "decimal"} else "long"
    return "dynamic"


def _case_type(types: Sequence[str]) -> str:
    values = [types[i] for i in range(1, len(types) - 1, 2)] + [types[-1]]
    return _unify(values)


def _iff_type(types: Sequence[str]) -> str:
    return _unify(types[1:3])


def _arithmetic(name: str) -> Callable[[Sequence[str]], str]:
    def result(types: Sequence[str]) -> str:
        a, b = (types + ["long", "long"])[:2]
        if a == "datetime" and b == "datetime" and name == "subtract":
            return "timespan"
        if "datetime" in (a, b):
            return "datetime"
        if "timespan" in (a, b):
            return "real" if name == "divide" and a == b == "timespan" else "timespan"
        if a in INTEGER_TYPES and b in INTEGER_TYPES:
            return "int" if a == b == "int" else "long"
        return "real"
    return result


def _bin_type(types: Sequence[str]) -> str:
    return types[0] if types else "dynamic"


def _extract_type(types: Sequence[str]) -> str:
    return "string" if len(types) < 4 else "dynamic"


FUNCTIONS: dict[str, Function] = {f.name: f for f in [
    # strings
    Function("tolower", 1, 1, "string", fold, strings=(0,)),
    Function("toupper", 1, 1, "string", upper, strings=(0,)),
    Function("strlen", 1, 1, "long", len, strings=(0,)),
    Function("strcat", 1, None, "string", _strcat),
    Function("substring", 2, 3, "string", _substring, strings=(0,)),
    Function("split", 2, 3, "dynamic", _split, literal_args=(1,), strings=(0, 1)),
    Function("trim", 2, 2, "string", _trim("^({0})|({0})$"), literal_args=(0,), strings=(0, 1)),
    Function("trim_start", 2, 2, "string", _trim("^({0})"), literal_args=(0,), strings=(0, 1)),
    Function("trim_end", 2, 2, "string", _trim("({0})$"), literal_args=(0,), strings=(0, 1)),
    Function("extract", 3, 4, _extract_type, _extract, literal_args=(0, 1, 3), strings=(0, 2)),
    Function("extract_all", 2, 2, "dynamic", _extract_all, literal_args=(0,), strings=(0, 1)),
    Function("replace_string", 3, 3, "string", _replace_string, strings=(0, 1, 2)),
    Function("replace_regex", 3, 3, "string", _replace_regex, literal_args=(1, 2), strings=(0, 1, 2)),
    Function("indexof", 2, 2, "long", _indexof, strings=(0, 1)),
    # conversions
    Function("tostring", 1, 1, "string", to_text),
    Function("toint", 1, 1, "int", to_int),
    Function("tolong", 1, 1, "long", to_long),
    Function("todouble", 1, 1, "real", to_real),
    Function("toreal", 1, 1, "real", to_real),
    Function("tobool", 1, 1, "bool", to_bool),
    Function("toboolean", 1, 1, "bool", to_bool),
    Function("todatetime", 1, 1, "datetime", to_datetime),
    Function("parse_json", 1, 1, "dynamic", to_dynamic),
    Function("todynamic", 1, 1, "dynamic", to_dynamic),
    # dynamic values
    Function("member", 2, 2, "dynamic", _index, literal_args=(1,)),
    Function("index", 2, 2, "dynamic", _index),
    Function("array_length", 1, 1, "long", _array_length),
    Function("set_has_element", 2, 2, "bool", _set_has_element),
    # choice
    Function("iff", 3, 3, _iff_type, _iff),
    Function("case", 3, None, _case_type, _case),
    Function("coalesce", 1, None, _unify, _coalesce),
    # numbers and time
    Function("add", 2, 2, _arithmetic("add"), _add),
    Function("subtract", 2, 2, _arithmetic("subtract"), _subtract),
    Function("multiply", 2, 2, _arithmetic("multiply"), _multiply),
    Function("divide", 2, 2, _arithmetic("divide"), _divide),
    Function("modulo", 2, 2, _arithmetic("modulo"), _modulo),
    Function("negate", 1, 1, _same_as(0), _negate),
    Function("abs", 1, 1, _same_as(0), _abs),
    Function("bin", 2, 2, _bin_type, _bin),
    Function("startofday", 1, 1, "datetime", _startofday),
    Function("datetime_diff", 3, 3, "long", _datetime_diff, literal_args=(0,), strings=(0,)),
    Function("format_datetime", 2, 2, "string", _format_datetime, literal_args=(1,), strings=(1,)),
    Function("base64_decode_tostring", 1, 1, "string", _base64_decode, strings=(0,)),
    Function("ingestion_time", 0, 0, "datetime", lambda: None),  # the row's (evaluator)
    Function("ago", 1, 1, "datetime", lambda _: None),     # evaluated with the query's now
    Function("now", 0, 1, "datetime", lambda *_: None),    # (see evaluator.evaluate_expr)
    # addresses
    Function("ipv4_is_private", 1, 1, "bool", _ipv4_is_private, strings=(0,)),
    Function("ipv4_is_in_range", 2, 2, "bool", _ipv4_is_in_range, strings=(0, 1)),
    Function("ipv4_is_match", 2, 3, "bool", _ipv4_is_match, strings=(0, 1)),
    Function("parse_url", 1, 1, "dynamic", _parse_url, strings=(0,)),
    # learn.microsoft.com/kusto/query/geo-info-from-ip-address-function: a bag of country,
    # state, city, latitude, longitude from MaxMind's GeoLite2-City data
    Function("geo_info_from_ip_address", 1, 1, "dynamic",
             _looked_up("geo_info_from_ip_address", "MaxMind's GeoLite2-City data"), strings=(0,)),
    Function("parse_path", 1, 1, "dynamic", _parse_path, strings=(0,)),
    Function("hash", 1, 2, "long", _hash),
    Function("extract_json", 2, 2, "string", _extract_json, literal_args=(0,), strings=(0,)),
    Function("string_size", 1, 1, "long", lambda text: len(text.encode("utf-8", "surrogatepass")),
             strings=(0,)),
]}

ALIASES = {"iif": "iff", "floor": "bin", "tostring": "tostring", "toboolean": "tobool",
           "toreal": "todouble", "todynamic": "parse_json", "base64_decodestring": "base64_decode_tostring",
           "extractjson": "extract_json"}
INGESTION_TIME = "$IngestionTime"
"""The column of an event the evaluator reads `ingestion_time()` from (Kusto keeps it out of the
table's columns)."""
"""Other KQL spellings of the same function (read by the lowering)."""

OPERATORS = {"+": "add", "-": "subtract", "*": "multiply", "/": "divide", "%": "modulo"}
SYMBOLS = {v: k for k, v in OPERATORS.items()}
TIME_FUNCTIONS = frozenset({"ago", "now"})


def lookup(name: str) -> Function | None:
    name = ALIASES.get(name, name)
    return FUNCTIONS.get(name)


def describe_condition(node: Any) -> str:
    """A short text of a test, for messages."""
    from rmmc.compiler import ir

    if isinstance(node, ir.InSubquery):
        return f"{node.field.name} in ({node.query})"
    if isinstance(node, ir.Compare):
        return f"{describe(node.left)} {node.op} {describe(node.right)}"
    if isinstance(node, ir.Predicate):
        return f"{describe(node.field)} {'not ' if node.negated else ''}{node.op.value} {list(node.values)}"
    return type(node).__name__


def describe(node: Any) -> str:
    """A short KQL-like text of an expression, for messages."""
    from rmmc.compiler import ir

    if isinstance(node, ir.Field):
        return node.name
    if isinstance(node, ir.Literal):
        if isinstance(node.value, str):
            return repr(node.value)
        return to_text(node.value) if node.value is not None else "null"
    if isinstance(node, ir.Star):
        return "*"
    if isinstance(node, ir.Boolean):
        return "(condition)"
    if isinstance(node, ir.Call):
        args = [describe(a) for a in node.args]
        if node.function in SYMBOLS and len(args) == 2:
            return f"{args[0]} {SYMBOLS[node.function]} {args[1]}"
        if node.function == "negate" and args:
            return f"-{args[0]}"
        if node.function == "member" and len(node.args) == 2:
            return f"{args[0]}.{node.args[1].value}" if isinstance(node.args[1], ir.Literal) else f"{args[0]}[{args[1]}]"
        if node.function == "index" and len(node.args) == 2:
            return f"{args[0]}[{args[1]}]"
        text = f"{node.function}({', '.join(args)})"
        return text if len(text) <= 80 else text[:77] + "..."
    return type(node).__name__
