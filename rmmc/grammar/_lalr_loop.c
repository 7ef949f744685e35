/* The loop of `rmmc.grammar.lalr_driver.LalrDriver.parse`, compiled: optional.
 *
 * The same steps on the same tables as `LalrDriver.parse_python`, which stays the reference
 * and the fallback (this module is built by `pip install` when a C compiler is there, and
 * `lalr_driver` runs the Python loop when it cannot be imported).  It reads only what the
 * driver has built from Lark's parser (its action rows, per-state scanners and keyword
 * tables, the generated reductions), so the grammar file stays the one source of syntax.
 * What stays in Python: the expressions (`re`), the reductions and the tree they build, the
 * driver's lazy tables (filled by calling back into it), and Lark's own lexer callbacks.
 * `tests/test_kql_fast_path.py` runs both loops over the KQL corpus and compares trees,
 * spans and errors.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

static PyObject *TokenType;    /* lalr_driver.Token */
static PyObject *Fallback;     /* lalr_driver.Fallback */
static PyObject *LarkToken;    /* lalr_driver._lark_token */
static PyObject *LarkCallback; /* lalr_driver._lark_callback */
static PyObject *s_end, *s_lastgroup, *s_END, *s_actions, *s_rows, *s_scanners, *s_scanner,
    *s_terminal_callbacks, *s_opening, *s_closing, *s_limit, *s_skip, *s_start_state,
    *s_end_state, *s_no_skip_table;

typedef struct {
    PyObject *actions; /* _Rows: state -> {symbol: action}, built on first use */
    PyObject *rows;    /* list: state -> that row, or None until first use */
} Tables;

/* Borrowed: the action row of `state`. */
static PyObject *
row_of(Tables *t, Py_ssize_t state)
{
    if (state < 0 || state >= PyList_GET_SIZE(t->rows)) {
        PyErr_SetString(PyExc_IndexError, "state out of range");
        return NULL;
    }
    PyObject *row = PyList_GET_ITEM(t->rows, state);
    if (row != Py_None)
        return row;
    PyObject *key = PyLong_FromSsize_t(state);
    if (key == NULL)
        return NULL;
    row = PyObject_GetItem(t->actions, key); /* the row is built (`_Rows.__missing__`) */
    Py_DECREF(key);
    if (row == NULL)
        return NULL;
    if (!PyDict_CheckExact(row)) {
        Py_DECREF(row);
        PyErr_SetString(PyExc_TypeError, "an action row is not a dict");
        return NULL;
    }
    PyList_SET_ITEM(t->rows, state, row); /* steals; the None it replaces is immortal enough */
    Py_DECREF(Py_None);
    return row;
}

/* Borrowed or NULL (no error set): row_of(state)[symbol]. */
static PyObject *
action_of(Tables *t, Py_ssize_t state, PyObject *symbol, int *failed)
{
    PyObject *row = row_of(t, state);
    if (row == NULL) {
        *failed = 1;
        return NULL;
    }
    PyObject *action = PyDict_GetItemWithError(row, symbol);
    if (action == NULL && PyErr_Occurred())
        *failed = 1;
    return action;
}

/* goto(state, origin) as the Python loop's `actions[state][origin]` (a KeyError if absent). */
static Py_ssize_t
goto_of(Tables *t, Py_ssize_t state, PyObject *origin)
{
    int failed = 0;
    PyObject *target = action_of(t, state, origin, &failed);
    if (target == NULL) {
        if (!failed)
            PyErr_SetObject(PyExc_KeyError, origin);
        return -1;
    }
    Py_ssize_t value = PyLong_AsSsize_t(target);
    if (value == -1 && PyErr_Occurred())
        return -1;
    return value;
}

static int
fallback(const char *message)
{
    PyErr_SetString(Fallback, message);
    return -1;
}

