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

/* ------------------------------------------------------------------------------------------
 * flow(): the statement-level CFG and the identifier roles of streamguard.data.flow, over the
 * arrays walk() returned. This is flow.py's algorithm, step for step (its docstring describes
 * it); flow.py keeps the reaching-definitions fixpoint and resolves goto labels.
 * ------------------------------------------------------------------------------------------ */

/* Room for one more item in a growable array (*v, n items, *cap allocated): -1 when out of memory. */
static int grow(void **v, Py_ssize_t n, Py_ssize_t *cap, size_t item) {
  if (n < *cap) return 0;
  Py_ssize_t c = *cap ? 2 * *cap : 16;
  void *p = realloc(*v, (size_t)c * item);
  if (!p) return -1;
  *v = p;
  *cap = c;
  return 0;
}

typedef struct {
  int32_t *v;
  Py_ssize_t n, cap;
} ivec;

static int iv_push(ivec *a, int32_t x) {
  if (grow((void **)&a->v, a->n, &a->cap, sizeof(int32_t)) < 0) return -1;
  a->v[a->n++] = x;
  return 0;
}

static int iv_extend(ivec *a, const ivec *b) {
  for (Py_ssize_t k = 0; k < b->n; k++)
    if (iv_push(a, b->v[k]) < 0) return -1;
  return 0;
}

static void iv_free(ivec *a) {
  free(a->v);
  a->v = NULL;
  a->n = a->cap = 0;
}

typedef struct {
  ivec *v;
  Py_ssize_t n, cap;
} vvec; /* a stack of ivecs */

static int vv_push(vvec *s, ivec x) { /* takes x */
  if (grow((void **)&s->v, s->n, &s->cap, sizeof(ivec)) < 0) return -1;
  s->v[s->n++] = x;
  return 0;
}

static ivec vv_pop(vvec *s) { /* gives the top away; an empty ivec when there is none */
  ivec empty = {NULL, 0, 0};
  return s->n ? s->v[--s->n] : empty;
}

static void vv_free(vvec *s) {
  for (Py_ssize_t k = 0; k < s->n; k++) iv_free(&s->v[k]);
  free(s->v);
}

/* Statement categories, identifier roles, kind flags, work-stack actions: flow.py's codes. */
enum { K_SIMPLE, K_RETURN, K_BREAK, K_CONTINUE, K_GOTO, K_BLOCK, K_IF, K_WHILE, K_DO, K_FOR,
       K_FOR_RANGE, K_SWITCH, K_CASE, K_LABELED, K_TRY, K_PREPROC, K_FUNCTION, K_NONE = 255 };
enum { R_SKIP, R_DEF, R_RW, R_DEF_FIRST, R_DEF_UNLESS_VALUE, R_ASSIGN, R_NONE = 255 };
enum { F_CLAUSE = 1, F_FDECL = 2, F_VALUE = 4, F_PLAIN_ASSIGN = 8 };
enum { A_VISIT = -1, A_IF_ELSE, A_IF_NOELSE, A_JOIN, A_LOOP_END, A_FOR_END, A_DO_END, A_SWITCH_END,
       A_ACC_START, A_CATCH, A_ACC_ADD, A_TRY_END, A_PP_END, A_FUNC_END };
enum { FLD_COND, FLD_CONS, FLD_ALT, FLD_BODY, FLD_INIT, FLD_UPD, FLD_VALUE, FLD_LABEL, FLD_PARAMS,
       FLD_DECL, N_FIELDS };

typedef struct {
  int32_t op, a, b, c;
} item;

typedef struct {
  item *v;
  Py_ssize_t n, cap;
} istack;

static int is_push(istack *s, int32_t op, int32_t a, int32_t b, int32_t c) {
  if (grow((void **)&s->v, s->n, &s->cap, sizeof(item)) < 0) return -1;
  item it = {op, a, b, c};
  s->v[s->n++] = it;
  return 0;
}

typedef struct {
  const uint16_t *kind, *field;
  const uint8_t *named;
  const int32_t *parent, *first, *nchild;
  const uint32_t *start, *end;
  Py_ssize_t count;
} tree_t;

static int32_t child_in(const tree_t *t, int32_t i, uint16_t f) { /* child_by_field_id, or -1 */
  if (!f) return -1;
  int32_t c = t->first[i], stop = c + t->nchild[i];
  for (; c < stop; c++)
    if (t->field[c] == f) return c;
  return -1;
}

static int cmp_pair(const void *x, const void *y) {
  const int32_t *a = x, *b = y;
  if (a[0] != b[0]) return a[0] < b[0] ? -1 : 1;
  return (a[1] > b[1]) - (a[1] < b[1]);
}

static int cmp_triple(const void *x, const void *y) {
  const int32_t *a = x, *b = y;
  for (int k = 0; k < 3; k++)
    if (a[k] != b[k]) return a[k] < b[k] ? -1 : 1;
  return 0;
}

/* Regions are stored as int32 triples: byte offsets are below 4 GiB but the comparison must be
 * unsigned, so they are biased by INT32_MIN (order preserved) and unbiased on the way out. */
