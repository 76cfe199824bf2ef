/* The access-log reader's counting loop in C: an optional accelerator for `recorder
 * logscan`. probes/accesslog.py holds the contract and a Python twin (`PyTally`) that this
 * must equal on every input; tests/test_accesslog_compiled.py checks that it does, on
 * generated hostile logs. When this file cannot be built the twin does the same job.
 *
 * Why C. The issue's target is 3x gawk on one core for counting status classes, distinct
 * clients and clients with a 5xx. In Python the floor is one bytes object and one set
 * insert per line for the client; here a line costs a walk over its bytes, one keyed hash
 * of the client and one probe of an open-addressing table that keeps the client's bytes,
 * and nothing is allocated per line.
 *
 * What a line must look like is decided in Python (`_layout` in accesslog.py): a list of
 * steps, the same reading as the reader's strict regular expression. This file walks them.
 *
 * Log lines are written by whoever sends requests, so every read here is bounded by the
 * end of the current line, which is itself bounded by the end of the region the caller
 * gave (checked against the buffer's length). There are no fixed-size buffers: long
 * clients go to a growing arena (sizes checked for overflow). Clients are hashed with
 * Python's own keyed hash (SipHash, per-process random key), so whoever picks client
 * strings cannot pick collisions. The GIL is held throughout; the only Python code that
 * runs during a scan is the time converter, and a scan started from inside it is refused,
 * so the table cannot change under a probe.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

/* Step kinds; the numbers are part of the contract with accesslog.py (`_LIT` ...). */
enum {
    K_LIT = 0,    /* literal text: must be there, byte for byte */
    K_SKIP = 1,   /* a value up to (not including) the stop byte, possibly empty; with
                   * width 1 a backslash takes the byte after it (`\"` is no stop) */
    K_CLIENT = 2, /* the client: a value up to the stop byte, at least one byte */
    K_FIXED = 3,  /* a time of a fixed width (any bytes but the newline) */
    K_MSEC = 4,   /* $msec: digits, a dot, digits */
    K_STATUS = 5, /* three ASCII digits; the first is the status class */
    K_OPTIONAL = 6, /* the steps after it may fail: the line still matches, not as own */
    K_AGENT = 7   /* a look ahead: the line is the recorder's own request when the text
                   * follows here (the user agent starts with it); never fails */
};

typedef struct {
    int kind;
    int capture;
    Py_ssize_t width;   /* K_FIXED: bytes; K_LIT, K_AGENT: length of lit; K_SKIP,
                         * K_CLIENT: 1 when a backslash escapes the byte after it */
    const char *lit;    /* K_LIT: the text (borrowed from the layout tuple the tally holds) */
    unsigned char stop; /* K_SKIP, K_CLIENT: the byte the value stops at */
} Step;

typedef struct {
    const char *client, *time;
    Py_ssize_t client_len, time_len;
    char digit;
    int own; /* the recorder's own request (K_AGENT matched) */
} Fields;

static int
is_digit(unsigned char c)
{
    return c >= '0' && c <= '9';
}

/* The first `stop` in [p, end) that no backslash escapes, or NULL: what the reader's
 * `(?:[^"\\\n]++|\\[^\n])*+` stops at. A stop byte ends the value when the run of
 * backslashes just before it (within the value) is of even length. */
static const char *
find_unescaped(const char *p, const char *end, unsigned char stop)
{
    const char *from = p;
    while (from < end) {
        const char *q = memchr(from, stop, (size_t)(end - from));
        if (q == NULL)
            return NULL;
        const char *b = q;
        while (b > p && b[-1] == '\\')
            b--;
        if (((q - b) & 1) == 0)
            return q;
        from = q + 1;
    }
    return NULL;
}

/* Match one line [p, end) against the layout. The layout is a prefix match: what
 * follows its last step is not looked at. Returns 1 and fills `f` on a match; a step
 * after K_OPTIONAL that fails ends the match there, as a match (not as own). */
