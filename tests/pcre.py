"""PCRE2 itself, for the tests: Splunk's regular expressions are PCRE ("Splunk SPL regular
expressions are Perl Compatible Regular Expressions (PCRE)", Splunk's SPL2 and regular
expressions page), so the SPL interpreter matches `match()` with the PCRE2 library, not with
Python's `re` (whose `\\z`, `\\x{hh}`, `$` and classes differ).

A ctypes binding of the system's libpcre2-8 (a base package of Debian: grep needs it).  The
`pcre2` package from PyPI was tried first and is not used: it always compiles with
PCRE2_ALT_BSUX (for Python compatibility), under which `\\x{09}` is no escape, so it is not
the PCRE Splunk runs.  Patterns are compiled in UTF mode (text is Unicode), with no other
option: `(?i)` and the like come from the pattern, as in Splunk.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from functools import lru_cache

PCRE2_UTF = 0x00080000
PCRE2_ERROR_NOMATCH = -1


class PcreError(ValueError):
    """A pattern PCRE2 refuses to compile (Splunk would refuse the search)."""


@lru_cache(maxsize=1)
def _lib() -> ctypes.CDLL:
    name = ctypes.util.find_library("pcre2-8") or "libpcre2-8.so.0"
    lib = ctypes.CDLL(name)
    lib.pcre2_compile_8.restype = ctypes.c_void_p
    lib.pcre2_compile_8.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint32,
                                    ctypes.POINTER(ctypes.c_int), ctypes.POINTER(ctypes.c_size_t),
                                    ctypes.c_void_p]
    lib.pcre2_match_data_create_from_pattern_8.restype = ctypes.c_void_p
    lib.pcre2_match_data_create_from_pattern_8.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
    lib.pcre2_match_8.restype = ctypes.c_int
    lib.pcre2_match_8.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t, ctypes.c_size_t,
                                  ctypes.c_uint32, ctypes.c_void_p, ctypes.c_void_p]
    lib.pcre2_get_error_message_8.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_size_t]
    lib.pcre2_code_free_8.argtypes = [ctypes.c_void_p]
    lib.pcre2_match_data_free_8.argtypes = [ctypes.c_void_p]
    lib.pcre2_get_ovector_pointer_8.restype = ctypes.POINTER(ctypes.c_size_t)
    lib.pcre2_get_ovector_pointer_8.argtypes = [ctypes.c_void_p]
    lib.pcre2_substring_number_from_name_8.restype = ctypes.c_int
    lib.pcre2_substring_number_from_name_8.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
    return lib


def available() -> str | None:
    """None when libpcre2-8 loads, else why not."""
    try:
        _lib()
    except OSError as exc:
        return f"libpcre2-8 cannot be loaded: {exc}"
    return None


class Pattern:
    def __init__(self, pattern: str):
        lib = _lib()
        raw = pattern.encode("utf-8")
        error, offset = ctypes.c_int(), ctypes.c_size_t()
        self._code = lib.pcre2_compile_8(raw, len(raw), PCRE2_UTF, ctypes.byref(error),
                                         ctypes.byref(offset), None)
        if not self._code:
            buffer = ctypes.create_string_buffer(256)
            lib.pcre2_get_error_message_8(error.value, buffer, len(buffer))
            raise PcreError(f"PCRE2 refuses {pattern!r} at byte {offset.value}: "
                            f"{buffer.value.decode()}")
        self._data = lib.pcre2_match_data_create_from_pattern_8(self._code, None)
        self.pattern = pattern

    def search(self, text: str) -> bool:
        """Whether the pattern matches somewhere in the text (`match()` in Splunk's eval)."""
        raw = text.encode("utf-8")
        rc = _lib().pcre2_match_8(self._code, raw, len(raw), 0, 0, self._data, None)
        if rc == PCRE2_ERROR_NOMATCH:
            return False
        if rc < 0:
            raise PcreError(f"PCRE2 failed matching {self.pattern!r} (error {rc})")
        return True

    def named(self, text: str, names: list[str]) -> dict[str, str] | None:
        """The text of each named group that took part in the first match (`rex`), or None
        when the pattern does not match."""
        lib = _lib()
        raw = text.encode("utf-8")
        rc = lib.pcre2_match_8(self._code, raw, len(raw), 0, 0, self._data, None)
        if rc == PCRE2_ERROR_NOMATCH:
            return None
        if rc < 0:
            raise PcreError(f"PCRE2 failed matching {self.pattern!r} (error {rc})")
        vector = lib.pcre2_get_ovector_pointer_8(self._data)
        out = {}
        for name in names:
            number = lib.pcre2_substring_number_from_name_8(self._code, name.encode("utf-8"))
            if number < 0:
                raise PcreError(f"no group named {name} in {self.pattern!r}")
            start, end = vector[2 * number], vector[2 * number + 1]
            if start != ctypes.c_size_t(-1).value:
                out[name] = raw[start:end].decode("utf-8")
        return out

    def __del__(self) -> None:
        try:
            lib = _lib()
            if getattr(self, "_data", None):
                lib.pcre2_match_data_free_8(self._data)
            if getattr(self, "_code", None):
                lib.pcre2_code_free_8(self._code)
        except Exception:  # at interpreter shutdown the module may be gone already
            pass


@lru_cache(maxsize=4096)
def compile(pattern: str) -> Pattern:  # noqa: A001 - as re.compile
    return Pattern(pattern)


def search(pattern: str, text: str) -> bool:
    return compile(pattern).search(text)
