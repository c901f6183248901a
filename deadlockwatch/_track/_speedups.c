/*
 * deadlockwatch._track._speedups: the uncontended path of the tracked Lock and RLock
 * in C (and of Semaphore and BoundedSemaphore: see SemCore below).
 *
 * Optional.  deadlockwatch/_track/primitives.py holds the whole behaviour in Python
 * and uses these two base classes only if this module imports (it is not
 * built for free-threaded interpreters, where reading the PyObject* fields
 * below from the watcher thread would race with their writers).
 *
 * What is here is exactly the Python hot path of TrackedLock / TrackedRLock,
 * written out in C: one non-blocking attempt on the raw lock, the calling
 * thread's record from its thread-local, an order check when something is
 * already held, an append to the record's held list, and a few field stores.
 * Anything else (keyword arguments, timeouts, a blocking wait, a Lock
 * released by another thread, errors) is handed, unchanged, to the Python
 * method of the same name with a "_py" prefix, so there is one behaviour and
 * it is the Python one; and those methods find their caller's frame where
 * they expect it.
 *
 * The acquisition site is kept as (code object, instruction offset), as the
 * Python path keeps it: the line is looked up only when a report needs it.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <frameobject.h>
#include <structmember.h>

#ifdef Py_GIL_DISABLED
#error "deadlockwatch._track._speedups is for GIL builds; the pure-Python path serves free-threaded ones"
#endif

/* 3.11 to 3.13: the interpreter's own frames, read without making frame
 * objects (see user_site).  Other versions use the public frame API. */
#if PY_VERSION_HEX >= 0x030B0000 && PY_VERSION_HEX < 0x030E0000
#define DW_RAW_FRAMES 1
#ifndef Py_BUILD_CORE
#define Py_BUILD_CORE 1
#define DW_UNDEF_BUILD_CORE 1
#endif
#include <internal/pycore_frame.h>
#ifdef DW_UNDEF_BUILD_CORE
#undef Py_BUILD_CORE
#undef DW_UNDEF_BUILD_CORE
#endif
#endif

#ifdef DW_RAW_FRAMES
/* The running thread's innermost interpreter frame (3.11 to 3.13). */
static inline _PyInterpreterFrame *
current_iframe(void)
{
    PyThreadState *ts = PyThreadState_Get();
#if PY_VERSION_HEX >= 0x030D0000
    return ts->current_frame;
#else
    return ts->cframe->current_frame;
#endif
}

/* An interpreter frame's code object (borrowed). */
static inline PyCodeObject *
iframe_code(_PyInterpreterFrame *f)
{
#if PY_VERSION_HEX >= 0x030D0000
    return _PyFrame_GetCode(f);
#else
    return f->f_code;
#endif
}
#endif

/* Set once by configure(). */
static PyObject *g_tls;             /* _state.tls (a _thread._local) */
static PyObject *g_new_record;      /* _state.new_record() */
static PyObject *g_internal_files;  /* _state.INTERNAL_FILES (a set of paths) */
static PyObject *g_remove_held;     /* _state.remove_held(rec, resource) */
static PyObject *g_module_dict;     /* _primitives' globals: "learn_order" is read there */
static PyInterpreterState *g_interp; /* the interpreter these belong to */
static PyObject *g_lock_factory;    /* _thread.allocate_lock */
static PyObject *g_rlock_factory;   /* _thread.RLock */
static PyObject *g_site_of;         /* _state.site_at((code, lasti)) -> Site */

static PyObject *s_rec, *s_held, *s_learn_order, *s_dw_after, *s_acquire, *s_no_orders, *s_is_owned;
static PyObject *s_on_probe;
static PyObject *s_py_acquire, *s_py_release, *s_py_enter, *s_release, *s_key;
static PyObject *s_release_save, *s_py_acquire_restore;
static PyObject *false_args; /* (False,) */

typedef struct {
    PyObject_HEAD
    PyObject *raw;      /* the untracked lock */
    PyObject *acq;      /* raw.acquire */
    PyObject *rel;      /* raw.release, looked up at first use */
    PyObject *owner;    /* ThreadRecord or NULL */
    PyObject *site_code;  /* acquisition site: code object or NULL */
    int site_lasti;
    void *taker;        /* Lock: the address of the frame of the call that took
                         * it, or NULL; never dereferenced, no reference kept */
    void *guard;        /* the address of the newest lock the taker held when
                         * it took it, or NULL; never dereferenced (see
                         * primitives._released_later) */
    void *prev_taker;   /* Lock: taker, site_code and site_lasti of the take */
    PyObject *prev_code; /* before the current one (kept after a release: the */
    int prev_lasti;     /* signals module reads them, `_dw_prev`) */
    PyObject *dw_after; /* ids of primitives known to be taken after this one */
    PyObject *created;  /* creation Site, or NULL while only created_code is known */
    PyObject *created_code; /* creation site as (code, offset), made a Site when read */
    int created_lasti;
    Py_ssize_t count;   /* RLock: recursion level */
    char ctx;           /* Lock: taken by "with" */
    char handoff;       /* Lock: released by a thread other than its acquirer */
    char site_user;     /* site_code is known to be a user frame's (not internal) */
    char signalled;     /* Lock: its holder probed it (Condition.notify), this take */
    char prev_signalled; /* ... in the take before */
    char watched;       /* signals.py wants every probe of it (a signal with waiters) */
    char direct;        /* raw is of the checked raw type and acq its own acquire:
                         * a non-blocking take goes to its OS lock directly */
    char lazy_acq;      /* acq is raw.acquire, not looked up yet (see acq_of) */
    PyObject *weakreflist;
} Core;

/* ---- the raw locks, taken without their argument parsing -----------------
 *
 * raw.acquire(False) costs more than all the tracking around it: on 3.10 to
 * 3.12 the raw lock's acquire parses its arguments with
 * PyArg_ParseTupleAndKeywords (about 300 instructions of 540, for a
 * non-blocking try that takes 60).  The uncontended take below does what
 * the raw acquire does for blocking=False, on the same fields, and the raw
 * release releases as always.  The layouts are _thread's own (the same from
 * 3.10 to 3.13); configure() checks them on live locks (size, and the
 * fields as the raw methods leave them) and turns this off if they differ.
 */
typedef struct {
    PyObject_HEAD
    PyThread_type_lock lock_lock;
    PyObject *in_weakreflist;
    char locked;
} RawLockLayout;

typedef struct {
    PyObject_HEAD
    PyThread_type_lock rlock_lock;
    unsigned long rlock_owner;
    unsigned long rlock_count;
    PyObject *in_weakreflist;
} RawRLockLayout;

/* The raw types whose layout configure() checked, or NULL (call the raw
 * methods, as before). */
static PyTypeObject *g_direct_lock_type;
static PyTypeObject *g_direct_rlock_type;

/* ---- helpers ------------------------------------------------------------ */

/* The calling thread's record and its held list, both borrowed (kept alive
 * by the thread's state dict); rec is NULL with no error set if the thread
 * has no record and create is 0.
 *
 * _state keeps the record in a threading.local (tls.rec); this keeps the
 * (record, held list) pair in the thread state's own dict as well, in a
 * Slot, where it is one dict lookup away.  Both live exactly as long as the
 * thread: a record is made once per thread and its held list is never
 * replaced. */
typedef struct {
    PyObject_HEAD
    PyObject *rec;
    PyObject *held;
} Slot;

static PyTypeObject *g_slot_type;

/* The OS thread's last answer, valid while it runs the same thread state
 * (same address and unique id), that state's dict is the one the slot was
 * stored in (a thread state being cleared has none), and the slot lives: a
 * slot forgets itself here when it goes.  That last rule is what keeps the
 * answer from outliving the pair.  At interpreter shutdown the main thread's
 * dict is cleared with its slot while Python code can still run after it
 * (module globals already gone, so _state._thread_gone cannot call
 * forget()); a new dict for the same thread state can then be made at the
 * old one's address (dicts are reused from a free list), and without the
 * slot's own word the address checks above would take it for the old one
 * and hand out a freed record. */
static _Thread_local struct {
    PyThreadState *ts;
    uint64_t id;
    PyObject *dict;
    PyObject *slot;
    PyObject *rec;
    PyObject *held;
} last;

static void
remember(PyThreadState *ts, PyObject *dict, PyObject *slot)
{
    last.ts = ts;
    last.id = ts->id;
    last.dict = dict;
    last.slot = slot;
    last.rec = ((Slot *)slot)->rec;
    last.held = ((Slot *)slot)->held;
}

static void
slot_dealloc(PyObject *op)
{
    Slot *self = (Slot *)op;
    PyTypeObject *tp = Py_TYPE(op);
    /* Before the record can go (its teardown may take a lock again). */
    if (last.slot == op)
        memset(&last, 0, sizeof last);
    Py_CLEAR(self->rec);
    Py_CLEAR(self->held);
    tp->tp_free(op);
    Py_DECREF(tp);
}

static PyType_Slot slot_slots[] = {
    {Py_tp_doc, "A thread's (record, held list), kept in its thread state's dict."},
    {Py_tp_dealloc, slot_dealloc},
    {0, NULL},
};

static PyType_Spec slot_spec = {
    .name = "deadlockwatch._track._speedups.Slot",
    .basicsize = sizeof(Slot),
    .flags = Py_TPFLAGS_DEFAULT,
    .slots = slot_slots,
};

/* What the Python path raises for a field __init__ never set. */
static void
no_field(Core *self, const char *name)
{
    PyErr_Format(PyExc_AttributeError, "'%.100s' object has no attribute '%s'",
                 Py_TYPE(self)->tp_name, name);
}

static int
not_configured(void)
{
    PyErr_SetString(PyExc_RuntimeError, "deadlockwatch._track._speedups is not configured");
    return -1;
}

static int
lookup_rec(int create, PyObject **rec_out, PyObject **held_out)
{
    if (g_tls == NULL)
        return not_configured();
    PyThreadState *ts = PyThreadState_Get();
    if (last.ts == ts && ts->dict != NULL && last.dict == ts->dict && last.id == ts->id) {
        *rec_out = last.rec;
        *held_out = last.held;
        return 0;
    }
    *rec_out = *held_out = NULL;
    PyObject *tdict = PyThreadState_GetDict(); /* borrowed; NULL only at shutdown */
    if (tdict != NULL) {
        PyObject *slot = PyDict_GetItemWithError(tdict, s_key);
        if (slot != NULL && Py_TYPE(slot) == g_slot_type) {
            *rec_out = ((Slot *)slot)->rec;
            *held_out = ((Slot *)slot)->held;
            remember(ts, tdict, slot);
            return 0;
        }
        if (slot == NULL && PyErr_Occurred())
            return -1;
    }
    PyObject *rec = PyObject_GetAttr(g_tls, s_rec);
    if (rec == NULL) {
        if (!PyErr_ExceptionMatches(PyExc_AttributeError))
            return -1;
        PyErr_Clear();
        if (!create)
            return 0;
        rec = PyObject_CallNoArgs(g_new_record);
        if (rec == NULL)
            return -1;
    }
    PyObject *held = PyObject_GetAttr(rec, s_held);
    if (held == NULL || !PyList_Check(held)) {
        if (held != NULL)
            PyErr_SetString(PyExc_TypeError, "deadlockwatch: a thread record's held is not a list");
        Py_XDECREF(held);
        Py_DECREF(rec);
        return -1;
    }
    Slot *slot = PyObject_New(Slot, g_slot_type);
    if (slot == NULL) {
        Py_DECREF(held);
        Py_DECREF(rec);
        return -1;
    }
    slot->rec = rec;   /* both references move into the slot */
    slot->held = held;
    if (tdict == NULL || PyDict_SetItem(tdict, s_key, (PyObject *)slot) < 0) {
        /* Without the thread state dict, the record stays alive through tls. */
        Py_DECREF(slot);
        if (tdict == NULL) {
            PyErr_SetString(PyExc_RuntimeError, "deadlockwatch: no thread state dict");
        }
        return -1;
    }
    *rec_out = rec;
    *held_out = held;
    remember(ts, tdict, (PyObject *)slot);
    Py_DECREF(slot); /* the thread's dict keeps it, and it both */
    return 0;
}

#if PY_VERSION_HEX >= 0x030D0000
#define dw_finalizing() Py_IsFinalizing()
#else
#define dw_finalizing() _Py_IsFinalizing()
#endif

/* lookup_rec, and at interpreter shutdown no record rather than an error
 * when none can be made: once deadlockwatch's own modules are torn down
 * (their globals are None) new_record() fails, and a thread without a record
 * (the main thread, whose state dict went with its record) takes its locks
 * untracked, as the raw locks would be, instead of failing where the
 * program's own locks would not (a destructor run at exit taking a lock).
 * Callers passing create=1 check rec for NULL. */
static int
current_rec(int create, PyObject **rec_out, PyObject **held_out)
{
    int rc = lookup_rec(create, rec_out, held_out);
    if (rc < 0 && create && dw_finalizing()) {
        PyErr_Clear();
        *rec_out = *held_out = NULL;
        return 0;
    }
    return rc;
}

/* ---- method calls on objects without an instance dict (issue 17) --------
 *
 * PyObject_VectorcallMethod(name, [obj, ...]) looks name up in obj's type at
 * every call: on 3.13 that lookup reaches the interpreter through the thread
 * state's TLS, and the Condition shortcuts and the wait make a dozen such
 * calls a round trip (a tracked lock's __enter__, release, acquire; the
 * waiters deque's append).  For an object whose type has no instance dict
 * and the generic __getattribute__, where the lookup finds a method
 * descriptor, the call is that descriptor called with obj first, exactly
 * what PyObject_VectorcallMethod does then; that answer holds while the
 * type's version tag is the one it was found under (any change to the type
 * or a base gives it another: a method replaced, a subclass is another type).
 * Anything else: PyObject_VectorcallMethod itself.  Two entries a name (a
 * Lock's and an RLock's).  Plain globals, as everything here: this module is
 * for GIL builds only (see the #error above); free-threaded ones run the
 * Python path. */
#if PY_VERSION_HEX >= 0x030C0000
#define DW_TAG_OK(tp, tag) ((tag) != 0 && (tp)->tp_version_tag == (tag))
#else
#define DW_TAG_OK(tp, tag) \
    ((tag) != 0 && (tp)->tp_version_tag == (tag) && ((tp)->tp_flags & Py_TPFLAGS_VALID_VERSION_TAG))
#endif

#ifdef Py_TPFLAGS_MANAGED_DICT
#define DW_NO_DICT(tp) ((tp)->tp_dictoffset == 0 && !((tp)->tp_flags & Py_TPFLAGS_MANAGED_DICT))
#else
#define DW_NO_DICT(tp) ((tp)->tp_dictoffset == 0)
#endif

typedef struct {
    PyTypeObject *tp;   /* not a reference: tags are never reused */
    unsigned int tag;
    PyObject *func;     /* the method descriptor (a reference) */
} MethodEntry;

enum { M_ENTER, M_EXIT, M_RELEASE, M_ACQUIRE, M_APPEND, M_REMOVE, M_COUNT };
static MethodEntry method_cache[M_COUNT][2];

/* A type's version tag, assigned if it has none; 0 if it cannot have one. */
static unsigned int
assign_tag(PyTypeObject *tp, PyObject *name)
{
#if PY_VERSION_HEX >= 0x030C0000
    (void)name;
    if (tp->tp_version_tag == 0 && !PyUnstable_Type_AssignVersionTag(tp))
        return 0;
    return tp->tp_version_tag;
#else
    if (!(tp->tp_flags & Py_TPFLAGS_VALID_VERSION_TAG)) {
        (void)_PyType_Lookup(tp, name); /* assigns one where it can */
        if (!(tp->tp_flags & Py_TPFLAGS_VALID_VERSION_TAG))
            return 0;
    }
    return tp->tp_version_tag;
#endif
}