static int
match_line(const Step *steps, Py_ssize_t nsteps, const char *p, const char *end, Fields *f)
{
    int optional = 0; /* what a failing step returns */
    int own_before = 0; /* `own` as the required part left it (its K_AGENT, if any) */
    for (Py_ssize_t i = 0; i < nsteps; i++) {
        const Step *s = &steps[i];
        Py_ssize_t left = end - p;
        switch (s->kind) {
        case K_LIT:
            if (left < s->width || memcmp(p, s->lit, (size_t)s->width) != 0)
                goto fail;
            p += s->width;
            break;
        case K_SKIP:
        case K_CLIENT: {
            /* The step after a value always starts with its stop byte (the layout is
             * built so), so a line without that byte cannot match. */
            const char *q = s->width ? find_unescaped(p, end, s->stop)
                            : left > 0 ? memchr(p, s->stop, (size_t)left)
                                       : NULL;
            if (q == NULL)
                goto fail;
            if (s->kind == K_CLIENT) {
                if (q == p)
                    goto fail;
                f->client = p;
                f->client_len = q - p;
            }
            p = q;
            break;
        }
        case K_FIXED:
            if (left < s->width)
                goto fail;
            if (s->capture) {
                f->time = p;
                f->time_len = s->width;
            }
            p += s->width;
            break;
        case K_MSEC: {
            const char *from = p;
            while (p < end && is_digit((unsigned char)*p))
                p++;
            if (p == from || p >= end || *p != '.')
                goto fail;
            p++;
            const char *fraction = p;
            while (p < end && is_digit((unsigned char)*p))
                p++;
            if (p == fraction)
                goto fail;
            if (s->capture) {
                f->time = from;
                f->time_len = p - from;
            }
            break;
        }
        case K_STATUS:
            if (left < 3 || !is_digit((unsigned char)p[0]) || !is_digit((unsigned char)p[1]) ||
                !is_digit((unsigned char)p[2]))
                goto fail;
            if (s->capture)
                f->digit = p[0];
            p += 3;
            break;
        case K_OPTIONAL:
            optional = 1;
            own_before = f->own;
            break;
        case K_AGENT:
            if (left >= s->width && memcmp(p, s->lit, (size_t)s->width) == 0)
                f->own = 1;
            break;
        default:
            return 0;
        }
    }
    return 1;
fail:
    /* A line cut short inside the optional part is read as it was up to it: a look ahead
     * of K_AGENT inside that part counts only when the whole part matched, as the Python
     * pattern's possessive group has it; one in the required part stands. */
    if (optional)
        f->own = own_before;
    return optional;
}

/* The layout tuple to Steps. Literals stay owned by the tuple, which the tally keeps. */
static Step *
load_layout(PyObject *layout, Py_ssize_t *count)
{
    if (!PyTuple_Check(layout)) {
        PyErr_SetString(PyExc_TypeError, "layout must be a tuple");
        return NULL;
    }
    Py_ssize_t n = PyTuple_GET_SIZE(layout);
    Step *steps = PyMem_Calloc(n > 0 ? (size_t)n : 1, sizeof(Step));
    if (steps == NULL) {
        PyErr_NoMemory();
        return NULL;
    }
    int clients = 0, times = 0, statuses = 0, optionals = 0, agents = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = PyTuple_GET_ITEM(layout, i);
        int kind, capture;
        Py_ssize_t width, text_len;
        const char *text;
        if (!PyTuple_Check(item) ||
            !PyArg_ParseTuple(item, "iiny#", &kind, &capture, &width, &text, &text_len)) {
            if (!PyErr_Occurred())
                PyErr_SetString(PyExc_TypeError, "a layout step must be a tuple");
            goto fail;
        }
        Step *s = &steps[i];
        s->kind = kind;
        s->capture = capture != 0;
        switch (kind) {
        case K_LIT:
            if (text_len < 1 || memchr(text, '\n', (size_t)text_len) != NULL)
                goto bad;
            s->lit = text;
            s->width = text_len;
            break;
        case K_SKIP:
        case K_CLIENT:
            if (text_len != 1 || text[0] == '\n' || (width != 0 && width != 1))
                goto bad;
            s->stop = (unsigned char)text[0];
            s->width = width;
            if (kind == K_CLIENT) {
                s->capture = 1;
                clients++;
            }
            break;
        case K_FIXED:
            if (width < 1)
                goto bad;
            s->width = width;
            times += s->capture;
            break;
        case K_MSEC:
            times += s->capture;
            break;
        case K_STATUS:
            statuses += s->capture;
            break;
        case K_OPTIONAL:
            optionals++;
            break;
        case K_AGENT:
            if (text_len < 1 || memchr(text, '\n', (size_t)text_len) != NULL)
                goto bad;
            s->lit = text;
            s->width = text_len;
            agents++;
            break;
        default:
            goto bad;
        }
    }
    if (clients != 1 || times != 1 || statuses != 1) {
        PyErr_SetString(PyExc_ValueError, "layout must capture one client, time and status");
        goto fail;
    }
    if (optionals > 1 || agents > 1) {
        PyErr_SetString(PyExc_ValueError, "layout has more than one optional part or agent");
        goto fail;
    }
    *count = n;
    return steps;
