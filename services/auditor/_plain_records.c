/* The replay's hot loop, compiled: the chain link of every record whose link is plain,
   and the whole fold of plain redemptions, activations and issues.

   `fold_records(..., records, start)` takes a partition's records from `start`. A record
   whose only header is a well-formed `passnum-chain` link that is new and holds (the hash
   over the value is right, its sequence not seen, its previous hash that of the sequence
   before, the chain's head, or left waiting for a sequence not read yet, and not below
   what this partition has shown of its stream) has its link admitted here. If it is
   moreover a *plain* fact, it is folded here: a canonical `voucher_redeemed` (the bytes
   `canonical.VOUCHER_REDEEMED` matches) of a voucher that is issued, active, not blocked,
   within its validity, redeemed for the first time at its face value; a canonical
   `booklet_activated` of an issued booklet not activated yet, for its worth; a canonical
   `booklet_issued` of a booklet not issued yet, under an order whose framing bytes the
   canonical decoder has already matched and interned (the first booklet of each order goes
   the Python way), when nothing has to grow or widen for it. Any other
   value is folded by `Replayer.fold_admitted`, the Python fold, called from here. At the
   first record whose link is not plain it stops and answers its index: the Python path
   (`Replayer.ingest_record`) takes that record, whatever it is, and calls this again after.

   Why it is sound: every check runs before any effect is written, so a record is either
   admitted and folded exactly as the Python path does it, or left untouched for it.
   Nothing is judged here: every finding (altered, duplicate, conflicting, reordered,
   broken link, missing event; unissued, inactive, blocked, out-of-validity, mispriced or
   contested voucher) is the Python path's. The caches read here (days, months, venues)
   are the canonical decoder's; a miss leaves the value to the Python fold.
   Tested against the Python path on random and tampered logs
   (tests/unit/test_auditor_compiled_fold.py).

   Why in C: on two cores shared with the broker, the Python fold of a redemption (header
   split, SHA-256, pattern, fold) cost about 13 us of CPU per event, three times what the
   reader costs per record (docs/auditor.md). No SHA-256 is written here: OpenSSL's, linked
   where its headers are installed (setup.py), else Python's `hashlib.sha256` through the
   C API.

   The books' columns are held only between Python folds and issues: between two calls of
   `fold_admitted` no Python code runs (only dict, attribute and hashlib calls on built-in
   types), so no array is resized while this holds its address; an issue lets the columns
   go before it appends its booklet's row (`array.append`), and the next redemption or
   activation takes them again. */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h> /* getentropy */
#ifdef PASSNUM_OPENSSL_SHA256
#define OPENSSL_SUPPRESS_DEPRECATED /* SHA256_Init and co.: deprecated, not going away */
#include <openssl/sha.h>
#endif

#define HASH_LENGTH 64
#define SECONDS_EPOCH 946684800LL /* services.auditor.books.SECONDS_EPOCH */
#define PHASE_REDEMPTION 1

/* Interned at import: attribute and key names. */
static PyObject *name_value, *name_headers, *name_digest, *name_hashes, *name_highest,
    *name_head_raw, *name_month_firsts, *name_booklets, *name_vouchers_recorded,
    *name_cents_recorded, *name_voucher_redeemed, *name_booklet_activated, *name_name,
    *name_append, *name_voucher_count, *name_face_value_cents, *name_valid_from_day,
    *name_grace_until_day, *name_latest_micros, *name_event_count, *name_offset,
    *name_pending_sequences, *name_pending_previous, *name_pending_places,
    *name_booklet_issued, *name_voucher_total, *name_number, *name_redeemed_event;

/* ------------------------------------------------------------------ the value's bytes */

typedef struct {
    const char *at;
    const char *end;
} Cursor;

static int literal(Cursor *cursor, const char *text, size_t length)
{
    if ((size_t)(cursor->end - cursor->at) < length || memcmp(cursor->at, text, length) != 0)
        return 0;
    cursor->at += length;
    return 1;
}
#define LITERAL(cursor, text) literal((cursor), (text), sizeof(text) - 1)

/* `count` ASCII digits; their value in *number (count <= 18). */
static int digits(Cursor *cursor, int count, int64_t *number)
{
    int64_t value = 0;
    if (cursor->end - cursor->at < count)
        return 0;
    for (int index = 0; index < count; index++) {
        char digit = cursor->at[index];
        if (digit < '0' || digit > '9')
            return 0;
        value = value * 10 + (digit - '0');
    }
    cursor->at += count;
    *number = value;
    return 1;
}

/* A JSON string's content as the codec writes printable ASCII (no quote, backslash or
   control), 1 to `maximum` characters, up to its closing quote (left for the caller). */
static int text(Cursor *cursor, Py_ssize_t maximum, const char **start, Py_ssize_t *length)
{
    const char *scan = cursor->at;
    while (scan < cursor->end && *scan != '"') {
        unsigned char character = (unsigned char)*scan;
        if (character < 0x20 || character > 0x7e || character == '\\')
            return 0;
        scan++;
    }
    if (scan == cursor->at || scan - cursor->at > maximum || scan == cursor->end)
        return 0;
    *start = cursor->at;
    *length = scan - cursor->at;
    cursor->at = scan;
    return 1;
}

enum { REDEMPTION = 1, ACTIVATION = 2, ISSUE = 3 };

/* A canonical `voucher_redeemed`, `booklet_activated` or `booklet_issued`: where its
   fields are. */
typedef struct {
    int kind;
    const char *date; /* YYYY-MM-DD, 10 bytes */
    int64_t hour, minute, second, fraction_micros;
    int64_t offset_seconds; /* from UTC, east positive: 0 for `Z` */
    const char *event_id;
    Py_ssize_t event_id_length;
    const char *siret; /* 14 digits (a redemption's) */
    const char *siren; /* 9 digits */
    int64_t booklet_sequence, position, cents; /* face value, or the amount activated */
    /* an issue's order id, and its bytes from the voucher count to the end (the framing) */
    const char *order_id, *framing;
    Py_ssize_t order_id_length, framing_length;
} Fact;

/* The instant of `canonical._HEAD` (groups 2 to 6) from `"occurred_at":"`. */
static int parse_instant(Cursor *cursor, Fact *fact)
{
    int64_t ignored, fraction = 0;
    const char *date = cursor->at;
    if (!(digits(cursor, 4, &ignored) && LITERAL(cursor, "-") && digits(cursor, 2, &ignored)
          && LITERAL(cursor, "-") && digits(cursor, 2, &ignored) && LITERAL(cursor, "T")
          && digits(cursor, 2, &fact->hour) && LITERAL(cursor, ":")
          && digits(cursor, 2, &fact->minute) && LITERAL(cursor, ":")
          && digits(cursor, 2, &fact->second)))
        return 0;
    if (fact->hour > 23 || fact->minute > 59 || fact->second > 59)
        return 0;
    fact->date = date;
    fact->fraction_micros = 0;
    if (LITERAL(cursor, ".")) {
        int count = 0;
        while (count < 7 && cursor->at + count < cursor->end
               && cursor->at[count] >= '0' && cursor->at[count] <= '9')
            count++;
        if (count < 1 || count > 6 || !digits(cursor, count, &fraction))
            return 0;
        for (int padding = count; padding < 6; padding++)
            fraction *= 10; /* int(fraction.ljust(6, b"0")) */
        fact->fraction_micros = fraction;
    }
    fact->offset_seconds = 0;
    if (LITERAL(cursor, "Z"))
        return LITERAL(cursor, "\",\"event_id\":\"");
    /* `[+-](?:[01][0-9]|2[0-3]):[0-5][0-9]`: a time on a clock at that offset. */
    int64_t hours, minutes;
    int west = cursor->at < cursor->end && *cursor->at == '-';
    if (!((LITERAL(cursor, "+") || LITERAL(cursor, "-")) && digits(cursor, 2, &hours)
          && LITERAL(cursor, ":") && digits(cursor, 2, &minutes))
        || hours > 23 || minutes > 59)
        return 0;
    fact->offset_seconds = (west ? -1 : 1) * (hours * 3600 + minutes * 60);
    return LITERAL(cursor, "\",\"event_id\":\"");
}

/* `[1-9][0-9]{0,17}`: a positive amount in cents. */
static int cents(Cursor *cursor, int64_t *amount)
{
    int count = 0;
    while (cursor->at + count < cursor->end && cursor->at[count] >= '0'
           && cursor->at[count] <= '9')
        count++;
    return count >= 1 && count <= 18 && cursor->at[0] != '0' && digits(cursor, count, amount);
}

/* `canonical.VOUCHER_REDEEMED` after its type. */
static int parse_redemption(Cursor *cursor, Fact *fact)
{
    int64_t ignored;
    fact->siret = cursor->at;
    if (!(digits(cursor, 14, &ignored) && LITERAL(cursor, "\",\"siren\":\"")))
        return 0;
    fact->siren = cursor->at;
    if (!(digits(cursor, 9, &ignored) && LITERAL(cursor, "\",\"booklet_id\":\"")
          && literal(cursor, fact->siren, 9) && LITERAL(cursor, "-")))
        return 0;
    const char *booklet = cursor->at;
    return digits(cursor, 7, &fact->booklet_sequence)
           && LITERAL(cursor, "\",\"voucher_id\":\"") && literal(cursor, fact->siren, 9)
           && LITERAL(cursor, "-") && literal(cursor, booklet, 7) && LITERAL(cursor, "-")
           && digits(cursor, 2, &fact->position) && LITERAL(cursor, "\",\"face_value_cents\":")
           && cents(cursor, &fact->cents);
}

