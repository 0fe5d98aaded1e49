/*
 * databases._speedups: the hot part of a result row in C.
 *
 * A row is built for every value a query returns and read by name on every access, so
 * in Python those two steps cost more than the driver's own work for the row. This
 * module has the same three names as databases/backends/common/record_base.py, its
 * pure-Python twin, which is used when this module is not built (or when the
 * environment variable DATABASES_NO_SPEEDUPS is set): `RecordBase`, `make_record` and
 * `make_records`. Everything else about rows stays in Python (records.py).
 *
 * A row whose values are all plain (no value is a container the garbage collector
 * tracks: numbers, strings, bytes, dates, None) cannot be part of a reference cycle,
 * so it is not tracked by the collector, nor is its tuple of values. That spares every
 * collection the work of visiting every row a query returned.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>

typedef struct {
    PyObject_HEAD
    PyObject *shape;  /* the RecordShape shared by all rows of a statement */
    PyObject *index;  /* shape._index: a dict of name or position -> position */
    PyObject *values; /* tuple of the converted values, in column order */
} RecordBaseObject;

static PyTypeObject RecordBase_Type;

/* The name of the Python-level method that resolves every other key. */
static PyObject *lookup_name;

static int
holds_only_plain_values(PyObject *values)
{
    Py_ssize_t size = PyTuple_GET_SIZE(values);
    for (Py_ssize_t i = 0; i < size; i++) {
        if (PyObject_IS_GC(PyTuple_GET_ITEM(values, i))) {
            return 0;
        }
    }
    return 1;
}

/* Build one row of `cls`; steals no reference. `values` must be a tuple. */
static PyObject *
new_record(PyTypeObject *cls, PyObject *shape, PyObject *index, PyObject *values)
{
    RecordBaseObject *self = (RecordBaseObject *)cls->tp_alloc(cls, 0);
    if (self == NULL) {
        return NULL;
    }
    Py_INCREF(shape);
    self->shape = shape;
    Py_INCREF(index);
    self->index = index;
    Py_INCREF(values);
    self->values = values;
    if (holds_only_plain_values(values)) {
        /* Neither can reach an object that could refer back to them. */
        if (PyObject_GC_IsTracked(values)) {
            PyObject_GC_UnTrack(values);
        }
        PyObject_GC_UnTrack(self);
    }
    return (PyObject *)self;
}

static int
check_arguments(PyObject *cls, PyObject *index)
{
    if (!PyType_Check(cls) || !PyType_IsSubtype((PyTypeObject *)cls, &RecordBase_Type)) {
        PyErr_SetString(PyExc_TypeError, "the class must be a subclass of RecordBase");
        return -1;
    }
    if (!PyDict_Check(index)) {
        PyErr_SetString(PyExc_TypeError, "the index must be a dict");
        return -1;
    }
    return 0;
}

/* The (position, function) pairs of a statement's converters, checked once per call. */
typedef struct {
    Py_ssize_t count;
    Py_ssize_t *positions;
    PyObject **functions; /* borrowed from the converters tuple */
} Converters;

static int
read_converters(PyObject *pairs, Converters *converters)
{
    converters->count = 0;
    converters->positions = NULL;
    converters->functions = NULL;
    if (pairs == NULL) {
        return 0;
    }
    if (!PyTuple_Check(pairs)) {
        PyErr_SetString(PyExc_TypeError, "converters must be a tuple of (position, function)");
        return -1;
    }
    Py_ssize_t count = PyTuple_GET_SIZE(pairs);
    if (count == 0) {
        return 0;
    }
    converters->positions = PyMem_New(Py_ssize_t, count);
    converters->functions = PyMem_New(PyObject *, count);
    if (converters->positions == NULL || converters->functions == NULL) {
        PyMem_Free(converters->positions);
        PyMem_Free(converters->functions);
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t k = 0; k < count; k++) {
        PyObject *pair = PyTuple_GET_ITEM(pairs, k);
        Py_ssize_t position = -1;
        if (PyTuple_Check(pair) && PyTuple_GET_SIZE(pair) == 2) {
            position = PyLong_AsSsize_t(PyTuple_GET_ITEM(pair, 0));
        }
        if (position < 0 || !PyCallable_Check(PyTuple_GET_ITEM(pair, 1))) {
            PyMem_Free(converters->positions);
            PyMem_Free(converters->functions);
            PyErr_Clear();
            PyErr_SetString(PyExc_TypeError,
                            "converters must be a tuple of (position, function)");
            return -1;
        }
        converters->positions[k] = position;
        converters->functions[k] = PyTuple_GET_ITEM(pair, 1);
    }
    converters->count = count;
    return 0;
}