#define BIAS(x) ((int32_t)((uint32_t)(x) ^ 0x80000000u))

/* Pairs in an ivec (a0, b0, a1, b1, ...): sort and drop duplicates; returns the pair count. */
static Py_ssize_t sort_unique_pairs(ivec *p) {
  Py_ssize_t n = p->n / 2, m = 0;
  if (!n) return 0;
  qsort(p->v, (size_t)n, 2 * sizeof(int32_t), cmp_pair);
  for (Py_ssize_t k = 0; k < n; k++)
    if (!m || p->v[2 * k] != p->v[2 * m - 2] || p->v[2 * k + 1] != p->v[2 * m - 1]) {
      p->v[2 * m] = p->v[2 * k];
      p->v[2 * m + 1] = p->v[2 * k + 1];
      m++;
    }
  p->n = 2 * m;
  return m;
}

/* A hash table of byte strings (spans of the source), for goto labels and variable names. */
typedef struct {
  uint32_t *start, *end;
  int32_t *value; /* INT32_MIN: empty slot */
  Py_ssize_t cap, n;
} htable;

static int ht_init(htable *h, Py_ssize_t n) {
  Py_ssize_t cap = 16;
  while (cap < 2 * n + 2) cap *= 2;
  h->start = malloc((size_t)cap * sizeof(uint32_t));
  h->end = malloc((size_t)cap * sizeof(uint32_t));
  h->value = malloc((size_t)cap * sizeof(int32_t));
  if (!h->start || !h->end || !h->value) return -1;
  for (Py_ssize_t k = 0; k < cap; k++) h->value[k] = INT32_MIN;
  h->cap = cap;
  h->n = 0;
  return 0;
}

static void ht_free(htable *h) {
  free(h->start);
  free(h->end);
  free(h->value);
  memset(h, 0, sizeof(*h));
}

/* The slot of src[s:e]; a new one (value -1) when insert, else -1 when it is absent. The table
 * never fills: ht_init sized it for every key the caller inserts. */
static Py_ssize_t ht_find(htable *h, const char *src, uint32_t s, uint32_t e, int insert) {
  uint32_t hash = 2166136261u;
  for (uint32_t k = s; k < e; k++) hash = (hash ^ (unsigned char)src[k]) * 16777619u;
  Py_ssize_t mask = h->cap - 1, slot = (Py_ssize_t)(hash & (uint32_t)mask);
  while (h->value[slot] != INT32_MIN) {
    if (h->end[slot] - h->start[slot] == e - s && !memcmp(src + h->start[slot], src + s, e - s)) return slot;
    slot = (slot + 1) & mask;
  }
  if (!insert) return -1;
  h->start[slot] = s;
  h->end[slot] = e;
  h->value[slot] = -1;
  h->n++;
  return slot;
}

/* flow.py's reaching definitions: bit vectors of the definitions (W 64-bit words per CFG node),
 * one forward pass over the edges in order, then a worklist from the back edges (always the
 * smallest queued node first), with the same work cap and pair cap. defs / uses: (owner, tree
 * index) pairs in tree order, owner -1 when no region holds the identifier. Appends
 * (def, use) tree-index pairs, sorted and unique, without self pairs, to *out. */
#define RD_WORK_PER_EDGE 200
#define RD_WORK_MIN 100000
#define MAX_PAIRS_PER_IDENTIFIER 4
#define MAX_PAIRS_MIN 1024
#define RD_MAX_WORDS (8 * 1024 * 1024) /* per bit-vector array: 64 MiB */