/* `canonical.BOOKLET_ACTIVATED` after its type. */
static int parse_activation(Cursor *cursor, Fact *fact)
{
    int64_t ignored;
    fact->siren = cursor->at;
    return digits(cursor, 9, &ignored) && LITERAL(cursor, "\",\"booklet_id\":\"")
           && literal(cursor, fact->siren, 9) && LITERAL(cursor, "-")
           && digits(cursor, 7, &fact->booklet_sequence)
           && LITERAL(cursor, "\",\"activated_cents\":") && cents(cursor, &fact->cents);
}

/* `canonical.BOOKLET_ISSUED` after its type, up to the voucher count: the rest (the
   order's framing) is plain only if the canonical decoder already matched those very
   bytes for this SIREN and order (`CanonicalDecoder.framings`, looked up in `plan_issue`).
   An empty order id is left to the Python path. */
static int parse_issue(Cursor *cursor, Fact *fact)
{
    int64_t ignored;
    fact->siren = cursor->at;
    if (!(digits(cursor, 9, &ignored) && LITERAL(cursor, "\",\"order_id\":\"")
          && text(cursor, PY_SSIZE_T_MAX, &fact->order_id, &fact->order_id_length)
          && LITERAL(cursor, "\",\"booklet_id\":\"") && literal(cursor, fact->siren, 9)
          && LITERAL(cursor, "-") && digits(cursor, 7, &fact->booklet_sequence)
          && LITERAL(cursor, "\",\"voucher_count\":")))
        return 0;
    fact->framing = cursor->at;
    fact->framing_length = cursor->end - cursor->at;
    cursor->at = cursor->end;
    return 1;
}

/* Exactly the documents `canonical.VOUCHER_REDEEMED` or `BOOKLET_ACTIVATED` fully match,
   with their groups, or the head of a `BOOKLET_ISSUED` (see `parse_issue`); the kind in
   `fact->kind` (0: none of them). */
static int parse_fact(const char *value, Py_ssize_t length, Fact *fact)
{
    Cursor cursor = {value, value + length};
    const char *ignored_text;
    Py_ssize_t ignored_length;
    fact->kind = 0;
    if (!(LITERAL(&cursor, "{\"schema_version\":1,\"request_id\":\"")
          && text(&cursor, 128, &ignored_text, &ignored_length)
          && LITERAL(&cursor, "\",\"occurred_at\":\"") && parse_instant(&cursor, fact)
          && text(&cursor, 64, &fact->event_id, &fact->event_id_length)
          && LITERAL(&cursor, "\",\"type\":\"")))
        return 0;
    if (LITERAL(&cursor, "voucher_redeemed\",\"siret\":\""))
        fact->kind = parse_redemption(&cursor, fact) ? REDEMPTION : 0;
    else if (LITERAL(&cursor, "booklet_activated\",\"siren\":\""))
        fact->kind = parse_activation(&cursor, fact) ? ACTIVATION : 0;
    else if (LITERAL(&cursor, "booklet_issued\",\"siren\":\""))
        return fact->kind = parse_issue(&cursor, fact) ? ISSUE : 0; /* its end: the framing */
    if (!(fact->kind && LITERAL(&cursor, "}") && cursor.at == cursor.end))
        fact->kind = 0;
    return fact->kind;
}

/* ------------------------------------------------------------------ the chain header */

typedef struct {
    const char *stream;
    Py_ssize_t stream_length;
    int64_t sequence;
    const char *previous_hash; /* 64 ASCII bytes */
    const char *digest;        /* 64 ASCII bytes */
} Link;

/* `stream|sequence|previous_hash|hash`, as `Replayer.ingest_record` splits it (sequences
   beyond 18 digits are left to it). */
static int parse_link(const char *header, Py_ssize_t length, Link *link)
{
    const char *bars[3];
    int count = 0;
    for (Py_ssize_t index = 0; index < length; index++) {
        if ((unsigned char)header[index] >= 0x80)
            return 0;
        if (header[index] == '|') {
            if (count == 3)
                return 0;
            bars[count++] = header + index;
        }
    }
    if (count != 3 || bars[2] - bars[1] - 1 != HASH_LENGTH
        || header + length - bars[2] - 1 != HASH_LENGTH)
        return 0;
    Py_ssize_t sequence_length = bars[1] - bars[0] - 1;
    Cursor cursor = {bars[0] + 1, bars[1]};
    if (sequence_length < 1 || sequence_length > 18
        || !digits(&cursor, (int)sequence_length, &link->sequence))
        return 0;
    link->stream = header;
    link->stream_length = bars[0] - header;
    link->previous_hash = bars[1] + 1;
    link->digest = bars[2] + 1;
    return 1;
}

/* The leading 64 bits of a hex text; 0 when a character is not a hex digit. */
static int hex_64(const char *hex, int count, uint64_t *number)
{
    uint64_t value = 0;
    for (int index = 0; index < count; index++) {
        char character = hex[index];
        int nibble;
        if (character >= '0' && character <= '9')
            nibble = character - '0';
        else if (character >= 'a' && character <= 'f')
            nibble = character - 'a' + 10;
        else if (character >= 'A' && character <= 'F')
            nibble = character - 'A' + 10;
        else
            return 0;
        value = (value << 4) | (uint64_t)nibble;
    }
    *number = value;
    return 1;
}

/* `ChainVerifier.fingerprint`: 32 keyed bits of a link hash, never 0. */
static uint64_t fingerprint(uint64_t leading_bits, uint64_t key)
{
    return ((leading_bits * key) >> 32) | 1;
}

#ifdef PASSNUM_OPENSSL_SHA256
/* OpenSSL's one-shot SHA-256, where setup.py found its headers: about 1 us per record less
   than a `hashlib` object made and asked for its digest (no EVP context, no Python
   object, no concatenated copy). The same library `hashlib` uses. */
static int sha256_of(PyObject *sha256, const Link *link, const char *value,
                     Py_ssize_t value_length, unsigned char digest[HASH_LENGTH / 2])
{
    SHA256_CTX context;
    (void)sha256;
    SHA256_Init(&context);
    SHA256_Update(&context, link->previous_hash, HASH_LENGTH);
    SHA256_Update(&context, value, (size_t)value_length);
    SHA256_Final(digest, &context);
    return 1;
}
#else
/* `sha256(previous_hash + value).digest()` through the C API: Python's own SHA-256. */
static int sha256_of(PyObject *sha256, const Link *link, const char *value,
                     Py_ssize_t value_length, unsigned char digest[HASH_LENGTH / 2])
{
    PyObject *message = PyBytes_FromStringAndSize(NULL, HASH_LENGTH + value_length);
    if (message == NULL)
        return -1;
    memcpy(PyBytes_AS_STRING(message), link->previous_hash, HASH_LENGTH);
    memcpy(PyBytes_AS_STRING(message) + HASH_LENGTH, value, value_length);
    PyObject *hasher = PyObject_CallOneArg(sha256, message);
    Py_DECREF(message);
    if (hasher == NULL)
        return -1;
    PyObject *result = PyObject_CallMethodNoArgs(hasher, name_digest);
    Py_DECREF(hasher);
    if (result == NULL)
        return -1;
    int complete = PyBytes_Check(result) && PyBytes_GET_SIZE(result) == HASH_LENGTH / 2;
    if (complete)
        memcpy(digest, PyBytes_AS_STRING(result), HASH_LENGTH / 2);
    Py_DECREF(result);
    return complete;
}
#endif

/* Does sha256(previous_hash || value), in lowercase hex, equal the link's hash? -1: error. */
static int link_holds(PyObject *sha256, const Link *link, const char *value,
                      Py_ssize_t value_length)
{
    static const char hex_digits[] = "0123456789abcdef";
    unsigned char digest[HASH_LENGTH / 2];
    int holds = sha256_of(sha256, link, value, value_length, digest);
    for (int index = 0; holds > 0 && index < HASH_LENGTH / 2; index++)
        holds = link->digest[2 * index] == hex_digits[digest[index] >> 4]
                && link->digest[2 * index + 1] == hex_digits[digest[index] & 15];
    return holds;
}

/* ------------------------------------------------------------------ the books' columns */

/* The array columns a redemption reads and writes, held for one call. */
enum {
    BOOKLET_FRAMING, BOOKLET_FIRST_VOUCHER, BOOKLET_ACTIVATED_KEY, BOOKLET_ACTIVATION_STREAM,
    BOOKLET_ACTIVATION_SEQUENCE, REDEEMED_SECOND, REDEEMED_VENUE, REDEEMED_EVENT,
    VENUE_FIRST_SECOND, COLUMN_COUNT
};
static const char *column_names[COLUMN_COUNT] = {
    "booklet_framing", "booklet_first_voucher", "booklet_activated_key",
    "booklet_activation_stream", "booklet_activation_sequence", "redeemed_second",
    "redeemed_venue", "redeemed_event", "venue_first_second"};
/* The typecodes each column may have (16-bit ones widen to 32 bits). */
static const char *column_typecodes[COLUMN_COUNT] = {
    "HI", "I", "q", "HI", "I", "I", "HI", "Q", "I"};