bad:
    PyErr_SetString(PyExc_ValueError, "bad layout step");
fail:
    PyMem_Free(steps);
    return NULL;
}

/* ---- the distinct clients -------------------------------------------------------------
 *
 * Open addressing with linear probing, at most 3/4 full. A client of up to INLINE bytes
 * (every IPv4 address) lives in its slot, so a probe that finds it reads one cache line;
 * a longer one lives in the arena, addressed by offset so the arena can move when it
 * grows. A client has at least one byte, so len == 0 marks an empty slot.
 */
#define INLINE 16

typedef struct {
    Py_hash_t hash;
    uint32_t len;
    uint32_t failed; /* got at least one 5xx */
    union {
        char text[INLINE];
        size_t offset;
    } key;
} Slot;

typedef struct {
    PyObject_HEAD
    PyObject *layout;  /* the step tuple (owns the literals `steps` points into) */
    PyObject *convert; /* time bytes -> epoch seconds (int) or None */
    int time_local;    /* times are $time_local: read the canonical ones here */
    Step *steps;
    Py_ssize_t nsteps;
    int has_since, has_until;
    long long since, until; /* [since, until) */
    Py_ssize_t lines, matched, kept, untimed, out_of_range;
    Py_ssize_t self_requests; /* the recorder's own, in range: not in kept or the clients */
    Py_ssize_t classes[10]; /* kept lines by the first digit of their status */
    int has_5xx;
    long long first_5xx, last_5xx;
    Slot *slots;
    size_t capacity; /* a power of two */
    Py_ssize_t used, failed;
    char *arena;
    size_t arena_len, arena_cap;
    int busy;
} Tally;

static Py_hash_t
hash_bytes(const char *text, Py_ssize_t len)
{
#if PY_VERSION_HEX >= 0x030E0000
    return Py_HashBuffer(text, len);
#else
    return _Py_HashBytes(text, len);
#endif
}

static const char *
slot_text(const Tally *t, const Slot *s)
{
    return s->len <= INLINE ? s->key.text : t->arena + s->key.offset;
}