/* obj.<name>(*args[1:]) with args[0] = obj, as PyObject_VectorcallMethod. */
static PyObject *
call_method_cached(int which, PyObject *name, PyObject *const *args, size_t nargs)
{
#if PY_VERSION_HEX < 0x030B0000
    /* 3.10: PyType_ClearCache (sys._clear_type_cache) starts the tags from 0
     * again, so a tag seen before can come back on a changed type. */
    (void)which;
    return PyObject_VectorcallMethod(name, args, nargs, NULL);
#else
    PyTypeObject *tp = Py_TYPE(args[0]);
    MethodEntry *e = &method_cache[which][((uintptr_t)tp >> 6) & 1];
    if (e->tp == tp && DW_TAG_OK(tp, e->tag)) {
        PyObject *func = e->func;
        Py_INCREF(func); /* the call may replace the entry */
        PyObject *r = PyObject_Vectorcall(func, args, nargs, NULL);
        Py_DECREF(func);
        return r;
    }
    if (DW_NO_DICT(tp) && tp->tp_getattro == PyObject_GenericGetAttr) {
        unsigned int tag = assign_tag(tp, name);
        PyObject *found = tag != 0 ? _PyType_Lookup(tp, name) : NULL; /* borrowed */
        if (found != NULL && (Py_TYPE(found)->tp_flags & Py_TPFLAGS_METHOD_DESCRIPTOR) &&
            DW_TAG_OK(tp, tag)) {
            Py_INCREF(found); /* the entry's */
            Py_XSETREF(e->func, found);
            Py_INCREF(found); /* the call's */
            e->tp = tp;
            e->tag = tag;
            PyObject *r = PyObject_Vectorcall(found, args, nargs, NULL);
            Py_DECREF(found);
            return r;
        }
    }
    return PyObject_VectorcallMethod(name, args, nargs, NULL);
#endif
}

/* Call a bound built-in method of the raw lock the way the interpreter
 * would, minus the generic dispatch: the raw locks' acquire and release are
 * plain C functions (METH_VARARGS|METH_KEYWORDS up to 3.12, METH_FASTCALL
 * since, METH_NOARGS for release). */
static PyObject *
call_raw(PyObject *bound, PyObject *arg)
{
    if (PyCFunction_Check(bound)) {
        int flags = PyCFunction_GET_FLAGS(bound) &
                    (METH_VARARGS | METH_KEYWORDS | METH_NOARGS | METH_O | METH_FASTCALL | METH_METHOD);
        PyCFunction func = PyCFunction_GET_FUNCTION(bound);
        PyObject *self = PyCFunction_GET_SELF(bound);
        if (arg == NULL && flags == METH_NOARGS)
            return func(self, NULL);
        if (arg == Py_False && flags == (METH_VARARGS | METH_KEYWORDS))
            return ((PyCFunctionWithKeywords)(void (*)(void))func)(self, false_args, NULL);
        if (flags == (METH_FASTCALL | METH_KEYWORDS))
            return ((_PyCFunctionFastWithKeywords)(void (*)(void))func)(self, &arg, arg != NULL, NULL);
    }
    return PyObject_Vectorcall(bound, &arg, arg != NULL, NULL);
}

/* self->acq (borrowed), or NULL (with an error set if the lookup failed).
 * __init__ leaves acq to be looked up at first use when raw is of a
 * checked raw type (direct): its takes never call it, and the lookup of a
 * bound method cost a Future's Condition about a thousand instructions
 * (issue 17). */
static PyObject *
acq_of(Core *self)
{
    if (self->acq == NULL && self->lazy_acq && self->raw != NULL) {
        PyObject *acq = PyObject_GetAttr(self->raw, s_acquire);
        if (acq == NULL)
            return NULL;
        self->acq = acq;
    }
    self->lazy_acq = 0;
    return self->acq;
}

/* raw.acquire(False): 1 taken, 0 not, -1 error. */
static int
try_acquire(Core *self)
{
    if (self->acq == NULL && !(self->lazy_acq && self->raw != NULL)) {
        /* __init__ never ran (an instance made by __new__ alone): what the
         * Python path raises. */
        no_field(self, "_acq");
        return -1;
    }
    if (self->direct) {
        PyTypeObject *tp = Py_TYPE(self->raw);
        if (tp == g_direct_lock_type) {
            /* The raw Lock's acquire(False): a try, and its "locked" flag. */
            RawLockLayout *raw = (RawLockLayout *)self->raw;
            if (PyThread_acquire_lock_timed(raw->lock_lock, 0, 0) != PY_LOCK_ACQUIRED)
                return 0;
            raw->locked = 1;
            return 1;
        }
        if (tp == g_direct_rlock_type) {
            /* The raw RLock's acquire(False): re-entry by its owner, or a try. */
            RawRLockLayout *raw = (RawRLockLayout *)self->raw;
            unsigned long tid = PyThread_get_thread_ident();
            if (raw->rlock_count > 0 && raw->rlock_owner == tid) {
                unsigned long count = raw->rlock_count + 1;
                if (count <= raw->rlock_count) {
                    PyErr_SetString(PyExc_OverflowError, "Internal lock count overflowed");
                    return -1;
                }
                raw->rlock_count = count;
                return 1;
            }
            if (PyThread_acquire_lock_timed(raw->rlock_lock, 0, 0) != PY_LOCK_ACQUIRED)
                return 0;
            raw->rlock_owner = tid;
            raw->rlock_count = 1;
            return 1;
        }
    }
    PyObject *acq = acq_of(self);
    if (acq == NULL) {
        if (!PyErr_Occurred())
            no_field(self, "_acq");
        return -1;
    }
    PyObject *r = call_raw(acq, Py_False);
    if (r == NULL)
        return -1;
    int got = (r == Py_True) ? 1 : PyObject_IsTrue(r);
    Py_DECREF(r);
    return got;
}

/* The raw RLock re-entered by the thread that owns it (the tracked RLock
 * says so): raw.acquire() without its argument parsing where that is safe. */
static int
reenter_raw(Core *self)
{
    if (self->direct && self->raw != NULL && Py_TYPE(self->raw) == g_direct_rlock_type) {
        RawRLockLayout *raw = (RawRLockLayout *)self->raw;
        if (raw->rlock_count > 0 && raw->rlock_owner == PyThread_get_thread_ident()) {
            unsigned long count = raw->rlock_count + 1;
            if (count <= raw->rlock_count) {
                PyErr_SetString(PyExc_OverflowError, "Internal lock count overflowed");
                return -1;
            }
            raw->rlock_count = count;
            return 0;
        }
    }
    PyObject *acq = acq_of(self);
    if (acq == NULL) {
        if (!PyErr_Occurred())
            no_field(self, "_acq");
        return -1;
    }
    PyObject *r = PyObject_CallNoArgs(acq);
    if (r == NULL)
        return -1;
    Py_DECREF(r);
    return 0;
}

/* The learned-order check of the Python path:
 *     if held and learn_order is not None:
 *         last = held[-1]
 *         if id(self) not in last._dw_after: learn_order(last, self, rec)
 */
static int
check_order(Core *self, PyObject *held, PyObject *rec)
{
    Py_ssize_t n = PyList_GET_SIZE(held);
    if (n == 0)
        return 0;
    PyObject *learn = PyDict_GetItemWithError(g_module_dict, s_learn_order);
    if (learn == NULL)
        return PyErr_Occurred() ? -1 : 0;
    if (learn == Py_None)
        return 0;
    Py_INCREF(learn);
    PyObject *last = PyList_GET_ITEM(held, n - 1);
    Py_INCREF(last);
    int rc = -1;
    PyObject *after = PyObject_GetAttr(last, s_dw_after);
    if (after != NULL) {
        PyObject *key = PyLong_FromVoidPtr(self);
        if (key != NULL) {
            int known = PySequence_Contains(after, key);
            Py_DECREF(key);
            if (known == 1)
                rc = 0;
            else if (known == 0) {
                PyObject *args[3] = {last, (PyObject *)self, rec};
                PyObject *r = PyObject_Vectorcall(learn, args, 3, NULL);
                if (r != NULL) {
                    Py_DECREF(r);
                    rc = 0;
                }
            }
        }
        Py_DECREF(after);
    }
    Py_DECREF(last);
    Py_DECREF(learn);
    return rc;
}

/* Whether a code object's file is threading's or deadlockwatch's: the
 * answer of `co_filename in INTERNAL_FILES`, remembered per filename object
 * in a small direct-mapped table (issue 17: a site walk asks it for every
 * frame it passes, about 27 times a ThreadPoolExecutor task, and a set
 * lookup of a path that is equal to a member but not the same object
 * compares the strings).  Each entry holds a reference to its filename, so
 * its address cannot be reused for another string while it is there.
 * INTERNAL_FILES only grows (state.internal_file): the table is emptied
 * whenever its size is not the one the entries were read at, and when
 * configure() replaces it. */
#define FILE_SLOTS 64
static PyObject *g_file_key[FILE_SLOTS];
static char g_file_internal[FILE_SLOTS];
static Py_ssize_t g_file_set_size = -1;

static void
forget_files(void)
{
    for (int i = 0; i < FILE_SLOTS; i++)
        Py_CLEAR(g_file_key[i]);
    g_file_set_size = -1;
}

static int
internal_file(PyObject *filename)
{
    Py_ssize_t size = PySet_GET_SIZE(g_internal_files);
    if (size != g_file_set_size) {
        forget_files();
        g_file_set_size = size;
    }
    size_t slot = ((size_t)(uintptr_t)filename >> 4) % FILE_SLOTS;
    if (g_file_key[slot] == filename)
        return g_file_internal[slot];
    int internal = PySet_Contains(g_internal_files, filename);
    if (internal < 0)
        return -1;
    /* (A lookup that ran Python code, an __eq__, may have changed the set.) */
    if (PySet_GET_SIZE(g_internal_files) == g_file_set_size) {
        Py_INCREF(filename);
        Py_XSETREF(g_file_key[slot], filename);
        g_file_internal[slot] = (char)internal;
    }
    return internal;
}

/* The caller's site: the innermost Python frame (a C method has none of its
 * own), or, if that frame is threading's or ours, the nearest user frame. */
/* The nearest frame from frame outwards whose file is not threading's or
 * deadlockwatch's (new reference), or NULL: with an error set, or none if
 * every frame is internal. */
static PyFrameObject *
user_frame(PyFrameObject *frame)
{
    Py_XINCREF(frame);
    while (frame != NULL) {
        PyCodeObject *co = PyFrame_GetCode(frame);
        int internal = internal_file(co->co_filename);
        Py_DECREF(co);
        if (internal == 0)
            return frame;
        PyFrameObject *back = internal < 0 ? NULL : PyFrame_GetBack(frame);
        Py_DECREF(frame);
        if (internal < 0)
            return NULL;
        frame = back;
    }
    return NULL;
}

static int
frame_lasti(PyFrameObject *frame)
{
#if PY_VERSION_HEX >= 0x030B0000
    return PyFrame_GetLasti(frame);
#else
    return frame->f_lasti < 0 ? -1 : frame->f_lasti * (int)sizeof(_Py_CODEUNIT);
#endif
}

/* The calling thread's site, as user_frame(PyEval_GetFrame()) finds it:
 * *code_out the code of the nearest frame that is not threading's or
 * deadlockwatch's (*user_out 1), or of the innermost frame if all are
 * (*user_out 0), or NULL if there is no frame; *lasti_out its offset as
 * PyFrame_GetLasti gives it.  0, or -1 with an error set.
 *
 * On 3.11 to 3.13 this reads the interpreter's frames without making a
 * frame object for each (PyEval_GetFrame and PyFrame_GetBack do: about 1,000
 * instructions a frame, made and freed, and a take from threading's or
 * concurrent.futures' code walks several: issue 17).  It skips the frames
 * PyFrame_GetBack skips (incomplete ones, and the C stack's shims). */
static int
user_site(PyObject **code_out, int *lasti_out, int *user_out)
{
    *code_out = NULL;
    *lasti_out = 0;
    *user_out = 0;
#ifdef DW_RAW_FRAMES
    _PyInterpreterFrame *f = current_iframe();
    _PyInterpreterFrame *innermost = NULL;
    for (; f != NULL; f = f->previous) {
        if (_PyFrame_IsIncomplete(f))
            continue;
        PyCodeObject *co = iframe_code(f);
        if (innermost == NULL)
            innermost = f;
        int internal = internal_file(co->co_filename);
        if (internal < 0)
            return -1;
        if (internal == 0) {
            *user_out = 1;
            break;
        }
    }
    if (f == NULL)
        f = innermost;
    if (f == NULL)
        return 0;
    PyCodeObject *code = iframe_code(f);
    int lasti = _PyInterpreterFrame_LASTI(f);
    *lasti_out = lasti < 0 ? -1 : lasti * (int)sizeof(_Py_CODEUNIT);
    Py_INCREF(code);
    *code_out = (PyObject *)code;
    return 0;
#else
    PyFrameObject *frame = PyEval_GetFrame(); /* borrowed */
    if (frame == NULL)
        return 0;
    PyFrameObject *user = user_frame(frame);
    if (user == NULL && PyErr_Occurred())
        return -1;
    PyFrameObject *at = user != NULL ? user : frame;
    *lasti_out = frame_lasti(at);
    *code_out = (PyObject *)PyFrame_GetCode(at);
    *user_out = user != NULL;
    Py_XDECREF(user);
    return 0;
#endif
}

/* keep_taker (a Lock): also note the address of the taking call's frame, as
 * _dw_taker (the token rule of order.held_as_token tells that call by it and
 * by the site's offset).  No reference is kept: a Lock left held must not keep
 * the returned call's locals alive. */
static int
store_site(Core *self, int keep_taker)
{
    if (keep_taker) {
        /* The take before this one (a signal's waiter compares it with where
         * the signal was given: signals.py). */
        self->prev_taker = self->taker;
        self->prev_lasti = self->site_lasti;
        self->prev_signalled = self->signalled;
        self->signalled = 0;
        Py_XINCREF(self->site_code);
        Py_XSETREF(self->prev_code, self->site_code);
    }
#ifdef DW_RAW_FRAMES
    if (!keep_taker) {
        /* No frame object needed (only a Lock keeps its taker's address). */
        PyObject *code;
        int lasti, user;
        if (user_site(&code, &lasti, &user) < 0)
            return -1;
        Py_XSETREF(self->site_code, code);
        self->site_lasti = code != NULL ? lasti : 0;
        self->site_user = (char)user;
        return 0;
    }
#endif
    PyFrameObject *frame = PyEval_GetFrame(); /* borrowed */
    if (frame == NULL) {
        Py_CLEAR(self->site_code);
        self->taker = NULL;
        self->site_lasti = 0;
        return 0;
    }
    PyCodeObject *co = PyFrame_GetCode(frame); /* new reference */
    if ((PyObject *)co == self->site_code && self->site_user) {
        /* Taken from the same (user) code as last time: no need to look. */
        self->site_lasti = frame_lasti(frame);
        Py_DECREF(co);
        if (keep_taker)
            self->taker = frame;
        return 0;
    }
    Py_DECREF(co);
    PyFrameObject *user = user_frame(frame);
    if (user == NULL && PyErr_Occurred())
        return -1;
    PyFrameObject *at = user != NULL ? user : frame; /* all internal: the innermost */
    self->site_lasti = frame_lasti(at);
    Py_XSETREF(self->site_code, (PyObject *)PyFrame_GetCode(at));
    self->site_user = user != NULL;
    if (keep_taker)
        self->taker = at;
    Py_XDECREF(user);
    return 0;
}

static void
set_owner(Core *self, PyObject *rec)
{
    PyObject *old = self->owner;
    Py_INCREF(rec);
    self->owner = rec;
    Py_XDECREF(old);
}

