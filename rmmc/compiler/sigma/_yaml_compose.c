/* A YAML stream's nodes as tuples, straight from libyaml's parser: optional.
 *
 * PyYAML's C loader runs the same parser (libyaml) but makes a Python `Node` and two `Mark`
 * objects per YAML node and calls the resolver in Python for each: over the SigmaHQ rules
 * that is about four fifths of composing, the parsing itself one fifth.  This module takes
 * libyaml's events and makes one tuple per node, holding what `yaml_tree` reads of a node:
 *
 *     scalar:   (text, style, start line, start column, end line, end column)
 *     sequence: ([item, ...], SEQ, ...the same four marks)
 *     mapping:  ([key, value, key, value, ...], MAP, ...the same four marks)
 *
 * `style` is libyaml's scalar style (1 plain, 2 single-quoted, 3 double-quoted, 4 literal,
 * 5 folded); the marks are the events' marks, as PyYAML's composer copies them into its
 * nodes.  Anything this form does not carry gives None, and the caller composes the stream
 * with PyYAML instead (the reference, which also words every error): a parse error, an
 * anchor, an alias, an explicit tag, nesting deeper than the caller's limit.  Built by
 * `setup.py` where libyaml's headers are at hand; without it `yaml_tree` uses PyYAML alone,
 * with the same results (`tests/test_yaml_compose.py` compares both over the corpora).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <yaml.h>

#define SEQ 10
#define MAP 11

/* The marks and the value of one node as a new tuple (steals `value`). */
static PyObject *
node_tuple(PyObject *value, long kind, yaml_mark_t start, yaml_mark_t end)
{
    PyObject *t = PyTuple_New(6);
    if (t == NULL) {
        Py_DECREF(value);
        return NULL;
    }
    PyTuple_SET_ITEM(t, 0, value);
    PyObject *items[5] = {PyLong_FromLong(kind), PyLong_FromSize_t(start.line),
                          PyLong_FromSize_t(start.column), PyLong_FromSize_t(end.line),
                          PyLong_FromSize_t(end.column)};
    for (int i = 0; i < 5; i++) {
        if (items[i] == NULL) {
            for (int j = 0; j < 5; j++)
                Py_XDECREF(items[j]);
            Py_DECREF(t);
            return NULL;
        }
    }
    for (int i = 0; i < 5; i++)
        PyTuple_SET_ITEM(t, i + 1, items[i]);
    return t;
}

typedef struct {
    PyObject *items;   /* the open collection's list */
    long kind;         /* SEQ or MAP */
    yaml_mark_t start; /* its start event's start mark */
} Open;

/* compose(data: bytes, max_depth: int) -> list of root tuples, or None. */
static PyObject *
compose(PyObject *self, PyObject *args)
{
    const char *data;
    Py_ssize_t size;
    int max_depth;
    if (!PyArg_ParseTuple(args, "y#i", &data, &size, &max_depth))
        return NULL;
    if (max_depth < 1 || max_depth > 100000) {
        PyErr_SetString(PyExc_ValueError, "max_depth out of range");
        return NULL;
    }
    Open *stack = PyMem_Malloc(sizeof(Open) * (size_t)(max_depth + 1));
    if (stack == NULL)
        return PyErr_NoMemory();
    PyObject *roots = PyList_New(0);
    if (roots == NULL) {
        PyMem_Free(stack);
        return NULL;
    }
    yaml_parser_t parser;
    if (!yaml_parser_initialize(&parser)) {
        Py_DECREF(roots);
        PyMem_Free(stack);
        return PyErr_NoMemory();
    }
    /* No yaml_parser_set_encoding: libyaml finds UTF-8 itself and takes a byte order mark
     * as PyYAML's loader does (not as a character of the first line). */
    yaml_parser_set_input_string(&parser, (const unsigned char *)data, (size_t)size);
    int depth = 0;
    int outcome = 0; /* 0 going on, 1 done, -1 Python error, -2 not this form (None) */
    yaml_event_t event;
    while (outcome == 0) {
        if (!yaml_parser_parse(&parser, &event)) {
            outcome = -2; /* a YAML error: PyYAML words it */
            break;
        }
        PyObject *node = NULL;
        switch (event.type) {
        case YAML_STREAM_END_EVENT:
            outcome = 1;
            break;
        case YAML_ALIAS_EVENT:
            outcome = -2;
            break;
        case YAML_SCALAR_EVENT:
            if (event.data.scalar.anchor != NULL || event.data.scalar.tag != NULL) {
                outcome = -2;
                break;
            }
            {
                PyObject *text = PyUnicode_DecodeUTF8((const char *)event.data.scalar.value,
                                                      (Py_ssize_t)event.data.scalar.length, "strict");
                if (text == NULL) {
                    PyErr_Clear(); /* PyYAML reports it */
                    outcome = -2;
                    break;
                }
                node = node_tuple(text, (long)event.data.scalar.style, event.start_mark,
                                  event.end_mark);
                if (node == NULL)
                    outcome = -1;
            }
            break;
        case YAML_SEQUENCE_START_EVENT:
        case YAML_MAPPING_START_EVENT: {
            int is_seq = event.type == YAML_SEQUENCE_START_EVENT;
            if ((is_seq ? (event.data.sequence_start.anchor != NULL ||
                           event.data.sequence_start.tag != NULL)
                        : (event.data.mapping_start.anchor != NULL ||
                           event.data.mapping_start.tag != NULL)) ||
                depth >= max_depth) {
                outcome = -2;
                break;
            }
            PyObject *items = PyList_New(0);
            if (items == NULL) {
                outcome = -1;
                break;
            }
            stack[depth].items = items;
            stack[depth].kind = is_seq ? SEQ : MAP;
            stack[depth].start = event.start_mark;
            depth++;
            break;
        }
        case YAML_SEQUENCE_END_EVENT:
        case YAML_MAPPING_END_EVENT:
            if (depth == 0) { /* libyaml never does this */
                outcome = -2;
                break;
            }
            depth--;
            node = node_tuple(stack[depth].items, stack[depth].kind, stack[depth].start,
                              event.end_mark);
            if (node == NULL)
                outcome = -1;
            break;
        default: /* stream and document start and end: nothing to keep */
            break;
        }
        yaml_event_delete(&event);
        if (node != NULL) {
            PyObject *into = depth > 0 ? stack[depth - 1].items : roots;
            if (PyList_Append(into, node) < 0)
                outcome = -1;
            Py_DECREF(node);
        }
    }
    yaml_parser_delete(&parser);
    while (depth > 0) {
        depth--;
        Py_DECREF(stack[depth].items);
    }
    PyMem_Free(stack);
    if (outcome == 1)
        return roots;
    Py_DECREF(roots);
    if (outcome == -1)
        return NULL;
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"compose", compose, METH_VARARGS,
     "compose(data, max_depth): the stream's root nodes as tuples, or None (see the module)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "_yaml_compose",
    "A YAML stream's nodes as tuples from libyaml's parser (see rmmc.compiler.sigma.yaml_tree).",
    -1, methods,
};

PyMODINIT_FUNC
PyInit__yaml_compose(void)
{
    PyObject *m = PyModule_Create(&module_def);
    if (m == NULL)
        return NULL;
    if (PyModule_AddIntConstant(m, "SEQ", SEQ) < 0 || PyModule_AddIntConstant(m, "MAP", MAP) < 0 ||
        PyModule_AddIntConstant(m, "LAYOUT", 1) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