static int
grow_table(Tally *t)
{
    if (t->capacity > ((size_t)PY_SSIZE_T_MAX / sizeof(Slot)) / 2) {
        PyErr_NoMemory();
        return -1;
    }
    size_t capacity = t->capacity * 2;
    Slot *slots = PyMem_Calloc(capacity, sizeof(Slot));
    if (slots == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    size_t mask = capacity - 1;
    for (size_t i = 0; i < t->capacity; i++) {
        if (t->slots[i].len == 0)
            continue;
        size_t j = (size_t)t->slots[i].hash & mask;
        while (slots[j].len != 0)
            j = (j + 1) & mask;
        slots[j] = t->slots[i];
    }
    PyMem_Free(t->slots);
    t->slots = slots;
    t->capacity = capacity;
    return 0;
}

/* Copy a long client into the arena; its offset, or (size_t)-1 with MemoryError. */
static size_t
arena_add(Tally *t, const char *text, size_t len)
{
    if (len > (size_t)PY_SSIZE_T_MAX - t->arena_len) {
        PyErr_NoMemory();
        return (size_t)-1;
    }
    if (t->arena_len + len > t->arena_cap) {
        size_t cap = t->arena_cap ? t->arena_cap : 4096;
        while (cap < t->arena_len + len) {
            if (cap > (size_t)PY_SSIZE_T_MAX / 2) {
                PyErr_NoMemory();
                return (size_t)-1;
            }
            cap *= 2;
        }
        char *bigger = PyMem_Realloc(t->arena, cap);
        if (bigger == NULL) {
            PyErr_NoMemory();
            return (size_t)-1;
        }
        t->arena = bigger;
        t->arena_cap = cap;
    }
    size_t offset = t->arena_len;
    memcpy(t->arena + offset, text, len);
    t->arena_len += len;
    return offset;
}

/* The slot of this client, added when new; NULL with an exception set. */
static Slot *
find_or_add(Tally *t, const char *text, Py_ssize_t len)
{
    if ((size_t)len > UINT32_MAX) {
        PyErr_SetString(PyExc_OverflowError, "client too long");
        return NULL;
    }
    Py_hash_t hash = hash_bytes(text, len);
    size_t mask = t->capacity - 1;
    size_t j = (size_t)hash & mask;
    for (; t->slots[j].len != 0; j = (j + 1) & mask) {
        Slot *s = &t->slots[j];
        if (s->hash == hash && s->len == (uint32_t)len &&
            memcmp(slot_text(t, s), text, (size_t)len) == 0)
            return s;
    }
    if ((size_t)(t->used + 1) * 4 > t->capacity * 3) {
        if (grow_table(t) < 0)
            return NULL;
        mask = t->capacity - 1;
        j = (size_t)hash & mask;
        while (t->slots[j].len != 0)
            j = (j + 1) & mask;
    }
    Slot *s = &t->slots[j];
    if (len <= INLINE) {
        memcpy(s->key.text, text, (size_t)len);
    }
    else {
        size_t offset = arena_add(t, text, (size_t)len);
        if (offset == (size_t)-1)
            return NULL;
        s->key.offset = offset;
    }
    s->hash = hash;
    s->len = (uint32_t)len;
    s->failed = 0;
    t->used++;
    return s;
}

/* ---- the type -------------------------------------------------------------------------- */

static int
read_bound(PyObject *value, int *has, long long *bound, const char *name)
{
    if (value == Py_None) {
        *has = 0;
        return 0;
    }
    *bound = PyLong_AsLongLong(value);
    if (*bound == -1 && PyErr_Occurred()) {
        PyErr_Format(PyExc_TypeError, "%s must be an int (epoch seconds) or None", name);
        return -1;
    }
    *has = 1;
    return 0;
}

static int
Tally_init(Tally *self, PyObject *args, PyObject *kwds)
{
    static char *names[] = {"layout", "convert", "since", "until", "time_local", NULL};
    PyObject *layout, *convert, *since = Py_None, *until = Py_None;
    int time_local = 0, has_since = 0, has_until = 0;
    long long since_value = 0, until_value = 0;
    Py_ssize_t nsteps = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OO|OOp:Tally", names, &layout, &convert,
                                     &since, &until, &time_local))
        return -1;
    if (!PyCallable_Check(convert)) {
        PyErr_SetString(PyExc_TypeError, "convert must be callable");
        return -1;
    }
    /* Everything is read into locals first: reading the arguments can run Python code
     * (__index__), which could call __init__ on this same object in between. */
    if (read_bound(since, &has_since, &since_value, "since") < 0 ||
        read_bound(until, &has_until, &until_value, "until") < 0)
        return -1;
    Step *steps = load_layout(layout, &nsteps);
    if (steps == NULL)
        return -1;
    Slot *slots = PyMem_Calloc(1024, sizeof(Slot));
    if (slots == NULL) {
        PyMem_Free(steps);
        PyErr_NoMemory();
        return -1;
    }
    if (self->steps != NULL) {
        PyMem_Free(steps);
        PyMem_Free(slots);
        PyErr_SetString(PyExc_RuntimeError, "a Tally is initialized once");
        return -1;
    }
    self->has_since = has_since;
    self->since = since_value;
    self->has_until = has_until;
    self->until = until_value;
    self->nsteps = nsteps;
    self->steps = steps;
    self->slots = slots;
    self->capacity = 1024;
    self->time_local = time_local;
    Py_INCREF(layout);
    self->layout = layout;
    Py_INCREF(convert);
    self->convert = convert;
    return 0;
}