static void
clear_owner(Core *self)
{
    PyObject *old = self->owner;
    self->owner = NULL;
    Py_XDECREF(old);
}

/* Everything after the raw lock was taken uncontended. */
static int
taken(Core *self, PyObject *rec, PyObject *held, int learn, int keep_taker)
{
    Py_INCREF(rec);
    Py_INCREF(held);
    int rc = -1;
    Py_ssize_t n = PyList_GET_SIZE(held);
    self->guard = n > 0 ? (void *)PyList_GET_ITEM(held, n - 1) : NULL;
    if ((!learn || check_order(self, held, rec) == 0) && PyList_Append(held, (PyObject *)self) == 0) {
        set_owner(self, rec);
        rc = store_site(self, keep_taker);
    }
    Py_DECREF(held);
    Py_DECREF(rec);
    return rc;
}

/* Take self off rec's held list: the newest entry, normally (list.pop()),
 * else the newest entry for it (_state.remove_held). */
static int
drop_held(Core *self, PyObject *rec, PyObject *held)
{
    Py_ssize_t n = PyList_GET_SIZE(held);
    if (n > 0 && PyList_GET_ITEM(held, n - 1) == (PyObject *)self) {
        /* What list.pop() does, short of shrinking the buffer; the list's
         * reference to self goes, self itself is the caller's. */
        Py_SET_SIZE(held, n - 1);
        Py_DECREF(self);
        return 0;
    }
    PyObject *args[2] = {rec, (PyObject *)self};
    PyObject *r = PyObject_Vectorcall(g_remove_held, args, 2, NULL);
    if (r == NULL)
        return -1;
    Py_DECREF(r);
    return 0;
}

static PyObject *
raw_release(Core *self)
{
    if (self->rel == NULL) {
        if (self->raw == NULL) {
            no_field(self, "_raw");
            return NULL;
        }
        self->rel = PyObject_GetAttr(self->raw, s_release);
        if (self->rel == NULL)
            return NULL;
    }
    return call_raw(self->rel, NULL);
}

static PyObject *
fallback(Core *self, PyObject *name, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    PyObject *method = PyObject_GetAttr((PyObject *)self, name);
    if (method == NULL)
        return NULL;
    PyObject *r = PyObject_Vectorcall(method, args, nargs, kwnames);
    Py_DECREF(method);
    return r;
}

/* ---- the common type machinery ------------------------------------------- */

static int
core_traverse(Core *self, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(self->raw);
    Py_VISIT(self->acq);
    Py_VISIT(self->rel);
    Py_VISIT(self->owner);
    Py_VISIT(self->site_code);
    Py_VISIT(self->prev_code);
    Py_VISIT(self->dw_after);
    Py_VISIT(self->created);
    Py_VISIT(self->created_code);
    return 0;
}

static int
core_clear(Core *self)
{
    Py_CLEAR(self->raw);
    Py_CLEAR(self->acq);
    self->lazy_acq = 0;
    Py_CLEAR(self->rel);
    Py_CLEAR(self->owner);
    Py_CLEAR(self->site_code);
    self->taker = NULL;
    Py_CLEAR(self->prev_code);
    Py_CLEAR(self->dw_after);
    Py_CLEAR(self->created);
    Py_CLEAR(self->created_code);
    return 0;
}

static void
core_dealloc(Core *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    if (self->weakreflist != NULL)
        PyObject_ClearWeakRefs((PyObject *)self);
    core_clear(self);
    tp->tp_free((PyObject *)self);
    Py_DECREF(tp);
}

static PyObject *
core_get_site(Core *self, void *closure)
{
    if (self->site_code == NULL)
        Py_RETURN_NONE;
    return Py_BuildValue("(Oi)", self->site_code, self->site_lasti);
}

static int
core_set_site(Core *self, PyObject *value, void *closure)
{
    if (value == NULL || value == Py_None) {
        Py_CLEAR(self->site_code);
        self->site_lasti = 0;
        return 0;
    }
    PyObject *code;
    int lasti;
    if (!PyTuple_Check(value)) {
        PyErr_SetString(PyExc_TypeError, "_site is (code, lasti) or None");
        return -1;
    }
    if (!PyArg_ParseTuple(value, "O!i;_site is (code, lasti) or None", &PyCode_Type, &code, &lasti))
        return -1;
    Py_INCREF(code);
    Py_XSETREF(self->site_code, code);
    self->site_lasti = lasti;
    self->site_user = 0;
    return 0;
}

static PyObject *
core_get_owner(Core *self, void *closure)
{
    PyObject *owner = self->owner ? self->owner : Py_None;
    Py_INCREF(owner);
    return owner;
}

static int
core_set_owner(Core *self, PyObject *value, void *closure)
{
    if (value == NULL || value == Py_None)
        clear_owner(self);
    else
        set_owner(self, value);
    return 0;
}

static PyObject *
core_get_raw(Core *self, void *closure)
{
    if (self->raw == NULL) {
        no_field(self, "_raw");
        return NULL;
    }
    Py_INCREF(self->raw);
    return self->raw;
}

static int
core_set_raw(Core *self, PyObject *value, void *closure)
{
    /* _acq stays the old raw lock's acquire, as before. */
    if (self->lazy_acq && acq_of(self) == NULL && PyErr_Occurred())
        return -1;
    Py_XINCREF(value);
    Py_XSETREF(self->raw, value);
    Py_CLEAR(self->rel);
    self->direct = 0;
    return 0;
}

static PyObject *
core_get_acq(Core *self, void *closure)
{
    PyObject *acq = acq_of(self);
    if (acq == NULL) {
        if (!PyErr_Occurred())
            no_field(self, "_acq");
        return NULL;
    }
    Py_INCREF(acq);
    return acq;
}

/* Whoever sets _acq means their acquire to be called: no direct take. */
static int
core_set_acq(Core *self, PyObject *value, void *closure)
{
    if (value == NULL && self->acq == NULL && !(self->lazy_acq && self->raw != NULL)) {
        no_field(self, "_acq");
        return -1;
    }
    self->lazy_acq = 0;
    Py_XINCREF(value);
    Py_XSETREF(self->acq, value);
    self->direct = 0;
    return 0;
}

static PyObject *
core_get_created(Core *self, void *closure)
{
    if (self->created == NULL && self->created_code != NULL) {
        PyObject *pair = Py_BuildValue("(Oi)", self->created_code, self->created_lasti);
        if (pair == NULL)
            return NULL;
        PyObject *site = PyObject_CallOneArg(g_site_of, pair);
        Py_DECREF(pair);
        if (site == NULL)
            return NULL;
        self->created = site;
        Py_CLEAR(self->created_code);
    }
    PyObject *created = self->created != NULL ? self->created : Py_None;
    Py_INCREF(created);
    return created;
}

static int
core_set_created(Core *self, PyObject *value, void *closure)
{
    Py_XINCREF(value);
    Py_XSETREF(self->created, value);
    Py_CLEAR(self->created_code);
    return 0;
}

/* __init__: what _LockMethods.__init__ / _RLockMethods.__init__ do, with
 * the creation site kept as (code, offset) until someone reads it. */
static int
core_init(Core *self, PyObject *args, PyObject *kwds, PyObject *factory)
{
    if (factory == NULL || g_module_dict == NULL)
        return not_configured();
    if (PyTuple_GET_SIZE(args) != 0 || (kwds != NULL && PyDict_GET_SIZE(kwds) != 0)) {
        PyErr_Format(PyExc_TypeError, "%s() takes no arguments", Py_TYPE(self)->tp_name);
        return -1;
    }
    PyObject *raw = PyObject_CallNoArgs(factory);
    if (raw == NULL)
        return -1;
    char direct = Py_TYPE(raw) == g_direct_lock_type || Py_TYPE(raw) == g_direct_rlock_type;
    PyObject *acq = NULL;
    if (!direct) {
        acq = PyObject_GetAttr(raw, s_acquire);
        if (acq == NULL) {
            Py_DECREF(raw);
            return -1;
        }
    }
    PyObject *no_orders = PyDict_GetItemWithError(g_module_dict, s_no_orders);
    if (no_orders == NULL) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_RuntimeError, "deadlockwatch: _primitives._NO_ORDERS is missing");
        Py_XDECREF(acq);
        Py_DECREF(raw);
        return -1;
    }
    Py_INCREF(no_orders);
    Py_XSETREF(self->raw, raw);
    Py_XSETREF(self->acq, acq);
    self->lazy_acq = direct;
    Py_CLEAR(self->rel);
    self->direct = direct;
    Py_XSETREF(self->dw_after, no_orders);
    clear_owner(self);
    Py_CLEAR(self->site_code);
    self->taker = NULL;
    self->prev_taker = NULL;
    Py_CLEAR(self->prev_code);
    self->prev_lasti = 0;
    self->signalled = self->prev_signalled = self->watched = 0;
    self->site_lasti = 0;
    self->site_user = 0;
    self->count = 0;
    self->ctx = 0;
    self->handoff = 0;
    Py_CLEAR(self->created);
    Py_CLEAR(self->created_code);
    PyObject *code;
    int lasti, user;
    if (user_site(&code, &lasti, &user) < 0)
        return -1;
    if (code != NULL && !user) {
        Py_DECREF(code); /* no user frame: no creation site */
        code = NULL;
    }
    self->created_code = code;
    self->created_lasti = code != NULL ? lasti : 0;
    return 0;
}

static int
lock_init(Core *self, PyObject *args, PyObject *kwds)
{
    return core_init(self, args, kwds, g_lock_factory);
}

static int
rlock_init(Core *self, PyObject *args, PyObject *kwds)
{
    return core_init(self, args, kwds, g_rlock_factory);
}

/* _dw_guard and _dw_taker: an address kept as a number (never
 * dereferenced); closure is the field's offset in Core. */
static PyObject *
core_get_address(Core *self, void *closure)
{
    return PyLong_FromVoidPtr(*(void **)((char *)self + (size_t)closure));
}

static int
core_set_address(Core *self, PyObject *value, void *closure)
{
    void *address = NULL;
    if (value != NULL && value != Py_None) {
        address = PyLong_AsVoidPtr(value);
        if (address == NULL && PyErr_Occurred())
            return -1;
    }
    *(void **)((char *)self + (size_t)closure) = address;
    return 0;
}

/* (id of the taking frame, (code, lasti) or None) of the take before the
 * current one, or None if there was none. */
static PyObject *
lock_get_prev(Core *self, void *closure)
{
    if (self->prev_code == NULL)
        Py_RETURN_NONE;
    return Py_BuildValue("(N(Oi)O)", PyLong_FromVoidPtr(self->prev_taker), self->prev_code,
                         self->prev_lasti, self->prev_signalled ? Py_True : Py_False);
}

static int
lock_set_prev(Core *self, PyObject *value, void *closure)
{
    PyObject *taker, *site, *code = NULL;
    int lasti = 0, signalled = 0;
    if (value == NULL || value == Py_None) {
        self->prev_taker = NULL;
        Py_CLEAR(self->prev_code);
        return 0;
    }
    if (!PyTuple_Check(value) ||
        !PyArg_ParseTuple(value, "OOp;_dw_prev is (taker, site, signalled) or None", &taker, &site,
                          &signalled)) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_TypeError, "_dw_prev is (taker, site, signalled) or None");
        return -1;
    }
    void *ptr = PyLong_AsVoidPtr(taker);
    if (ptr == NULL && PyErr_Occurred())
        return -1;
    if (site != Py_None &&
        (!PyTuple_Check(site) ||
         !PyArg_ParseTuple(site, "O!i;_dw_prev's site is (code, lasti) or None", &PyCode_Type, &code, &lasti))) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_TypeError, "_dw_prev's site is (code, lasti) or None");
        return -1;
    }
    self->prev_taker = ptr;
    self->prev_signalled = (char)signalled;
    Py_XINCREF(code);
    Py_XSETREF(self->prev_code, code);
    self->prev_lasti = lasti;
    return 0;
}

#define CORE_GETSET \
    {"_acq", (getter)core_get_acq, (setter)core_set_acq, "the untracked lock's acquire", NULL}, \
    {"_dw_guard", (getter)core_get_address, (setter)core_set_address, "id() of the newest lock held at the take, or 0", (void *)offsetof(Core, guard)}, \
    {"_created", (getter)core_get_created, (setter)core_set_created, "creation Site or None", NULL}, \
    {"_raw", (getter)core_get_raw, (setter)core_set_raw, "the untracked lock", NULL}, \
    {"_site", (getter)core_get_site, (setter)core_set_site, "acquisition site: (code, lasti) or None", NULL}, \
    {"_owner", (getter)core_get_owner, (setter)core_set_owner, "the holder's ThreadRecord or None", NULL}

static PyGetSetDef core_getset[] = {
    CORE_GETSET,
    {NULL},
};

static PyGetSetDef lock_getset[] = {
    CORE_GETSET,
    {"_dw_taker", (getter)core_get_address, (setter)core_set_address, "id() of the taking call's frame, or 0", (void *)offsetof(Core, taker)},
    {"_dw_prev", (getter)lock_get_prev, (setter)lock_set_prev, "(taker, site, signalled) of the take before, or None", NULL},
    {NULL},
};

#define COMMON_MEMBERS \
    {"_dw_watched", T_BOOL, offsetof(Core, watched), 0, NULL}, \
    {"_dw_after", T_OBJECT_EX, offsetof(Core, dw_after), 0, NULL}, \
    {"__weaklistoffset__", T_PYSSIZET, offsetof(Core, weakreflist), READONLY, NULL}

static PyMemberDef lock_members[] = {
    COMMON_MEMBERS,
    {"_dw_signalled", T_BOOL, offsetof(Core, signalled), 0, NULL},
    {"_ctx", T_BOOL, offsetof(Core, ctx), 0, NULL},
    {"_handoff", T_BOOL, offsetof(Core, handoff), 0, NULL},
    {NULL},
};

static PyMemberDef rlock_members[] = {
    COMMON_MEMBERS,
    {"_count", T_PYSSIZET, offsetof(Core, count), 0, NULL},
    {NULL},
};

/* ---- Lock ------------------------------------------------------------- */

/* Fast path shared by acquire() and __enter__(): 1 taken, 0 not taken
 * (caller falls back), -1 error. */
static int
lock_fast(Core *self, int learn, char ctx)
{
    int got = try_acquire(self);
    if (got <= 0)
        return got;
    PyObject *rec, *held;
    if (current_rec(1, &rec, &held) < 0) {
        /* Not left taken by a call that fails. */
        PyObject *type, *value, *tb;
        PyErr_Fetch(&type, &value, &tb);
        PyObject *r = raw_release(self);
        Py_XDECREF(r);
        if (r == NULL)
            PyErr_Clear();
        PyErr_Restore(type, value, tb);
        return -1;
    }
    if (rec == NULL)
        return 1; /* at shutdown: untracked (see current_rec) */
    if (taken(self, rec, held, learn, 1) < 0)
        return -1;
    self->ctx = ctx;
    return 1;
}

/* The calling thread holds self and probed it (a failed acquire(False), or
 * RLock._is_owned: what Condition.notify does): mark the take as one that
 * signalled, and tell primitives.on_probe when the thread holds other locks
 * or the lock is watched (signals.py learns what the signal needs). */
static int
probed(Core *self)
{
    if (self->owner == NULL)
        return 0;
    PyObject *rec, *held;
    if (current_rec(0, &rec, &held) < 0)
        return -1;
    if (rec == NULL || self->owner != rec)
        return 0;
    self->signalled = 1;
    if (PyList_GET_SIZE(held) < 2 && !self->watched)
        return 0;
    PyObject *hook = PyDict_GetItemWithError(g_module_dict, s_on_probe);
    if (hook == NULL)
        return PyErr_Occurred() ? -1 : 0;
    if (hook == Py_None)
        return 0;
    Py_INCREF(hook);
    PyObject *r = PyObject_CallOneArg(hook, (PyObject *)self);
    Py_DECREF(hook);
    if (r == NULL)
        return -1;
    Py_DECREF(r);
    return 0;
}