static int reaching_definitions(const tree_t *t, const char *src, Py_ssize_t n, const ivec *edges,
                                Py_ssize_t n_edges, const ivec *defs, const ivec *uses, htable *names,
                                ivec *out) {
  Py_ssize_t n_def_records = defs->n / 2, n_use_records = uses->n / 2, D = 0;
  for (Py_ssize_t k = 0; k < defs->n; k += 2) D += defs->v[k] >= 0;
  if (!D || !n) return 0;
  Py_ssize_t W = (D + 63) / 64;
  if ((double)n * (double)W > RD_MAX_WORDS) {
    PyErr_Format(PyExc_MemoryError,
                 "data-flow analysis of %zd statements x %zd definitions is too large; lower max_nodes",
                 n, D);
    return -2;
  }
  int rc = -1;
  uint64_t *gen = calloc((size_t)(n * W), 8), *keep = malloc((size_t)(n * W) * 8),
           *inn = calloc((size_t)(n * W), 8), *outs = malloc((size_t)(n * W) * 8),
           *masks = calloc((size_t)(D * W), 8);
  int32_t *def_handle = malloc((size_t)D * sizeof(int32_t)), *def_name = malloc((size_t)D * sizeof(int32_t)),
          *def_owner = malloc((size_t)D * sizeof(int32_t));
  int32_t *offsets = NULL, *heap = NULL;
  uint8_t *queued = NULL;
  ivec live = {0}, pairs = {0};
  if (!gen || !keep || !inn || !outs || !masks || !def_handle || !def_name || !def_owner) goto end;
  memset(keep, 0xff, (size_t)(n * W) * 8);
  if (ht_init(names, D) < 0) goto end;

  Py_ssize_t b = 0;
  for (Py_ssize_t k = 0; k < defs->n; k += 2) {
    int32_t v = defs->v[k], i = defs->v[k + 1];
    if (v < 0) continue;
    Py_ssize_t slot = ht_find(names, src, t->start[i], t->end[i], 1);
    if (names->value[slot] < 0) names->value[slot] = (int32_t)(names->n - 1);
    int32_t nid = names->value[slot];
    masks[nid * W + b / 64] |= 1ull << (b % 64);
    gen[v * W + b / 64] |= 1ull << (b % 64);
    def_handle[b] = i;
    def_name[b] = nid;
    def_owner[b] = v;
    b++;
  }
  for (b = 0; b < D; b++) /* keep = not killed: no definition of a name defined here survives */
    for (Py_ssize_t w = 0; w < W; w++) keep[def_owner[b] * W + w] &= ~masks[def_name[b] * W + w];

  /* Uses of names that have definitions: (CFG node, name, handle). */
  for (Py_ssize_t k = 0; k < uses->n; k += 2) {
    int32_t v = uses->v[k], i = uses->v[k + 1];
    if (v < 0) continue;
    Py_ssize_t slot = ht_find(names, src, t->start[i], t->end[i], 0);
    if (slot < 0) continue;
    if (iv_push(&live, v) < 0 || iv_push(&live, names->value[slot]) < 0 || iv_push(&live, i) < 0) goto end;
  }
  if (!live.n) {
    rc = 0;
    goto end;
  }

  memcpy(outs, gen, (size_t)(n * W) * 8);
  /* One pass over the edges by source: every forward edge into a node comes before the edges
   * out of it (creation order is about source order), so this is the fixpoint without loops. */
  ivec seeds = {0};
  int32_t last = -1;
  for (Py_ssize_t k = 0; k < n_edges; k++) {
    int32_t a = edges->v[2 * k], c = edges->v[2 * k + 1];
    uint64_t *oa = outs + a * W;
    if (a != last) {
      last = a;
      const uint64_t *ga = gen + a * W, *ia = inn + a * W, *ka = keep + a * W;
      for (Py_ssize_t w = 0; w < W; w++) oa[w] = ga[w] | (ia[w] & ka[w]);
    }
    if (a < c) {
      uint64_t *ic = inn + c * W;
      for (Py_ssize_t w = 0; w < W; w++) ic[w] |= oa[w];
    } else if (!seeds.n || seeds.v[seeds.n - 1] != a) {
      if (iv_push(&seeds, a) < 0) {
        iv_free(&seeds);
        goto end;
      }
    }
  }
  if (seeds.n) {
    /* Successors (edges are sorted by source), then a min-heap worklist from the back edges. */
    offsets = calloc((size_t)n + 1, sizeof(int32_t));
    heap = malloc((size_t)n * sizeof(int32_t));
    queued = calloc((size_t)n, 1);
    if (!offsets || !heap || !queued) {
      iv_free(&seeds);
      goto end;
    }
    for (Py_ssize_t k = 0; k < n_edges; k++) offsets[edges->v[2 * k] + 1]++;
    for (Py_ssize_t k = 0; k < n; k++) offsets[k + 1] += offsets[k];
    Py_ssize_t hn = 0;
    for (Py_ssize_t k = 0; k < seeds.n; k++) { /* ascending: already a heap */
      heap[hn++] = seeds.v[k];
      queued[seeds.v[k]] = 1;
    }
    iv_free(&seeds);
    long long budget = ((long long)RD_WORK_PER_EDGE * (n + n_edges) + RD_WORK_MIN) / (D / 64 + 1);
    while (hn && budget > 0) {
      int32_t p = heap[0];
      heap[0] = heap[--hn]; /* pop the smallest: sift down */
      for (Py_ssize_t j = 0;;) {
        Py_ssize_t l = 2 * j + 1, r = l + 1, m = j;
        if (l < hn && heap[l] < heap[m]) m = l;
        if (r < hn && heap[r] < heap[m]) m = r;
        if (m == j) break;
        int32_t tmp = heap[j]; heap[j] = heap[m]; heap[m] = tmp;
        j = m;
      }
      queued[p] = 0;
      const uint64_t *op = outs + p * W;
      budget -= offsets[p + 1] - offsets[p] + 1;
      for (int32_t e = offsets[p]; e < offsets[p + 1]; e++) {
        int32_t s = edges->v[2 * e + 1];
        uint64_t *is = inn + s * W;
        int grows = 0;
        for (Py_ssize_t w = 0; w < W; w++)
          if (op[w] & ~is[w]) { grows = 1; break; }
        if (!grows) continue;
        int changed = 0;
        uint64_t *os = outs + s * W;
        const uint64_t *gs = gen + s * W, *ks = keep + s * W;
        for (Py_ssize_t w = 0; w < W; w++) {
          is[w] |= op[w];
          uint64_t so = gs[w] | (is[w] & ks[w]);
          if (so != os[w]) { os[w] = so; changed = 1; }
        }
        if (changed && !queued[s]) { /* push: sift up */
          queued[s] = 1;
          Py_ssize_t j = hn++;
          heap[j] = s;
          while (j > 0 && heap[(j - 1) / 2] > heap[j]) {
            int32_t tmp = heap[j]; heap[j] = heap[(j - 1) / 2]; heap[(j - 1) / 2] = tmp;
            j = (j - 1) / 2;
          }
        }
      }
    }
  }

  /* def -> use pairs, lowest definition first, at most `room` of them (a pathological,
   * quadratic answer keeps a bounded part). */
  Py_ssize_t room = MAX_PAIRS_PER_IDENTIFIER * (n_def_records + n_use_records) + MAX_PAIRS_MIN;
  for (Py_ssize_t k = 0; k < live.n; k += 3) {
    int32_t v = live.v[k], nid = live.v[k + 1], h = live.v[k + 2];
    const uint64_t *iv = inn + v * W, *mv = masks + nid * W;
    for (Py_ssize_t w = 0; w < W; w++) {
      uint64_t x = iv[w] & mv[w];
      while (x) {
        int bit = __builtin_ctzll(x);
        if (iv_push(&pairs, def_handle[w * 64 + bit]) < 0 || iv_push(&pairs, h) < 0) goto end;
        x &= x - 1;
      }
    }
    if (pairs.n / 2 > room) {
      pairs.n = 2 * room;
      break;
    }
  }
  for (Py_ssize_t k = 0; k < pairs.n; k += 2)
    if (pairs.v[k] != pairs.v[k + 1] && (iv_push(out, pairs.v[k]) < 0 || iv_push(out, pairs.v[k + 1]) < 0)) goto end;
  sort_unique_pairs(out);
  rc = 0;
end:
  free(gen);
  free(keep);
  free(inn);
  free(outs);
  free(masks);
  free(def_handle);
  free(def_name);
  free(def_owner);
  free(offsets);
  free(heap);
  free(queued);
  iv_free(&live);
  iv_free(&pairs);
  return rc;
}