static int64_t item(const Py_buffer *column, Py_ssize_t index)
{
    const char *at = (const char *)column->buf + index * column->itemsize;
    switch (column->format[0]) {
    case 'H': return *(const uint16_t *)at;
    case 'I': return *(const uint32_t *)at;
    case 'i': return *(const int32_t *)at;
    case 'q': return *(const int64_t *)at;
    default: return (int64_t)*(const uint64_t *)at; /* 'Q' */
    }
}

static void set_item(Py_buffer *column, Py_ssize_t index, uint64_t number)
{
    char *at = (char *)column->buf + index * column->itemsize;
    switch (column->format[0]) {
    case 'H': *(uint16_t *)at = (uint16_t)number; break;
    case 'I': *(uint32_t *)at = (uint32_t)number; break;
    case 'i': *(int32_t *)at = (int32_t)number; break;
    default: *(uint64_t *)at = number; /* 'Q' */
    }
}

static Py_ssize_t length_of(const Py_buffer *column)
{
    return column->len / column->itemsize;
}

/* An array's buffer, if its typecode is one of `typecodes` (0 otherwise, no error). */
static int view_of(PyObject *array, const char *typecodes, Py_buffer *view)
{
    if (PyObject_GetBuffer(array, view, PyBUF_WRITABLE | PyBUF_FORMAT) < 0)
        return -1;
    if (view->format == NULL || strlen(view->format) != 1 || !strchr(typecodes, view->format[0])) {
        PyBuffer_Release(view);
        return 0;
    }
    return 1;
}

static int64_t integer_attribute(PyObject *owner, PyObject *name, int *failed)
{
    PyObject *number = PyObject_GetAttr(owner, name);
    if (number == NULL) {
        *failed = 1;
        return 0;
    }
    int64_t value = PyLong_AsLongLong(number);
    Py_DECREF(number);
    if (value == -1 && PyErr_Occurred())
        *failed = 1;
    return value;
}

/* ------------------------------------------------------------------ one call */

/* The books' registries a fact reads (fetched with the columns). */
enum {
    COLLECTIVITES, FRAMINGS, BLOCKED_KEYS, CONTESTED, STREAM_INDEX, COUNTS_BY_TYPE,
    EVENT_FINGERPRINTS, REGISTRY_COUNT
};
static const char *registry_names[REGISTRY_COUNT] = {
    "collectivites", "framings", "blocked_keys", "contested", "stream_index", "counts_by_type",
    "event_fingerprints"};

/* A collectivité's recorded redemptions, summed until the books are let go. */
#define RECORDED_SLOTS 128
typedef struct {
    PyObject *collectivite; /* borrowed from the books' registry, held meanwhile */
    int64_t vouchers, cents;
} Recorded;

typedef struct {
    PyObject *by_raw_name, *heads, *sha256, *days, *months, *venues, *books;
    PyObject *fold_admitted; /* `Replayer.fold_admitted` bound to the partition */
    PyObject *topic_numbers, *topic; /* `ChainVerifier.topic_numbers`, the records' topic */
    PyObject *framing_keys; /* `CanonicalDecoder.framings`: (siren, order id, tail) -> index */
    int64_t partition;
    uint64_t key, genesis;
    int loaded; /* the books' columns and registries, held between Python folds */
    int columns_held; /* the columns' buffers: let go before an issue grows them */
    Py_buffer columns[COLUMN_COUNT];
    PyObject *registries[REGISTRY_COUNT];
    PyObject *collectivites, *framings, *blocked_keys, *contested, *stream_index,
        *counts_by_type; /* borrowed from `registries` */
    /* `Books.note_event` for the facts folded here, written back when the books are let go */
    Py_ssize_t redemptions_noted, activations_noted, issues_noted;
    int64_t latest_micros, last_micros;
    Recorded recorded[RECORDED_SLOTS];
    int recorded_count;
    /* the framing read last (booklets of one order come together) */
    Py_ssize_t framing_index;
    int64_t voucher_count, face_value_cents, valid_from_day, grace_until_day;
} Call;

static void release_columns(Call *call, int count)
{
    while (count-- > 0)
        PyBuffer_Release(&call->columns[count]);
}

/* 1: the books are held; 0: something is not as this module knows it (every value is
   then folded in Python until the next call); -1: error. */
static int load_books(Call *call)
{
    int failed = 0;
    call->loaded = -1;
    for (int index = 0; index < REGISTRY_COUNT; index++) {
        call->registries[index] = PyObject_GetAttrString(call->books, registry_names[index]);
        if (call->registries[index] == NULL)
            return -1;
    }
    PyObject **registries = call->registries;
    if (!PyDict_Check(registries[COLLECTIVITES]) || !PyList_Check(registries[FRAMINGS])
        || !PyDict_Check(registries[BLOCKED_KEYS]) || !PyDict_Check(registries[CONTESTED])
        || !PyDict_Check(registries[STREAM_INDEX]) || !PyDict_Check(registries[COUNTS_BY_TYPE])
        || !PyList_Check(registries[EVENT_FINGERPRINTS])
        || PyList_GET_SIZE(registries[EVENT_FINGERPRINTS]) != 256)
        return 0;
    call->collectivites = registries[COLLECTIVITES];
    call->framings = registries[FRAMINGS];
    call->blocked_keys = registries[BLOCKED_KEYS];
    call->contested = registries[CONTESTED];
    call->stream_index = registries[STREAM_INDEX];
    call->counts_by_type = registries[COUNTS_BY_TYPE];
    call->latest_micros = integer_attribute(call->books, name_latest_micros, &failed);
    if (failed)
        return -1;
    call->loaded = 1;
    return 1;
}

/* The columns' buffers, for a redemption or an activation (the books loaded). 1: held;
   0: a column is not as this module knows it (then as `load_books` answering 0); -1. */
static int hold_columns(Call *call)
{
    if (call->columns_held)
        return 1;
    for (int held = 0; held < COLUMN_COUNT; held++) {
        PyObject *column = PyObject_GetAttrString(call->books, column_names[held]);
        int viewed = column ? view_of(column, column_typecodes[held], &call->columns[held]) : -1;
        Py_XDECREF(column);
        if (viewed <= 0) {
            release_columns(call, held);
            return viewed;
        }
    }
    call->columns_held = 1;
    return 1;
}

static void let_go_columns(Call *call)
{
    if (call->columns_held)
        release_columns(call, COLUMN_COUNT);
    call->columns_held = 0;
}

/* counts[name] += count */
static int add_count(PyObject *counts, PyObject *name, Py_ssize_t count)
{
    if (count == 0)
        return 0;
    PyObject *before = PyDict_GetItemWithError(counts, name);
    if (before == NULL && PyErr_Occurred())
        return -1;
    Py_ssize_t total = before ? PyLong_AsSsize_t(before) : 0;
    PyObject *after = total == -1 && PyErr_Occurred() ? NULL : PyLong_FromSsize_t(total + count);
    int status = after == NULL ? -1 : PyDict_SetItem(counts, name, after);
    Py_XDECREF(after);
    return status;
}

/* owner.name += amount (the collectivité's recorded redemptions). */
static int add_to(PyObject *owner, PyObject *name, int64_t amount)
{
    PyObject *before = PyObject_GetAttr(owner, name);
    if (before == NULL)
        return -1;
    PyObject *increment = PyLong_FromLongLong(amount);
    PyObject *after = increment ? PyNumber_Add(before, increment) : NULL;
    int status = after == NULL ? -1 : PyObject_SetAttr(owner, name, after);
    Py_DECREF(before);
    Py_XDECREF(increment);
    Py_XDECREF(after);
    return status;
}

/* The sums of `record_redemption` written to the collectivités. */
static int write_recorded(Call *call)
{
    int status = 0;
    for (int index = 0; index < call->recorded_count && status == 0; index++) {
        Recorded *recorded = &call->recorded[index];
        status = add_to(recorded->collectivite, name_vouchers_recorded, recorded->vouchers) < 0
                 || add_to(recorded->collectivite, name_cents_recorded, recorded->cents) < 0
                 ? -1 : 0;
    }
    call->recorded_count = 0;
    return status;
}

/* `redeemed_vouchers_recorded += 1` and `redeemed_cents_recorded += cents`, summed. */
static int record_redemption(Call *call, PyObject *collectivite, int64_t cents)
{
    int index = 0;
    while (index < call->recorded_count && call->recorded[index].collectivite != collectivite)
        index++;
    if (index == RECORDED_SLOTS) {
        if (write_recorded(call) < 0)
            return -1;
        index = 0;
    }
    if (index == call->recorded_count)
        call->recorded[call->recorded_count++] = (Recorded){collectivite, 0, 0};
    call->recorded[index].vouchers += 1;
    call->recorded[index].cents += cents;
    return 0;
}

/* `Books.note_event` for the facts folded since the books were loaded (the event
   fingerprints of activations are appended as they are folded); the books let go. */