static PyObject *
lock_acquire(Core *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    if (kwnames == NULL && nargs <= 1) {
        int blocking = nargs == 0 || args[0] == Py_True;
        if (blocking || args[0] == Py_False) {
            int got = lock_fast(self, blocking, 0);
            if (got < 0)
                return NULL;
            if (got)
                Py_RETURN_TRUE;
            if (!blocking) {
                if (probed(self) < 0)
                    return NULL;
                Py_RETURN_FALSE;
            }
        }
    }
    return fallback(self, s_py_acquire, args, nargs, kwnames);
}

static PyObject *
lock_enter(Core *self, PyObject *unused)
{
    int got = lock_fast(self, 1, 1);
    if (got < 0)
        return NULL;
    if (got)
        Py_RETURN_TRUE;
    return fallback(self, s_py_enter, NULL, 0, NULL);
}

/* Whether the caller of release() is, for sure, the call that took the Lock
 * (a bare acquire()): the frame at the taker's address, running the site's
 * code, past the site's offset (a later call may reuse the address: see
 * order.held_as_token).  Anything else goes to the Python path, which looks. */
static int
in_taking_call(Core *self)
{
    PyFrameObject *frame = PyEval_GetFrame(); /* borrowed */
    if (frame == NULL || (void *)frame != self->taker || self->site_code == NULL)
        return 0;
    PyCodeObject *co = PyFrame_GetCode(frame); /* new reference */
    int same = (PyObject *)co == self->site_code && frame_lasti(frame) >= self->site_lasti;
    Py_DECREF(co);
    return same;
}

/* Whether self is the newest entry of the calling thread's held list. */
static int
held_on_top(Core *self, PyObject *held)
{
    Py_ssize_t n = PyList_GET_SIZE(held);
    return n > 0 && PyList_GET_ITEM(held, n - 1) == (PyObject *)self;
}

static PyObject *
lock_release(Core *self, PyObject *unused)
{
    PyObject *owner = self->owner;
    if (owner != NULL) {
        PyObject *me, *held;
        if (current_rec(0, &me, &held) < 0)
            return NULL;
        if (owner != me)
            /* Released by another thread: a hand-off (rare; the Python path). */
            return fallback(self, s_py_release, NULL, 0, NULL);
        if (!self->ctx && self->taker != NULL && !held_on_top(self, held) && !in_taking_call(self))
            /* Taken by a bare acquire(), released under a lock taken after
             * it, in another call: maybe a group lock released under its
             * count's lock by a later call (primitives._released_later; the
             * Python path).  Released on top of the held list (a mutex
             * behind __enter__/__exit__, the common case) it is not. */
            return fallback(self, s_py_release, NULL, 0, NULL);
        Py_INCREF(me);
        Py_INCREF(held);
        clear_owner(self);
        /* taker and site stay: the signals module reads the last take. */
        int rc = drop_held(self, me, held);
        Py_DECREF(held);
        Py_DECREF(me);
        if (rc < 0)
            return NULL;
    }
    return raw_release(self);
}

static PyObject *
lock_exit(Core *self, PyObject *const *args, Py_ssize_t nargs)
{
    PyObject *r = lock_release(self, NULL);
    if (r == NULL)
        return NULL;
    Py_DECREF(r);
    Py_RETURN_NONE;
}

static PyMethodDef lock_methods[] = {
    {"acquire", (PyCFunction)(void (*)(void))lock_acquire, METH_FASTCALL | METH_KEYWORDS, NULL},
    {"__enter__", (PyCFunction)lock_enter, METH_NOARGS, NULL},
    {"release", (PyCFunction)lock_release, METH_NOARGS, NULL},
    {"__exit__", (PyCFunction)(void (*)(void))lock_exit, METH_FASTCALL, NULL},
    {NULL},
};

static PyType_Slot lock_slots[] = {
    {Py_tp_doc, "The C uncontended path of deadlockwatch's tracked Lock."},
    {Py_tp_new, PyType_GenericNew},
    {Py_tp_init, lock_init},
    {Py_tp_dealloc, core_dealloc},
    {Py_tp_traverse, core_traverse},
    {Py_tp_clear, core_clear},
    {Py_tp_methods, lock_methods},
    {Py_tp_members, lock_members},
    {Py_tp_getset, lock_getset},
    {0, NULL},
};

static PyType_Spec lock_spec = {
    .name = "deadlockwatch._track._speedups.LockCore",
    .basicsize = sizeof(Core),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .slots = lock_slots,
};

/* ---- RLock ------------------------------------------------------------ */

static PyObject *
rlock_acquire(Core *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    if (kwnames == NULL && (nargs == 0 || (nargs == 1 && args[0] == Py_True))) {
        PyObject *rec, *held;
        if (current_rec(1, &rec, &held) < 0)
            return NULL;
        if (rec != NULL && self->owner == rec && (self->acq != NULL || self->lazy_acq)) {
            /* Only this thread sets owner to its own record: re-entry. */
            if (reenter_raw(self) < 0)
                return NULL;
            self->count += 1;
            Py_RETURN_TRUE;
        }
        int got = try_acquire(self);
        if (got < 0)
            return NULL;
        if (got > 0) {
            if (rec == NULL)
                Py_RETURN_TRUE; /* at shutdown: untracked (see current_rec) */
            if (taken(self, rec, held, 1, 0) < 0)
                return NULL;
            self->count = 1;
            Py_RETURN_TRUE;
        }
    }
    return fallback(self, s_py_acquire, args, nargs, kwnames);
}

static PyObject *
rlock_release(Core *self, PyObject *unused)
{
    PyObject *rec, *held;
    if (current_rec(0, &rec, &held) < 0)
        return NULL;
    if (rec == NULL || self->owner != rec)
        return raw_release(self); /* raises "cannot release un-acquired lock" */
    self->count -= 1;
    if (self->count == 0) {
        Py_INCREF(rec);
        Py_INCREF(held);
        clear_owner(self);
        int rc = drop_held(self, rec, held);
        Py_DECREF(held);
        Py_DECREF(rec);
        if (rc < 0)
            return NULL;
    }
    return raw_release(self);
}

static PyObject *
rlock_exit(Core *self, PyObject *const *args, Py_ssize_t nargs)
{
    PyObject *r = rlock_release(self, NULL);
    if (r == NULL)
        return NULL;
    Py_DECREF(r);
    Py_RETURN_NONE;
}

/* Condition's ownership check (called by every notify): the raw RLock's. */
static PyObject *
rlock_is_owned(Core *self, PyObject *unused)
{
    if (self->raw == NULL) {
        no_field(self, "_raw");
        return NULL;
    }
    PyObject *owned = PyObject_CallMethodNoArgs(self->raw, s_is_owned);
    if (owned == Py_True && probed(self) < 0) {
        Py_DECREF(owned);
        return NULL;
    }
    return owned;
}

/* The Condition protocol (every wait on a Condition over an RLock): what
 * _RLockMethods._release_save and _acquire_restore do, in C for the common
 * case; anything else goes to _py_release_save / _py_acquire_restore. */
static PyObject *
rlock_release_save(Core *self, PyObject *unused)
{
    if (self->raw == NULL) {
        no_field(self, "_raw");
        return NULL;
    }
    PyObject *owner = self->owner;
    if (owner != NULL) {
        /* The bookkeeping first, as in Python: a thread taking the lock at
         * once is not overwritten. */
        PyObject *me, *held;
        if (current_rec(0, &me, &held) < 0)
            return NULL;
        Py_INCREF(owner);
        self->count = 0;
        clear_owner(self);
        int rc;
        if (owner == me) {
            Py_INCREF(held);
            rc = drop_held(self, owner, held);
            Py_DECREF(held);
        }
        else {
            PyObject *args[2] = {owner, (PyObject *)self};
            PyObject *r = PyObject_Vectorcall(g_remove_held, args, 2, NULL);
            rc = r == NULL ? -1 : 0;
            Py_XDECREF(r);
        }
        Py_DECREF(owner);
        if (rc < 0)
            return NULL;
    }
    return PyObject_CallMethodNoArgs(self->raw, s_release_save);
}

/* (count, owner) as _release_save returns it: what _plain_rlock_state accepts. */
static Py_ssize_t
plain_state_count(PyObject *state)
{
    if (!PyTuple_CheckExact(state) || PyTuple_GET_SIZE(state) != 2)
        return 0;
    PyObject *count = PyTuple_GET_ITEM(state, 0), *owner = PyTuple_GET_ITEM(state, 1);
    if (!PyLong_CheckExact(count) || !PyLong_CheckExact(owner))
        return 0;
    int overflow;
    long long n = PyLong_AsLongLongAndOverflow(count, &overflow);
    if (overflow || n < 1 || n >= (1LL << 62) || n > PY_SSIZE_T_MAX)
        return 0;
    long long o = PyLong_AsLongLongAndOverflow(owner, &overflow);
    if (overflow || o < 0)
        return 0;
    return (Py_ssize_t)n;
}

static PyObject *
rlock_acquire_restore(Core *self, PyObject *state)
{
    Py_ssize_t count = plain_state_count(state);
    if (count > 0 && self->direct && self->raw != NULL && Py_TYPE(self->raw) == g_direct_rlock_type) {
        RawRLockLayout *raw = (RawRLockLayout *)self->raw;
        PyObject *rec, *held;
        if (current_rec(1, &rec, &held) < 0)
            return NULL;
        /* Free, as after a wait: take it with its count, owned by the
         * calling thread (as _py_acquire_restore leaves it). */
        if (raw->rlock_count == 0 && PyThread_acquire_lock_timed(raw->rlock_lock, 0, 0) == PY_LOCK_ACQUIRED) {
            raw->rlock_owner = PyThread_get_thread_ident();
            raw->rlock_count = (unsigned long)count;
            if (rec == NULL)
                Py_RETURN_NONE; /* at shutdown: untracked (see current_rec) */
            if (taken(self, rec, held, 0, 0) < 0)
                return NULL;
            self->count = count;
            Py_RETURN_NONE;
        }
    }
    PyObject *args[1] = {state};
    return fallback(self, s_py_acquire_restore, args, 1, NULL);
}

static PyMethodDef rlock_methods[] = {
    {"_is_owned", (PyCFunction)rlock_is_owned, METH_NOARGS, NULL},
    {"_release_save", (PyCFunction)rlock_release_save, METH_NOARGS, NULL},
    {"_acquire_restore", (PyCFunction)rlock_acquire_restore, METH_O, NULL},
    {"acquire", (PyCFunction)(void (*)(void))rlock_acquire, METH_FASTCALL | METH_KEYWORDS, NULL},
    {"__enter__", (PyCFunction)(void (*)(void))rlock_acquire, METH_FASTCALL | METH_KEYWORDS, NULL},
    {"release", (PyCFunction)rlock_release, METH_NOARGS, NULL},
    {"__exit__", (PyCFunction)(void (*)(void))rlock_exit, METH_FASTCALL, NULL},
    {NULL},
};

static PyType_Slot rlock_slots[] = {
    {Py_tp_doc, "The C uncontended path of deadlockwatch's tracked RLock."},
    {Py_tp_new, PyType_GenericNew},
    {Py_tp_init, rlock_init},
    {Py_tp_dealloc, core_dealloc},
    {Py_tp_traverse, core_traverse},
    {Py_tp_clear, core_clear},
    {Py_tp_methods, rlock_methods},
    {Py_tp_members, rlock_members},
    {Py_tp_getset, core_getset},
    {0, NULL},
};

static PyType_Spec rlock_spec = {
    .name = "deadlockwatch._track._speedups.RLockCore",
    .basicsize = sizeof(Core),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .slots = rlock_slots,
};

/* ---- module ------------------------------------------------------------ */

/* A method call on a raw lock for the layout checks: 1 if it returned
 * `expect` (NULL: anything), else 0; never an error. */
static int
raw_call(PyObject *raw, const char *name, PyObject *arg, PyObject *expect)
{
    PyObject *r = arg != NULL ? PyObject_CallMethod(raw, name, "O", arg)
                              : PyObject_CallMethod(raw, name, NULL);
    int ok = r != NULL && (expect == NULL || r == expect);
    Py_XDECREF(r);
    PyErr_Clear();
    return ok;
}

/* Whether locks made by factory have RawLockLayout and keep it the way the
 * direct take does (checked on a fresh lock; it is left unlocked). */
static int
lock_layout_ok(PyObject *factory)
{
    PyObject *obj = PyObject_CallNoArgs(factory);
    if (obj == NULL) {
        PyErr_Clear();
        return 0;
    }
    PyTypeObject *tp = Py_TYPE(obj);
    RawLockLayout *raw = (RawLockLayout *)obj;
    int ok = strcmp(tp->tp_name, "_thread.lock") == 0 && tp->tp_basicsize == sizeof(RawLockLayout) &&
             tp->tp_itemsize == 0 && raw->lock_lock != NULL && raw->locked == 0 &&
             /* the raw methods and the fields agree */
             raw_call(obj, "acquire", Py_False, Py_True) && raw->locked == 1 &&
             PyThread_acquire_lock_timed(raw->lock_lock, 0, 0) == PY_LOCK_FAILURE &&
             raw_call(obj, "release", NULL, NULL) && raw->locked == 0 &&
             /* a direct take is a take for the raw methods */
             PyThread_acquire_lock_timed(raw->lock_lock, 0, 0) == PY_LOCK_ACQUIRED &&
             (raw->locked = 1) && raw_call(obj, "locked", NULL, Py_True) &&
             raw_call(obj, "acquire", Py_False, Py_False) && raw_call(obj, "release", NULL, NULL) &&
             raw->locked == 0 && raw_call(obj, "acquire", Py_False, Py_True) &&
             raw_call(obj, "release", NULL, NULL);
    Py_DECREF(obj);
    return ok;
}

/* The same for RLocks made by factory (RawRLockLayout). */
static int
rlock_layout_ok(PyObject *factory)
{
    PyObject *obj = PyObject_CallNoArgs(factory);
    if (obj == NULL) {
        PyErr_Clear();
        return 0;
    }
    PyTypeObject *tp = Py_TYPE(obj);
    RawRLockLayout *raw = (RawRLockLayout *)obj;
    unsigned long tid = PyThread_get_thread_ident();
    int ok = strcmp(tp->tp_name, "_thread.RLock") == 0 && tp->tp_basicsize == sizeof(RawRLockLayout) &&
             tp->tp_itemsize == 0 && raw->rlock_lock != NULL && raw->rlock_count == 0 &&
             raw_call(obj, "acquire", Py_False, Py_True) && raw->rlock_count == 1 && raw->rlock_owner == tid &&
             raw_call(obj, "acquire", Py_False, Py_True) && raw->rlock_count == 2 &&
             PyThread_acquire_lock_timed(raw->rlock_lock, 0, 0) == PY_LOCK_FAILURE &&
             raw_call(obj, "release", NULL, NULL) && raw_call(obj, "release", NULL, NULL) &&
             raw->rlock_count == 0 && !raw_call(obj, "release", NULL, NULL) &&
             /* a direct take is a take for the raw methods */
             PyThread_acquire_lock_timed(raw->rlock_lock, 0, 0) == PY_LOCK_ACQUIRED &&
             (raw->rlock_owner = tid, raw->rlock_count = 1) && raw_call(obj, "_is_owned", NULL, Py_True) &&
             raw_call(obj, "release", NULL, NULL) && raw->rlock_count == 0 &&
             raw_call(obj, "_is_owned", NULL, Py_False) && raw_call(obj, "acquire", Py_False, Py_True) &&
             raw_call(obj, "release", NULL, NULL);
    Py_DECREF(obj);
    return ok;
}