static int get_buffer(PyObject *obj, Py_buffer *view, Py_ssize_t itemsize, Py_ssize_t count,
                      const char *what) {
  if (PyObject_GetBuffer(obj, view, PyBUF_SIMPLE) < 0) return -1;
  if (view->len < itemsize * count) {
    PyBuffer_Release(view);
    PyErr_Format(PyExc_ValueError, "flow(): %s holds %zd bytes, expected %zd", what, view->len,
                 itemsize * count);
    return -1;
  }
  return 0;
}

static PyObject *flow(PyObject *self, PyObject *args) {
  (void)self;
  PyObject *objs[8], *tables[3], *fields_obj, *source;
  Py_ssize_t count, n_kept;
  int identifier_kind, roles_only = 0;
  if (!PyArg_ParseTuple(args, "nnOOOOOOOOOOOOiS|p", &count, &n_kept, &objs[0], &objs[1], &objs[2],
                        &objs[3], &objs[4], &objs[5], &objs[6], &objs[7], &tables[0], &tables[1],
                        &tables[2], &fields_obj, &identifier_kind, &source, &roles_only))
    return NULL;
  const char *src = PyBytes_AS_STRING(source);
  const Py_ssize_t src_len = PyBytes_GET_SIZE(source);
  static const Py_ssize_t sizes[8] = {2, 1, 2, 4, 4, 4, 4, 4};
  static const char *buf_names[8] = {"kind", "named", "field", "parent", "first", "nchild", "start", "end"};
  Py_buffer views[11];
  int nviews = 0;
  PyObject *result = NULL;
  ivec cur = {0}, ts = {0}, edges = {0}, regions = {0}, labels = {0}, gotos = {0}, cont = {0},
       switches = {0}, defs = {0}, uses = {0}, cfg = {0}, dfg = {0};
  htable names = {0};
  vvec saved = {0}, brk = {0};
  istack stack = {0};
  int oom = 0;

  for (; nviews < 8; nviews++)
    if (get_buffer(objs[nviews], &views[nviews], sizes[nviews], count, buf_names[nviews]) < 0) goto done;
  for (int k = 0; k < 3; k++, nviews++)
    if (get_buffer(tables[k], &views[nviews], 1, 65536, "a kind table") < 0) goto done;
  uint16_t fld[N_FIELDS];
  if (!PyTuple_Check(fields_obj) || PyTuple_GET_SIZE(fields_obj) != N_FIELDS) {
    PyErr_SetString(PyExc_ValueError, "flow(): fields must be a tuple of 10 field ids");
    goto done;
  }
  for (int k = 0; k < N_FIELDS; k++) {
    long f = PyLong_AsLong(PyTuple_GET_ITEM(fields_obj, k));
    if (f == -1 && PyErr_Occurred()) goto done;
    fld[k] = (uint16_t)f;
  }
  if (n_kept > count) n_kept = count;
  if (count <= 0) {
    result = roles_only ? Py_BuildValue("([][])") : Py_BuildValue("(y#y#)", "", (Py_ssize_t)0, "", (Py_ssize_t)0);
    goto done;
  }
  tree_t t = {views[0].buf, views[2].buf, views[1].buf, views[3].buf, views[4].buf,
              views[5].buf, views[6].buf, views[7].buf, count};
  if (((const uint32_t *)views[7].buf)[0] > (uint32_t)src_len) { /* the root spans the source */
    PyErr_SetString(PyExc_ValueError, "flow(): the tree does not belong to this source");
    goto done;
  }
  const uint8_t *cat = views[8].buf, *role_of = views[9].buf, *flags = views[10].buf;
  const int32_t kept = (int32_t)n_kept;

#define CHK(x) do { if ((x) < 0) { oom = 1; goto done; } } while (0)
#define EDGE(p, q) do { CHK(iv_push(&edges, (p))); CHK(iv_push(&edges, (q))); } while (0)
#define FROM_CUR(q) do { for (Py_ssize_t _k = 0; _k < cur.n; _k++) EDGE(cur.v[_k], (q)); } while (0)
#define SET_CUR1(x) do { cur.n = 0; CHK(iv_push(&cur, (x))); } while (0)
#define REGION(s, e, k) do { CHK(iv_push(&regions, BIAS(s))); CHK(iv_push(&regions, BIAS(e))); \
                             CHK(iv_push(&regions, (k))); } while (0)