static int note_events(Call *call)
{
    Py_ssize_t noted = call->redemptions_noted + call->activations_noted + call->issues_noted;
    if (noted == 0)
        return 0;
    int failed = 0;
    int64_t event_count = integer_attribute(call->books, name_event_count, &failed);
    PyObject *total = failed ? NULL : PyLong_FromLongLong(event_count + noted);
    PyObject *latest = PyLong_FromLongLong(call->latest_micros);
    PyObject *current = PyLong_FromLongLong(call->last_micros);
    int status = total == NULL || latest == NULL || current == NULL || write_recorded(call) < 0
        || add_count(call->counts_by_type, name_voucher_redeemed, call->redemptions_noted) < 0
        || add_count(call->counts_by_type, name_booklet_activated, call->activations_noted) < 0
        || add_count(call->counts_by_type, name_booklet_issued, call->issues_noted) < 0
        || PyObject_SetAttrString(call->books, "event_count", total) < 0
        || PyObject_SetAttrString(call->books, "latest_micros", latest) < 0
        || PyObject_SetAttrString(call->books, "current_micros", current) < 0 ? -1 : 0;
    Py_XDECREF(total);
    Py_XDECREF(latest);
    Py_XDECREF(current);
    return status;
}

/* The books let go: before any Python code runs, and at the end of the call. */
static int unload_books(Call *call)
{
    int status = call->loaded == 1 ? note_events(call) : 0;
    let_go_columns(call);
    for (int index = 0; index < REGISTRY_COUNT; index++)
        Py_CLEAR(call->registries[index]);
    call->loaded = 0;
    call->redemptions_noted = call->activations_noted = call->issues_noted = 0;
    call->framing_index = -1;
    return status;
}

/* A cache of the canonical decoder, by the bytes of a field: a borrowed value or NULL. */
static PyObject *cached(PyObject *cache, const char *bytes, Py_ssize_t length)
{
    PyObject *key = PyBytes_FromStringAndSize(bytes, length);
    if (key == NULL)
        return NULL;
    PyObject *value = PyDict_GetItemWithError(cache, key);
    Py_DECREF(key);
    return value;
}

static int framing_of(Call *call, Py_ssize_t index)
{
    int failed = 0;
    if (index == call->framing_index)
        return 1;
    if (index < 0 || index >= PyList_GET_SIZE(call->framings))
        return 0;
    PyObject *framing = PyList_GET_ITEM(call->framings, index);
    call->voucher_count = integer_attribute(framing, name_voucher_count, &failed);
    call->face_value_cents = integer_attribute(framing, name_face_value_cents, &failed);
    call->valid_from_day = integer_attribute(framing, name_valid_from_day, &failed);
    call->grace_until_day = integer_attribute(framing, name_grace_until_day, &failed);
    if (failed) {
        call->framing_index = -1;
        return -1;
    }
    call->framing_index = index;
    return 1;
}

static int contains_index(PyObject *dictionary, Py_ssize_t index)
{
    if (PyDict_GET_SIZE(dictionary) == 0)
        return 0;
    PyObject *key = PyLong_FromSsize_t(index);
    if (key == NULL)
        return -1;
    int found = PyDict_Contains(dictionary, key);
    Py_DECREF(key);
    return found;
}

/* ------------------------------------------------------------------ one record */

/* What a plain record changes, found before anything is changed. */
typedef struct {
    Fact fact;
    Link link;
    PyObject *chain;       /* borrowed (from by_raw_name) */
    PyObject *hashes;      /* the chain's fingerprints */
    PyObject *collectivite; /* borrowed */
    PyObject *month;       /* borrowed (from the decoder's months) */
    int64_t highest, micros, seconds, venue, stream_number;
    uint64_t current, event_fingerprint;
    Py_ssize_t booklet, voucher; /* an issue's: its first voucher */
    Py_ssize_t framing, collectivite_number; /* an issue's */
    int waiting; /* its earlier end not read yet: the link waits (`ChainVerifier._link`) */
    uint64_t previous, place;
} Plan;

/* `ChainVerifier.place` of the record, for a link left waiting; 0 when the topic has no
   number yet (the Python path gives it one) or the place would not be exact. */
static int place_of(Call *call, PyObject *record, Plan *plan)
{
    PyObject *number = PyDict_GetItemWithError(call->topic_numbers, call->topic);
    if (number == NULL)
        return PyErr_Occurred() ? -1 : 0;
    int failed = 0;
    int64_t topic = PyLong_AsLongLong(number);
    int64_t offset = integer_attribute(record, name_offset, &failed);
    if (failed || (topic == -1 && PyErr_Occurred()))
        return -1;
    if (topic < 0 || topic > 255 || call->partition < 0 || call->partition > 0xFFFF
        || offset < 0 || offset >= (1LL << 40))
        return 0;
    plan->place = ((uint64_t)topic << 56) | ((uint64_t)call->partition << 40) | (uint64_t)offset;
    return 1;
}

/* The chain link is new and holds, or waits for its earlier end (`ChainVerifier.admit_link`
   answering NEW without a finding). 1 yes, 0 no, -1 error. */
static int plan_link(Call *call, PyObject *record, PyObject *value, Plan *plan)
{
    const Link *link = &plan->link;
    Py_buffer hashes;
    uint64_t leading_bits = 0, previous = 0;
    plan->chain = cached(call->by_raw_name, link->stream, link->stream_length);
    if (plan->chain == NULL || link->sequence < 1)
        return PyErr_Occurred() ? -1 : 0;
    plan->hashes = PyObject_GetAttr(plan->chain, name_hashes);
    if (plan->hashes == NULL || view_of(plan->hashes, "I", &hashes) <= 0)
        return PyErr_Occurred() ? -1 : 0;
    Py_ssize_t index = (Py_ssize_t)link->sequence - 1;
    int known = index >= length_of(&hashes) || item(&hashes, index) != 0;
    uint64_t before = index >= 1 && !known ? (uint64_t)item(&hashes, index - 1) : 0;
    PyBuffer_Release(&hashes);
    if (known)
        return 0;
    int holds = link_holds(call->sha256, link, PyBytes_AS_STRING(value), PyBytes_GET_SIZE(value));
    if (holds <= 0)
        return holds;
    hex_64(link->digest, 16, &leading_bits);
    plan->current = fingerprint(leading_bits, call->key);
    int failed = 0;
    plan->highest = integer_attribute(plan->chain, name_highest, &failed);
    PyObject *head = PyObject_GetAttr(plan->chain, name_head_raw);
    if (failed || head == NULL)
        return -1;
    int in_order = link->sequence == plan->highest + 1 && PyBytes_Check(head)
                   && PyBytes_GET_SIZE(head) == HASH_LENGTH
                   && memcmp(PyBytes_AS_STRING(head), link->previous_hash, HASH_LENGTH) == 0;
    Py_DECREF(head);
    if (!in_order) { /* `ChainVerifier._link`, when the earlier end is there and agrees */
        if (!hex_64(link->previous_hash, 16, &previous))
            return 0;
        plan->previous = previous = fingerprint(previous, call->key);
        plan->waiting = link->sequence > 1 && before == 0;
        if (plan->waiting) {
            int placed = place_of(call, record, plan);
            if (placed <= 0)
                return placed;
        } else if (link->sequence == 1 ? previous != call->genesis : before != previous)
            return 0;
    }
    PyObject *here = PyDict_GetItemWithError(call->heads, plan->chain);
    if (here == NULL)
        return PyErr_Occurred() ? -1 : 1;
    int64_t highest_here = PyLong_AsLongLong(here);
    if (highest_here == -1 && PyErr_Occurred())
        return -1;
    return link->sequence >= highest_here; /* else a reordered record */
}

/* The voucher's slot, if `Books.fold_redemption` would fill it without a finding. */
static int plan_voucher(Call *call, Plan *plan, Py_ssize_t booklet, int64_t day)
{
    Py_buffer *columns = call->columns;
    const Fact *redemption = &plan->fact;
    PyObject *venue = cached(call->venues, redemption->siret, 14);
    if (venue == NULL)
        return PyErr_Occurred() ? -1 : 0;
    plan->venue = PyLong_AsLongLong(venue);
    plan->seconds = plan->micros / 1000000 - SECONDS_EPOCH + 1;
    if (PyErr_Occurred())
        return -1;
    if (plan->seconds <= 0 || plan->seconds >= (1LL << 32))
        return 0;
    if (booklet >= length_of(&columns[BOOKLET_FRAMING])
        || booklet >= length_of(&columns[BOOKLET_FIRST_VOUCHER])
        || booklet >= length_of(&columns[BOOKLET_ACTIVATED_KEY]))
        return 0;
    int framed = framing_of(call, (Py_ssize_t)item(&columns[BOOKLET_FRAMING], booklet));
    if (framed <= 0)
        return framed;
    int64_t activated = item(&columns[BOOKLET_ACTIVATED_KEY], booklet);
    if (redemption->position < 1 || redemption->position > call->voucher_count
        || redemption->cents != call->face_value_cents || activated == 0
        || activated > plan->micros * 4 + PHASE_REDEMPTION
        || day < call->valid_from_day || day > call->grace_until_day)
        return 0;
    int blocked = contains_index(call->blocked_keys, booklet);
    if (blocked != 0)
        return blocked < 0 ? -1 : 0;
    plan->voucher = (Py_ssize_t)item(&columns[BOOKLET_FIRST_VOUCHER], booklet)
                    + (Py_ssize_t)redemption->position - 1;
    if (plan->voucher >= length_of(&columns[REDEEMED_SECOND])
        || plan->voucher >= length_of(&columns[REDEEMED_VENUE])
        || plan->voucher >= length_of(&columns[REDEEMED_EVENT])
        || plan->venue < 0 || plan->venue >= length_of(&columns[VENUE_FIRST_SECOND])
        || (columns[REDEEMED_VENUE].itemsize == 2 && plan->venue > 0xFFFF)
        || item(&columns[REDEEMED_SECOND], plan->voucher) != 0)
        return 0;
    int contested = contains_index(call->contested, plan->voucher);
    return contested < 0 ? -1 : !contested;
}

