/* Reports whether this CPU runs the core's instruction set. Compiled for the baseline ISA, so
 * that importing fastlstm on an older CPU fails with a clear ImportError instead of SIGILL. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

static PyObject* missing_features(PyObject* self, PyObject* args) {
  (void)self;
  (void)args;
  PyObject* missing = PyList_New(0);
  if (!missing) return NULL;
#if defined(FASTLSTM_REQUIRES_AVX2) && (defined(__x86_64__) || defined(__i386__)) && \
    (defined(__GNUC__) || defined(__clang__))
  __builtin_cpu_init();
  const char* names[] = {"avx2", "fma", "bmi2", "f16c"};
  int present[] = {__builtin_cpu_supports("avx2"), __builtin_cpu_supports("fma"),
                   __builtin_cpu_supports("bmi2"), __builtin_cpu_supports("f16c")};
  for (int i = 0; i < 4; ++i) {
    if (present[i]) continue;
    PyObject* name = PyUnicode_FromString(names[i]);
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
    {"missing_features", missing_features, METH_NOARGS,
     "CPU features the compiled core needs but this CPU lacks (an empty list when it runs)."},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_cpu", NULL, -1, methods};

PyMODINIT_FUNC PyInit__cpu(void) { return PyModule_Create(&module); }