/* A Token (a tuple subclass) of eight fields; steals nothing. */
static PyObject *
make_token(PyObject *kind, PyObject *value, Py_ssize_t start, Py_ssize_t end, Py_ssize_t line,
           Py_ssize_t column, Py_ssize_t end_line, Py_ssize_t end_column)
{
    PyTypeObject *type = (PyTypeObject *)TokenType;
    PyObject *token = type->tp_alloc(type, 8);
    if (token == NULL)
        return NULL;
    Py_INCREF(kind);
    PyTuple_SET_ITEM(token, 0, kind);
    Py_INCREF(value);
    PyTuple_SET_ITEM(token, 1, value);
    Py_ssize_t numbers[6] = {start, end, line, column, end_line, end_column};
    for (int i = 0; i < 6; i++) {
        PyObject *number = PyLong_FromSsize_t(numbers[i]);
        if (number == NULL) {
            Py_DECREF(token);
            return NULL;
        }
        PyTuple_SET_ITEM(token, 2 + i, number);
    }
    return token;
}

/* Newlines in text[start:end], and where the line after the last one starts (or -1). */
static Py_ssize_t
count_newlines(int kind, const void *data, Py_ssize_t start, Py_ssize_t end, Py_ssize_t *after)
{
    Py_ssize_t count = 0;
    *after = -1;
    for (Py_ssize_t i = start; i < end; i++) {
        if (PyUnicode_READ(kind, data, i) == '\n') {
            count++;
            *after = i + 1;
        }
    }
    return count;
}

static Py_ssize_t
match_end(PyObject *found)
{
    PyObject *end = PyObject_CallMethodNoArgs(found, s_end);
    if (end == NULL)
        return -1;
    Py_ssize_t value = PyLong_AsSsize_t(end);
    Py_DECREF(end);
    return value;
}

/* Calls match(text, pos, end), or match(text, pos) when end < 0: a new reference
 * (Py_None when nothing matches) or NULL. */
static PyObject *
call_match(PyObject *match, PyObject *text, Py_ssize_t pos, Py_ssize_t end)
{
    PyObject *args[3];
    size_t count = end < 0 ? 2 : 3;
    args[0] = text;
    args[1] = PyLong_FromSsize_t(pos);
    if (args[1] == NULL)
        return NULL;
    args[2] = NULL;
    if (end >= 0 && (args[2] = PyLong_FromSsize_t(end)) == NULL) {
        Py_DECREF(args[1]);
        return NULL;
    }
    PyObject *found = PyObject_Vectorcall(match, args, count, NULL);
    Py_DECREF(args[1]);
    Py_XDECREF(args[2]);
    return found;
}

typedef struct {
    Py_ssize_t *items;
    Py_ssize_t size, capacity;
} Stack;

