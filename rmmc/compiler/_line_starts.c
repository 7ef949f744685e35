/* `LineIndex`'s line starts, compiled: optional.
 *
 * starts(text) -> tuple: 0, then one past each "\n" of `text` (character offsets), which is
 * what `rmmc.compiler.diagnostics.line_starts_python` computes and stays the reference and the
 * fallback (this module is built by `pip install` where a C compiler is there).  Every file
 * rmmc reads gets a `LineIndex`, and in Python the starts cost a string, a length and two
 * additions per line: a few percent of a batch translation.  Here they are a scan and one int
 * per line.  `tests/test_line_starts.py` compares both on the corpora and on generated texts.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

/* How many "\n" in `data` (`length` code units of `kind`). */
static Py_ssize_t
count_breaks(int kind, const void *data, Py_ssize_t length)
{
    Py_ssize_t count = 0;
    if (kind == PyUnicode_1BYTE_KIND) {
        const char *at = data, *end = at + length;
        while ((at = memchr(at, '\n', (size_t)(end - at))) != NULL) {
            count++;
            at++;
        }
        return count;
    }
    for (Py_ssize_t i = 0; i < length; i++)
        count += PyUnicode_READ(kind, data, i) == '\n';
    return count;
}

static PyObject *
starts(PyObject *self, PyObject *text)
{
    if (!PyUnicode_Check(text)) {
        PyErr_SetString(PyExc_TypeError, "starts(text): text must be a str");
        return NULL;
    }
#if PY_VERSION_HEX < 0x030C0000  /* every str is ready from 3.12 on (the macro is deprecated) */
    if (PyUnicode_READY(text) < 0)
        return NULL;
#endif
    int kind = PyUnicode_KIND(text);
    const void *data = PyUnicode_DATA(text);
    Py_ssize_t length = PyUnicode_GET_LENGTH(text);
    PyObject *out = PyTuple_New(count_breaks(kind, data, length) + 1);
    if (out == NULL)
        return NULL;
    Py_ssize_t slot = 0;
    PyObject *zero = PyLong_FromSsize_t(0);
    if (zero == NULL)
        goto failed;
    PyTuple_SET_ITEM(out, slot++, zero);
    if (kind == PyUnicode_1BYTE_KIND) {
        const char *begin = data, *at = begin, *end = begin + length;
        while ((at = memchr(at, '\n', (size_t)(end - at))) != NULL) {
            at++;
            PyObject *start = PyLong_FromSsize_t(at - begin);
            if (start == NULL)
                goto failed;
            PyTuple_SET_ITEM(out, slot++, start);
        }
    } else {
        for (Py_ssize_t i = 0; i < length; i++) {
            if (PyUnicode_READ(kind, data, i) != '\n')
                continue;
            PyObject *start = PyLong_FromSsize_t(i + 1);
            if (start == NULL)
                goto failed;
            PyTuple_SET_ITEM(out, slot++, start);
        }
    }
    return out;
failed:
    Py_DECREF(out);  /* the slots not filled are NULL, which a tuple's dealloc skips */
    return NULL;
}

static PyMethodDef methods[] = {
    {"starts", starts, METH_O,
     "starts(text): 0, then one past each line feed of text (LineIndex.starts)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_line_starts",
    "LineIndex's line starts, compiled (rmmc.compiler.diagnostics has the reference).", -1,
    methods,
};

PyMODINIT_FUNC
PyInit__line_starts(void)
{
    return PyModule_Create(&module);
}
