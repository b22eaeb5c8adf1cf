/* streamguard.data._treewalk: parse one function with tree-sitter and lay its syntax tree out
 * as flat arrays in breadth-first order, in one C call.
 *
 * Why C: the Python binding makes one Python object per node visited and one call per
 * attribute read; for the graphs `streamguard data prepare` builds, that per-node work cost
 * more than the parse itself. Here the walk costs a few nanoseconds per node and Python only
 * sees arrays (and the few statement nodes the CFG/DFG analysis visits, by index).
 *
 * It links its own copy of the tree-sitter runtime (third_party/tree-sitter, the version the
 * `tree-sitter` Python package bundles) and takes the grammar from the grammar package's
 * capsule (tree_sitter_c.language()), so node kind ids and field ids are the grammar's own,
 * exactly as the Python binding reports them.
 *
 * walk(code: bytes, language: capsule, buckets: int) -> tuple
 *   (count, has_error, kind, named, field, parent, first, nchild, start, end, bucket)
 *   count     visible nodes in the tree (== root.descendant_count); node 0 is the root and the
 *             children of node i are the nodes first[i] .. first[i] + nchild[i] - 1
 *   has_error root.has_error
 *   kind      bytes of uint16: ts_node_symbol (node.kind_id; 65535 for ERROR)
 *   named     bytes of uint8: ts_node_is_named
 *   field     bytes of uint16: the field id of the node in its parent (0: none)
 *   parent    bytes of int32: the parent's index (-1 for the root)
 *   first, nchild  bytes of int32
 *   start, end     bytes of uint32: byte span in `code`
 *   bucket    bytes of int32: for leaves, 1 + crc32(text) % (buckets - 1), where the text is
 *             the leaf's bytes or, when it has none (a MISSING node), its type name; 0 for
 *             inner nodes (the same as parse.token_bucket, zlib's CRC-32)
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tree_sitter/api.h"

static uint32_t crc_table[256];

static void crc_init(void) {
  for (uint32_t n = 0; n < 256; n++) {
    uint32_t c = n;
    for (int k = 0; k < 8; k++) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
    crc_table[n] = c;
  }
}

static uint32_t crc32_bytes(const unsigned char *p, size_t len) {
  uint32_t c = 0xFFFFFFFFu;
  for (size_t i = 0; i < len; i++) c = crc_table[(c ^ p[i]) & 0xFF] ^ (c >> 8);
  return c ^ 0xFFFFFFFFu;
}

/* One parser per grammar, reused across calls (the GIL serialises callers). */
#define MAX_PARSERS 8
static const TSLanguage *parser_lang[MAX_PARSERS];
static TSParser *parsers[MAX_PARSERS];

static TSParser *parser_for(const TSLanguage *lang) {
  int i = 0;
  for (; i < MAX_PARSERS && parsers[i]; i++)
    if (parser_lang[i] == lang) return parsers[i];
  if (i == MAX_PARSERS) {
    PyErr_SetString(PyExc_RuntimeError, "too many tree-sitter grammars in one process");
    return NULL;
  }
  TSParser *p = ts_parser_new();
  if (!p) {
    PyErr_NoMemory();
    return NULL;
  }
  if (!ts_parser_set_language(p, lang)) {
    ts_parser_delete(p);
    PyErr_Format(PyExc_ValueError,
                 "grammar ABI version %u is not supported by the bundled tree-sitter runtime "
                 "(ABI %u..%u); install a tree-sitter-c/-cpp release in that range",
                 ts_language_abi_version(lang), TREE_SITTER_MIN_COMPATIBLE_LANGUAGE_VERSION,
                 TREE_SITTER_LANGUAGE_VERSION);
    return NULL;
  }
  parser_lang[i] = lang;
  parsers[i] = p;
  return p;
}

/* A bytes object of n items of `size` bytes, its buffer in *out. */
static PyObject *new_array(Py_ssize_t n, size_t size, void **out) {
  PyObject *b = PyBytes_FromStringAndSize(NULL, n * (Py_ssize_t)size);
  if (b) *out = PyBytes_AS_STRING(b);
  return b;
}