/* The activation is of an issued booklet not activated yet, for its worth, on a stream
   the books have numbered (`Books.fold_booklet_activated` without a finding). */
static int plan_activation(Call *call, Plan *plan, Py_ssize_t booklet)
{
    Py_buffer *columns = call->columns;
    for (int column = BOOKLET_FRAMING; column <= BOOKLET_ACTIVATION_SEQUENCE; column++)
        if (booklet >= length_of(&columns[column]))
            return 0;
    int framed = framing_of(call, (Py_ssize_t)item(&columns[BOOKLET_FRAMING], booklet));
    if (framed <= 0)
        return framed;
    if (item(&columns[BOOKLET_ACTIVATED_KEY], booklet) != 0
        || plan->fact.cents != call->voucher_count * call->face_value_cents
        || plan->link.sequence > 0xFFFFFFFFLL)
        return 0;
    PyObject *name = PyObject_GetAttr(plan->chain, name_name);
    PyObject *number = name ? PyDict_GetItemWithError(call->stream_index, name) : NULL;
    Py_XDECREF(name);
    if (number == NULL)
        return PyErr_Occurred() ? -1 : 0;
    plan->stream_number = PyLong_AsLongLong(number);
    if (plan->stream_number == -1 && PyErr_Occurred())
        return -1;
    int fits = columns[BOOKLET_ACTIVATION_STREAM].itemsize == 2 ? 0xFFFF : 0xFFFFFFFF;
    /* the activation key must already be counted: the counts keep their first order */
    int counted = PyDict_Contains(call->counts_by_type, name_booklet_activated);
    return counted < 0 ? -1 : counted && plan->stream_number >= 0 && plan->stream_number <= fits;
}

/* owner.name as a Py_ssize_t (-1 with an error set, or when it is not an integer). */
static Py_ssize_t size_attribute(PyObject *owner, PyObject *name, int length)
{
    PyObject *attribute = PyObject_GetAttr(owner, name);
    if (attribute == NULL)
        return -1;
    Py_ssize_t size = length ? PyObject_Length(attribute) : PyLong_AsSsize_t(attribute);
    Py_DECREF(attribute);
    return size;
}

/* The issue is of a booklet not issued yet (its slot in the collectivité's table already
   allocated), under an order whose framing the canonical decoder has matched for these
   very bytes, within the 16-bit columns and the vouchers' allocated chunk
   (`Books.fold_booklet_issued` without a finding, `_add_booklet` without growing or
   widening anything). */
static int plan_issue(Call *call, Plan *plan)
{
    const Fact *fact = &plan->fact;
    PyObject *parts[3] = {PyBytes_FromStringAndSize(fact->siren, 9),
                          PyBytes_FromStringAndSize(fact->order_id, fact->order_id_length),
                          PyBytes_FromStringAndSize(fact->framing, fact->framing_length)};
    PyObject *key = parts[0] && parts[1] && parts[2] ? PyTuple_New(3) : NULL;
    for (int index = 0; index < 3; index++) {
        if (key != NULL)
            PyTuple_SET_ITEM(key, index, parts[index]);
        else
            Py_XDECREF(parts[index]);
    }
    PyObject *number = key ? PyDict_GetItemWithError(call->framing_keys, key) : NULL;
    Py_XDECREF(key);
    if (number == NULL)
        return PyErr_Occurred() ? -1 : 0;
    Py_ssize_t framing = PyLong_AsSsize_t(number);
    if (framing == -1 && PyErr_Occurred())
        return -1;
    int framed = framing_of(call, framing);
    if (framed <= 0)
        return framed;
    plan->framing = framing;
    plan->collectivite_number = size_attribute(plan->collectivite, name_number, 0);
    plan->voucher = size_attribute(call->books, name_voucher_total, 0);
    Py_ssize_t capacity = size_attribute(call->books, name_redeemed_event, 1);
    if (plan->collectivite_number < 0 || plan->voucher < 0 || capacity < 0)
        return PyErr_Occurred() ? -1 : 0;
    if (framing > 0xFFFF || plan->collectivite_number > 0xFFFF
        || PyDict_GET_SIZE(call->stream_index) > 0xFFFF
        || plan->voucher + call->voucher_count > capacity)
        return 0;
    /* the issue key must already be counted: the counts keep their first order */
    return PyDict_Contains(call->counts_by_type, name_booklet_issued);
}

/* `wire.event_fingerprint` of a UUID event id, in C; 0 for any other id. */
static uint64_t uuid_fingerprint(const char *event_id, Py_ssize_t length)
{
    uint64_t high, middle, low;
    if (length != 36 || event_id[8] != '-' || !hex_64(event_id, 8, &high)
        || !hex_64(event_id + 9, 4, &middle) || !hex_64(event_id + 14, 4, &low))
        return 0;
    return ((high << 32) | (middle << 16) | low) | 1;
}

/* The fact is plain: its caches are filled (day, month, a redemption's venue), its booklet is
   issued, and `plan_voucher` or `plan_activation` finds nothing to report. 1 yes, 0 no,
   -1 error. */
static int plan_fact(Call *call, Plan *plan)
{
    const Fact *fact = &plan->fact;
    plan->event_fingerprint = uuid_fingerprint(fact->event_id, fact->event_id_length);
    if (plan->event_fingerprint == 0)
        return 0;
    PyObject *date = PyBytes_FromStringAndSize(fact->date, 10);
    PyObject *day = date ? PyDict_GetItemWithError(call->days, date) : NULL;
    plan->month = day ? PyDict_GetItemWithError(call->months, date) : NULL;
    Py_XDECREF(date);
    if (plan->month == NULL)
        return PyErr_Occurred() ? -1 : 0;
    int64_t day_number = PyLong_AsLongLong(day);
    if (day_number == -1 && PyErr_Occurred())
        return -1;
    plan->micros = (day_number * 86400 + fact->hour * 3600 + fact->minute * 60
                    + fact->second - fact->offset_seconds) * 1000000 + fact->fraction_micros;
    if (plan->micros < 0)
        return 0;
    /* The month is the UTC one, cached by date as written: with an offset that moves the
       instant to another UTC day, the Python path (which computes it) takes the record. */
    if (fact->offset_seconds != 0 && plan->micros / 86400000000LL != day_number)
        return 0;
    PyObject *siren = PyUnicode_DecodeASCII(fact->siren, 9, NULL);
    plan->collectivite = siren ? PyDict_GetItemWithError(call->collectivites, siren) : NULL;
    Py_XDECREF(siren);
    if (plan->collectivite == NULL)
        return PyErr_Occurred() ? -1 : 0;
    PyObject *table = PyObject_GetAttr(plan->collectivite, name_booklets);
    Py_buffer booklets;
    int viewed = table ? view_of(table, "i", &booklets) : -1;
    Py_XDECREF(table);
    if (viewed <= 0)
        return viewed;
    int64_t sequence = fact->booklet_sequence;
    int in_table = 0 < sequence && sequence < length_of(&booklets);
    plan->booklet = in_table ? (Py_ssize_t)item(&booklets, sequence) - 1 : -1;
    PyBuffer_Release(&booklets);
    if (fact->kind == ISSUE) /* a new booklet, its place in the table already there */
        return in_table && plan->booklet < 0 ? plan_issue(call, plan) : 0;
    if (plan->booklet < 0)
        return 0;
    int held = hold_columns(call);
    if (held <= 0)
        return held;
    return fact->kind == REDEMPTION ? plan_voucher(call, plan, plan->booklet, day_number)
                                    : plan_activation(call, plan, plan->booklet);
}

/* The chain's first sequence dated in the event's month, and the head before it. */
static int note_month(Plan *plan, PyObject *sequence)
{
    PyObject *firsts = PyObject_GetAttr(plan->chain, name_month_firsts);
    if (firsts == NULL)
        return -1;
    int status = 0;
    PyObject *first = PyDict_GetItemWithError(firsts, plan->month);
    if (first == NULL && PyErr_Occurred())
        status = -1;
    else if (first == NULL || !PyTuple_Check(first) || PyTuple_GET_SIZE(first) != 2
             || PyLong_AsLongLong(PyTuple_GET_ITEM(first, 0)) > plan->link.sequence) {
        PyObject *previous = PyUnicode_DecodeASCII(plan->link.previous_hash, HASH_LENGTH, NULL);
        PyObject *entry = previous ? PyTuple_Pack(2, sequence, previous) : NULL;
        status = entry == NULL || PyErr_Occurred()
                 || PyDict_SetItem(firsts, plan->month, entry) < 0 ? -1 : 0;
        Py_XDECREF(previous);
        Py_XDECREF(entry);
    }
    Py_DECREF(firsts);
    return status;
}

/* The record's only header is a non-empty `passnum-chain` link (`ingest_record`'s common
   case; any other header set goes the Python way). */