static int
push(Stack *s, Py_ssize_t state)
{
    if (s->size == s->capacity) {
        Py_ssize_t capacity = s->capacity ? s->capacity * 2 : 64;
        Py_ssize_t *items = PyMem_Realloc(s->items, capacity * sizeof(Py_ssize_t));
        if (items == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        s->items = items;
        s->capacity = capacity;
    }
    s->items[s->size++] = state;
    return 0;
}

static int
set_slot(PyObject *list, Py_ssize_t at, PyObject *value) /* steals `value` */
{
    return PyList_SetItem(list, at, value);
}

/* A rule's reduction on the value and depth stacks, from its steps as data (see
 * `lalr_driver._reducer`, whose generated function does the same):
 * steps = (include, append_none, inner, spliced, single, function, limit). */
static int
reduce_steps(PyObject *steps, Py_ssize_t size, PyObject *values, PyObject *depths)
{
    if (!PyTuple_CheckExact(steps) || PyTuple_GET_SIZE(steps) != 7) {
        PyErr_SetString(PyExc_TypeError, "a reduction's steps are not a 7-tuple");
        return -1;
    }
    PyObject *include = PyTuple_GET_ITEM(steps, 0), *inner = PyTuple_GET_ITEM(steps, 2);
    Py_ssize_t append_none = PyLong_AsSsize_t(PyTuple_GET_ITEM(steps, 1));
    int spliced = PyObject_IsTrue(PyTuple_GET_ITEM(steps, 3));
    int single = PyObject_IsTrue(PyTuple_GET_ITEM(steps, 4));
    PyObject *function = PyTuple_GET_ITEM(steps, 5);
    Py_ssize_t limit = PyLong_AsSsize_t(PyTuple_GET_ITEM(steps, 6));
    if (PyErr_Occurred())
        return -1;
    Py_ssize_t n = PyList_GET_SIZE(values);
    if (size > n || PyList_GET_SIZE(depths) != n)
        return fallback("stack underflow");
    Py_ssize_t base = n - size;
    Py_ssize_t depth = 0;
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(inner); i++) {
        Py_ssize_t at = PyLong_AsSsize_t(PyTuple_GET_ITEM(inner, i));
        Py_ssize_t child = PyLong_AsSsize_t(PyList_GET_ITEM(depths, base + at));
        if (PyErr_Occurred())
            return -1;
        if (i == 0 || child > depth)
            depth = child;
    }
    PyObject *f;
    if (include == Py_None)
        f = PyList_GetSlice(values, base, n);
    else {
        Py_ssize_t i = 0;
        f = NULL;
        if (PyTuple_GET_SIZE(include) > 0) {
            /* the first child kept is a spliced list with nothing before it: it becomes the
             * result, extended in place (`f = c0; f += ...`), so a list of n items grows in
             * n steps, not n * n / 2 copies */
            PyObject *entry = PyTuple_GET_ITEM(include, 0);
            Py_ssize_t at = PyLong_AsSsize_t(PyTuple_GET_ITEM(entry, 0));
            int expand = PyObject_IsTrue(PyTuple_GET_ITEM(entry, 1));
            Py_ssize_t nones = PyLong_AsSsize_t(PyTuple_GET_ITEM(entry, 2));
            if (PyErr_Occurred())
                return -1;
            PyObject *child = PyList_GET_ITEM(values, base + at);
            if (expand && nones == 0 && PyList_CheckExact(child)) {
                f = child;
                Py_INCREF(f);
                i = 1;
            }
        }
        if (f == NULL && (f = PyList_New(0)) == NULL)
            return -1;
        for (; i < PyTuple_GET_SIZE(include); i++) {
            PyObject *entry = PyTuple_GET_ITEM(include, i);
            Py_ssize_t at = PyLong_AsSsize_t(PyTuple_GET_ITEM(entry, 0));
            int expand = PyObject_IsTrue(PyTuple_GET_ITEM(entry, 1));
            Py_ssize_t nones = PyLong_AsSsize_t(PyTuple_GET_ITEM(entry, 2));
            if (PyErr_Occurred())
                goto failed;
            for (Py_ssize_t k = 0; k < nones; k++)
                if (PyList_Append(f, Py_None) < 0)
                    goto failed;
            PyObject *child = PyList_GET_ITEM(values, base + at);
            if (expand) {
                Py_ssize_t length = PyList_GET_SIZE(f);
                if (PyList_SetSlice(f, length, length, child) < 0)
                    goto failed;
            }
            else if (PyList_Append(f, child) < 0)
                goto failed;
        }
        for (Py_ssize_t k = 0; k < append_none; k++)
            if (PyList_Append(f, Py_None) < 0)
                goto failed;
    }
    if (f == NULL)
        return -1;
    /* the result takes the first child's slot (a new slot when there is no child) */
    Py_ssize_t slot = base;
    if (size == 0) {
        PyObject *zero = PyLong_FromLong(0);
        if (zero == NULL || PyList_Append(values, Py_None) < 0 || PyList_Append(depths, zero) < 0) {
            Py_XDECREF(zero);
            goto failed;
        }
        Py_DECREF(zero);
    }
    else if (size > 1) {
        if (PyList_SetSlice(values, base + 1, n, NULL) < 0 || PyList_SetSlice(depths, base + 1, n, NULL) < 0)
            goto failed;
    }
    PyObject *result;
    if (spliced)
        result = f; /* a `_rule`'s children, spliced into its parent's */
    else {
        if (single && PyList_GET_SIZE(f) == 1) {
            result = PyList_GET_ITEM(f, 0);
            Py_INCREF(result);
            Py_DECREF(f);
        }
        else {
            depth += 1;
            if (depth > limit) {
                fallback("nested too deeply");
                goto failed;
            }
            result = PyObject_CallOneArg(function, f);
            Py_DECREF(f);
            if (result == NULL)
                return -1;
        }
    }
    PyObject *number = PyLong_FromSsize_t(depth);
    if (number == NULL) {
        Py_DECREF(result);
        return -1;
    }
    if (set_slot(values, slot, result) < 0) {
        Py_DECREF(number);
        return -1;
    }
    return set_slot(depths, slot, number);
failed:
    Py_DECREF(f);
    return -1;
}