static PyObject *
configure(PyObject *module, PyObject *args)
{
    PyObject *tls, *new_record, *internal_files, *remove_held, *module_dict;
    PyObject *lock_factory, *rlock_factory, *site_of;
    if (!PyArg_ParseTuple(args, "OOO!OO!OOO:configure", &tls, &new_record, &PySet_Type,
                          &internal_files, &remove_held, &PyDict_Type, &module_dict,
                          &lock_factory, &rlock_factory, &site_of))
        return NULL;
    /* This module keeps one interpreter's objects in C globals: a second
     * interpreter (a legacy subinterpreter importing deadlockwatch again)
     * gets an ImportError, and _primitives runs the Python path there. */
    PyInterpreterState *interp = PyInterpreterState_Get();
    if (g_interp != NULL && g_interp != interp) {
        PyErr_SetString(PyExc_ImportError,
                        "deadlockwatch._track._speedups serves the first interpreter that configured it");
        return NULL;
    }
    g_interp = interp;
    Py_INCREF(tls);
    Py_XSETREF(g_tls, tls);
    Py_INCREF(new_record);
    Py_XSETREF(g_new_record, new_record);
    Py_INCREF(internal_files);
    Py_XSETREF(g_internal_files, internal_files);
    forget_files();
    Py_INCREF(lock_factory);
    Py_XSETREF(g_lock_factory, lock_factory);
    Py_INCREF(rlock_factory);
    Py_XSETREF(g_rlock_factory, rlock_factory);
    Py_INCREF(site_of);
    Py_XSETREF(g_site_of, site_of);
    Py_INCREF(remove_held);
    Py_XSETREF(g_remove_held, remove_held);
    Py_INCREF(module_dict);
    Py_XSETREF(g_module_dict, module_dict);
    /* Locks made from now on take their raw lock directly, if its layout is
     * the one expected (see RawLockLayout); else through its methods. */
    g_direct_lock_type = NULL;
    g_direct_rlock_type = NULL;
    if (lock_layout_ok(lock_factory)) {
        PyObject *probe = PyObject_CallNoArgs(lock_factory);
        if (probe == NULL)
            return NULL;
        g_direct_lock_type = Py_TYPE(probe); /* a static or module type: outlives us */
        Py_DECREF(probe);
    }
    if (rlock_layout_ok(rlock_factory)) {
        PyObject *probe = PyObject_CallNoArgs(rlock_factory);
        if (probe == NULL)
            return NULL;
        g_direct_rlock_type = Py_TYPE(probe);
        Py_DECREF(probe);
    }
    Py_RETURN_NONE;
}

/* Whether Lock and RLock cores made now take their raw locks directly. */
static PyObject *
direct(PyObject *module, PyObject *unused)
{
    return Py_BuildValue("(OO)", g_direct_lock_type ? Py_True : Py_False,
                         g_direct_rlock_type ? Py_True : Py_False);
}

/* The calling thread's record is gone (_state._thread_gone, run in the
 * exiting thread): drop the (record, held) pair from its thread state and the
 * C thread-local, so that code run later in its teardown (a finalizer taking
 * a lock) gets a new record, as the Python path does.  On 3.13 threading.local
 * data goes before the thread state's dict does. */
static PyObject *
forget(PyObject *module, PyObject *unused)
{
    memset(&last, 0, sizeof last);
    /* The dict itself, not PyThreadState_GetDict(): that would make a new one
     * for a thread state whose dict is being cleared (3.10-3.12). */
    PyObject *tdict = PyThreadState_Get()->dict;
    if (tdict != NULL) {
        Py_INCREF(tdict);
        int found = PyDict_Contains(tdict, s_key);
        int rc = found == 1 ? PyDict_DelItem(tdict, s_key) : found;
        Py_DECREF(tdict);
        if (rc < 0)
            return NULL;
    }
    Py_RETURN_NONE;
}

/* threading.Condition's __enter__, __exit__, _release_save and
 * _acquire_restore (for a lock without its own), which only call the same
 * method of the Condition's _lock: the same calls without a Python frame of
 * threading's between the application and its lock (waits.py installs them
 * while enabled).  A take of a tracked lock from one of those frames walked
 * out of it to the application's call site on every `with cond:`, and the
 * frame itself cost more than the call it makes.  Each takes the Condition
 * as its first argument (an instance method: instance_method below). */
static PyObject *s_lock_attr, *s_enter, *s_exit;

static PyObject *
cond_call(int which, PyObject *name, PyObject *const *args, Py_ssize_t nargs)
{
    /* self._lock.<name>(*args[1:]) */
    if (nargs < 1) {
        PyErr_SetString(PyExc_TypeError, "a Condition method needs the Condition");
        return NULL;
    }
    PyObject *lock = PyObject_GetAttr(args[0], s_lock_attr);
    if (lock == NULL)
        return NULL;
    PyObject *small[4];
    PyObject **stack = small;
    if (nargs > 4) {
        stack = PyMem_Malloc((size_t)nargs * sizeof(PyObject *));
        if (stack == NULL) {
            Py_DECREF(lock);
            return PyErr_NoMemory();
        }
    }
    stack[0] = lock;
    for (Py_ssize_t i = 1; i < nargs; i++)
        stack[i] = args[i];
    PyObject *result = call_method_cached(which, name, stack, (size_t)nargs);
    if (stack != small)
        PyMem_Free(stack);
    Py_DECREF(lock);
    return result;
}

static PyObject *
cond_enter(PyObject *mod, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 1) {
        PyErr_Format(PyExc_TypeError, "__enter__() takes 1 positional argument but %zd were given",
                     nargs);
        return NULL;
    }
    return cond_call(M_ENTER, s_enter, args, 1);
}

static PyObject *
cond_exit(PyObject *mod, PyObject *const *args, Py_ssize_t nargs)
{
    return cond_call(M_EXIT, s_exit, args, nargs);
}

static PyObject *
cond_release_save(PyObject *mod, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 1) {
        PyErr_Format(PyExc_TypeError,
                     "_release_save() takes 1 positional argument but %zd were given", nargs);
        return NULL;
    }
    PyObject *result = cond_call(M_RELEASE, s_release, args, 1);
    if (result == NULL)
        return NULL;
    Py_DECREF(result);
    Py_RETURN_NONE; /* as threading's: the lock's release() is not returned */
}

static PyObject *
cond_acquire_restore(PyObject *mod, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_Format(PyExc_TypeError,
                     "_acquire_restore() takes 2 positional arguments but %zd were given", nargs);
        return NULL;
    }
    PyObject *result = cond_call(M_ACQUIRE, s_acquire, args, 1);
    if (result == NULL)
        return NULL;
    Py_DECREF(result);
    Py_RETURN_NONE;
}

static PyObject *
cond_is_owned(PyObject *mod, PyObject *const *args, Py_ssize_t nargs)
{
    /* threading's: a probe of the lock (acquire(False), released again if
     * it was free), which the C core of a tracked lock tells apart as its
     * holder's probe (a signal: signals.py). */
    if (nargs != 1) {
        PyErr_Format(PyExc_TypeError, "_is_owned() takes 1 positional argument but %zd were given",
                     nargs);
        return NULL;
    }
    PyObject *lock = PyObject_GetAttr(args[0], s_lock_attr);
    if (lock == NULL)
        return NULL;
    PyObject *probe[2] = {lock, Py_False};
    PyObject *got = call_method_cached(M_ACQUIRE, s_acquire, probe, 2);
    Py_DECREF(lock);
    if (got == NULL)
        return NULL;
    int free = PyObject_IsTrue(got);
    Py_DECREF(got);
    if (free < 0)
        return NULL;
    if (!free)
        Py_RETURN_TRUE;
    PyObject *result = cond_call(M_RELEASE, s_release, args, 1);
    if (result == NULL)
        return NULL;
    Py_DECREF(result);
    Py_RETURN_FALSE;
}

/* ---- Semaphore and BoundedSemaphore ------------------------------------ *
 *
 * The hot path of primitives._TrackedSemaphoreMixin (acquire with a free
 * unit, release(1)) in C, on the same fields, which live here (member
 * descriptors: threading's own Semaphore code reads and writes them as
 * attributes).  A busy Condition lock, no free unit, a BoundedSemaphore's
 * release, a release by a thread holding no unit, keyword arguments other
 * than acquire's, anything unusual: the Python method of the same name with
 * a "_py" prefix, before anything was changed. */
typedef struct {
    PyObject_HEAD
    PyObject *value;  /* _value */
    PyObject *lock;   /* _dw_lock: the raw lock of _cond */
    PyObject *cond;   /* _cond */
    PyObject *units;  /* _dw_units: {rec: units held} */
    PyObject *sites;  /* _dw_sites: {rec: (code, offset) or None} */
    char signal;      /* _dw_signal */
    PyObject *weakreflist;
} SemCore;

static PyObject *s_on_semaphore, *s_waiters, *s_notify, *s_dw_bounded, *s_py_sem_release;
static PyObject *s_blocking, *s_timeout, *s_initial_value;
static PyObject *g_one, *g_zero;

/* An exact int's value, as a C long: 1 and *out set, or 0 (not an exact
 * int, or too big). */
static int
small_int(PyObject *obj, long *out)
{
    if (obj == NULL || !PyLong_CheckExact(obj))
        return 0;
    int overflow;
    long v = PyLong_AsLongAndOverflow(obj, &overflow);
    if (overflow || (v == -1 && PyErr_Occurred())) {
        PyErr_Clear();
        return 0;
    }
    *out = v;
    return 1;
}

/* type(self).<name>(self, *args, **kwargs): the function called with self,
 * not a bound method made for the call.  A bound method held here, on the C
 * stack, through a blocking wait would be a reference to the semaphore that
 * the watcher's reach cannot place (it names no thread): it would take it
 * for a way in from somewhere it cannot see. */
static PyObject *
sem_fallback(SemCore *self, PyObject *name, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    PyObject *func = _PyType_Lookup(Py_TYPE(self), name); /* borrowed */
    if (func == NULL) {
        PyErr_Format(PyExc_AttributeError, "'%s' object has no attribute '%U'", Py_TYPE(self)->tp_name, name);
        return NULL;
    }
    Py_INCREF(func);
    Py_ssize_t total = nargs + (kwnames == NULL ? 0 : PyTuple_GET_SIZE(kwnames));
    PyObject *small[8];
    PyObject **stack = total + 1 <= 8 ? small : PyMem_New(PyObject *, total + 1);
    if (stack == NULL) {
        Py_DECREF(func);
        return PyErr_NoMemory();
    }
    stack[0] = (PyObject *)self;
    for (Py_ssize_t i = 0; i < total; i++)
        stack[i + 1] = args[i];
    PyObject *r = PyObject_Vectorcall(func, stack, nargs + 1, kwnames);
    if (stack != small)
        PyMem_Free(stack);
    Py_DECREF(func);
    return r;
}

/* The raw lock taken without waiting: 1, or 0 (busy, or not a lock of the
 * checked layout: the Python path decides). */
static int
sem_try_lock(SemCore *self)
{
    PyObject *lock = self->lock;
    if (lock == NULL || g_direct_lock_type == NULL || Py_TYPE(lock) != g_direct_lock_type)
        return 0;
    RawLockLayout *raw = (RawLockLayout *)lock;
    if (PyThread_acquire_lock_timed(raw->lock_lock, 0, 0) != PY_LOCK_ACQUIRED)
        return 0;
    raw->locked = 1;
    return 1;
}

static void
sem_unlock(SemCore *self)
{
    RawLockLayout *raw = (RawLockLayout *)self->lock;
    raw->locked = 0;
    PyThread_release_lock(raw->lock_lock);
}

/* The hook primitives.on_semaphore (borrowed; NULL with an error set if
 * the module's globals are gone). */
static PyObject *
sem_hook(void)
{
    PyObject *hook = PyDict_GetItemWithError(g_module_dict, s_on_semaphore);
    if (hook == NULL && !PyErr_Occurred())
        PyErr_SetString(PyExc_RuntimeError, "deadlockwatch: primitives.on_semaphore is missing");
    return hook;
}

/* _TrackedSemaphoreMixin._taken: a unit taken by the calling thread, at the
 * site of acquire()'s caller (or the nearest user frame out of it; None if
 * all are threading's or ours). */
static int
sem_taken(SemCore *self)
{
    if (self->signal)
        return 0;
    if (self->units == NULL || self->sites == NULL || !PyDict_CheckExact(self->units) ||
        !PyDict_CheckExact(self->sites)) {
        PyErr_SetString(PyExc_AttributeError, "deadlockwatch: a tracked Semaphore without its fields");
        return -1;
    }
    PyObject *rec, *held;
    if (current_rec(1, &rec, &held) < 0)
        return -1;
    if (rec == NULL)
        return 0; /* interpreter shutdown: nothing is tracked any more */
    Py_INCREF(rec);
    int rc = -1;
    PyObject *code = NULL, *count = NULL, *site = NULL;
    if (PyList_Append(held, (PyObject *)self) < 0)
        goto done;
    PyObject *had = PyDict_GetItemWithError(self->units, rec); /* borrowed */
    if (had == NULL && PyErr_Occurred())
        goto done;
    count = had == NULL ? (Py_INCREF(g_one), g_one) : PyNumber_Add(had, g_one);
    if (count == NULL || PyDict_SetItem(self->units, rec, count) < 0)
        goto done;
    int lasti, user;
    if (user_site(&code, &lasti, &user) < 0)
        goto done;
    if (code != NULL && user)
        site = Py_BuildValue("(Oi)", code, lasti);
    else
        site = (Py_INCREF(Py_None), Py_None);
    if (site == NULL || PyDict_SetItem(self->sites, rec, site) < 0)
        goto done;
    rc = 0;
done:
    Py_XDECREF(code);
    Py_XDECREF(count);
    Py_XDECREF(site);
    Py_DECREF(rec);
    return rc;
}

/* acquire(blocking=True, timeout=None) */
static PyObject *
sem_acquire(SemCore *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    PyObject *blocking = Py_True, *timeout = Py_None;
    Py_ssize_t nkw = kwnames == NULL ? 0 : PyTuple_GET_SIZE(kwnames);
    if (nargs + nkw > 2 || g_module_dict == NULL)
        goto slow;
    if (nargs > 0)
        blocking = args[0];
    if (nargs > 1)
        timeout = args[1];
    for (Py_ssize_t i = 0; i < nkw; i++) {
        PyObject *name = PyTuple_GET_ITEM(kwnames, i);
        if (name == s_blocking && nargs == 0)
            blocking = args[nargs + i];
        else if (name == s_timeout && nargs < 2)
            timeout = args[nargs + i];
        else
            goto slow; /* the Python path's answer (its error) */
    }
    if (blocking != Py_True)
        goto slow;
    if (timeout == Py_None && self->signal) {
        PyObject *hook = sem_hook();
        if (hook == NULL)
            return NULL;
        if (hook != Py_None)
            goto slow; /* a wait on a signal: the hook hears of it */
    }
    if (!sem_try_lock(self))
        goto slow;
    PyObject *value = self->value;
    long units;
    if (!small_int(value, &units) || units < 0) {
        sem_unlock(self);
        goto slow; /* not an int: the Python path */
    }
    if (units == 0) {
        sem_unlock(self);
        /* No free unit and a zero timeout (ThreadPoolExecutor's idle
         * check): False at once, as the Python path answers. */
        if ((PyLong_CheckExact(timeout) || PyFloat_CheckExact(timeout)) &&
            PyObject_RichCompareBool(timeout, g_zero, Py_EQ) == 1)
            Py_RETURN_FALSE;
        goto slow; /* the Python path waits */
    }
    PyObject *less = PyNumber_Subtract(value, g_one);
    if (less == NULL) {
        sem_unlock(self);
        return NULL;
    }
    Py_SETREF(self->value, less);
    sem_unlock(self);
    if (sem_taken(self) < 0)
        return NULL;
    Py_RETURN_TRUE;
slow:
    return sem_fallback(self, s_py_acquire, args, nargs, kwnames);
}