static void
free_converters(Converters *converters)
{
    PyMem_Free(converters->positions);
    PyMem_Free(converters->functions);
}

/* Check (cls, shape, index, values or rows[, converters]) and read the converters. */
static int
read_arguments(const char *usage, PyObject *const *args, Py_ssize_t nargs,
               Converters *converters)
{
    if (nargs != 4 && nargs != 5) {
        PyErr_SetString(PyExc_TypeError, usage);
        return -1;
    }
    if (check_arguments(args[0], args[2]) < 0) {
        return -1;
    }
    return read_converters(nargs == 5 ? args[4] : NULL, converters);
}

/* A new tuple of `row`'s values, converted; the row itself when nothing converts it. */
static PyObject *
row_values(PyObject *row, Converters *converters)
{
    if (converters->count == 0) {
        if (PyTuple_CheckExact(row)) {
            Py_INCREF(row);
            return row;
        }
        return PySequence_Tuple(row);
    }
    PyObject *sequence = PySequence_Fast(row, "a row must be a sequence of values");
    if (sequence == NULL) {
        return NULL;
    }
    Py_ssize_t size = PySequence_Fast_GET_SIZE(sequence);
    PyObject *values = PyTuple_New(size);
    if (values == NULL) {
        Py_DECREF(sequence);
        return NULL;
    }
    PyObject **items = PySequence_Fast_ITEMS(sequence);
    for (Py_ssize_t i = 0; i < size; i++) {
        Py_INCREF(items[i]);
        PyTuple_SET_ITEM(values, i, items[i]);
    }
    Py_DECREF(sequence);
    /* `values` is new and ours alone until returned, so it may still change. */
    for (Py_ssize_t k = 0; k < converters->count; k++) {
        Py_ssize_t i = converters->positions[k];
        if (i >= size) {
            PyErr_SetString(PyExc_IndexError, "a converter's position is past the row's end");
            Py_DECREF(values);
            return NULL;
        }
        PyObject *value = PyTuple_GET_ITEM(values, i);
        PyObject *converted = PyObject_CallOneArg(converters->functions[k], value);
        if (converted == NULL) {
            Py_DECREF(values);
            return NULL;
        }
        PyTuple_SET_ITEM(values, i, converted);
        Py_DECREF(value);
    }
    return values;
}

static PyObject *
make_record(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    Converters converters;
    if (read_arguments("make_record(cls, shape, index, values, converters=())", args, nargs,
                       &converters) < 0) {
        return NULL;
    }
    PyObject *record = NULL;
    PyObject *values = row_values(args[3], &converters);
    if (values != NULL) {
        record = new_record((PyTypeObject *)args[0], args[1], args[2], values);
        Py_DECREF(values);
    }
    free_converters(&converters);
    return record;
}

static PyObject *
make_records(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    Converters converters;
    if (read_arguments("make_records(cls, shape, index, rows, converters=())", args, nargs,
                       &converters) < 0) {
        return NULL;
    }
    PyTypeObject *cls = (PyTypeObject *)args[0];
    PyObject *shape = args[1];
    PyObject *index = args[2];
    PyObject *records = NULL;
    PyObject *iterator = PyObject_GetIter(args[3]);
    if (iterator == NULL) {
        goto error;
    }
    records = PyList_New(0);
    if (records == NULL) {
        goto error;
    }
    PyObject *row;
    while ((row = PyIter_Next(iterator)) != NULL) {
        PyObject *values = row_values(row, &converters);
        Py_DECREF(row);
        if (values == NULL) {
            goto error;
        }
        PyObject *record = new_record(cls, shape, index, values);
        Py_DECREF(values);
        if (record == NULL) {
            goto error;
        }
        int appended = PyList_Append(records, record);
        Py_DECREF(record);
        if (appended < 0) {
            goto error;
        }
    }
    if (PyErr_Occurred()) {
        goto error;
    }
    Py_DECREF(iterator);
    free_converters(&converters);
    return records;

error:
    Py_XDECREF(iterator);
    Py_XDECREF(records);
    free_converters(&converters);
    return NULL;
}

static PyObject *
RecordBase_new(PyTypeObject *cls, PyObject *args, PyObject *kwargs)
{
    PyObject *shape, *index, *row;
    static char *keywords[] = {"shape", "index", "values", NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OO!O:RecordBase", keywords, &shape,
                                     &PyDict_Type, &index, &row)) {
        return NULL;
    }
    Converters none = {0, NULL, NULL};
    PyObject *values = row_values(row, &none);
    if (values == NULL) {
        return NULL;
    }
    PyObject *record = new_record(cls, shape, index, values);
    Py_DECREF(values);
    return record;
}