/* One reduction on `action` = (size, reduce, origin, steps) with `reduce` not None: the
 * rule's steps on the value and depth stacks, then the state stack. */
static int
reduce_by(Tables *t, Stack *stack, PyObject *action, PyObject *values, PyObject *depths)
{
    Py_ssize_t size = PyLong_AsSsize_t(PyTuple_GET_ITEM(action, 0));
    if (size == -1 && PyErr_Occurred())
        return -1;
    if (reduce_steps(PyTuple_GET_ITEM(action, 3), size, values, depths) < 0)
        return -1;
    if (size >= stack->size)
        return fallback("stack underflow");
    stack->size -= size;
    Py_ssize_t target = goto_of(t, stack->items[stack->size - 1], PyTuple_GET_ITEM(action, 2));
    if (target < 0)
        return -1;
    return push(stack, target);
}

static PyObject *
get(PyObject *driver, PyObject *name)
{
    return PyObject_GetAttr(driver, name);
}

/* parse(driver, text): as `LalrDriver.parse_python(text)`. */
static PyObject *
loop_parse(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2 || !PyUnicode_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "parse(driver, text: str)");
        return NULL;
    }
    if (TokenType == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "setup() was not called");
        return NULL;
    }
    PyObject *driver = args[0], *text = args[1];
#if PY_VERSION_HEX < 0x030C0000
    if (PyUnicode_READY(text) < 0) /* a string from the old wide-character API */
        return NULL;