static PyObject *
sem_enter(SemCore *self, PyObject *unused)
{
    return sem_acquire(self, NULL, 0, NULL);
}

/* release(n=1) */
static PyObject *
sem_release(SemCore *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    if (kwnames != NULL || nargs > 1 || g_module_dict == NULL)
        goto slow;
    long n_arg;
    if (nargs == 1 && !(small_int(args[0], &n_arg) && n_arg == 1))
        goto slow;
    if (self->value == NULL || !PyLong_CheckExact(self->value) || self->cond == NULL ||
        self->units == NULL || self->sites == NULL)
        goto slow;
    PyObject *bounded = _PyType_Lookup(Py_TYPE(self), s_dw_bounded); /* borrowed */
    if (bounded != Py_False && bounded != Py_True)
        goto slow;
    long initial = 0;
    if (bounded == Py_True) {
        /* A BoundedSemaphore: no release above its initial value. */
        PyObject *init = PyObject_GetAttr((PyObject *)self, s_initial_value);
        if (init == NULL)
            PyErr_Clear(); /* the Python path raises it */
        int known = small_int(init, &initial);
        Py_XDECREF(init);
        if (!known)
            goto slow;
    }
    PyObject *rec = NULL, *held = NULL;
    long mine = 0;
    if (!self->signal) {
        /* A release by a thread that holds no unit makes it a signal: the
         * Python path does that. */
        if (current_rec(0, &rec, &held) < 0)
            return NULL;
        if (rec == NULL)
            goto slow;
        PyObject *count = PyDict_GetItemWithError(self->units, rec); /* borrowed */
        if (count == NULL && PyErr_Occurred())
            return NULL;
        if (!small_int(count, &mine) || mine <= 0)
            goto slow;
    }
    if (!sem_try_lock(self))
        goto slow;
    long value;
    if (!small_int(self->value, &value)) {
        sem_unlock(self);
        goto slow;
    }
    if (bounded == Py_True && value >= initial) {
        sem_unlock(self);
        PyErr_SetString(PyExc_ValueError, "Semaphore released too many times");
        return NULL;
    }
    PyObject *more = PyLong_FromLong(value + 1);
    if (more == NULL) {
        sem_unlock(self);
        return NULL;
    }
    Py_SETREF(self->value, more);
    PyObject *waiters = PyObject_GetAttr(self->cond, s_waiters);
    int any = waiters == NULL ? -1 : PyObject_IsTrue(waiters);
    Py_XDECREF(waiters);
    if (any > 0) {
        PyObject *r = PyObject_CallMethodNoArgs(self->cond, s_notify);
        Py_XDECREF(r);
        if (r == NULL)
            any = -1;
    }
    sem_unlock(self);
    if (any < 0)
        return NULL;
    if (self->signal) {
        PyObject *hook = sem_hook();
        if (hook == NULL)
            return NULL;
        if (hook != Py_None) {
            /* on_semaphore(sem, False, 1): the caller of release() is one
             * frame out of the hook's (this method has none). */
            PyObject *hargs[3] = {(PyObject *)self, Py_False, g_one};
            PyObject *r = PyObject_Vectorcall(hook, hargs, 3, NULL);
            if (r == NULL)
                return NULL;
            Py_DECREF(r);
        }
        Py_RETURN_NONE;
    }
    /* The unit the calling thread held (mine, read above: only this thread
     * changes its own count). */
    Py_INCREF(rec);
    int rc = -1;
    int last = mine == 1;
    if (last) {
        /* units.pop(rec, None); sites.pop(rec, None) */
        if (PyDict_DelItem(self->units, rec) < 0) {
            if (!PyErr_ExceptionMatches(PyExc_KeyError))
                goto done;
            PyErr_Clear();
        }
        if (PyDict_DelItem(self->sites, rec) < 0) {
            if (!PyErr_ExceptionMatches(PyExc_KeyError))
                goto done;
            PyErr_Clear();
        }
    }
    else {
        PyObject *less = PyLong_FromLong(mine - 1);
        if (less == NULL)
            goto done;
        int set = PyDict_SetItem(self->units, rec, less);
        Py_DECREF(less);
        if (set < 0)
            goto done;
    }
    Py_ssize_t n = PyList_GET_SIZE(held);
    if (last && n > 0 && PyList_GET_ITEM(held, n - 1) == (PyObject *)self) {
        if (PyList_SetSlice(held, n - 1, n, NULL) < 0)
            goto done;
    }
    else {
        PyObject *rargs[2] = {rec, (PyObject *)self};
        PyObject *r = PyObject_Vectorcall(g_remove_held, rargs, 2, NULL);
        if (r == NULL)
            goto done;
        Py_DECREF(r);
    }
    rc = 0;
done:
    Py_DECREF(rec);
    if (rc < 0)
        return NULL;
    Py_RETURN_NONE;
slow:
    return sem_fallback(self, s_py_sem_release, args, nargs, kwnames);
}

static int
sem_traverse(SemCore *self, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(self->value);
    Py_VISIT(self->lock);
    Py_VISIT(self->cond);
    Py_VISIT(self->units);
    Py_VISIT(self->sites);
    return 0;
}

static int
sem_clear(SemCore *self)
{
    Py_CLEAR(self->value);
    Py_CLEAR(self->lock);
    Py_CLEAR(self->cond);
    Py_CLEAR(self->units);
    Py_CLEAR(self->sites);
    return 0;
}

static void
sem_dealloc(SemCore *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    if (self->weakreflist != NULL)
        PyObject_ClearWeakRefs((PyObject *)self);
    sem_clear(self);
    tp->tp_free((PyObject *)self);
    Py_DECREF(tp);
}

static PyMemberDef sem_members[] = {
    {"_value", T_OBJECT_EX, offsetof(SemCore, value), 0, NULL},
    {"_dw_lock", T_OBJECT_EX, offsetof(SemCore, lock), 0, NULL},
    {"_cond", T_OBJECT_EX, offsetof(SemCore, cond), 0, NULL},
    {"_dw_units", T_OBJECT_EX, offsetof(SemCore, units), 0, NULL},
    {"_dw_sites", T_OBJECT_EX, offsetof(SemCore, sites), 0, NULL},
    {"_dw_signal", T_BOOL, offsetof(SemCore, signal), 0, NULL},
    {"__weaklistoffset__", T_PYSSIZET, offsetof(SemCore, weakreflist), READONLY},
    {NULL},
};

static PyMethodDef sem_methods[] = {
    {"acquire", (PyCFunction)(void (*)(void))sem_acquire, METH_FASTCALL | METH_KEYWORDS, NULL},
    {"__enter__", (PyCFunction)sem_enter, METH_NOARGS, NULL},
    {"release", (PyCFunction)(void (*)(void))sem_release, METH_FASTCALL | METH_KEYWORDS, NULL},
    {NULL},
};

static PyType_Slot sem_slots[] = {
    {Py_tp_doc, "The C uncontended path of deadlockwatch's tracked Semaphore."},
    {Py_tp_new, PyType_GenericNew},
    {Py_tp_dealloc, sem_dealloc},
    {Py_tp_traverse, sem_traverse},
    {Py_tp_clear, sem_clear},
    {Py_tp_methods, sem_methods},
    {Py_tp_members, sem_members},
    {0, NULL},
};

static PyType_Spec sem_spec = {
    .name = "deadlockwatch._track._speedups.SemCore",
    .basicsize = sizeof(SemCore),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .slots = sem_slots,
};

/* Named as the methods they stand for (the watcher's reach tells a `with`
 * block's bound __exit__ on a frame's stack by its name). */
static PyMethodDef cond_methods[] = {
    {"__enter__", (PyCFunction)(void (*)(void))cond_enter, METH_FASTCALL,
     "self._lock.__enter__()"},
    {"__exit__", (PyCFunction)(void (*)(void))cond_exit, METH_FASTCALL,
     "self._lock.__exit__(*args)"},
    {"_release_save", (PyCFunction)(void (*)(void))cond_release_save, METH_FASTCALL,
     "self._lock.release()"},
    {"_acquire_restore", (PyCFunction)(void (*)(void))cond_acquire_restore, METH_FASTCALL,
     "self._lock.acquire()"},
    {"_is_owned", (PyCFunction)(void (*)(void))cond_is_owned, METH_FASTCALL,
     "whether the calling thread holds self._lock (a probe: acquire(False))"},
    {NULL},
};

/* {name: a descriptor that binds the C function to the instance it is looked
 * up on, as a function in a class does} */
static PyObject *
condition_methods(PyObject *mod, PyObject *unused)
{
    PyObject *result = PyDict_New();
    if (result == NULL)
        return NULL;
    for (PyMethodDef *def = cond_methods; def->ml_name != NULL; def++) {
        PyObject *func = PyCFunction_NewEx(def, NULL, NULL);
        PyObject *method = func == NULL ? NULL : PyInstanceMethod_New(func);
        Py_XDECREF(func);
        if (method == NULL || PyDict_SetItemString(result, def->ml_name, method) < 0) {
            Py_XDECREF(method);
            Py_DECREF(result);
            return NULL;
        }
        Py_DECREF(method);
    }
    return result;
}

/* ---- Condition.wait, the blocking case (issue 17) -------------------------
 *
 * waits._plain_condition_wait's fast case in C: the checks, the waiter lock,
 * the ConditionWait record (its slots written at their offsets), its
 * registration in _state.blocked, the sliced wait on the waiter, and the
 * unregistration, with no Python frame of deadlockwatch's between the
 * application and the Condition's lock (so the C core's take of that lock
 * after the wait finds the application's frame at once).  Anything else (not
 * enabled, green threads, a timeout other than None or a plain number in
 * range, keywords, a lock other than the tracked Lock or RLock, a thread
 * without a record, no calling frame) goes to the Python function it was made
 * with, which does exactly the same in Python. */

static PyObject *gw_waits;      /* waits' globals: "active" */
static PyObject *gw_state;      /* _state's globals: "blocked", "resume_watcher" */
static PyObject *gw_signals;    /* signals' globals: "learning", "waiting" */
static PyObject *gw_meaning;    /* meaning's globals: "LAZY" (what a wait means is read later) */
static PyObject *gw_thread;     /* _thread's dict: "allocate_lock" (green threads replace it) */
static PyTypeObject *gw_record_type; /* meaning.ConditionWait */
static PyTypeObject *gw_lock_type;   /* primitives.TrackedLock */
static PyTypeObject *gw_rlock_type;  /* primitives.TrackedRLock */
static PyObject *gw_open;       /* _state._OPEN */
static PyObject *gw_poll_start; /* _state.poll_start(wait) */
static PyObject *gw_poll_end;   /* _state.poll_end(wait) */
static double gw_timeout_max;
static PyObject *gw_slow;      /* what wait_fast returns for "the Python wait goes on" */
static PyTypeObject *g_lock_core_type, *g_rlock_core_type;
static PyObject *s_active, *s_blocked, *s_resume_watcher, *s_learning, *s_waiting, *s_allocate_lock;
static PyObject *s_append, *s_remove, *s_wait_attr, *s_poll, *s_condition_kind, *s_wait_slice, *s_acquire_restore, *s_lazy;

/* The offsets of ConditionWait's slots. */
enum { W_REC, W_TIMEOUT, W_SINCE, W_INTERRUPT, W_GATE, W_REPORTED, W_SELF_WAIT, W_POLLED_SINCE,
       W_WAITER, W_COND, W_FRAME, W_COUNT };
static const char *gw_field_names[W_COUNT] = {"rec", "timeout", "since", "interrupt", "gate",
                                              "reported", "self_wait", "polled_since", "waiter",
                                              "_cond", "_frame"};
static Py_ssize_t gw_offsets[W_COUNT];

#define WFIELD(obj, i) (*(PyObject **)((char *)(obj) + gw_offsets[i]))

/* The thread record's slots that every blocking wait reads and writes
 * (_state.ThreadRecord's "wait" and "poll"), at their offsets: through
 * PyObject_GetAttr / PyObject_SetAttr each cost 200 to 270 instructions on
 * 3.13 (a type lookup, through the thread state's TLS, and the name interned
 * again), four of them a wait (issue 17).  Only for a record of exactly that
 * type (configure_wait checked its slots); any other object, or a slot not
 * set, goes the generic way, which does the same or raises what Python
 * raises. */
enum { R_WAIT, R_POLL, R_COUNT };
static const char *gw_rec_field_names[R_COUNT] = {"wait", "poll"};
static Py_ssize_t gw_rec_offsets[R_COUNT];
static PyTypeObject *gw_thread_record_type; /* _state.ThreadRecord */

static unsigned int gw_rec_tag;    /* its version tag when its slots were checked */

#define RFIELD(obj, i) (*(PyObject **)((char *)(obj) + gw_rec_offsets[i]))

static int slot_offset(PyObject *type, const char *name, Py_ssize_t *offset);

/* Whether rec's "wait" and "poll" are the slots at gw_rec_offsets: rec is of
 * exactly _state.ThreadRecord and the type is unchanged since they were
 * checked (else they are checked again: a change elsewhere in the class). */
static int
rec_slots(PyObject *rec)
{
#if PY_VERSION_HEX < 0x030B0000
    (void)rec; /* 3.10: tags can come back (see call_method_cached) */
    return 0;
#else
    PyTypeObject *tp = Py_TYPE(rec);
    if (tp != gw_thread_record_type)
        return 0;
    if (DW_TAG_OK(tp, gw_rec_tag))
        return 1;
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    int ok = 1;
    for (int i = 0; ok && i < R_COUNT; i++) {
        Py_ssize_t offset;
        ok = slot_offset((PyObject *)tp, gw_rec_field_names[i], &offset) == 1 &&
             offset == gw_rec_offsets[i];
    }
    PyErr_Clear();
    PyErr_Restore(type, value, tb);
    if (!ok)
        return 0;
    gw_rec_tag = assign_tag(tp, s_wait_attr);
    return gw_rec_tag != 0;
#endif
}

/* rec.<field>: a new reference, or NULL with an error set. */
static PyObject *
rec_get(PyObject *rec, int i, PyObject *name)
{
    if (rec_slots(rec)) {
        PyObject *v = RFIELD(rec, i);
        if (v != NULL) {
            Py_INCREF(v);
            return v;
        }
    }
    return PyObject_GetAttr(rec, name);
}

/* rec.<field> = value: 0, or -1 with an error set. */
static int
rec_set(PyObject *rec, int i, PyObject *name, PyObject *value)
{
    if (rec_slots(rec)) {
        /* what the slot's member descriptor does */
        PyObject *old = RFIELD(rec, i);
        Py_INCREF(value);
        RFIELD(rec, i) = value;
        Py_XDECREF(old);
        return 0;
    }
    return PyObject_SetAttr(rec, name, value);
}

static double
dw_monotonic(void)
{
#if PY_VERSION_HEX >= 0x030D0000
    PyTime_t t;
    if (PyTime_Monotonic(&t) < 0) {
        PyErr_Clear();
        return 0.0;
    }
    return PyTime_AsSecondsDouble(t);
#else
    return _PyTime_AsSecondsDouble(_PyTime_GetMonotonicClock());
#endif
}

static void
wset(PyObject *obj, int i, PyObject *value) /* steals value */
{
    Py_XSETREF(WFIELD(obj, i), value);
}

/* The raw waiter's acquire(True, seconds): 1 taken, 0 not, -1 error (a
 * signal handler raised), as _thread's lock does it (signals handled while
 * waiting, the rest of the time waited again). */