static PyObject *walk(PyObject *self, PyObject *args) {
  (void)self;
  Py_buffer code;
  PyObject *capsule;
  long buckets;
  if (!PyArg_ParseTuple(args, "y*Ol", &code, &capsule, &buckets)) return NULL;
  PyObject *result = NULL, *arrays[9] = {NULL};
  TSTree *tree = NULL;
  TSNode *queue = NULL;
  TSTreeCursor cursor;
  int have_cursor = 0;

  if (buckets < 2) {
    PyErr_SetString(PyExc_ValueError, "buckets must be at least 2");
    goto done;
  }
  if (code.len > UINT32_MAX) {
    PyErr_SetString(PyExc_ValueError, "source larger than 4 GiB");
    goto done;
  }
  const TSLanguage *lang = PyCapsule_GetPointer(capsule, "tree_sitter.Language");
  if (!lang) goto done;
  TSParser *parser = parser_for(lang);
  if (!parser) goto done;
  tree = ts_parser_parse_string(parser, NULL, code.buf, (uint32_t)code.len);
  if (!tree) {
    PyErr_SetString(PyExc_RuntimeError, "tree-sitter returned no tree");
    goto done;
  }
  TSNode root = ts_tree_root_node(tree);
  Py_ssize_t n = (Py_ssize_t)ts_node_descendant_count(root);

  uint16_t *kind, *field;
  uint8_t *named;
  int32_t *parent, *first, *nchild, *bucket;
  uint32_t *start, *end;
  if (!(arrays[0] = new_array(n, 2, (void **)&kind)) || !(arrays[1] = new_array(n, 1, (void **)&named)) ||
      !(arrays[2] = new_array(n, 2, (void **)&field)) || !(arrays[3] = new_array(n, 4, (void **)&parent)) ||
      !(arrays[4] = new_array(n, 4, (void **)&first)) || !(arrays[5] = new_array(n, 4, (void **)&nchild)) ||
      !(arrays[6] = new_array(n, 4, (void **)&start)) || !(arrays[7] = new_array(n, 4, (void **)&end)) ||
      !(arrays[8] = new_array(n, 4, (void **)&bucket)))
    goto done;
  queue = malloc((size_t)(n > 0 ? n : 1) * sizeof(TSNode));
  if (!queue) {
    PyErr_NoMemory();
    goto done;
  }

  /* Breadth-first: node i's children are appended at the tail, so they are contiguous. */
  const unsigned char *src = (const unsigned char *)code.buf;
  Py_ssize_t tail = 1;
  queue[0] = root;
  field[0] = 0;
  parent[0] = -1;
  cursor = ts_tree_cursor_new(root);
  have_cursor = 1;
  for (Py_ssize_t i = 0; i < n; i++) {
    TSNode node = queue[i];
    kind[i] = ts_node_symbol(node);
    named[i] = ts_node_is_named(node);
    uint32_t s = ts_node_start_byte(node), e = ts_node_end_byte(node);
    start[i] = s;
    end[i] = e;
    first[i] = (int32_t)tail;
    ts_tree_cursor_reset(&cursor, node);
    if (ts_tree_cursor_goto_first_child(&cursor)) {
      do {
        if (tail >= n) {  /* cannot happen: n counts every visible node */
          PyErr_SetString(PyExc_RuntimeError, "tree-sitter node count mismatch");
          goto done;
        }
        queue[tail] = ts_tree_cursor_current_node(&cursor);
        field[tail] = ts_tree_cursor_current_field_id(&cursor);
        parent[tail] = (int32_t)i;
        tail++;
      } while (ts_tree_cursor_goto_next_sibling(&cursor));
    }
    nchild[i] = (int32_t)(tail - first[i]);
    if (nchild[i] == 0) {
      uint32_t crc;
      if (e > s && e <= code.len) {
        crc = crc32_bytes(src + s, e - s);
      } else {
        const char *type = ts_node_type(node);
        crc = crc32_bytes((const unsigned char *)(type ? type : ""), type ? strlen(type) : 0);
      }
      bucket[i] = (int32_t)(1 + crc % (uint32_t)(buckets - 1));
    } else {
      bucket[i] = 0;
    }
  }
  if (tail != n) {
    PyErr_SetString(PyExc_RuntimeError, "tree-sitter node count mismatch");
    goto done;
  }
  result = Py_BuildValue("(nNOOOOOOOOO)", n, PyBool_FromLong(ts_node_has_error(root)),
                         arrays[0], arrays[1], arrays[2], arrays[3], arrays[4], arrays[5],
                         arrays[6], arrays[7], arrays[8]);

done:
  for (int k = 0; k < 9; k++) Py_XDECREF(arrays[k]);
  if (have_cursor) ts_tree_cursor_delete(&cursor);
  free(queue);
  if (tree) ts_tree_delete(tree);
  PyBuffer_Release(&code);
  return result;
}

static PyMethodDef methods[] = {
    {"walk", walk, METH_VARARGS,
     "walk(code, language, buckets) -> (count, has_error, kind, named, field, parent, first, "
     "nchild, start, end, bucket): parse and lay the tree out breadth-first as arrays."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_treewalk",
    "tree-sitter parse + breadth-first tree arrays in one call (see streamguard.data.parse).",
    -1, methods,
};

PyMODINIT_FUNC PyInit__treewalk(void) {
  crc_init();
  return PyModule_Create(&module);
}
