/* A YAML stream as `yaml_tree.Y` nodes, built straight from libyaml's parser: optional.
 *
 * PyYAML's C loader runs the same parser (libyaml) but makes a Python `Node` and two `Mark`
 * objects per YAML node and calls the resolver in Python for each, and `yaml_tree` then made
 * a `Y` of each node: over the SigmaHQ rules libyaml's parsing is about a fifth of that.
 * `build` takes libyaml's events and makes each `Y` itself (its slots set directly, the
 * class given once by `set_node_class`), with the node's marks in a tuple:
 *
 *     (text or None, style or kind, start line, start column, end line, end column)
 *
 * `style` is libyaml's scalar style (1 plain, 2 single-quoted, 3 double-quoted, 4 literal,
 * 5 folded), SEQ or MAP for a collection; the marks are the events' marks, as PyYAML's
 * composer copies them into its nodes.  A mapping's value is a dict of key text to `Y` (a
 * later key in the first one's place) beside a dict of key text to the key's marks; plain
 * scalars are resolved by the caller's function (the lean resolver) when their first
 * character can start a typed scalar.  Anything this does not carry gives None, and the
 * caller composes the stream with PyYAML instead (the reference, which also words every
 * error): a parse error, an anchor, an alias, an explicit tag, a merge key, a mapping or list
 * as a key, nesting deeper than the caller's limit.  `span` gives a node's place as the
 * `Span` `yaml_tree._tuple_span` computes (the reader asks for one per item and per rule).
 * Built by `setup.py` where libyaml's
 * headers are at hand; without it `yaml_tree` uses PyYAML alone, with the same results
 * (`tests/test_yaml_compose.py` compares both over the corpora).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
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

/* Where `Y`'s four slots sit in its instances (read from its member descriptors). */
static Py_ssize_t off_value = -1, off_node, off_source, off_keys;
static PyTypeObject *YType;

static int
slot_offset(PyObject *cls, const char *name, Py_ssize_t *offset)
{
    PyObject *d = PyObject_GetAttrString(cls, name);
    if (d == NULL)
        return -1;
    int ok = Py_IS_TYPE(d, &PyMemberDescr_Type) &&
             ((PyMemberDescrObject *)d)->d_member->type == T_OBJECT_EX;
    if (ok)
        *offset = ((PyMemberDescrObject *)d)->d_member->offset;
    Py_DECREF(d);
    if (!ok) {
        PyErr_Format(PyExc_TypeError, "%s is not a slot", name);
        return -1;
    }
    return 0;
}

/* set_node_class(cls): the class (a `Y` with slots value, _node, _source, _keys and no
 * other state) `build` makes its nodes of. */
static PyObject *
set_node_class(PyObject *self, PyObject *cls)
{
    if (!PyType_Check(cls)) {
        PyErr_SetString(PyExc_TypeError, "a class is needed");
        return NULL;
    }
    Py_ssize_t v, n, s, k;
    if (slot_offset(cls, "value", &v) < 0 || slot_offset(cls, "_node", &n) < 0 ||
        slot_offset(cls, "_source", &s) < 0 || slot_offset(cls, "_keys", &k) < 0)
        return NULL;
    Py_INCREF(cls);
    Py_XSETREF(YType, (PyTypeObject *)cls);
    off_value = v, off_node = n, off_source = s, off_keys = k;
    Py_RETURN_NONE;
}

static void
set_slot(PyObject *o, Py_ssize_t offset, PyObject *value) /* steals `value` */
{
    PyObject **at = (PyObject **)((char *)o + offset);
    Py_XSETREF(*at, value);
}

/* A new node: what `Y(value, node, source, keys)` makes (steals value, node and keys). */
static PyObject *
new_y(PyObject *value, PyObject *node, PyObject *source, PyObject *keys)
{
    PyObject *y = YType->tp_alloc(YType, 0);
    if (y == NULL) {
        Py_DECREF(value);
        Py_DECREF(node);
        Py_XDECREF(keys);
        return NULL;
    }
    set_slot(y, off_value, value);
    set_slot(y, off_node, node);
    Py_INCREF(source);
    set_slot(y, off_source, source);
    if (keys == NULL) {
        Py_INCREF(Py_None);
        keys = Py_None;
    }
    set_slot(y, off_keys, keys);
    return y;
}