static int
Tally_traverse(Tally *self, visitproc visit, void *arg)
{
    Py_VISIT(self->layout);
    Py_VISIT(self->convert);
    return 0;
}

static int
Tally_clear(Tally *self)
{
    Py_CLEAR(self->convert);
    /* `steps` points into `layout`: neither is used once the tally is being torn down
     * (scan refuses a tally without a converter). */
    Py_CLEAR(self->layout);
    return 0;
}

static void
Tally_dealloc(Tally *self)
{
    PyObject_GC_UnTrack(self);
    Tally_clear(self);
    PyMem_Free(self->steps);
    PyMem_Free(self->slots);
    PyMem_Free(self->arena);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* ---- $time_local without Python ------------------------------------------------------
 *
 * A day of log holds 86,400 distinct seconds; calling the Python converter for each cost
 * as much as the whole scan. A time in the canonical shape (`23/Nov/2026:14:30:05 +0300`:
 * digits where digits go, a month name, the separators) is converted here with the same
 * arithmetic as accesslog._time_local (calendar.timegm: the first of the month, then days,
 * hours, minutes and seconds added as they are, even past their range, minus the offset).
 * Anything else goes to the Python converter, whose answer is the reference.
 */
static const char MONTHS[] = "JanFebMarAprMayJunJulAugSepOctNovDec";

static int
digits_at(const char *text, int from, int count, long long *value)
{
    long long v = 0;
    for (int i = from; i < from + count; i++) {
        if (!is_digit((unsigned char)text[i]))
            return 0;
        v = v * 10 + (text[i] - '0');
    }
    *value = v;
    return 1;
}

/* Days from 1970-01-01 to the first of (year, month) in the proleptic Gregorian
 * calendar, as datetime.date(year, month, 1).toordinal() - 719163 (year >= 1). */
static long long
days_to_month(long long year, long long month)
{
    static const int before[12] = {0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334};
    long long y = year - 1;
    long long days = y * 365 + y / 4 - y / 100 + y / 400 + before[month - 1];
    if (month > 2 && (year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)))
        days++;
    return days - 719162; /* date(1970, 1, 1).toordinal() - 1 */
}

/* 1 and the epoch second for a canonical 26-byte time_local, else 0. */
static int
fast_time_local(const char *t, long long *epoch)
{
    long long day, year, hour, minute, second, off_h, off_m;
    if (t[2] != '/' || t[6] != '/' || t[11] != ':' || t[14] != ':' || t[17] != ':' ||
        t[20] != ' ' || (t[21] != '+' && t[21] != '-'))
        return 0;
    if (!digits_at(t, 0, 2, &day) || !digits_at(t, 7, 4, &year) || !digits_at(t, 12, 2, &hour) ||
        !digits_at(t, 15, 2, &minute) || !digits_at(t, 18, 2, &second) ||
        !digits_at(t, 22, 2, &off_h) || !digits_at(t, 24, 2, &off_m))
        return 0;
    if (year < 1)
        return 0;
    long long month = 0;
    for (int m = 0; m < 12; m++) {
        if (memcmp(t + 3, MONTHS + 3 * m, 3) == 0) {
            month = m + 1;
            break;
        }
    }
    if (month == 0)
        return 0;
    long long days = days_to_month(year, month) + day - 1;
    long long stamp = ((days * 24 + hour) * 60 + minute) * 60 + second;
    long long offset = off_h * 3600 + off_m * 60;
    *epoch = t[21] == '+' ? stamp - offset : stamp + offset;
    return 1;
}

/* The epoch second of a time, through the Python converter: 0 and *ok = 1 with the
 * value, 0 and *ok = 0 for a time that does not parse, -1 with an exception set. */