static int chain_header(PyObject *headers, Link *link)
{
    if (!(PyList_CheckExact(headers) || PyTuple_CheckExact(headers))
        || PySequence_Fast_GET_SIZE(headers) != 1)
        return 0;
    PyObject *header = PySequence_Fast_GET_ITEM(headers, 0);
    if (!PyTuple_CheckExact(header) || PyTuple_GET_SIZE(header) != 2)
        return 0;
    PyObject *name = PyTuple_GET_ITEM(header, 0), *raw = PyTuple_GET_ITEM(header, 1);
    if (!PyUnicode_CheckExact(name) || PyUnicode_CompareWithASCIIString(name, "passnum-chain")
        || !PyBytes_CheckExact(raw) || PyBytes_GET_SIZE(raw) == 0)
        return 0;
    return parse_link(PyBytes_AS_STRING(raw), PyBytes_GET_SIZE(raw), link);
}

/* owner.name.append(number) */
static int append_to(PyObject *owner, PyObject *name, PyObject *number)
{
    PyObject *column = PyObject_GetAttr(owner, name);
    PyObject *appended = column ? PyObject_CallMethodOneArg(column, name_append, number) : NULL;
    Py_XDECREF(column);
    Py_XDECREF(appended);
    return appended == NULL ? -1 : 0;
}

static int append_unsigned_to(PyObject *column, uint64_t value)
{
    PyObject *number = PyLong_FromUnsignedLongLong(value);
    PyObject *appended = number ? PyObject_CallMethodOneArg(column, name_append, number) : NULL;
    Py_XDECREF(number);
    Py_XDECREF(appended);
    return appended == NULL ? -1 : 0;
}

static int append_unsigned(PyObject *owner, PyObject *name, uint64_t value)
{
    PyObject *number = PyLong_FromUnsignedLongLong(value);
    int status = number == NULL ? -1 : append_to(owner, name, number);
    Py_XDECREF(number);
    return status;
}

/* The link's effects (`ChainVerifier.admit_link` answering NEW). */
static int commit_link(Call *call, Plan *plan, PyObject *sequence)
{
    const Link *link = &plan->link;
    Py_buffer hashes;
    if (view_of(plan->hashes, "I", &hashes) <= 0)
        return -1;
    set_item(&hashes, (Py_ssize_t)link->sequence - 1, plan->current);
    PyBuffer_Release(&hashes);
    if (plan->waiting && (append_to(plan->chain, name_pending_sequences, sequence) < 0
                          || append_unsigned(plan->chain, name_pending_previous,
                                             plan->previous) < 0
                          || append_unsigned(plan->chain, name_pending_places,
                                             plan->place) < 0))
        return -1;
    if (link->sequence > plan->highest) {
        PyObject *digest = PyBytes_FromStringAndSize(link->digest, HASH_LENGTH);
        int status = digest == NULL || PyObject_SetAttr(plan->chain, name_highest, sequence) < 0
                     || PyObject_SetAttr(plan->chain, name_head_raw, digest) < 0 ? -1 : 0;
        Py_XDECREF(digest);
        if (status < 0)
            return -1;
    }
    return PyDict_SetItem(call->heads, plan->chain, sequence);
}

/* The event noted (`Books.note_event`, summed until the books are let go). */
static void note_instant(Call *call, const Plan *plan)
{
    call->last_micros = plan->micros;
    if (plan->micros > call->latest_micros)
        call->latest_micros = plan->micros;
}

/* A redemption's effects: noted, `fold_redemption`, the month's first sequence
   (`Replayer.fold_admitted`). */
static int commit_redemption(Call *call, Plan *plan, PyObject *sequence)
{
    Py_buffer *columns = call->columns;
    if (record_redemption(call, plan->collectivite, plan->fact.cents) < 0
        || note_month(plan, sequence) < 0)
        return -1;
    call->redemptions_noted++;
    note_instant(call, plan);
    if (plan->seconds < item(&columns[VENUE_FIRST_SECOND], plan->venue))
        set_item(&columns[VENUE_FIRST_SECOND], plan->venue, (uint64_t)plan->seconds);
    set_item(&columns[REDEEMED_SECOND], plan->voucher, (uint64_t)plan->seconds);
    set_item(&columns[REDEEMED_VENUE], plan->voucher, (uint64_t)plan->venue);
    set_item(&columns[REDEEMED_EVENT], plan->voucher, plan->event_fingerprint);
    return 1;
}

/* An activation's effects: noted (its event fingerprint kept, as for every event but
   redemptions), `fold_booklet_activated`, the month's first sequence. */
static int commit_activation(Call *call, Plan *plan, PyObject *sequence)
{
    Py_buffer *columns = call->columns;
    PyObject *bucket = PyList_GET_ITEM(call->registries[EVENT_FINGERPRINTS],
                                       plan->event_fingerprint & 255);
    PyObject *fingerprint = PyLong_FromUnsignedLongLong(plan->event_fingerprint);
    PyObject *appended = fingerprint
        ? PyObject_CallMethodOneArg(bucket, name_append, fingerprint) : NULL;
    Py_XDECREF(fingerprint);
    Py_XDECREF(appended);
    if (appended == NULL || note_month(plan, sequence) < 0)
        return -1;
    call->activations_noted++;
    note_instant(call, plan);
    set_item(&columns[BOOKLET_ACTIVATED_KEY], plan->booklet, (uint64_t)(plan->micros * 4));
    set_item(&columns[BOOKLET_ACTIVATION_STREAM], plan->booklet, (uint64_t)plan->stream_number);
    set_item(&columns[BOOKLET_ACTIVATION_SEQUENCE], plan->booklet, (uint64_t)plan->link.sequence);
    return 1;
}

/* The booklet columns `Books._add_booklet` appends to, in its order (interned at import). */
#define BOOKLET_COLUMNS 8
static const char *booklet_column_texts[BOOKLET_COLUMNS] = {
    "booklet_collectivite", "booklet_sequence", "booklet_framing", "booklet_first_voucher",
    "booklet_activated_key", "booklet_activation_stream", "booklet_activation_sequence",
    "booklet_flags"};
static PyObject *booklet_column_names[BOOKLET_COLUMNS];

/* An issue's effects: noted (its event fingerprint kept), `fold_booklet_issued` (the
   booklet numbered in its collectivité's table, its row appended, the vouchers counted),
   the month's first sequence. The columns are let go first: the appends may move them. */
static int commit_issue(Call *call, Plan *plan, PyObject *sequence)
{
    let_go_columns(call);
    PyObject *bucket = PyList_GET_ITEM(call->registries[EVENT_FINGERPRINTS],
                                       plan->event_fingerprint & 255);
    if (append_unsigned_to(bucket, plan->event_fingerprint) < 0 || note_month(plan, sequence) < 0)
        return -1;
    call->issues_noted++;
    note_instant(call, plan);
    Py_ssize_t booklet = size_attribute(call->books, booklet_column_names[2], 1);
    PyObject *table = booklet < 0 ? NULL : PyObject_GetAttr(plan->collectivite, name_booklets);
    Py_buffer booklets;
    int viewed = table ? view_of(table, "i", &booklets) : -1;
    Py_XDECREF(table);
    if (viewed <= 0) /* it was an 'i' array of this length a moment ago (`plan_fact`) */
        return viewed < 0 ? -1 : (PyErr_SetString(PyExc_SystemError, "booklet table"), -1);
    set_item(&booklets, (Py_ssize_t)plan->fact.booklet_sequence, (uint64_t)booklet + 1);
    PyBuffer_Release(&booklets);
    uint64_t row[BOOKLET_COLUMNS] = {
        (uint64_t)plan->collectivite_number, (uint64_t)plan->fact.booklet_sequence,
        (uint64_t)plan->framing, (uint64_t)plan->voucher, 0, 0, 0, 0};
    for (int column = 0; column < BOOKLET_COLUMNS; column++)
        if (append_unsigned(call->books, booklet_column_names[column], row[column]) < 0)
            return -1;
    PyObject *total = PyLong_FromSsize_t(plan->voucher + (Py_ssize_t)call->voucher_count);
    int status = total == NULL ? -1 : PyObject_SetAttr(call->books, name_voucher_total, total);
    Py_XDECREF(total);
    return status < 0 ? -1 : 1;
}

/* Any other value whose link is new and holds: the link admitted here, the value folded
   by `fold_admitted` (Python). The books are let go first: that fold may grow them. */
static int fold_in_python(Call *call, PyObject *record, Plan *plan, PyObject *sequence)
{
    if (unload_books(call) < 0)
        return -1;
    PyObject *previous_hash = PyBytes_FromStringAndSize(plan->link.previous_hash, HASH_LENGTH);
    if (previous_hash == NULL)
        return -1;
    PyObject *arguments[] = {record, plan->chain, sequence, previous_hash};
    PyObject *result = PyObject_Vectorcall(call->fold_admitted, arguments, 4, NULL);
    Py_DECREF(previous_hash);
    Py_XDECREF(result);
    return result == NULL ? -1 : 1;
}

/* 1: the record is folded (its value here or by `fold_admitted`); 0: its link is not plain,
   nothing done, the Python path takes it; -1: error. */