/* Where `Span`'s four slots sit in its instances, and the class (`set_span_class`). */
static Py_ssize_t off_offset = -1, off_end, off_line, off_column;
static PyTypeObject *SpanType;

/* set_span_class(cls): the class (`diagnostics.Span`: slots offset, end, line, column and
 * no other state) `span` makes. */
static PyObject *
set_span_class(PyObject *self, PyObject *cls)
{
    if (!PyType_Check(cls)) {
        PyErr_SetString(PyExc_TypeError, "a class is needed");
        return NULL;
    }
    Py_ssize_t o, e, l, c;
    if (slot_offset(cls, "offset", &o) < 0 || slot_offset(cls, "end", &e) < 0 ||
        slot_offset(cls, "line", &l) < 0 || slot_offset(cls, "column", &c) < 0)
        return NULL;
    Py_INCREF(cls);
    Py_XSETREF(SpanType, (PyTypeObject *)cls);
    off_offset = o, off_end = e, off_line = l, off_column = c;
    Py_RETURN_NONE;
}

/* An int item of a tuple as a C integer (-1 with an error when it is not one). */
static Py_ssize_t
item_of(PyObject *tuple, Py_ssize_t i)
{
    return PyLong_AsSsize_t(PyTuple_GET_ITEM(tuple, i));
}

/* span(node, starts) -> Span: where a node of `build` sits, as `yaml_tree._tuple_span` says
 * it (`starts`: the text's `LineIndex.starts`; lines past the last are the last), made here
 * because the reader asks for one per detection item and per rule: in Python that was a call,
 * a dozen steps and a Span built through its four slot descriptors. */
static PyObject *
span(PyObject *self, PyObject *args)
{
    PyObject *node, *starts;
    if (!PyArg_ParseTuple(args, "O!O!", &PyTuple_Type, &node, &PyTuple_Type, &starts))
        return NULL;
    if (SpanType == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "set_span_class first");
        return NULL;
    }
    Py_ssize_t size = PyTuple_GET_SIZE(starts);
    if (PyTuple_GET_SIZE(node) != 6 || size < 1) {
        PyErr_SetString(PyExc_ValueError, "not a node of build, or no line starts");
        return NULL;
    }
    Py_ssize_t last = size - 1;
    Py_ssize_t line = item_of(node, 2), column = item_of(node, 3);
    Py_ssize_t end_line = item_of(node, 4), end_column = item_of(node, 5);
    if (PyErr_Occurred())
        return NULL;
    if (line > last)
        line = last;
    if (end_line > last)
        end_line = last;
    if (line < 0 || end_line < 0) {
        PyErr_SetString(PyExc_ValueError, "a negative line");
        return NULL;
    }
    Py_ssize_t offset = item_of(starts, line) + column;
    Py_ssize_t end = item_of(starts, end_line) + end_column;
    if (PyErr_Occurred())
        return NULL;
    PyObject *values[4] = {PyLong_FromSsize_t(offset), PyLong_FromSsize_t(end > offset ? end : offset),
                           PyLong_FromSsize_t(line + 1), PyLong_FromSsize_t(column + 1)};
    PyObject *out = NULL;
    if (values[0] && values[1] && values[2] && values[3])
        out = SpanType->tp_alloc(SpanType, 0);
    if (out == NULL) {
        for (int i = 0; i < 4; i++)
            Py_XDECREF(values[i]);
        return NULL;
    }
    set_slot(out, off_offset, values[0]);
    set_slot(out, off_end, values[1]);
    set_slot(out, off_line, values[2]);
    set_slot(out, off_column, values[3]);
    return out;
}

typedef struct {
    PyObject *items;   /* list (SEQ) or dict (MAP) */
    PyObject *keys;    /* MAP: key text -> key node */
    PyObject *key;     /* MAP: the key whose value comes next (NULL: a key comes next) */
    PyObject *key_node;
    long kind;         /* SEQ or MAP */
    yaml_mark_t start; /* its start event's start mark */
} Open;

/* A plain scalar's value: `resolve(text)` when its first character can start a resolved
 * scalar (`table`: 128 ASCII flags, then the empty text's, then other characters'), looked
 * up first in `known` (text -> value: what `resolve` remembers). */