static int
waiter_take(RawLockLayout *raw, double seconds)
{
    PyLockStatus r = PyThread_acquire_lock_timed(raw->lock_lock, 0, 0);
    if (r == PY_LOCK_FAILURE && seconds > 0) {
        double deadline = dw_monotonic() + seconds;
        for (;;) {
            PY_TIMEOUT_T us = (PY_TIMEOUT_T)(seconds * 1e6);
            Py_BEGIN_ALLOW_THREADS
            r = PyThread_acquire_lock_timed(raw->lock_lock, us, 1);
            Py_END_ALLOW_THREADS
            if (r != PY_LOCK_INTR)
                break;
            if (Py_MakePendingCalls() < 0)
                return -1;
            seconds = deadline - dw_monotonic();
            if (seconds <= 0) {
                r = PyThread_acquire_lock_timed(raw->lock_lock, 0, 0);
                break;
            }
        }
    }
    if (r != PY_LOCK_ACQUIRED)
        return 0;
    raw->locked = 1;
    return 1;
}

/* _state.wait_lock's loop: registered meanwhile; 1 got it, 0 timed out, -1
 * error (the watcher's interruption included). */
static int
wait_blocked(PyObject *rec, PyObject *wait, RawLockLayout *waiter, PyObject *timeout, double since)
{
    PyObject *poll = rec_get(rec, R_POLL, s_poll);
    if (poll == NULL)
        return -1;
    int had_poll = poll != Py_None;
    Py_DECREF(poll);
    if (had_poll && timeout != Py_None) {
        PyObject *r = PyObject_CallOneArg(gw_poll_start, wait);
        if (r == NULL)
            return -1;
        Py_DECREF(r);
    }
    PyObject *blocked = PyDict_GetItemWithError(gw_state, s_blocked);
    if (blocked == NULL || !PyDict_Check(blocked)) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_RuntimeError, "deadlockwatch: _state.blocked is not a dict");
        return -1;
    }
    Py_INCREF(blocked);
    if (rec_set(rec, R_WAIT, s_wait_attr, wait) < 0) {
        Py_DECREF(blocked);
        return -1;
    }
    int rc;
    int timed_out = 0;
    if (PyDict_SetItem(blocked, rec, wait) < 0) {
        rc = -1;
        goto done;
    }
    PyObject *slice_obj = PyDict_GetItemWithError(gw_state, s_wait_slice);
    double slice = slice_obj == NULL ? -1.0 : PyFloat_AsDouble(slice_obj);
    if (slice_obj == NULL || (slice == -1.0 && PyErr_Occurred())) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_RuntimeError, "deadlockwatch: _state.WAIT_SLICE is gone");
        rc = -1;
        goto done;
    }
    double deadline = timeout == Py_None ? 0.0 : since + PyFloat_AsDouble(timeout);
    if (timeout != Py_None && PyErr_Occurred()) {
        rc = -1;
        goto done;
    }
    for (;;) {
        PyObject *resume = PyDict_GetItemWithError(gw_state, s_resume_watcher);
        if (resume == NULL && PyErr_Occurred()) {
            rc = -1;
            goto done;
        }
        if (resume != NULL && resume != Py_None) {
            Py_INCREF(resume);
            PyObject *r = PyObject_CallNoArgs(resume);
            Py_DECREF(resume);
            if (r == NULL) {
                rc = -1;
                goto done;
            }
            Py_DECREF(r);
        }
        double remaining = slice;
        if (timeout != Py_None)
            remaining = deadline - dw_monotonic();
        int got = waiter_take(waiter, remaining > slice ? slice : remaining > 0 ? remaining : 0.0);
        /* A slice that ran out: the signal handlers due (in the main thread),
         * as the Python loop's next bytecode would run them.  A signal that
         * came while this thread was not in the OS wait (between slices,
         * taking the GIL back) interrupts no later slice, and an untimed
         * wait would never return to run its handler (an Event set by a
         * SIGALRM handler: a hang, test_waits' no-false-alarm case on 3.10). */
        if (got == 0 && Py_MakePendingCalls() < 0)
            got = -1;
        if (got < 0) {
            rc = -1;
            goto done;
        }
        PyObject *error = WFIELD(wait, W_INTERRUPT);
        if (error != NULL && error != Py_None) {
            PyObject *gate = WFIELD(wait, W_GATE);
            int open = 0;
            if (gate != NULL) {
                Py_INCREF(gate);
                PyObject *first = PySequence_GetItem(gate, 0);
                Py_DECREF(gate);
                open = first == NULL ? -1 : PyObject_IsTrue(first);
                Py_XDECREF(first);
            }
            if (open < 0) {
                rc = -1;
                goto done;
            }
            if (open) {
                Py_INCREF(error);
                if (PyExceptionInstance_Check(error))
                    PyErr_SetObject((PyObject *)Py_TYPE(error), error);
                else
                    PyErr_SetObject(error, NULL);
                Py_DECREF(error);
                rc = -1;
                goto done;
            }
        }
        if (got) {
            rc = 1;
            goto done;
        }
        if (timeout != Py_None && remaining <= slice) {
            timed_out = 1;
            rc = 0;
            goto done;
        }
    }
done:;
    /* finally: unregistered, whatever happened (the error kept) */
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    int bad = rec_set(rec, R_WAIT, s_wait_attr, Py_None) < 0;
    if (!bad && PyDict_DelItem(blocked, rec) < 0) {
        if (PyErr_ExceptionMatches(PyExc_KeyError))
            PyErr_Clear();
        else
            bad = 1;
    }
    if (!bad) {
        if (timed_out) {
            PyObject *r = PyObject_CallOneArg(gw_poll_end, wait);
            bad = r == NULL;
            Py_XDECREF(r);
        }
        else {
            poll = rec_get(rec, R_POLL, s_poll);
            bad = poll == NULL || (poll != Py_None && rec_set(rec, R_POLL, s_poll, Py_None) < 0);
            Py_XDECREF(poll);
        }
    }
    Py_DECREF(blocked);
    if (bad) {
        if (type != NULL) {
            /* raised in the finally: the first error is its context */
            PyObject *t2, *v2, *tb2;
            PyErr_Fetch(&t2, &v2, &tb2);
            PyErr_NormalizeException(&type, &value, &tb);
            PyErr_NormalizeException(&t2, &v2, &tb2);
            if (tb != NULL && value != NULL)
                PyException_SetTraceback(value, tb);
            if (v2 != NULL && value != NULL)
                PyException_SetContext(v2, value); /* steals value */
            else
                Py_XDECREF(value);
            Py_XDECREF(type);
            Py_XDECREF(tb);
            PyErr_Restore(t2, v2, tb2);
        }
        return -1;
    }
    PyErr_Restore(type, value, tb);
    return rc;
}

/* Whether the calling thread may wait on cond's lock, as threading's
 * _is_owned says (1, 0), or -2: not a lock this knows (the Python path). */
static int
wait_lock_owned(PyObject *lock)
{
    PyTypeObject *tp = Py_TYPE(lock);
    if (tp != gw_lock_type && tp != gw_rlock_type)
        return -2;
    PyObject *raw = ((Core *)lock)->raw;
    if (raw == NULL)
        return -2;
    if (tp == gw_lock_type && Py_TYPE(raw) == g_direct_lock_type && g_direct_lock_type != NULL)
        return ((RawLockLayout *)raw)->locked != 0;
    if (tp == gw_rlock_type && Py_TYPE(raw) == g_direct_rlock_type && g_direct_rlock_type != NULL) {
        RawRLockLayout *r = (RawRLockLayout *)raw;
        return r->rlock_count > 0 && r->rlock_owner == PyThread_get_thread_ident();
    }
    return -2;
}

/* Calls a method of obj with no argument or one; -1 error, else 0. */
static int
call_method_void(int which, PyObject *obj, PyObject *name, PyObject *arg)
{
    PyObject *stack[2] = {obj, arg};
    PyObject *r = which >= 0 ? call_method_cached(which, name, stack, arg == NULL ? 1 : 2)
                  : arg == NULL ? PyObject_CallMethodNoArgs(obj, name)
                                : PyObject_CallMethodOneArg(obj, name, arg);
    if (r == NULL)
        return -1;
    Py_DECREF(r);
    return 0;
}

/* "Not handled here": the Python wait goes on. */
static PyObject *
cwait_fallback(void)
{
    Py_INCREF(gw_slow);
    return gw_slow;
}

/* wait_fast(cond, timeout): what the Python wait (waits._plain_condition_wait)
 * returns, or gw_slow if it is to go on itself. */
static PyObject *
wait_fast(PyObject *mod, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "wait_fast(cond, timeout)");
        return NULL;
    }
    if (gw_record_type == NULL || g_direct_lock_type == NULL)
        return cwait_fallback();
    PyObject *cond = args[0];
    PyObject *timeout = args[1];
    /* enabled, a timeout as the original would take it, no green threads */
    PyObject *active = PyDict_GetItemWithError(gw_waits, s_active);
    if (active != Py_True)
        return PyErr_Occurred() ? NULL : cwait_fallback();
    if (timeout != Py_None) {
        double t;
        if (PyFloat_CheckExact(timeout))
            t = PyFloat_AS_DOUBLE(timeout);
        else if (PyLong_CheckExact(timeout)) {
            t = PyLong_AsDouble(timeout);
            if (t == -1.0 && PyErr_Occurred()) {
                PyErr_Clear();
                return cwait_fallback();
            }
        }
        else
            return cwait_fallback();
        if (!(t > 0 && t <= gw_timeout_max))
            return cwait_fallback();
    }
    PyObject *lazy = PyDict_GetItemWithError(gw_meaning, s_lazy);
    if (lazy != Py_True)
        return PyErr_Occurred() ? NULL : cwait_fallback();
    PyObject *factory = PyDict_GetItemWithError(gw_thread, s_allocate_lock);
    if (factory != g_lock_factory)
        return PyErr_Occurred() ? NULL : cwait_fallback();
    /* The frame that called the Python wait (whose frame is the innermost). */
    PyFrameObject *inner = PyEval_GetFrame(); /* borrowed */
    PyFrameObject *caller = inner == NULL ? NULL : PyFrame_GetBack(inner); /* new */
    if (caller == NULL)
        return cwait_fallback();
    PyObject *rec, *held;
    if (current_rec(1, &rec, &held) < 0) {
        Py_DECREF(caller);
        return NULL;
    }
    if (rec == NULL) {
        Py_DECREF(caller);
        return cwait_fallback();
    }
    PyObject *lock = PyObject_GetAttr(cond, s_lock_attr);
    if (lock == NULL) {
        Py_DECREF(caller);
        return NULL;
    }
    int owned = wait_lock_owned(lock);
    if (owned != 1) {
        /* not a lock known here, or not owned: the Python wait (which raises) */
        Py_DECREF(lock);
        Py_DECREF(caller);
        return cwait_fallback();
    }
    Py_INCREF(rec);
    Py_INCREF(held);
    PyObject *result = NULL, *waiter = NULL, *waiters = NULL, *wait = NULL;
    if (timeout == Py_None) {
        PyObject *learning = PyDict_GetItemWithError(gw_signals, s_learning);
        if (learning == NULL && PyErr_Occurred())
            goto out;
        int learn = learning == NULL ? 0 : PyObject_IsTrue(learning);
        if (learn < 0)
            goto out;
        /* signals.waiting's first answers, without the call: nothing held,
         * or only the Condition's own lock (every wait like this one holds
         * it), leave nothing to learn. */
        Py_ssize_t nheld = PyList_GET_SIZE(held);
        if (nheld == 0 ||
            (nheld == 1 && (PyList_GET_ITEM(held, 0) == lock || PyList_GET_ITEM(held, 0) == cond)))
            learn = 0;
        if (learn) {
            PyObject *waiting = PyDict_GetItemWithError(gw_signals, s_waiting);
            if (waiting == NULL) {
                if (!PyErr_Occurred())
                    PyErr_SetString(PyExc_RuntimeError, "deadlockwatch: signals.waiting is gone");
                goto out;
            }
            PyObject *wargs[3] = {cond, s_condition_kind, (PyObject *)caller};
            PyObject *r = PyObject_Vectorcall(waiting, wargs, 3, NULL);
            if (r == NULL)
                goto out;
            Py_DECREF(r);
        }
    }
    waiter = PyObject_CallNoArgs(g_lock_factory);
    if (waiter == NULL)
        goto out;
    if (Py_TYPE(waiter) != g_direct_lock_type) {
        PyErr_SetString(PyExc_RuntimeError, "deadlockwatch: an unexpected waiter lock");
        goto out;
    }
    RawLockLayout *raw = (RawLockLayout *)waiter;
    if (PyThread_acquire_lock_timed(raw->lock_lock, 0, 0) != PY_LOCK_ACQUIRED) {
        PyErr_SetString(PyExc_RuntimeError, "deadlockwatch: a new waiter lock is taken");
        goto out;
    }
    raw->locked = 1;
    waiters = PyObject_GetAttr(cond, s_waiters);
    if (waiters == NULL || call_method_void(M_APPEND, waiters, s_append, waiter) < 0)
        goto out;
    PyObject *saved = PyObject_CallMethodNoArgs(cond, s_release_save);
    if (saved == NULL)
        goto out;
    /* try: */
    int gotit = 0;
    wait = gw_record_type->tp_alloc(gw_record_type, 0);
    if (wait != NULL) {
        double since = dw_monotonic();
        PyObject *since_obj = PyFloat_FromDouble(since);
        if (since_obj == NULL) {
            Py_CLEAR(wait);
        }
        else {
            Py_INCREF(rec);
            wset(wait, W_REC, rec);
            Py_INCREF(timeout);
            wset(wait, W_TIMEOUT, timeout);
            wset(wait, W_SINCE, since_obj);
            Py_INCREF(Py_None);
            wset(wait, W_INTERRUPT, Py_None);
            Py_INCREF(gw_open);
            wset(wait, W_GATE, gw_open);
            Py_INCREF(Py_False);
            wset(wait, W_REPORTED, Py_False);
            Py_INCREF(Py_False);
            wset(wait, W_SELF_WAIT, Py_False);
            Py_INCREF(Py_None);
            wset(wait, W_POLLED_SINCE, Py_None);
            Py_INCREF(waiter);
            wset(wait, W_WAITER, waiter);
            Py_INCREF(cond);
            wset(wait, W_COND, cond);
            Py_INCREF(caller);
            wset(wait, W_FRAME, (PyObject *)caller);
            int rc = wait_blocked(rec, wait, raw, timeout, since);
            if (rc >= 0) {
                gotit = rc;
                result = rc ? Py_True : Py_False;
                Py_INCREF(result);
            }
        }
    }
    /* finally: */
    {
        PyObject *type, *value, *tb;
        PyErr_Fetch(&type, &value, &tb);
        int bad = call_method_void(-1, cond, s_acquire_restore, saved) < 0;
        Py_DECREF(saved);
        if (!bad && !gotit) {
            if (call_method_void(M_REMOVE, waiters, s_remove, waiter) < 0) {
                if (PyErr_ExceptionMatches(PyExc_ValueError))
                    PyErr_Clear();
                else
                    bad = 1;
            }
        }
        if (bad) {
            Py_CLEAR(result);
            if (type != NULL) {
                PyObject *t2, *v2, *tb2;
                PyErr_Fetch(&t2, &v2, &tb2);
                PyErr_NormalizeException(&type, &value, &tb);
                PyErr_NormalizeException(&t2, &v2, &tb2);
                if (tb != NULL && value != NULL)
                    PyException_SetTraceback(value, tb);
                if (v2 != NULL && value != NULL)
                    PyException_SetContext(v2, value);
                else
                    Py_XDECREF(value);
                Py_XDECREF(type);
                Py_XDECREF(tb);
                PyErr_Restore(t2, v2, tb2);
            }
        }
        else if (type != NULL) {
            Py_CLEAR(result);
            PyErr_Restore(type, value, tb);
        }
    }