static int fold_record(Call *call, PyObject *record)
{
    Plan plan = {0};
    PyObject *value = PyObject_GetAttr(record, name_value);
    PyObject *headers = value ? PyObject_GetAttr(record, name_headers) : NULL;
    PyObject *sequence = NULL;
    int status = headers == NULL ? -1 : 0;
    if (status == 0 && PyBytes_CheckExact(value) && chain_header(headers, &plan.link))
        status = plan_link(call, record, value, &plan);
    if (status > 0) {
        sequence = PyLong_FromLongLong(plan.link.sequence);
        status = sequence == NULL ? -1 : 1;
    }
    int kind = status > 0 ? parse_fact(PyBytes_AS_STRING(value), PyBytes_GET_SIZE(value),
                                       &plan.fact) : 0;
    if (kind) {
        status = call->loaded == 0 ? load_books(call) : call->loaded > 0;
        if (status > 0)
            status = plan_fact(call, &plan);
        kind = status > 0 ? kind : 0;
        status = status < 0 ? -1 : 1;
    }
    if (status > 0)
        status = commit_link(call, &plan, sequence) < 0 ? -1 : 1;
    if (status > 0)
        status = kind == REDEMPTION ? commit_redemption(call, &plan, sequence)
                 : kind == ACTIVATION ? commit_activation(call, &plan, sequence)
                 : kind == ISSUE ? commit_issue(call, &plan, sequence)
                 : fold_in_python(call, record, &plan, sequence);
    Py_XDECREF(sequence);
    Py_XDECREF(plan.hashes);
    Py_XDECREF(headers);
    Py_XDECREF(value);
    return status;
}

/* ------------------------------------------------------------------ the module */

static int parse_arguments(Call *call, PyObject *const *arguments, Py_ssize_t count)
{
    if (count != 16) { /* the state first, so that callers can bind it with `partial` */
        PyErr_SetString(PyExc_TypeError, "fold_records(by_raw_name, heads, key, genesis, "
                        "sha256, books, days, months, venues, framings, fold_admitted, "
                        "topic_numbers, topic, partition, records, start)");
        return -1;
    }
    PyObject **dictionaries[] = {&call->by_raw_name, &call->heads, NULL, NULL, NULL, NULL,
                                 &call->days, &call->months, &call->venues,
                                 &call->framing_keys};
    for (int index = 0; index < 10; index++) {
        if (dictionaries[index] == NULL)
            continue;
        *dictionaries[index] = arguments[index];
        if (!PyDict_Check(arguments[index])) {
            PyErr_SetString(PyExc_TypeError, "fold_records: the state's dictionaries");
            return -1;
        }
    }
    call->key = PyLong_AsUnsignedLongLong(arguments[2]);
    call->genesis = PyLong_AsUnsignedLongLong(arguments[3]);
    call->sha256 = arguments[4];
    call->books = arguments[5];
    call->fold_admitted = arguments[10];
    call->topic_numbers = arguments[11];
    call->topic = arguments[12];
    call->partition = PyLong_AsLongLong(arguments[13]);
    call->framing_index = -1;
    if (!PyDict_Check(call->topic_numbers) || !PyList_Check(arguments[14])) {
        PyErr_SetString(PyExc_TypeError, "fold_records: topic numbers and records");
        return -1;
    }
    return PyErr_Occurred() ? -1 : 0;
}

static PyObject *fold_records(PyObject *module, PyObject *const *arguments, Py_ssize_t count)
{
    Call call = {0};
    (void)module;
    if (parse_arguments(&call, arguments, count) < 0)
        return NULL;
    PyObject *records = arguments[14];
    Py_ssize_t index = PyLong_AsSsize_t(arguments[15]);
    if (index == -1 && PyErr_Occurred())
        return NULL;
    int status = 1;
    while (index >= 0 && index < PyList_GET_SIZE(records) && status > 0) {
        status = fold_record(&call, PyList_GET_ITEM(records, index));
        if (status > 0)
            index++;
    }
    if (unload_books(&call) < 0 || status < 0)
        return NULL;
    return PyLong_FromSsize_t(index);
}

/* `wire.event_fingerprint` of each event id a settlement statement lists (one per paid
   redemption: as many as the redemptions in a whole log), as native 64-bit integers; ids
   that are not plain ASCII UUIDs are passed to `fallback`, the Python function itself. */
static PyObject *event_fingerprints(PyObject *module, PyObject *const *arguments,
                                    Py_ssize_t count)
{
    (void)module;
    if (count != 2 || !PyTuple_CheckExact(arguments[0])) {
        PyErr_SetString(PyExc_TypeError, "event_fingerprints(event ids as a tuple, fallback)");
        return NULL;
    }
    PyObject *identifiers = arguments[0];
    Py_ssize_t length = PyTuple_GET_SIZE(identifiers);
    PyObject *packed = PyBytes_FromStringAndSize(NULL, length * (Py_ssize_t)sizeof(uint64_t));
    if (packed == NULL)
        return NULL;
    uint64_t *values = (uint64_t *)PyBytes_AS_STRING(packed);
    for (Py_ssize_t index = 0; index < length; index++) {
        PyObject *identifier = PyTuple_GET_ITEM(identifiers, index);
        const char *text = PyUnicode_CheckExact(identifier) && PyUnicode_IS_COMPACT_ASCII(identifier)
                           && PyUnicode_GET_LENGTH(identifier) == 36
                           ? (const char *)PyUnicode_DATA(identifier) : NULL;
        uint64_t high, middle, low;
        if (text != NULL && text[8] == '-' && hex_64(text, 8, &high)
            && hex_64(text + 9, 4, &middle) && hex_64(text + 14, 4, &low)) {
            values[index] = ((high << 32) | (middle << 16) | low) | 1;
            continue;
        }
        PyObject *number = PyObject_CallOneArg(arguments[1], identifier);
        values[index] = number ? PyLong_AsUnsignedLongLong(number) : 0;
        Py_XDECREF(number);
        if (PyErr_Occurred()) {
            Py_DECREF(packed);
            return NULL;
        }
    }
    return packed;
}

/* The index of standing redemptions that the end judgement's sound settlement check and
   the uniqueness of event ids use (`compiled.StandingIndex`): event fingerprint -> voucher,
   with a dictionary's semantics (a later voucher with the same fingerprint replaces the
   earlier one; the size counts distinct fingerprints), in a flat open-addressing table of
   (fingerprint, voucher) pairs held in a bytearray: 16 bytes a slot, at most half full,
   instead of about 100 bytes an entry in a dictionary, and one cache miss a lookup instead
   of four (measured: 1.2 s for the 1.5 million references of the --full log in a dict).
   Fingerprints are odd (`wire.event_fingerprint`), so 0 marks an empty slot and 2 one
   whose entry was popped; a table is refused (None) for any even one, and the caller
   then uses a dictionary. */

#define SLOT_EMPTY 0
#define SLOT_POPPED 2

typedef struct {
    uint64_t fingerprint;
    uint64_t voucher;
} standing_slot;

/* The multiplier of the slots' hash: odd, drawn from the kernel when the module loads. The
   fingerprints are the first 64 bits of event ids, which whoever writes the log chooses; with
   a multiplier fixed in the source, a forged log could choose ids that all land in one run of
   slots and make each lookup walk it (the result stays right, the audit slows down). With a
   random odd multiplier and the product's top bits as the slot (multiply-shift hashing),
   ids cannot be chosen to collide without knowing it. */
static uint64_t slot_multiplier = 0x9E3779B97F4A7C15ULL;

static Py_ssize_t slot_of(uint64_t fingerprint, Py_ssize_t mask)
{
    int bits = __builtin_popcountll((unsigned long long)mask); /* capacity = 2 ** bits */
    if (bits == 0)
        return 0;
    return (Py_ssize_t)((fingerprint * slot_multiplier) >> (64 - bits));
}

static standing_slot *find_slot(standing_slot *slots, Py_ssize_t mask, uint64_t fingerprint)
{
    Py_ssize_t index = slot_of(fingerprint, mask);
    while (slots[index].fingerprint != SLOT_EMPTY) {
        if (slots[index].fingerprint == fingerprint)
            return &slots[index];
        index = (index + 1) & mask;
    }
    return NULL;
}

static int table_view(PyObject *table, Py_buffer *view, Py_ssize_t *mask)
{
    if (!PyByteArray_CheckExact(table)) {
        PyErr_SetString(PyExc_TypeError, "a standing index is a bytearray");
        return -1;
    }
    if (PyObject_GetBuffer(table, view, PyBUF_WRITABLE) < 0)
        return -1;
    Py_ssize_t capacity = view->len / (Py_ssize_t)sizeof(standing_slot);
    if (capacity < 1 || (capacity & (capacity - 1)) != 0) {
        PyBuffer_Release(view);
        PyErr_SetString(PyExc_ValueError, "not a standing index");
        return -1;
    }
    *mask = capacity - 1;
    return 0;
}