/* The region of child `x` of the current node (when it has one), owned by CFG node k. */
#define CHILD_REGION(x, k) do { if ((x) >= 0) REGION(t.start[x], t.end[x], (k)); } while (0)
/* Visit the child of `node` in field `f` next, when it has one. */
#define VISIT_FIELD(node, f) do { int32_t _b = child_in(&t, (node), fld[f]); \
                                  if (_b >= 0) CHK(is_push(&stack, A_VISIT, _b, 0, 0)); } while (0)
#define NEW_TS(var, node) do { CHK(iv_push(&ts, (node))); (var) = (int32_t)(ts.n - 1); } while (0)
#define SAVE_CUR() do { CHK(vv_push(&saved, cur)); cur.v = NULL; cur.n = cur.cap = 0; } while (0)
#define PUSH_NAMED_CHILDREN(node, skip) do { \
    for (int32_t _c = t.first[node] + t.nchild[node] - 1; _c >= t.first[node]; _c--) \
      if (t.named[_c] && _c != (skip)) CHK(is_push(&stack, A_VISIT, _c, 0, 0)); } while (0)

  CHK(is_push(&stack, A_VISIT, 0, 0, 0));
  while (stack.n) {
    item it = stack.v[--stack.n];
    if (it.op != A_VISIT) {
      ivec got;
      switch (it.op) {
        case A_JOIN:
        case A_TRY_END:
          got = vv_pop(&saved);
          CHK(iv_extend(&got, &cur));
          iv_free(&cur);
          cur = got;
          break;
        case A_IF_ELSE:
          SAVE_CUR();
          CHK(iv_push(&cur, it.a));
          CHK(is_push(&stack, A_JOIN, 0, 0, 0));
          CHK(is_push(&stack, A_VISIT, it.b, 0, 0));
          break;
        case A_IF_NOELSE:
          CHK(iv_push(&cur, it.a));
          break;
        case A_LOOP_END:
        case A_DO_END:
          FROM_CUR(it.a);
          got = vv_pop(&brk);
          SET_CUR1(it.a);
          CHK(iv_extend(&cur, &got));
          iv_free(&got);
          if (cont.n) cont.n--;
          break;
        case A_FOR_END: {
          int32_t h = it.a, u = it.b, back = u < 0 ? h : u;
          FROM_CUR(back);
          if (u >= 0) EDGE(u, h);
          cur.n = 0;
          if (it.c) CHK(iv_push(&cur, h));
          got = vv_pop(&brk);
          CHK(iv_extend(&cur, &got));
          iv_free(&got);
          if (cont.n) cont.n--;
          break;
        }
        case A_SWITCH_END: {
          int32_t s = -1, has_default = 1;
          if (switches.n >= 2) {
            s = switches.v[switches.n - 2];
            has_default = switches.v[switches.n - 1];
            switches.n -= 2;
          }
          got = vv_pop(&brk);
          CHK(iv_extend(&cur, &got));
          iv_free(&got);
          if (!has_default) CHK(iv_push(&cur, s));
          break;
        }
        case A_ACC_START:
          SAVE_CUR();
          break;
        case A_CATCH: {
          int32_t clause = it.b, c;
          NEW_TS(c, clause);
          EDGE(it.a, c);
          int32_t params = child_in(&t, clause, fld[FLD_PARAMS]);
          CHILD_REGION(params, c);
          SET_CUR1(c);
          CHK(is_push(&stack, A_ACC_ADD, 0, 0, 0));
          VISIT_FIELD(clause, FLD_BODY);
          break;
        }
        case A_ACC_ADD:
          if (saved.n) CHK(iv_extend(&saved.v[saved.n - 1], &cur));
          cur.n = 0;
          break;
        case A_PP_END:
          got = vv_pop(&saved);
          if (it.a < 0) {
            CHK(iv_extend(&cur, &got));
            iv_free(&got);
          } else {
            SAVE_CUR();
            cur = got;
            CHK(is_push(&stack, A_JOIN, 0, 0, 0));
            CHK(is_push(&stack, A_VISIT, it.a, 0, 0));
          }
          break;
        case A_FUNC_END:
          iv_free(&cur);
          cur = vv_pop(&saved);
          break;
      }
      continue;
    }

    int32_t node = it.a;
    uint8_t k = cat[t.kind[node]];
    if (k == K_NONE) continue; /* not a statement */
    if (node >= kept) {        /* below the cut-off: one opaque node */
      if (!t.nchild[node]) continue;
      int32_t i;
      NEW_TS(i, node);
      FROM_CUR(i);
      if (k == K_CASE && switches.n) {
        EDGE(switches.v[switches.n - 2], i);
        switches.v[switches.n - 1] = 1;
      }
      SET_CUR1(i);
      continue;
    }
    if (k == K_SIMPLE) {
      int32_t i;
      NEW_TS(i, node);
      FROM_CUR(i);
      REGION(t.start[node], t.end[node], i);
      SET_CUR1(i);
      continue;
    }
    if (k == K_BLOCK) {
      PUSH_NAMED_CHILDREN(node, -1);
      continue;
    }
    if (k == K_PREPROC) {
      int32_t alt = child_in(&t, node, fld[FLD_ALT]);
      ivec copy = {0};
      CHK(iv_extend(&copy, &cur));
      if (vv_push(&saved, copy) < 0) {
        iv_free(&copy);
        oom = 1;
        goto done;
      }
      CHK(is_push(&stack, A_PP_END, alt, 0, 0));
      PUSH_NAMED_CHILDREN(node, alt);
      continue;
    }

    int32_t i;
      NEW_TS(i, node);
    if (k != K_DO && k != K_FUNCTION) FROM_CUR(i);
    int32_t cond, body, label;
    switch (k) {
      case K_IF: {
        cond = child_in(&t, node, fld[FLD_COND]);
        CHILD_REGION(cond, i);
        SET_CUR1(i);
        int32_t alt = child_in(&t, node, fld[FLD_ALT]);
        if (alt < 0) CHK(is_push(&stack, A_IF_NOELSE, i, 0, 0));
        else CHK(is_push(&stack, A_IF_ELSE, i, alt, 0));
        int32_t cons = child_in(&t, node, fld[FLD_CONS]);
        if (cons >= 0) CHK(is_push(&stack, A_VISIT, cons, 0, 0));
        break;
      }
      case K_RETURN:
        REGION(t.start[node], t.end[node], i);
        cur.n = 0;
        break;
      case K_BREAK:
        if (brk.n) CHK(iv_push(&brk.v[brk.n - 1], i));
        cur.n = 0;
        break;
      case K_CONTINUE:
        if (cont.n) EDGE(i, cont.v[cont.n - 1]);
        cur.n = 0;
        break;
      case K_GOTO:
        label = child_in(&t, node, fld[FLD_LABEL]);
        if (label >= 0) {
          CHK(iv_push(&gotos, i));
          CHK(iv_push(&gotos, (int32_t)t.start[label]));
          CHK(iv_push(&gotos, (int32_t)t.end[label]));
        }
        cur.n = 0;
        break;
      case K_WHILE:
        cond = child_in(&t, node, fld[FLD_COND]);
        CHILD_REGION(cond, i);
        CHK(vv_push(&brk, (ivec){0}));
        CHK(iv_push(&cont, i));
        SET_CUR1(i);
        CHK(is_push(&stack, A_LOOP_END, i, 0, 0));
        VISIT_FIELD(node, FLD_BODY);
        break;
      case K_FOR: {
        int32_t init = child_in(&t, node, fld[FLD_INIT]), upd = child_in(&t, node, fld[FLD_UPD]);
        int32_t h = i, u = -1;
        cond = child_in(&t, node, fld[FLD_COND]);
        if (init >= 0 && t.nchild[init] == 0) { /* a bare leaf defines nothing */
          REGION(t.start[init], t.end[init], h);
          init = -1;
        }
        if (init >= 0) { /* node i becomes the initializer, the header comes next */
          ts.v[i] = init;
          REGION(t.start[init], t.end[init], i);
          NEW_TS(h, node);
          EDGE(i, h);
        }
        CHILD_REGION(cond, h);
        if (upd >= 0 && t.nchild[upd] == 0) {
          REGION(t.start[upd], t.end[upd], h);
          upd = -1;
        }
        if (upd >= 0) {
          NEW_TS(u, upd);
          REGION(t.start[upd], t.end[upd], u);
        }
        CHK(vv_push(&brk, (ivec){0}));
        CHK(iv_push(&cont, u < 0 ? h : u));
        SET_CUR1(h);
        CHK(is_push(&stack, A_FOR_END, h, u, cond >= 0));
        VISIT_FIELD(node, FLD_BODY);
        break;
      }
      case K_DO:
        cond = child_in(&t, node, fld[FLD_COND]);
        CHILD_REGION(cond, i);
        CHK(vv_push(&brk, (ivec){0}));
        CHK(iv_push(&cont, i));
        CHK(iv_push(&cur, i));
        CHK(is_push(&stack, A_DO_END, i, 0, 0));
        VISIT_FIELD(node, FLD_BODY);
        break;
      case K_SWITCH:
        cond = child_in(&t, node, fld[FLD_COND]);
        CHILD_REGION(cond, i);
        CHK(vv_push(&brk, (ivec){0}));
        CHK(iv_push(&switches, i));
        CHK(iv_push(&switches, 0));
        cur.n = 0; /* statements before the first label are unreachable */
        CHK(is_push(&stack, A_SWITCH_END, 0, 0, 0));
        body = child_in(&t, node, fld[FLD_BODY]);
        if (body >= 0) {
          if (body >= kept) { /* an opaque body: its unseen labels may include a default */
            int32_t b;
            NEW_TS(b, body);
            EDGE(i, b);
            switches.v[switches.n - 1] = 1;
            SET_CUR1(b);
          } else {
            CHK(is_push(&stack, A_VISIT, body, 0, 0));
          }
        }
        break;
      case K_CASE: {
        int32_t value = child_in(&t, node, fld[FLD_VALUE]);
        if (switches.n) {
          EDGE(switches.v[switches.n - 2], i);
          if (value < 0) switches.v[switches.n - 1] = 1;
        }
        CHILD_REGION(value, i);
        SET_CUR1(i);
        PUSH_NAMED_CHILDREN(node, -1);
        break;
      }
      case K_LABELED:
        label = child_in(&t, node, fld[FLD_LABEL]);
        if (label >= 0) {
          CHK(iv_push(&labels, (int32_t)t.start[label]));
          CHK(iv_push(&labels, (int32_t)t.end[label]));
          CHK(iv_push(&labels, i));
        }
        SET_CUR1(i);
        PUSH_NAMED_CHILDREN(node, -1);
        break;
      case K_FOR_RANGE:
        body = child_in(&t, node, fld[FLD_BODY]);
        REGION(t.start[node], body >= 0 ? t.start[body] : t.end[node], i);
        CHK(vv_push(&brk, (ivec){0}));
        CHK(iv_push(&cont, i));
        SET_CUR1(i);
        CHK(is_push(&stack, A_LOOP_END, i, 0, 0));
        if (body >= 0) CHK(is_push(&stack, A_VISIT, body, 0, 0));
        break;
      case K_TRY:
        SET_CUR1(i);
        CHK(is_push(&stack, A_TRY_END, 0, 0, 0));
        for (int32_t c = t.first[node] + t.nchild[node] - 1; c >= t.first[node]; c--)
          if (t.named[c] && (flags[t.kind[c]] & F_CLAUSE)) CHK(is_push(&stack, A_CATCH, i, c, 0));
        CHK(is_push(&stack, A_ACC_START, 0, 0, 0));
        VISIT_FIELD(node, FLD_BODY);
        break;
      case K_FUNCTION: {
        int32_t d = child_in(&t, node, fld[FLD_DECL]);
        for (int k2 = 0; k2 < 64; k2++) { /* pointer / parenthesized declarators around the name */
          if (d < 0 || (flags[t.kind[d]] & F_FDECL)) break;
          d = child_in(&t, d, fld[FLD_DECL]);
        }
        int32_t params = d >= 0 ? child_in(&t, d, fld[FLD_PARAMS]) : -1;
        CHILD_REGION(params, i);
        SAVE_CUR(); /* self-contained: the outer frontier resumes after it */
        CHK(iv_push(&cur, i));
        CHK(is_push(&stack, A_FUNC_END, 0, 0, 0));
        VISIT_FIELD(node, FLD_BODY);
        break;
      }
    }
  }

  /* goto L -> the statement labelled L (the last one, if L is defined twice). */
  if (gotos.n && labels.n) {
    Py_ssize_t nl = labels.n / 3;
    CHK(ht_init(&names, nl));
    for (Py_ssize_t k = 0; k < nl; k++) {
      Py_ssize_t slot = ht_find(&names, src, labels.v[3 * k], labels.v[3 * k + 1], 1);
      names.value[slot] = labels.v[3 * k + 2];
    }
    for (Py_ssize_t k = 0; k < gotos.n; k += 3) {
      Py_ssize_t slot = ht_find(&names, src, gotos.v[k + 1], gotos.v[k + 2], 0);
      if (slot >= 0) EDGE(gotos.v[k], names.value[slot]);
    }
    ht_free(&names);
  }
  /* Edges: a set (sorted, unique). Regions: sorted, for the owner search. */
  Py_ssize_t n_edges = sort_unique_pairs(&edges);
  Py_ssize_t n_regions = regions.n / 3;
  if (n_regions) qsort(regions.v, (size_t)n_regions, 3 * sizeof(int32_t), cmp_triple);

  /* Identifier roles (the rules of flow.py's _PARENT_ROLES), each kept identifier leaf with the
   * CFG node whose region holds it (-1: none), in tree order: (owner, start, end, index). */
  for (int32_t i = 1; i < kept; i++) {
    if (t.kind[i] != identifier_kind || t.nchild[i]) continue;
    int32_t p = t.parent[i];
    uint8_t role = role_of[t.kind[p]];
    int is_def = 0, is_use = 0;
    int is_first = t.first[p] == i;
    if (role == R_NONE) {
      is_use = 1;
    } else if (role == R_SKIP) {
      continue;
    } else {
      if (role == R_ASSIGN) {
        if (!is_first) {
          is_use = 1;
          role = R_NONE;
        } else if (i + 1 < kept && t.parent[i + 1] == p && (flags[t.kind[i + 1]] & F_PLAIN_ASSIGN)) {
          is_def = 1;
          role = R_NONE;
        } else {
          role = R_RW; /* compound operator (or a missing one) */
        }
      }
      if (role == R_RW) is_def = is_use = 1;
      else if (role == R_DEF) is_def = 1;
      else if (role == R_DEF_FIRST) (is_first ? &is_def : &is_use)[0] = 1;
      else if (role == R_DEF_UNLESS_VALUE) {
        if (!is_first && (flags[t.kind[i - 1]] & F_VALUE)) is_use = 1;
        else is_def = 1;
      }
    }
    /* The last region starting at or before the identifier, if it reaches past its start. */
    int32_t owner = -1, sb = BIAS(t.start[i]);
    Py_ssize_t lo = 0, hi = n_regions;
    while (lo < hi) {
      Py_ssize_t mid = (lo + hi) / 2;
      if (regions.v[3 * mid] <= sb) lo = mid + 1;
      else hi = mid;
    }
    if (lo > 0 && sb < regions.v[3 * (lo - 1) + 1]) owner = regions.v[3 * (lo - 1) + 2];
    if (is_def) {
      CHK(iv_push(&defs, owner));
      CHK(iv_push(&defs, i));
    }
    if (is_use) {
      CHK(iv_push(&uses, owner));
      CHK(iv_push(&uses, i));
    }
  }

  if (roles_only) { /* for the tests: [(owner, start, end, index)] of defs and of uses */
    PyObject *lists[2] = {PyList_New(0), PyList_New(0)};
    ivec *src_vecs[2] = {&defs, &uses};
    result = Py_BuildValue("(NN)", lists[0], lists[1]);
    if (!result) goto done;
    for (int w = 0; w < 2; w++)
      for (Py_ssize_t k = 0; k < src_vecs[w]->n; k += 2) {
        int32_t i = src_vecs[w]->v[k + 1];
        PyObject *rec = Py_BuildValue("(iIIi)", src_vecs[w]->v[k], t.start[i], t.end[i], i);
        if (!rec || PyList_Append(lists[w], rec) < 0) {
          Py_XDECREF(rec);
          Py_CLEAR(result);
          goto done;
        }
        Py_DECREF(rec);
      }
    goto done;
  }

  /* CFG edges between kept nodes, as tree indices, sorted. */
  for (Py_ssize_t k = 0; k < n_edges; k++) {
    int32_t ia = ts.v[edges.v[2 * k]], ib = ts.v[edges.v[2 * k + 1]];
    if (ia < kept && ib < kept) {
      CHK(iv_push(&cfg, ia));
      CHK(iv_push(&cfg, ib));
    }
  }
  sort_unique_pairs(&cfg);
  int rd = reaching_definitions(&t, src, ts.n, &edges, n_edges, &defs, &uses, &names, &dfg);
  if (rd == -2) goto done; /* MemoryError set, with its reason */
  CHK(rd);
  result = Py_BuildValue("(y#y#)", cfg.v ? (const char *)cfg.v : "", cfg.n * (Py_ssize_t)sizeof(int32_t),
                         dfg.v ? (const char *)dfg.v : "", dfg.n * (Py_ssize_t)sizeof(int32_t));
  goto done;

