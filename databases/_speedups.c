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

/* A new reference to `row` as a tuple (the row itself when it is one). */
static PyObject *
as_tuple(PyObject *row)
{
    if (PyTuple_CheckExact(row)) {
        Py_INCREF(row);
        return row;
    }
    return PySequence_Tuple(row);
}

static PyObject *
make_record(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "make_record(cls, shape, index, values)");
        return NULL;
    }
    if (check_arguments(args[0], args[2]) < 0) {
        return NULL;
    }
    PyObject *values = as_tuple(args[3]);
    if (values == NULL) {
        return NULL;
    }
    PyObject *record = new_record((PyTypeObject *)args[0], args[1], args[2], values);
    Py_DECREF(values);
    return record;
}

static PyObject *
make_records(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "make_records(cls, shape, index, rows)");
        return NULL;
    }
    if (check_arguments(args[0], args[2]) < 0) {
        return NULL;
    }
    PyTypeObject *cls = (PyTypeObject *)args[0];
    PyObject *shape = args[1];
    PyObject *index = args[2];
    PyObject *iterator = PyObject_GetIter(args[3]);
    if (iterator == NULL) {
        return NULL;
    }
    PyObject *records = PyList_New(0);
    if (records == NULL) {
        Py_DECREF(iterator);
        return NULL;
    }
    PyObject *row;
    while ((row = PyIter_Next(iterator)) != NULL) {
        PyObject *values = as_tuple(row);
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
    return records;

error:
    Py_DECREF(iterator);
    Py_DECREF(records);
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
    PyObject *values = as_tuple(row);
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
     "make_record(cls, shape, index, values): one row of cls."},
    {"make_records", (PyCFunction)(void (*)(void))make_records, METH_FASTCALL,
     "make_records(cls, shape, index, rows): a list with a row of cls per row."},
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