out:
    Py_DECREF(held);
    Py_DECREF(lock);
    Py_XDECREF(wait);
    Py_XDECREF(waiters);
    Py_XDECREF(waiter);
    Py_DECREF(caller);
    Py_DECREF(rec);
    return result;
}

/* Whether type's attribute name is a writable object slot of its own (a
 * member descriptor of T_OBJECT_EX): 1 and *offset set, 0 not, -1 error. */
static int
slot_offset(PyObject *type, const char *name, Py_ssize_t *offset)
{
    PyObject *descr = PyObject_GetAttrString(type, name);
    if (descr == NULL) {
        if (!PyErr_ExceptionMatches(PyExc_AttributeError))
            return -1;
        PyErr_Clear();
        return 0;
    }
    int ok = Py_TYPE(descr) == &PyMemberDescr_Type &&
             ((PyMemberDescrObject *)descr)->d_member->type == T_OBJECT_EX &&
             !(((PyMemberDescrObject *)descr)->d_member->flags & READONLY);
    if (ok)
        *offset = ((PyMemberDescrObject *)descr)->d_member->offset;
    Py_DECREF(descr);
    return ok;
}

static PyObject *
configure_wait(PyObject *mod, PyObject *args)
{
    PyObject *waits, *state, *signals, *meaning, *thread, *record_type, *lock_type, *rlock_type, *open;
    PyObject *poll_start, *poll_end, *slow;
    double timeout_max;
    if (!PyArg_ParseTuple(args, "O!O!O!O!O!O!O!O!OOOOd:configure_wait", &PyDict_Type, &waits,
                          &PyDict_Type, &state, &PyDict_Type, &signals, &PyDict_Type, &meaning,
                          &PyDict_Type, &thread,
                          &PyType_Type, &record_type, &PyType_Type, &lock_type, &PyType_Type,
                          &rlock_type, &open, &poll_start, &poll_end, &slow, &timeout_max))
        return NULL;
    if (g_lock_factory == NULL) {
        not_configured();
        return NULL;
    }
    Py_ssize_t offsets[W_COUNT];
    for (int i = 0; i < W_COUNT; i++) {
        int ok = slot_offset(record_type, gw_field_names[i], &offsets[i]);
        if (ok < 0)
            return NULL;
        if (!ok) {
            PyErr_Format(PyExc_TypeError, "deadlockwatch: %s is not a slot", gw_field_names[i]);
            return NULL;
        }
    }
    /* _state.ThreadRecord's "wait" and "poll" at their offsets, if they are
     * slots of its own (else the generic attribute calls, as before). */
    Py_ssize_t rec_offsets[R_COUNT];
    PyObject *rec_type = PyDict_GetItemString(state, "ThreadRecord"); /* borrowed */
    int rec_ok = rec_type != NULL && PyType_Check(rec_type);
    for (int i = 0; rec_ok && i < R_COUNT; i++) {
        rec_ok = slot_offset(rec_type, gw_rec_field_names[i], &rec_offsets[i]);
        if (rec_ok < 0)
            return NULL;
    }
    if (!PyType_IsSubtype((PyTypeObject *)lock_type, g_lock_core_type) ||
        !PyType_IsSubtype((PyTypeObject *)rlock_type, g_rlock_core_type)) {
        PyErr_SetString(PyExc_TypeError, "deadlockwatch: the lock types are not the C cores'");
        return NULL;
    }
    memcpy(gw_offsets, offsets, sizeof offsets);
    if (rec_ok) {
        memcpy(gw_rec_offsets, rec_offsets, sizeof rec_offsets);
        Py_INCREF(rec_type);
        Py_XSETREF(gw_thread_record_type, (PyTypeObject *)rec_type);
        gw_rec_tag = assign_tag((PyTypeObject *)rec_type, s_wait_attr);
    }
    else
        Py_CLEAR(gw_thread_record_type);
#define KEEP(g, v) Py_INCREF(v); Py_XSETREF(g, v)
    KEEP(gw_waits, waits);
    KEEP(gw_state, state);
    KEEP(gw_signals, signals);
    KEEP(gw_meaning, meaning);
    KEEP(gw_thread, thread);
    KEEP(gw_open, open);
    KEEP(gw_poll_start, poll_start);
    KEEP(gw_poll_end, poll_end);
    Py_INCREF(lock_type);
    Py_XSETREF(gw_lock_type, (PyTypeObject *)lock_type);
    Py_INCREF(rlock_type);
    Py_XSETREF(gw_rlock_type, (PyTypeObject *)rlock_type);
    Py_INCREF(record_type);
    Py_XSETREF(gw_record_type, (PyTypeObject *)record_type);
    KEEP(gw_slow, slow);
    gw_timeout_max = timeout_max;
#undef KEEP
    Py_RETURN_NONE;
}

/* -- asyncio.Lock's ``async with`` (aio.py's _lock_aenter) ------------------ */

/* aio_caller_site() -> (code, lasti) or None: where the calling Python
 * function was called from (its caller's code and offset, as
 * sys._getframe(1).f_code and .f_lasti give them), or None where that is
 * no site to keep as is: no caller, or one in deadlockwatch's or asyncio's
 * own files (INTERNAL_FILES; the Python path looks further).  ``async
 * with``'s __aenter__ reads its caller with it: no frame object is made
 * (3.11 to 3.13) and no audit event raised, where sys._getframe does both,
 * and three attribute reads of a frame and a code object, unspecialised
 * in the interpreter, are not made. */
static PyObject *
aio_caller_site(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (g_internal_files == NULL)
        Py_RETURN_NONE;
    PyCodeObject *code;
    int lasti;
#ifdef DW_RAW_FRAMES
    _PyInterpreterFrame *f = current_iframe();
    if (f == NULL)
        Py_RETURN_NONE;
    for (f = f->previous; f != NULL && _PyFrame_IsIncomplete(f); f = f->previous)
        ;
    if (f == NULL)
        Py_RETURN_NONE;
    code = iframe_code(f);
    lasti = _PyInterpreterFrame_LASTI(f);
    lasti = lasti < 0 ? -1 : lasti * (int)sizeof(_Py_CODEUNIT);
    Py_INCREF(code);
#else
    PyFrameObject *frame = PyEval_GetFrame(); /* borrowed */
    if (frame == NULL)
        Py_RETURN_NONE;
    PyFrameObject *back = PyFrame_GetBack(frame); /* new reference */
    if (back == NULL)
        Py_RETURN_NONE;
    lasti = frame_lasti(back);
    code = PyFrame_GetCode(back);
    Py_DECREF(back);
#endif
    int internal = internal_file(code->co_filename);
    if (internal != 0) {
        Py_DECREF(code);
        if (internal < 0)
            return NULL;
        Py_RETURN_NONE;
    }
    PyObject *offset = PyLong_FromLong(lasti);
    PyObject *site = offset == NULL ? NULL : PyTuple_New(2);
    if (site == NULL) {
        Py_DECREF(code);
        Py_XDECREF(offset);
        return NULL;
    }
    PyTuple_SET_ITEM(site, 0, (PyObject *)code);
    PyTuple_SET_ITEM(site, 1, offset);
    return site;
}

/* Set by aio_configure (aio._current_for_wrappers): on 3.10/3.11 asyncio's
 * table of current tasks and its _get_running_loop, else 3.12+'s C
 * current_task (table NULL). */
static PyObject *g_aio_table, *g_aio_running, *g_aio_current;
static PyObject *g_aio_by_thread; /* aio.by_thread: thread ident -> its running loop */

static PyObject *
aio_configure(PyObject *module, PyObject *args)
{
    PyObject *table, *running, *current, *by_thread;
    if (!PyArg_ParseTuple(args, "OOOO!:aio_configure", &table, &running, &current, &PyDict_Type,
                          &by_thread))
        return NULL;
    if (table != Py_None && !PyDict_CheckExact(table)) {
        PyErr_SetString(PyExc_TypeError, "aio_configure: the table is a dict or None");
        return NULL;
    }
    Py_XSETREF(g_aio_by_thread, Py_NewRef(by_thread));
    Py_XSETREF(g_aio_table, table == Py_None ? NULL : Py_NewRef(table));
    Py_XSETREF(g_aio_running, Py_NewRef(running));
    Py_XSETREF(g_aio_current, Py_NewRef(current));
    Py_RETURN_NONE;
}

/* aio_current_task() -> the current task or None, as the asyncio Lock
 * wrappers read it in Python (aio._lock_aenter): table.get(running()), or
 * current() with RuntimeError (no running loop) as None.  One call where
 * the Python takes a dozen bytecodes and two calls.  On 3.10/3.11 the loop
 * is the one aio.by_thread has for this thread (its patched run_forever
 * runs it), without running(): asyncio's _get_running_loop makes a getpid
 * system call each time (2 a round of the asyncio ping-pong off, 6 on
 * before this); running() where this thread has none there. */
static PyObject *
aio_current_task(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (g_aio_table != NULL) {
        PyObject *loop = NULL;
        if (g_aio_by_thread != NULL && PyDict_GET_SIZE(g_aio_by_thread) > 0) {
            /* The last ident's int kept (GIL builds only: see the top). */
            static unsigned long key_ident;
            static PyObject *key;
            unsigned long ident = PyThread_get_thread_ident();
            if (key == NULL || ident != key_ident) {
                PyObject *fresh = PyLong_FromUnsignedLong(ident);
                if (fresh == NULL)
                    return NULL;
                Py_XSETREF(key, fresh);
                key_ident = ident;
            }
            loop = PyDict_GetItemWithError(g_aio_by_thread, key); /* borrowed */
            if (loop == NULL && PyErr_Occurred())
                return NULL;
            Py_XINCREF(loop);
        }
        if (loop == NULL)
            loop = PyObject_CallNoArgs(g_aio_running);
        if (loop == NULL)
            return NULL;
        PyObject *task = PyDict_GetItemWithError(g_aio_table, loop); /* borrowed */
        Py_DECREF(loop);
        if (task == NULL) {
            if (PyErr_Occurred())
                return NULL;
            Py_RETURN_NONE;
        }
        return Py_NewRef(task);
    }
    if (g_aio_current == NULL)
        Py_RETURN_NONE;
    PyObject *task = PyObject_CallNoArgs(g_aio_current);
    if (task == NULL && PyErr_ExceptionMatches(PyExc_RuntimeError)) {
        PyErr_Clear();
        Py_RETURN_NONE;
    }
    return task;
}

static PyMethodDef module_methods[] = {
    {"aio_configure", aio_configure, METH_VARARGS,
     "aio_configure(table or None, running, current, by_thread): what aio_current_task reads"},
    {"aio_current_task", (PyCFunction)(void (*)(void))aio_current_task, METH_FASTCALL,
     "aio_current_task() -> the current task or None (aio._lock_aenter)"},
    {"aio_caller_site", (PyCFunction)(void (*)(void))aio_caller_site, METH_FASTCALL,
     "aio_caller_site() -> (code, lasti) or None: the calling function's caller's site "
     "(aio._lock_aenter)"},
    {"forget", forget, METH_NOARGS, "forget(): the calling thread's record is gone"},
    {"condition_methods", condition_methods, METH_NOARGS,
     "condition_methods() -> {name: method}: threading.Condition's calls of its lock, in C"},
    {"wait_fast", (PyCFunction)(void (*)(void))wait_fast, METH_FASTCALL,
     "wait_fast(cond, timeout) -> Condition.wait's result, or the 'slow' of configure_wait()"},
    {"configure_wait", configure_wait, METH_VARARGS,
     "configure_wait(waits_globals, state_globals, signals_globals, meaning_globals, thread_dict, "
     "record_type, "
     "lock_type, rlock_type, open, poll_start, poll_end, slow, timeout_max)"},
    {"direct", direct, METH_NOARGS,
     "direct() -> (bool, bool): Lock and RLock cores take their raw locks without calling them"},
    {"configure", configure, METH_VARARGS,
     "configure(tls, new_record, internal_files, remove_held, module_globals, lock_factory, "
     "rlock_factory, site_of)"},
    {NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "deadlockwatch._track._speedups",
    "The uncontended path of deadlockwatch's tracked Lock and RLock, in C (optional).", -1,
    module_methods,
};

#define INTERN(var, text) \
    if ((var = PyUnicode_InternFromString(text)) == NULL) return NULL

PyMODINIT_FUNC
PyInit__speedups(void)
{
    INTERN(s_rec, "rec");
    INTERN(s_held, "held");
    INTERN(s_learn_order, "learn_order");
    INTERN(s_on_probe, "on_probe");
    INTERN(s_dw_after, "_dw_after");
    INTERN(s_py_acquire, "_py_acquire");
    INTERN(s_py_release, "_py_release");
    INTERN(s_py_enter, "_py_enter");
    INTERN(s_release_save, "_release_save");
    INTERN(s_py_acquire_restore, "_py_acquire_restore");
    INTERN(s_release, "release");
    INTERN(s_acquire, "acquire");
    INTERN(s_is_owned, "_is_owned");
    INTERN(s_no_orders, "_NO_ORDERS");
    INTERN(s_key, "deadlockwatch.record");
    INTERN(s_lock_attr, "_lock");
    INTERN(s_enter, "__enter__");
    INTERN(s_exit, "__exit__");
    INTERN(s_active, "active");
    INTERN(s_blocked, "blocked");
    INTERN(s_resume_watcher, "resume_watcher");
    INTERN(s_learning, "learning");
    INTERN(s_waiting, "waiting");
    INTERN(s_allocate_lock, "allocate_lock");
    INTERN(s_waiters, "_waiters");
    INTERN(s_append, "append");
    INTERN(s_remove, "remove");
    INTERN(s_wait_attr, "wait");
    INTERN(s_poll, "poll");
    INTERN(s_condition_kind, "Condition");
    INTERN(s_wait_slice, "WAIT_SLICE");
    INTERN(s_lazy, "LAZY");
    INTERN(s_acquire_restore, "_acquire_restore");
    INTERN(s_on_semaphore, "on_semaphore");
    INTERN(s_notify, "notify");
    INTERN(s_dw_bounded, "_dw_bounded");
    INTERN(s_initial_value, "_initial_value");
    INTERN(s_py_sem_release, "_py_release");
    INTERN(s_blocking, "blocking");
    INTERN(s_timeout, "timeout");
    if ((g_one = PyLong_FromLong(1)) == NULL)
        return NULL;
    if ((g_zero = PyLong_FromLong(0)) == NULL)
        return NULL;
    if ((false_args = PyTuple_Pack(1, Py_False)) == NULL)
        return NULL;
    PyObject *m = PyModule_Create(&module_def);
    if (m == NULL)
        return NULL;
    PyObject *lock = PyType_FromSpec(&lock_spec);
    if (lock == NULL || PyModule_AddObject(m, "LockCore", lock) < 0) {
        Py_XDECREF(lock);
        Py_DECREF(m);
        return NULL;
    }
    g_lock_core_type = (PyTypeObject *)lock; /* the module keeps it */
    g_slot_type = (PyTypeObject *)PyType_FromSpec(&slot_spec);
    if (g_slot_type == NULL) {
        Py_DECREF(m);
        return NULL;
    }
    PyObject *rlock = PyType_FromSpec(&rlock_spec);
    if (rlock == NULL || PyModule_AddObject(m, "RLockCore", rlock) < 0) {
        Py_XDECREF(rlock);
        Py_DECREF(m);
        return NULL;
    }
    g_rlock_core_type = (PyTypeObject *)rlock;
    PyObject *sem = PyType_FromSpec(&sem_spec);
    if (sem == NULL || PyModule_AddObject(m, "SemCore", sem) < 0) {
        Py_XDECREF(sem);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