static PyObject *
plain_value(PyObject *text, const unsigned char *raw, size_t length, PyObject *resolve,
            PyObject *known, const char *table)
{
    int index = length == 0 ? 128 : (raw[0] < 128 ? raw[0] : 129);
    if (!table[index]) {
        Py_INCREF(text);
        return text;
    }
    PyObject *value = PyDict_GetItemWithError(known, text);
    if (value != NULL) {
        Py_INCREF(value);
        return value;
    }
    if (PyErr_Occurred())
        return NULL;
    return PyObject_CallOneArg(resolve, text);
}

/* build(data, max_depth, source, resolve, known, table) -> (roots, duplicates) or None.
 * roots: each document's root node (a `Y` of the class given to set_node_class, nodes as in
 * the module doc); duplicates: (document index, key node, key text) for each key written
 * again in its mapping, in the order of the text. */
static PyObject *
build(PyObject *self, PyObject *args)
{
    const char *data;
    Py_ssize_t size, table_size;
    int max_depth;
    PyObject *source, *resolve, *known;
    const char *table;
    if (!PyArg_ParseTuple(args, "y#iOOO!y#", &data, &size, &max_depth, &source, &resolve,
                          &PyDict_Type, &known, &table, &table_size))
        return NULL;
    if (YType == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "set_node_class first");
        return NULL;
    }
    if (max_depth < 1 || max_depth > 100000 || table_size != 130) {
        PyErr_SetString(PyExc_ValueError, "max_depth or table out of range");
        return NULL;
    }
    Open *stack = PyMem_Malloc(sizeof(Open) * (size_t)(max_depth + 1));
    if (stack == NULL)
        return PyErr_NoMemory();
    PyObject *roots = PyList_New(0);
    PyObject *duplicates = PyList_New(0);
    if (roots == NULL || duplicates == NULL) {
        Py_XDECREF(roots);
        Py_XDECREF(duplicates);
        PyMem_Free(stack);
        return NULL;
    }
    yaml_parser_t parser;
    if (!yaml_parser_initialize(&parser)) {
        Py_DECREF(roots);
        Py_DECREF(duplicates);
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
        PyObject *y = NULL; /* a finished node to put into its parent */
        Open *top = depth > 0 ? &stack[depth - 1] : NULL;
        switch (event.type) {
        case YAML_STREAM_END_EVENT:
            outcome = 1;
            break;
        case YAML_ALIAS_EVENT:
            outcome = -2;
            break;
        case YAML_SCALAR_EVENT: {
            if (event.data.scalar.anchor != NULL || event.data.scalar.tag != NULL) {
                outcome = -2;
                break;
            }
            const unsigned char *raw = event.data.scalar.value;
            size_t length = event.data.scalar.length;
            long style = (long)event.data.scalar.style;
            PyObject *text = PyUnicode_DecodeUTF8((const char *)raw, (Py_ssize_t)length, "strict");
            if (text == NULL) {
                PyErr_Clear(); /* PyYAML reports it */
                outcome = -2;
                break;
            }
            Py_INCREF(text);
            PyObject *node = node_tuple(text, style, event.start_mark, event.end_mark);
            if (node == NULL) {
                Py_DECREF(text);
                outcome = -1;
                break;
            }
            PyObject *value;
            if (style == YAML_PLAIN_SCALAR_STYLE) {
                if (top != NULL && top->kind == MAP && top->key == NULL &&
                    ((length == 2 && raw[0] == '<' && raw[1] == '<') || (length == 1 && raw[0] == '='))) {
                    Py_DECREF(text); /* a merge (or value) key: PyYAML's flatten_mapping */
                    Py_DECREF(node);
                    outcome = -2;
                    break;
                }
                value = plain_value(text, raw, length, resolve, known, table);
                Py_DECREF(text);
                if (value == NULL) {
                    PyErr_Clear(); /* PyYAML's path meets the same and says what it says */
                    Py_DECREF(node);
                    outcome = -2;
                    break;
                }
            }
            else
                value = text;
            if (top != NULL && top->kind == MAP && top->key == NULL) { /* a key */
                PyObject *key;
                if (value == Py_None) {
                    key = PyUnicode_FromStringAndSize("", 0);
                    Py_DECREF(value);
                }
                else if (PyUnicode_CheckExact(value))
                    key = value;
                else {
                    key = PyObject_Str(value);
                    Py_DECREF(value);
                }
                if (key == NULL) {
                    Py_DECREF(node);
                    outcome = -1;
                    break;
                }
                int seen = PyDict_Contains(top->items, key);
                if (seen < 0) {
                    Py_DECREF(key);
                    Py_DECREF(node);
                    outcome = -1;
                    break;
                }
                if (seen) {
                    PyObject *entry = Py_BuildValue("(nOO)", PyList_GET_SIZE(roots), node, key);
                    if (entry == NULL || PyList_Append(duplicates, entry) < 0) {
                        Py_XDECREF(entry);
                        Py_DECREF(key);
                        Py_DECREF(node);
                        outcome = -1;
                        break;
                    }
                    Py_DECREF(entry);
                }
                top->key = key;
                top->key_node = node;
                break;
            }
            y = new_y(value, node, source, NULL);
            if (y == NULL)
                outcome = -1;
            break;
        }
        case YAML_SEQUENCE_START_EVENT:
        case YAML_MAPPING_START_EVENT: {
            int is_seq = event.type == YAML_SEQUENCE_START_EVENT;
            if ((is_seq ? (event.data.sequence_start.anchor != NULL ||
                           event.data.sequence_start.tag != NULL)
                        : (event.data.mapping_start.anchor != NULL ||
                           event.data.mapping_start.tag != NULL)) ||
                depth >= max_depth || (top != NULL && top->kind == MAP && top->key == NULL)) {
                outcome = -2; /* (the last: a mapping or a list as a key) */
                break;
            }
            Open *open = &stack[depth];
            open->items = is_seq ? PyList_New(0) : PyDict_New();
            open->keys = is_seq ? NULL : PyDict_New();
            open->key = open->key_node = NULL;
            if (open->items == NULL || (!is_seq && open->keys == NULL)) {
                Py_XDECREF(open->items);
                Py_XDECREF(open->keys);
                outcome = -1;
                break;
            }
            open->kind = is_seq ? SEQ : MAP;
            open->start = event.start_mark;
            depth++;
            break;
        }
        case YAML_SEQUENCE_END_EVENT:
        case YAML_MAPPING_END_EVENT: {
            if (depth == 0 || top->key != NULL) { /* libyaml never does this */
                outcome = -2;
                break;
            }
            depth--;
            Py_INCREF(Py_None);
            PyObject *node = node_tuple(Py_None, top->kind, top->start, event.end_mark);
            if (node == NULL) {
                Py_DECREF(top->items);
                Py_XDECREF(top->keys);
                outcome = -1;
                break;
            }
            y = new_y(top->items, node, source, top->keys);
            if (y == NULL)
                outcome = -1;
            break;
        }
        default: /* stream and document start and end: nothing to keep */
            break;
        }
        yaml_event_delete(&event);
        if (y != NULL) {
            int failed;
            if (depth == 0)
                failed = PyList_Append(roots, y);
            else if (stack[depth - 1].kind == SEQ)
                failed = PyList_Append(stack[depth - 1].items, y);
            else {
                Open *parent = &stack[depth - 1];
                failed = PyDict_SetItem(parent->items, parent->key, y) < 0 ||
                         PyDict_SetItem(parent->keys, parent->key, parent->key_node) < 0;
                Py_CLEAR(parent->key);
                Py_CLEAR(parent->key_node);
            }
            Py_DECREF(y);
            if (failed)
                outcome = -1;
        }
    }
    yaml_parser_delete(&parser);
    while (depth > 0) {
        depth--;
        Py_DECREF(stack[depth].items);
        Py_XDECREF(stack[depth].keys);
        Py_XDECREF(stack[depth].key);
        Py_XDECREF(stack[depth].key_node);
    }
    PyMem_Free(stack);
    if (outcome == 1) {
        PyObject *out = PyTuple_Pack(2, roots, duplicates);
        Py_DECREF(roots);
        Py_DECREF(duplicates);
        return out;
    }
    Py_DECREF(roots);
    Py_DECREF(duplicates);
    if (outcome == -1)
        return NULL;
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"set_node_class", set_node_class, METH_O, "set_node_class(cls): the class of the nodes built."},
    {"set_span_class", set_span_class, METH_O, "set_span_class(cls): the class of the spans made."},
    {"span", span, METH_VARARGS, "span(node, starts): where a node of build sits, as a Span."},
    {"build", build, METH_VARARGS,
     "build(data, max_depth, source, resolve, known, table): (roots, duplicates) or None."},
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
        PyModule_AddIntConstant(m, "LAYOUT", 4) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
