/* Reports which CPU features an instruction set of the core needs that this CPU lacks. Compiled
 * for the baseline ISA, so that it runs anywhere: the package asks it before importing a core, so
 * that an unsupported CPU gets the next best core (or a clear ImportError) instead of SIGILL. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "../cpu_features.h"

static PyObject* missing_features(PyObject* self, PyObject* args) {
  (void)self;
  const char* isa = "avx2";
  if (!PyArg_ParseTuple(args, "|s", &isa)) return NULL;
  const char* const* needed = fastlstm_isa_features(isa);
  if (!needed) {
    return PyErr_Format(PyExc_ValueError, "isa must be 'baseline', 'avx2' or 'avx512' on x86-64, not '%s'", isa);
  }
  PyObject* missing = PyList_New(0);
  if (!missing) return NULL;
#ifdef FASTLSTM_CPU_QUERY
  for (; *needed; ++needed) {
    if (fastlstm_cpu_supports(*needed)) continue;
    PyObject* name = PyUnicode_FromString(*needed);
    if (!name || PyList_Append(missing, name) < 0) {
      Py_XDECREF(name);
      Py_DECREF(missing);
      return NULL;
    }
    Py_DECREF(name);
  }
#endif
  return missing;
}

static PyMethodDef methods[] = {
    {"missing_features", missing_features, METH_VARARGS,
     "missing_features(isa='avx2'): the CPU features the core built for `isa` ('baseline', 'avx2',\n"
     "'avx512') needs that this CPU lacks; an empty list when it runs that core."},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_cpu", NULL, -1, methods};

PyMODINIT_FUNC PyInit__cpu(void) { return PyModule_Create(&module); }