static int
RecordBase_traverse(RecordBaseObject *self, visitproc visit, void *arg)
{
    Py_VISIT(self->shape);
    Py_VISIT(self->index);
    Py_VISIT(self->values);
    return 0;
}

static int
RecordBase_clear(RecordBaseObject *self)
{
    Py_CLEAR(self->shape);
    Py_CLEAR(self->index);
    Py_CLEAR(self->values);
    return 0;
}

static void
RecordBase_dealloc(RecordBaseObject *self)
{
    PyObject_GC_UnTrack(self);
    RecordBase_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static Py_ssize_t
RecordBase_length(RecordBaseObject *self)
{
    if (self->values == NULL) {
        return 0;
    }
    return PyTuple_GET_SIZE(self->values);
}

/* row[key]: one dict lookup for names and positions, the Python method for the rest. */
static PyObject *
RecordBase_subscript(RecordBaseObject *self, PyObject *key)
{
    if (self->index != NULL && self->values != NULL) {
        PyObject *position = PyDict_GetItemWithError(self->index, key);
        if (position != NULL) {
            Py_ssize_t i = PyLong_AsSsize_t(position);
            if (i >= 0 && i < PyTuple_GET_SIZE(self->values)) {
                PyObject *value = PyTuple_GET_ITEM(self->values, i);
                Py_INCREF(value);
                return value;
            }
            if (i == -1 && PyErr_Occurred()) {
                return NULL;
            }
        }
        else if (PyErr_Occurred()) {
            if (!PyErr_ExceptionMatches(PyExc_TypeError)) {
                return NULL;
            }
            PyErr_Clear(); /* an unhashable key, such as a slice */
        }
    }
    return PyObject_CallMethodOneArg((PyObject *)self, lookup_name, key);
}

static PyMappingMethods RecordBase_as_mapping = {
    .mp_length = (lenfunc)RecordBase_length,
    .mp_subscript = (binaryfunc)RecordBase_subscript,
};

static PyMemberDef RecordBase_members[] = {
    {"_shape", T_OBJECT_EX, offsetof(RecordBaseObject, shape), READONLY,
     "The RecordShape of the statement."},
    {"_index", T_OBJECT_EX, offsetof(RecordBaseObject, index), READONLY,
     "Name or position -> position."},
    {"_values", T_OBJECT_EX, offsetof(RecordBaseObject, values), READONLY,
     "The converted values, in column order."},
    {NULL},
};

static PyTypeObject RecordBase_Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "databases._speedups.RecordBase",
    .tp_doc = "A row's values, its shape and lookups by name or position.",
    .tp_basicsize = sizeof(RecordBaseObject),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .tp_new = RecordBase_new,
    .tp_dealloc = (destructor)RecordBase_dealloc,
    .tp_traverse = (traverseproc)RecordBase_traverse,
    .tp_clear = (inquiry)RecordBase_clear,
    .tp_as_mapping = &RecordBase_as_mapping,
    .tp_members = RecordBase_members,
};

static PyMethodDef module_methods[] = {
    {"make_record", (PyCFunction)(void (*)(void))make_record, METH_FASTCALL,
     "make_record(cls, shape, index, values, converters=()): one row of cls."},
    {"make_records", (PyCFunction)(void (*)(void))make_records, METH_FASTCALL,
     "make_records(cls, shape, index, rows, converters=()): a row of cls per row."},
    {NULL},
};

static struct PyModuleDef speedups_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "databases._speedups",
    .m_doc = "The hot part of a result row in C; see databases/backends/common/record_base.py.",
    .m_size = -1,
    .m_methods = module_methods,
};

PyMODINIT_FUNC
PyInit__speedups(void)
{
    lookup_name = PyUnicode_InternFromString("_lookup");
    if (lookup_name == NULL) {
        return NULL;
    }
    if (PyType_Ready(&RecordBase_Type) < 0) {
        return NULL;
    }
    PyObject *module = PyModule_Create(&speedups_module);
    if (module == NULL) {
        return NULL;
    }
    Py_INCREF(&RecordBase_Type);
    if (PyModule_AddObject(module, "RecordBase", (PyObject *)&RecordBase_Type) < 0) {
        Py_DECREF(&RecordBase_Type);
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