static int
convert_time(Tally *self, const char *text, Py_ssize_t len, int *ok, long long *epoch)
{
    if (self->time_local && len == 26 && fast_time_local(text, epoch)) {
        *ok = 1;
        return 0;
    }
    PyObject *raw = PyBytes_FromStringAndSize(text, len);
    if (raw == NULL)
        return -1;
    PyObject *value = PyObject_CallOneArg(self->convert, raw);
    Py_DECREF(raw);
    if (value == NULL)
        return -1;
    if (value == Py_None) {
        *ok = 0;
        Py_DECREF(value);
        return 0;
    }
    int overflow = 0;
    long long v = PyLong_AsLongLongAndOverflow(value, &overflow);
    Py_DECREF(value);
    if (v == -1 && PyErr_Occurred())
        return -1;
    if (overflow) {
        PyErr_SetString(PyExc_OverflowError, "converted time out of range");
        return -1;
    }
    *ok = 1;
    *epoch = v;
    return 0;
}

PyDoc_STRVAR(scan_doc,
"scan(buf, start, end, /)\n--\n\n"
"Count the lines of buf[start:end]: every newline in it starts a line (the region\n"
"is a newline, then lines separated by newlines, as parse_chunk reads it).");

static PyObject *
Tally_scan(Tally *self, PyObject *args)
{
    Py_buffer view;
    Py_ssize_t start, end;
    if (!PyArg_ParseTuple(args, "y*nn:scan", &view, &start, &end))
        return NULL;
    if (self->steps == NULL || self->convert == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "Tally not initialized");
        PyBuffer_Release(&view);
        return NULL;
    }
    if (self->busy) {
        PyErr_SetString(PyExc_RuntimeError, "Tally.scan called from inside its converter");
        PyBuffer_Release(&view);
        return NULL;
    }
    if (start < 0 || end < start || end > view.len) {
        PyErr_SetString(PyExc_ValueError, "region outside the buffer");
        PyBuffer_Release(&view);
        return NULL;
    }
    self->busy = 1;
    PyObject *result = NULL;
    const char *base = (const char *)view.buf;
    const char *limit = base + end;
    /* The previous well-formed line's time (in the buffer) and what it converted to: a
     * second's lines share their time, so the converter runs once per run of them. */
    const char *last_time = NULL;
    Py_ssize_t last_len = 0;
    int last_ok = 0;
    long long last_epoch = 0;
    const int ranged = self->has_since || self->has_until;
    const char *nl = end > start ? memchr(base + start, '\n', (size_t)(end - start)) : NULL;
    while (nl != NULL) {
        const char *line = nl + 1;
        const char *next = line < limit ? memchr(line, '\n', (size_t)(limit - line)) : NULL;
        const char *line_end = next != NULL ? next : limit;
        Fields f = {NULL, NULL, 0, 0, 0, 0};
        nl = next;
        self->lines++;
        if (!match_line(self->steps, self->nsteps, line, line_end, &f))
            continue;
        self->matched++;
        if (last_time == NULL || f.time_len != last_len ||
            memcmp(f.time, last_time, (size_t)f.time_len) != 0) {
            if (convert_time(self, f.time, f.time_len, &last_ok, &last_epoch) < 0)
                goto done;
            last_time = f.time;
            last_len = f.time_len;
        }
        if (!last_ok)
            self->untimed++;
        if (ranged && (!last_ok || (self->has_since && last_epoch < self->since) ||
                       (self->has_until && last_epoch >= self->until))) {
            self->out_of_range++;
            continue;
        }
        if (f.own) {
            self->self_requests++;
            continue;
        }
        self->kept++;
        self->classes[f.digit - '0']++;
        Slot *s = find_or_add(self, f.client, f.client_len);
        if (s == NULL)
            goto done;
        if (f.digit == '5') {
            if (!s->failed) {
                s->failed = 1;
                self->failed++;
            }
            if (last_ok) {
                if (!self->has_5xx || last_epoch < self->first_5xx)
                    self->first_5xx = last_epoch;
                if (!self->has_5xx || last_epoch > self->last_5xx)
                    self->last_5xx = last_epoch;
                self->has_5xx = 1;
            }
        }
    }
    result = Py_NewRef(Py_None);
