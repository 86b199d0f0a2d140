/* Reports which CPU features an instruction set of the core needs that this CPU lacks. Compiled
 * for the baseline ISA, so that it runs anywhere: the package asks it before importing a core, so
 * that an unsupported CPU gets the next best core (or a clear ImportError) instead of SIGILL. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#define FASTLSTM_CPU_QUERY 1
/* What each instruction set's compiler flags (CMakeLists.txt) let the compiler use. */
static const char* const avx2_features[] = {"avx2", "fma", "bmi2", "f16c", NULL};
static const char* const avx512_features[] = {"avx2",     "fma",      "bmi2",     "f16c",     "avx512f",
                                              "avx512bw", "avx512cd", "avx512dq", "avx512vl", NULL};

static int supports(const char* feature) {
  /* __builtin_cpu_supports takes only string literals. */
#define FASTLSTM_CHECK(name) \
  if (strcmp(feature, name) == 0) return __builtin_cpu_supports(name);
  FASTLSTM_CHECK("avx2") FASTLSTM_CHECK("fma") FASTLSTM_CHECK("bmi2") FASTLSTM_CHECK("f16c")
  FASTLSTM_CHECK("avx512f") FASTLSTM_CHECK("avx512bw") FASTLSTM_CHECK("avx512cd")
  FASTLSTM_CHECK("avx512dq") FASTLSTM_CHECK("avx512vl")
#undef FASTLSTM_CHECK
  return 0;
}
#endif

static PyObject* missing_features(PyObject* self, PyObject* args) {
  (void)self;
  const char* isa = "avx2";
  if (!PyArg_ParseTuple(args, "|s", &isa)) return NULL;
  const char* const* needed = NULL;
  if (strcmp(isa, "baseline") == 0) {
    needed = NULL;
#ifdef FASTLSTM_CPU_QUERY
  } else if (strcmp(isa, "avx2") == 0) {
    needed = avx2_features;
  } else if (strcmp(isa, "avx512") == 0) {
    needed = avx512_features;
#endif
  } else {
    return PyErr_Format(PyExc_ValueError, "isa must be 'baseline', 'avx2' or 'avx512' on x86-64, not '%s'", isa);
  }
  PyObject* missing = PyList_New(0);
  if (!missing) return NULL;
#ifdef FASTLSTM_CPU_QUERY
  __builtin_cpu_init();
  for (; needed && *needed; ++needed) {
    if (supports(*needed)) continue;
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