done:
  if (oom && !PyErr_Occurred()) PyErr_NoMemory();
  if (oom) Py_CLEAR(result);
  for (int k = 0; k < nviews; k++) PyBuffer_Release(&views[k]);
  iv_free(&cur);
  iv_free(&ts);
  iv_free(&edges);
  iv_free(&regions);
  iv_free(&labels);
  iv_free(&gotos);
  iv_free(&cont);
  iv_free(&switches);
  iv_free(&defs);
  iv_free(&uses);
  iv_free(&cfg);
  iv_free(&dfg);
  ht_free(&names);
  vv_free(&saved);
  vv_free(&brk);
  free(stack.v);
  return result;
}
#undef CHK
#undef EDGE
#undef FROM_CUR
#undef SET_CUR1
#undef REGION
#undef NEW_TS
#undef SAVE_CUR
#undef PUSH_NAMED_CHILDREN
#undef CHILD_REGION
#undef VISIT_FIELD

static PyMethodDef methods[] = {
    {"walk", walk, METH_VARARGS,
     "walk(code, language, buckets) -> (count, has_error, kind, named, field, parent, first, "
     "nchild, start, end, bucket): parse and lay the tree out breadth-first as arrays."},
    {"flow", flow, METH_VARARGS,
     "flow(count, n_kept, kind, named, field, parent, first, nchild, start, end, categories, roles, "
     "flags, fields, identifier_kind) -> (cfg_node_ids, edges, labels, gotos, defs, uses): "
     "streamguard.data.flow's statement CFG and identifier roles over walk()'s arrays."},
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