done:
    self->busy = 0;
    PyBuffer_Release(&view);
    return result;
}

static int
set_item(PyObject *dict, const char *key, PyObject *value)
{
    if (value == NULL)
        return -1;
    int err = PyDict_SetItemString(dict, key, value);
    Py_DECREF(value);
    return err;
}

static PyObject *
epoch_or_none(int has, long long value)
{
    return has ? PyLong_FromLongLong(value) : Py_NewRef(Py_None);
}

PyDoc_STRVAR(totals_doc,
"totals(/)\n--\n\n"
"The counts so far, as a dict (see Totals in probes/accesslog.py).");

static PyObject *
Tally_totals(Tally *self, PyObject *Py_UNUSED(ignored))
{
    PyObject *dict = PyDict_New();
    if (dict == NULL)
        return NULL;
    PyObject *classes = PyTuple_New(10);
    if (classes == NULL)
        goto fail;
    for (Py_ssize_t i = 0; i < 10; i++) {
        PyObject *n = PyLong_FromSsize_t(self->classes[i]);
        if (n == NULL) {
            Py_DECREF(classes);
            goto fail;
        }
        PyTuple_SET_ITEM(classes, i, n);
    }
    /* set_item takes its value's reference whatever happens: `classes` goes in first, so
     * no earlier failure can leave it unreleased. */
    if (set_item(dict, "digits", classes) < 0)
        goto fail;
    if (set_item(dict, "lines", PyLong_FromSsize_t(self->lines)) < 0 ||
        set_item(dict, "matched", PyLong_FromSsize_t(self->matched)) < 0 ||
        set_item(dict, "kept", PyLong_FromSsize_t(self->kept)) < 0 ||
        set_item(dict, "untimed", PyLong_FromSsize_t(self->untimed)) < 0 ||
        set_item(dict, "out_of_range", PyLong_FromSsize_t(self->out_of_range)) < 0 ||
        set_item(dict, "self_requests", PyLong_FromSsize_t(self->self_requests)) < 0 ||
        set_item(dict, "clients", PyLong_FromSsize_t(self->used)) < 0 ||
        set_item(dict, "clients_with_5xx", PyLong_FromSsize_t(self->failed)) < 0 ||
        set_item(dict, "first_5xx", epoch_or_none(self->has_5xx, self->first_5xx)) < 0 ||
        set_item(dict, "last_5xx", epoch_or_none(self->has_5xx, self->last_5xx)) < 0)
        goto fail;
    return dict;
fail:
    Py_DECREF(dict);
    return NULL;
}

static PyMethodDef Tally_methods[] = {
    {"scan", (PyCFunction)Tally_scan, METH_VARARGS, scan_doc},
    {"totals", (PyCFunction)Tally_totals, METH_NOARGS, totals_doc},
    {NULL, NULL, 0, NULL},
};

PyDoc_STRVAR(Tally_doc,
"Tally(layout, convert, since=None, until=None, time_local=False)\n--\n\n"
"Running counts of access-log lines: status classes, distinct clients, clients with a\n"
"5xx, first and last 5xx. The compiled twin of probes.accesslog.PyTally.");

static PyTypeObject TallyType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "probes._accesslog.Tally",
    .tp_doc = Tally_doc,
    .tp_basicsize = sizeof(Tally),
    .tp_itemsize = 0,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Tally_init,
    .tp_dealloc = (destructor)Tally_dealloc,
    .tp_traverse = (traverseproc)Tally_traverse,
    .tp_clear = (inquiry)Tally_clear,
    .tp_methods = Tally_methods,
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_accesslog", "The access-log reader's counting loop, in C.", -1,
    NULL, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC
PyInit__accesslog(void)
{
    if (PyType_Ready(&TallyType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    Py_INCREF(&TallyType);
    if (PyModule_AddObject(m, "Tally", (PyObject *)&TallyType) < 0) {
        Py_DECREF(&TallyType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