/* standing_index(fingerprints: array of 'Q', count) -> (table, size) or None */
static PyObject *standing_index(PyObject *module, PyObject *const *arguments, Py_ssize_t count)
{
    (void)module;
    Py_ssize_t total;
    if (count != 2 || (total = PyLong_AsSsize_t(arguments[1])) < 0) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_TypeError, "standing_index(fingerprints, count)");
        return NULL;
    }
    Py_buffer events;
    int found = view_of(arguments[0], "Q", &events);
    if (found <= 0) {
        if (found == 0)
            PyErr_SetString(PyExc_TypeError, "fingerprints: an array of 'Q'");
        return NULL;
    }
    const uint64_t *fingerprints = (const uint64_t *)events.buf;
    if (total > length_of(&events))
        total = length_of(&events);
    Py_ssize_t used = 0;
    for (Py_ssize_t voucher = 0; voucher < total; voucher++) {
        if (fingerprints[voucher] & 1)
            used++;
        else if (fingerprints[voucher] != 0) {
            PyBuffer_Release(&events);
            Py_RETURN_NONE;
        }
    }
    Py_ssize_t capacity = 16;
    while (capacity < 2 * used)
        capacity *= 2;
    PyObject *table = PyByteArray_FromStringAndSize(NULL, capacity * (Py_ssize_t)sizeof(standing_slot));
    if (table == NULL) {
        PyBuffer_Release(&events);
        return NULL;
    }
    standing_slot *slots = (standing_slot *)PyByteArray_AS_STRING(table);
    memset(slots, 0, (size_t)capacity * sizeof(standing_slot));
    Py_ssize_t mask = capacity - 1, size = 0;
    for (Py_ssize_t voucher = 0; voucher < total; voucher++) {
        uint64_t fingerprint = fingerprints[voucher];
        if (fingerprint == 0)
            continue;
        Py_ssize_t index = slot_of(fingerprint, mask);
        while (slots[index].fingerprint != SLOT_EMPTY && slots[index].fingerprint != fingerprint)
            index = (index + 1) & mask;
        if (slots[index].fingerprint == SLOT_EMPTY) {
            slots[index].fingerprint = fingerprint;
            size++;
        }
        slots[index].voucher = (uint64_t)voucher;
    }
    PyBuffer_Release(&events);
    return Py_BuildValue("(Nn)", table, size);
}

/* standing_pop(table, fingerprints, venues, seconds, venue, end) -> vouchers packed as
   native 32-bit integers, or None: every fingerprint's entry popped (a second listing of
   one is then not found), in order, while each is found and, with `venue` >= 0, its
   voucher is at `venue` (column `venues`) with a second (column `seconds`) from 1 to
   below `end`; None at the first that is not (the entries popped before stay popped). */
static PyObject *standing_pop(PyObject *module, PyObject *const *arguments, Py_ssize_t count)
{
    (void)module;
    if (count != 6) {
        PyErr_SetString(PyExc_TypeError,
                        "standing_pop(table, fingerprints, venues, seconds, venue, end)");
        return NULL;
    }
    long long venue = PyLong_AsLongLong(arguments[4]);
    long long end = PyLong_AsLongLong(arguments[5]);
    if (PyErr_Occurred())
        return NULL;
    Py_buffer table, listed, venues, seconds;
    Py_ssize_t mask;
    if (table_view(arguments[0], &table, &mask) < 0)
        return NULL;
    int views = view_of(arguments[1], "Q", &listed);
    if (views > 0) {
        views = view_of(arguments[2], "HI", &venues);
        if (views > 0) {
            views = view_of(arguments[3], "I", &seconds);
            if (views <= 0)
                PyBuffer_Release(&venues);
        }
        if (views <= 0)
            PyBuffer_Release(&listed);
    }
    if (views <= 0) {
        PyBuffer_Release(&table);
        if (views == 0)
            PyErr_SetString(PyExc_TypeError, "fingerprints 'Q', venues 'H' or 'I', seconds 'I'");
        return NULL;
    }
    Py_ssize_t length = length_of(&listed);
    PyObject *packed = PyBytes_FromStringAndSize(NULL, length * (Py_ssize_t)sizeof(uint32_t));
    PyObject *result = packed;
    if (packed != NULL) {
        uint32_t *vouchers = (uint32_t *)PyBytes_AS_STRING(packed);
        const uint64_t *fingerprints = (const uint64_t *)listed.buf;
        Py_ssize_t columns = length_of(&venues) < length_of(&seconds)
                             ? length_of(&venues) : length_of(&seconds);
        for (Py_ssize_t index = 0; index < length; index++) {
            uint64_t fingerprint = fingerprints[index];
            standing_slot *slot = (fingerprint & 1)
                ? find_slot((standing_slot *)table.buf, mask, fingerprint) : NULL;
            if (slot == NULL) {
                result = NULL;
                break;
            }
            slot->fingerprint = SLOT_POPPED;
            Py_ssize_t voucher = (Py_ssize_t)slot->voucher;
            if (venue >= 0) {
                if (voucher >= columns || item(&venues, voucher) != venue) {
                    result = NULL;
                    break;
                }
                int64_t second = item(&seconds, voucher);
                if (second < 1 || second >= end) {
                    result = NULL;
                    break;
                }
            }
            vouchers[index] = (uint32_t)voucher;
        }
        if (result == NULL) {
            Py_DECREF(packed);
            result = Py_NewRef(Py_None);
        }
    }
    PyBuffer_Release(&seconds);
    PyBuffer_Release(&venues);
    PyBuffer_Release(&listed);
    PyBuffer_Release(&table);
    return result;
}

/* standing_contains_any(table, fingerprints) -> bool: one of them has an entry */
static PyObject *standing_contains_any(PyObject *module, PyObject *const *arguments,
                                       Py_ssize_t count)
{
    (void)module;
    if (count != 2) {
        PyErr_SetString(PyExc_TypeError, "standing_contains_any(table, fingerprints)");
        return NULL;
    }
    Py_buffer table, listed;
    Py_ssize_t mask;
    if (table_view(arguments[0], &table, &mask) < 0)
        return NULL;
    int views = view_of(arguments[1], "Q", &listed);
    if (views <= 0) {
        PyBuffer_Release(&table);
        if (views == 0)
            PyErr_SetString(PyExc_TypeError, "fingerprints: an array of 'Q'");
        return NULL;
    }
    const uint64_t *fingerprints = (const uint64_t *)listed.buf;
    int any = 0;
    for (Py_ssize_t index = 0; index < length_of(&listed) && !any; index++)
        any = (fingerprints[index] & 1)
              && find_slot((standing_slot *)table.buf, mask, fingerprints[index]) != NULL;
    PyBuffer_Release(&listed);
    PyBuffer_Release(&table);
    return PyBool_FromLong(any);
}

static PyMethodDef methods[] = {
    {"fold_records", (PyCFunction)(void (*)(void))fold_records, METH_FASTCALL,
     "Fold a partition's records from `start` while their chain links are plain; the index "
     "of the first record whose link is not (the Python path takes it)."},
    {"event_fingerprints", (PyCFunction)(void (*)(void))event_fingerprints, METH_FASTCALL,
     "`wire.event_fingerprint` of each id of a tuple, packed as native unsigned 64-bit "
     "integers."},
    {"standing_index", (PyCFunction)(void (*)(void))standing_index, METH_FASTCALL,
     "(table, size) of the fingerprints of an array of 'Q' (0: none), or None."},
    {"standing_pop", (PyCFunction)(void (*)(void))standing_pop, METH_FASTCALL,
     "Pop every fingerprint's entry; their vouchers packed, or None."},
    {"standing_contains_any", (PyCFunction)(void (*)(void))standing_contains_any,
     METH_FASTCALL, "Whether one of the fingerprints has an entry."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_definition = {
    PyModuleDef_HEAD_INIT, "_plain_records", NULL, -1, methods,
};

PyMODINIT_FUNC PyInit__plain_records(void)
{
    PyObject **names[] = {&name_value, &name_headers, &name_digest, &name_hashes,
                          &name_highest, &name_head_raw, &name_month_firsts, &name_booklets,
                          &name_vouchers_recorded, &name_cents_recorded,
                          &name_voucher_redeemed, &name_booklet_activated, &name_name,
                          &name_append, &name_voucher_count, &name_face_value_cents,
                          &name_valid_from_day, &name_grace_until_day, &name_latest_micros,
                          &name_event_count, &name_offset, &name_pending_sequences,
                          &name_pending_previous, &name_pending_places, &name_booklet_issued,
                          &name_voucher_total, &name_number, &name_redeemed_event};
    const char *texts[] = {"value", "headers", "digest", "hashes", "highest", "head_raw",
                           "month_firsts", "booklets", "redeemed_vouchers_recorded",
                           "redeemed_cents_recorded", "voucher_redeemed", "booklet_activated",
                           "name", "append", "voucher_count", "face_value_cents",
                           "valid_from_day", "grace_until_day", "latest_micros",
                           "event_count", "offset", "pending_sequences", "pending_previous",
                           "pending_places", "booklet_issued", "voucher_total", "number",
                           "redeemed_event"};
    for (size_t index = 0; index < sizeof(names) / sizeof(names[0]); index++) {
        *names[index] = PyUnicode_InternFromString(texts[index]);
        if (*names[index] == NULL)
            return NULL;
    }
    for (int column = 0; column < BOOKLET_COLUMNS; column++) {
        booklet_column_names[column] = PyUnicode_InternFromString(booklet_column_texts[column]);
        if (booklet_column_names[column] == NULL)
            return NULL;
    }
    uint64_t drawn;
    if (getentropy(&drawn, sizeof(drawn)) != 0)
        return PyErr_SetFromErrno(PyExc_OSError);
    slot_multiplier = drawn | 1;
    return PyModule_Create(&module_definition);
}