#endif
    PyObject *result = NULL;
    PyObject *scanners = NULL, *terminal_callbacks = NULL, *opening = NULL, *closing = NULL,
             *skip = NULL, *no_skip = NULL, *values = NULL, *depths = NULL, *zero = NULL;
    Tables tables = {NULL, NULL};
    Stack stack = {NULL, 0, 0};
    Py_ssize_t limit, start_state, end_state;

    if (!(tables.actions = get(driver, s_actions)) || !(tables.rows = get(driver, s_rows))
        || !(scanners = get(driver, s_scanners)) || !(terminal_callbacks = get(driver, s_terminal_callbacks))
        || !(opening = get(driver, s_opening)) || !(closing = get(driver, s_closing))
        || !(skip = get(driver, s_skip)) || !(no_skip = get(driver, s_no_skip_table)))
        goto done;
    if (!PyBytes_CheckExact(no_skip) || PyBytes_GET_SIZE(no_skip) != 128) {
        PyErr_SetString(PyExc_TypeError, "no_skip_table must be 128 bytes");
        goto done;
    }
    const char *never_skipped = PyBytes_AS_STRING(no_skip);
    if (!PyList_CheckExact(tables.rows) || !PyList_CheckExact(scanners)) {
        PyErr_SetString(PyExc_TypeError, "the driver's rows and scanners must be lists");
        goto done;
    }
    {
        PyObject *number;
        if (!(number = get(driver, s_limit)))
            goto done;
        limit = PyLong_AsSsize_t(number);
        Py_DECREF(number);
        if (!(number = get(driver, s_start_state)))
            goto done;
        start_state = PyLong_AsSsize_t(number);
        Py_DECREF(number);
        if (!(number = get(driver, s_end_state)))
            goto done;
        end_state = PyLong_AsSsize_t(number);
        Py_DECREF(number);
        if (PyErr_Occurred())
            goto done;
    }
    if (!(values = PyList_New(0)) || !(depths = PyList_New(0)) || !(zero = PyLong_FromLong(0)))
        goto done;
    if (push(&stack, start_state) < 0)
        goto done;

    int ukind = PyUnicode_KIND(text);
    const void *udata = PyUnicode_DATA(text);
    Py_ssize_t end = PyUnicode_GET_LENGTH(text);
    Py_ssize_t pos = 0, line = 1, line_start = 0, depth = 0;
    Py_ssize_t top = start_state;

    while (pos < end) {
        Py_UCS4 here = PyUnicode_READ(ukind, udata, pos);
        if (skip != Py_None && !(here < 128 && never_skipped[here])) {
            PyObject *found = call_match(skip, text, pos, -1); /* skip(text, pos) */
            if (found == NULL)
                goto done;
            if (found != Py_None) { /* a run of ignored text (spaces, comments) */
                Py_ssize_t start = pos;
                pos = match_end(found);
                Py_DECREF(found);
                if (pos < 0)
                    goto done;
                Py_ssize_t after;
                Py_ssize_t newlines = count_newlines(ukind, udata, start, pos, &after);
                if (newlines) {
                    line += newlines;
                    line_start = after;
                }
                if (pos >= end)
                    break;
            }
            else
                Py_DECREF(found);
        }
        PyObject *scanner = PyList_GET_ITEM(scanners, top); /* borrowed */
        PyObject *built = NULL;
        if (scanner == Py_None) {
            PyObject *state = PyLong_FromSsize_t(top);
            if (state == NULL)
                goto done;
            built = PyObject_CallMethodOneArg(driver, s_scanner, state);
            Py_DECREF(state);
            if (built == NULL)
                goto done;
            scanner = built;
        }
        if (!PyTuple_CheckExact(scanner) || PyTuple_GET_SIZE(scanner) < 6) {
            Py_XDECREF(built);
            PyErr_SetString(PyExc_TypeError, "a scanner is not a 6-tuple");
            goto done;
        }
        /* the scanner stays alive in `scanners` (or `built`) while its parts are used */
        PyObject *dispatch = PyTuple_GET_ITEM(scanner, 0), *kinds = PyTuple_GET_ITEM(scanner, 1);
        PyObject *first = PyUnicode_FromOrdinal(PyUnicode_READ(ukind, udata, pos));
        if (first == NULL) {
            Py_XDECREF(built);
            goto done;
        }
        PyObject *match = PyObject_GetItem(dispatch, first); /* `_Dispatch.__missing__` builds it */
        Py_DECREF(first);
        if (match == NULL) {
            Py_XDECREF(built);
            goto done;
        }
        PyObject *found = call_match(match, text, pos, end);
        Py_DECREF(match);
        if (found == NULL) {
            Py_XDECREF(built);
            goto done;
        }
        if (found == Py_None) {
            Py_DECREF(found);
            Py_XDECREF(built);
            fallback("no token matches");
            goto done;
        }
        PyObject *kind = PyObject_GetAttr(found, s_lastgroup);
        Py_ssize_t start = pos;
        pos = match_end(found);
        Py_DECREF(found);
        if (kind == NULL || pos < 0) {
            Py_XDECREF(kind);
            Py_XDECREF(built);
            goto done;
        }
        PyObject *how = PyDict_GetItemWithError(kinds, kind); /* borrowed */
        if (how == NULL && PyErr_Occurred()) {
            Py_DECREF(kind);
            Py_XDECREF(built);
            goto done;
        }
        PyObject *value = NULL; /* what is pushed for the token */
        if (how == NULL || PyDict_CheckExact(how)) { /* a plain token, or a name that may be a keyword */
            PyObject *text_value = PyUnicode_Substring(text, start, pos);
            if (text_value == NULL) {
                Py_DECREF(kind);
                Py_XDECREF(built);
                goto done;
            }
            if (how != NULL) {
                PyObject *keyword = PyDict_GetItemWithError(how, text_value);
                if (keyword == NULL && PyErr_Occurred()) {
                    Py_DECREF(text_value);
                    Py_DECREF(kind);
                    Py_XDECREF(built);
                    goto done;
                }
                if (keyword != NULL) {
                    Py_INCREF(keyword);
                    Py_SETREF(kind, keyword);
                }
            }
            Py_ssize_t column = start - line_start + 1;
            value = make_token(kind, text_value, start, pos, line, column, line, column + pos - start);
            Py_DECREF(text_value);
        }
        else if (PyLong_CheckExact(how) && PyLong_AsLong(how) != 0) { /* a bracket */
            depth += PyLong_AsLong(how);
            if (depth > limit) {
                Py_DECREF(kind);
                Py_XDECREF(built);
                fallback("nested too deeply");
                goto done;
            }
            PyObject *text_value = PyUnicode_Substring(text, start, pos);
            if (text_value == NULL) {
                Py_DECREF(kind);
                Py_XDECREF(built);
                goto done;
            }
            Py_ssize_t column = start - line_start + 1;
            value = make_token(kind, text_value, start, pos, line, column, line, column + pos - start);
            Py_DECREF(text_value);
        }
        else { /* anything else: each of Lark's lexer's steps */
            PyObject *retype = PyTuple_GET_ITEM(scanner, 2), *callbacks = PyTuple_GET_ITEM(scanner, 3),
                     *newline_types = PyTuple_GET_ITEM(scanner, 4),
                     *ignore_types = PyTuple_GET_ITEM(scanner, 5);
            PyObject *text_value = PyUnicode_Substring(text, start, pos);
            PyObject *token = NULL, *call = NULL;
            int ok = 0, ignored = 0;
            Py_ssize_t token_line = line, column = start - line_start + 1;
            if (text_value == NULL)
                goto special_done;
            int has = PySequence_Contains(newline_types, kind);
            if (has < 0)
                goto special_done;
            if (has) {
                Py_ssize_t after;
                Py_ssize_t newlines = count_newlines(ukind, udata, start, pos, &after);
                if (newlines) {
                    line += newlines;
                    line_start = after;
                }
            }
            PyObject *keywords = PyDict_GetItemWithError(retype, kind);
            if (keywords == NULL && PyErr_Occurred())
                goto special_done;
            if (keywords != NULL) {
                if ((has = PySequence_Contains(ignore_types, kind)) < 0)
                    goto special_done;
                if (has) {
                    ignored = 1;
                    ok = 1;
                    goto special_done;
                }
                PyObject *keyword = PyObject_CallMethod(keywords, "get", "OO", text_value, kind);
                if (keyword == NULL)
                    goto special_done;
                Py_SETREF(kind, keyword);
            }
            else {
                if ((has = PySequence_Contains(callbacks, kind)) < 0)
                    goto special_done;
                if (has) {
                    if (!(call = PyObject_GetItem(callbacks, kind)))
                        goto special_done;
                }
                else {
                    if ((has = PySequence_Contains(ignore_types, kind)) < 0)
                        goto special_done;
                    if (has) {
                        ignored = 1;
                        ok = 1;
                        goto special_done;
                    }
                }
            }
            token = make_token(kind, text_value, start, pos, token_line, column, line, pos - line_start + 1);
            if (token == NULL)
                goto special_done;
            if (call != NULL) { /* a callback of Lark's (not a keyword table): on Lark's token */
                if ((has = PySequence_Contains(ignore_types, kind)) < 0)
                    goto special_done;
                PyObject *after = PyObject_CallFunctionObjArgs(LarkCallback, call, token, NULL);
                if (after == NULL)
                    goto special_done;
                Py_SETREF(token, after);
                if (has) {
                    ignored = 1;
                    ok = 1;
                    goto special_done;
                }
                Py_INCREF(PyTuple_GET_ITEM(token, 0));
                Py_SETREF(kind, PyTuple_GET_ITEM(token, 0));
            }
            if ((has = PySequence_Contains(opening, kind)) < 0)
                goto special_done;
            if (has) {
                depth += 1;
                if (depth > limit) {
                    fallback("nested too deeply");
                    goto special_done;
                }
            }
            else {
                if ((has = PySequence_Contains(closing, kind)) < 0)
                    goto special_done;
                if (has)
                    depth -= 1;
            }
            PyObject *on_terminal = PyDict_GetItemWithError(terminal_callbacks, kind);
            if (on_terminal == NULL && PyErr_Occurred())
                goto special_done;
            if (on_terminal == NULL) {
                value = token;
                token = NULL;
            }
            else {
                PyObject *lark_token = PyObject_CallOneArg(LarkToken, token);
                if (lark_token == NULL)
                    goto special_done;
                value = PyObject_CallOneArg(on_terminal, lark_token);
                Py_DECREF(lark_token);
                if (value == NULL)
                    goto special_done;
            }
            ok = 1;
        special_done:
            Py_XDECREF(text_value);
            Py_XDECREF(token);
            Py_XDECREF(call);
            if (!ok || ignored) {
                Py_DECREF(kind);
                Py_XDECREF(built);
                if (!ok)
                    goto done;
                continue;
            }
        }
        Py_XDECREF(built);
        if (value == NULL) {
            Py_DECREF(kind);
            goto done;
        }
        for (;;) {
            int failed = 0;
            PyObject *action = action_of(&tables, top, kind, &failed);
            if (failed) {
                Py_DECREF(value);
                Py_DECREF(kind);
                goto done;
            }
            if (action != NULL && PyLong_CheckExact(action)) { /* shift */
                top = PyLong_AsSsize_t(action);
                if (push(&stack, top) < 0 || PyList_Append(values, value) < 0
                    || PyList_Append(depths, zero) < 0) {
                    Py_DECREF(value);
                    Py_DECREF(kind);
                    goto done;
                }
                Py_DECREF(value);
                break;
            }
            if (action == NULL || !PyTuple_CheckExact(action) || PyTuple_GET_SIZE(action) != 4) {
                Py_DECREF(value);
                Py_DECREF(kind);
                fallback("unexpected token");
                goto done;
            }
            if (PyTuple_GET_ITEM(action, 1) == Py_None) {
                /* unit rules (`?rule: x`): the value stays, only the top state changes */
                if (stack.size < 2) {
                    Py_DECREF(value);
                    Py_DECREF(kind);
                    fallback("stack underflow");
                    goto done;
                }
                top = goto_of(&tables, stack.items[stack.size - 2], PyTuple_GET_ITEM(action, 2));
                if (top < 0) {
                    Py_DECREF(value);
                    Py_DECREF(kind);
                    goto done;
                }
                stack.items[stack.size - 1] = top;
                continue;
            }
            if (reduce_by(&tables, &stack, action, values, depths) < 0) {
                Py_DECREF(value);
                Py_DECREF(kind);
                goto done;
            }
            top = stack.items[stack.size - 1];
        }
        Py_DECREF(kind);
    }
    for (;;) {
        int failed = 0;
        PyObject *action = action_of(&tables, stack.items[stack.size - 1], s_END, &failed);
        if (failed)
            goto done;
        if (action == NULL || !PyTuple_CheckExact(action) || PyTuple_GET_SIZE(action) != 4) {
            fallback("unexpected end of input");
            goto done;
        }
        if (PyTuple_GET_ITEM(action, 1) == Py_None) {
            if (stack.size < 2) {
                fallback("stack underflow");
                goto done;
            }
            stack.size -= 1;
            Py_ssize_t target = goto_of(&tables, stack.items[stack.size - 1], PyTuple_GET_ITEM(action, 2));
            if (target < 0 || push(&stack, target) < 0)
                goto done;
        }
        else if (reduce_by(&tables, &stack, action, values, depths) < 0)
            goto done;
        if (stack.items[stack.size - 1] == end_state) {
            Py_ssize_t n = PyList_GET_SIZE(values);
            if (n == 0) {
                fallback("no value");
                goto done;
            }
            result = PyList_GET_ITEM(values, n - 1);
            Py_INCREF(result);
            goto done;
        }
    }
done:
    PyMem_Free(stack.items);
    Py_XDECREF(tables.actions);
    Py_XDECREF(tables.rows);
    Py_XDECREF(scanners);
    Py_XDECREF(terminal_callbacks);
    Py_XDECREF(opening);
    Py_XDECREF(closing);
    Py_XDECREF(skip);
    Py_XDECREF(no_skip);
    Py_XDECREF(values);
    Py_XDECREF(depths);
    Py_XDECREF(zero);
    return result;
}

static PyObject *
loop_setup(PyObject *module, PyObject *args)
{
    PyObject *token, *fallback_class, *lark_token, *lark_callback;
    if (!PyArg_ParseTuple(args, "OOOO", &token, &fallback_class, &lark_token, &lark_callback))
        return NULL;
    if (!PyType_Check(token) || !PyType_IsSubtype((PyTypeObject *)token, &PyTuple_Type)
        || ((PyTypeObject *)token)->tp_basicsize != PyTuple_Type.tp_basicsize) {
        PyErr_SetString(PyExc_TypeError, "Token must be a tuple subclass without fields of its own");
        return NULL;
    }
    Py_INCREF(token);
    Py_XSETREF(TokenType, token);
    Py_INCREF(fallback_class);
    Py_XSETREF(Fallback, fallback_class);
    Py_INCREF(lark_token);
    Py_XSETREF(LarkToken, lark_token);
    Py_INCREF(lark_callback);
    Py_XSETREF(LarkCallback, lark_callback);
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"parse", (PyCFunction)(void (*)(void))loop_parse, METH_FASTCALL,
     "parse(driver, text): LalrDriver.parse_python(text), compiled."},
    {"setup", loop_setup, METH_VARARGS,
     "setup(Token, Fallback, lark_token, lark_callback): what the loop makes and raises."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "_lalr_loop",
    "The fast LALR loop of rmmc.grammar.lalr_driver, compiled (optional).", -1, methods,
};

PyMODINIT_FUNC
PyInit__lalr_loop(void)
{
#define NAME(var, text) if (!(var = PyUnicode_InternFromString(text))) return NULL;
    NAME(s_end, "end") NAME(s_lastgroup, "lastgroup") NAME(s_END, "$END")
    NAME(s_actions, "actions") NAME(s_rows, "rows") NAME(s_scanners, "scanners")
    NAME(s_scanner, "_scanner") NAME(s_terminal_callbacks, "terminal_callbacks")
    NAME(s_opening, "opening") NAME(s_closing, "closing") NAME(s_limit, "limit")
    NAME(s_skip, "skip") NAME(s_start_state, "start_state") NAME(s_end_state, "end_state")
    NAME(s_no_skip_table, "no_skip_table")
#undef NAME
    PyObject *module = PyModule_Create(&module_def);
    /* what `lalr_driver` expects (its tables' layout): a copy built from older source is
     * not used */
    if (module != NULL && PyModule_AddIntConstant(module, "LAYOUT", 3) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
