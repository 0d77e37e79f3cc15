/* The adapter of libgearman, gearmand's own C client and worker library.
 *
 * Written to the contract in README.md, like every other adapter: `describe`, or
 * `run` (the job in $GEARSPEC_JOB, the one server in $GEARSPEC_SERVER, the budget
 * in $GEARSPEC_TIMEOUT), events printed as JSON lines.  It does what the job says
 * through libgearman's public API, as an application would, and prints what the
 * library told it; it never repairs what the library does.
 *
 * The client is an event loop: GEARMAN_CLIENT_NON_BLOCKING, gearman_client_run_tasks
 * until it says GEARMAN_IO_WAIT, then gearman_client_wait.  That is what lets it
 * take the next step of the job (the status queries, the echoes) once every submit
 * has been created without waiting for the foreground jobs to end, and it leaves the
 * client idle (no packet half handled) before a blocking call such as
 * gearman_client_echo.  Every event is printed from a task callback
 * (gearman_client_set_*_fn), except the creation of an epoch job: libgearman offers
 * epochs only through gearman_execute, whose tasks run its own actions, not the
 * client's callbacks, so that one is read off the task (gearman_task_return and
 * gearman_task_job_handle) after gearman_client_run_tasks returns.
 *
 * Built by conformance/libraries.py on first use:
 *   cc -O1 -Wall -o .clients/bin/libgearman-adapter conformance/adapters/libgearman.c \
 *      -lgearman -ljansson
 */

#define _POSIX_C_SOURCE 200809L

#include <ctype.h>
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>
#include <libgearman-1.0/gearman.h>

static const char *const FEATURES[] = {
    "client.created", "client.background", "client.priority", "client.epoch", "client.unique",
    "client.concurrent", "client.data", "client.warning", "client.progress",
    "client.exceptions", "client.status", "client.status-unique", "client.echo",
    "client.client-id", "worker.data", "worker.warning", "worker.status", "worker.fail",
    "worker.exception", "worker.timeout", "worker.client-id", "binary", NULL};

/* ------------------------------------------------------------------ output -- */

/* One event is put together here, then written and flushed in one go. */
static struct {
    char *p;
    size_t n, cap;
} out;

static void put(const char *s, size_t n)
{
    if (out.n + n + 1 > out.cap) {
        size_t cap = out.cap ? out.cap : 256;
        while (cap < out.n + n + 1)
            cap *= 2;
        char *p = realloc(out.p, cap);
        if (p == NULL) {
            fputs("libgearman adapter: out of memory\n", stderr);
            exit(3);
        }
        out.p = p;
        out.cap = cap;
    }
    memcpy(out.p + out.n, s, n);
    out.n += n;
}

static void put_s(const char *s) { put(s, strlen(s)); }

/* Bytes as a JSON string whose characters are the bytes (Latin-1): printable ASCII
 * as itself, anything else as \u00XX. */
static void put_bytes(const char *s, size_t n)
{
    put("\"", 1);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"')
            put("\\\"", 2);
        else if (c == '\\')
            put("\\\\", 2);
        else if (c >= 0x20 && c < 0x7f)
            put((const char *)&c, 1);
        else {
            char escape[8];
            snprintf(escape, sizeof escape, "\\u%04x", c);
            put(escape, 6);
        }
    }
    put("\"", 1);
}

static void ev_begin(const char *event)
{
    out.n = 0;
    put_s("{\"event\":");
    put_bytes(event, strlen(event));
}

static void f_key(const char *key)
{
    put(",", 1);
    put_bytes(key, strlen(key));
    put(":", 1);
}

static void f_bytes(const char *key, const void *p, size_t n)
{
    f_key(key);
    put_bytes(p ? (const char *)p : "", p ? n : 0);
}

static void f_str(const char *key, const char *s) { f_bytes(key, s, s ? strlen(s) : 0); }

static void f_int(const char *key, long long value)
{
    char number[32];
    snprintf(number, sizeof number, "%lld", value);
    f_key(key);
    put_s(number);
}

static void f_bool(const char *key, bool value)
{
    f_key(key);
    put_s(value ? "true" : "false");
}

static void ev_end(void)
{
    put("}\n", 2);
    fwrite(out.p, 1, out.n, stdout);
    fflush(stdout);
}

static void emit_error(int job, const char *message)
{
    ev_begin("error");
    if (job >= 0)
        f_int("job", job);
    f_str("message", message ? message : "(libgearman gave no message)");
    ev_end();
}

static void emit_unsupported(const char *reason)
{
    ev_begin("unsupported");
    f_str("reason", reason);
    ev_end();
}

/* ------------------------------------------------------------------- input -- */

typedef struct {
    char *p; /* NUL-terminated (the bytes may hold NULs of their own) */
    size_t n;
} bytes_t;

static const bytes_t NO_BYTES = {NULL, 0};

static void die(const char *what, const char *detail)
{
    fprintf(stderr, "libgearman adapter: %s%s%s\n", what, detail ? ": " : "",
            detail ? detail : "");
    exit(2);
}

/* A JSON string (UTF-8, `length` bytes, NULs allowed) as the bytes its characters
 * stand for: U+0000-U+00FF, one byte each. */
static bytes_t latin1(const char *s, size_t length, const char *what)
{
    bytes_t b = {malloc(length + 1), 0};
    if (b.p == NULL)
        die("out of memory", NULL);
    for (size_t i = 0; i < length;) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x80) {
            b.p[b.n++] = (char)c;
            i += 1;
        } else if ((c & 0xe0) == 0xc0 && i + 1 < length) {
            unsigned code = ((c & 0x1fu) << 6) | ((unsigned char)s[i + 1] & 0x3fu);
            if (code > 0xff)
                die("a job string holds a character above U+00FF (not a byte)", what);
            b.p[b.n++] = (char)code;
            i += 2;
        } else
            die("a job string holds a character above U+00FF (not a byte)", what);
    }
    b.p[b.n] = 0;
    return b;
}

static bytes_t jbytes(const json_t *value, const char *what)
{
    if (!json_is_string(value))
        die("the job has a non-string where bytes belong", what);
    return latin1(json_string_value(value), json_string_length(value), what);
}

/* member `key` of `object` as bytes; `fallback` when it is absent or null */
static bytes_t jmember(const json_t *object, const char *key, bytes_t fallback)
{
    const json_t *value = json_object_get(object, key);
    if (value == NULL || json_is_null(value))
        return fallback;
    return jbytes(value, key);
}

static bool jbool(const json_t *object, const char *key, bool fallback)
{
    const json_t *value = json_object_get(object, key);
    if (value == NULL || json_is_null(value))
        return fallback;
    if (json_is_boolean(value))
        return json_is_true(value);
    return json_is_number(value) ? json_number_value(value) != 0 : fallback;
}

/* a number (or a numeral in a string) */
static double jnumber(const json_t *value, double fallback)
{
    if (json_is_number(value))
        return json_number_value(value);
    if (json_is_string(value)) {
        char *end;
        double number = strtod(json_string_value(value), &end);
        if (end != json_string_value(value))
            return number;
    }
    return fallback;
}

static bool has_nul(bytes_t b) { return b.p != NULL && memchr(b.p, 0, b.n) != NULL; }

/* libgearman takes an identifier only if every byte is isgraph() (universal.cc). */
static bool graph_only(bytes_t b)
{
    if (b.n == 0)
        return false;
    for (size_t i = 0; i < b.n; i++)
        if (!isgraph((unsigned char)b.p[i]))
            return false;
    return true;
}

/* ------------------------------------------------------------- environment -- */

static char host[256];
static in_port_t port;
static int timeout_ms;

static void read_environment(void)
{
    const char *server = getenv("GEARSPEC_SERVER");
    if (server == NULL)
        die("GEARSPEC_SERVER is not set", NULL);
    const char *colon = strrchr(server, ':');
    if (colon == NULL || (size_t)(colon - server) >= sizeof host)
        die("GEARSPEC_SERVER is not HOST:PORT", server);
    memcpy(host, server, (size_t)(colon - server));
    host[colon - server] = 0;
    port = (in_port_t)atoi(colon + 1);

    /* the client's libgearman timeout (every poll() it makes) a second short of the
     * budget, so that a library left waiting says so before it is killed */
    const char *budget_text = getenv("GEARSPEC_TIMEOUT");
    double budget = budget_text ? strtod(budget_text, NULL) : 10.0;
    if (!(budget > 0))
        budget = 10.0;
    double ms = budget * 1000.0 - 1000.0;
    if (ms < budget * 500.0)
        ms = budget * 500.0;
    timeout_ms = ms > 100.0 ? (int)ms : 100;

    /* gearman_client_create and gearman_worker_create add the servers named in
     * GEARMAN_SERVERS: the adapter connects to GEARSPEC_SERVER only. */
    unsetenv("GEARMAN_SERVERS");
}

static void log_line(const char *line, gearman_verbose_t verbose, void *context)
{
    (void)context;
    fprintf(stderr, "libgearman %s: %s\n", gearman_verbose_name(verbose), line);
}

/* ------------------------------------------------------------------ client -- */

enum { SUBMIT, STATUS };

typedef struct {
    int kind, index;
    bool background, epoch;
    bool created, ended, answered, reported;
    gearman_task_st *task;
} tctx_t;

static gearman_client_st *client;
static tctx_t *submits;
static size_t submit_count;

static void client_error(int job, gearman_return_t rc)
{
    const char *message = gearman_client_error(client);
    char text[512];
    snprintf(text, sizeof text, "%s: %s", gearman_strerror(rc),
             message && *message ? message : "(no further message)");
    emit_error(job, text);
}

static tctx_t *ctx_of(gearman_task_st *task) { return (tctx_t *)gearman_task_context(task); }

static gearman_return_t on_created(gearman_task_st *task)
{
    tctx_t *c = ctx_of(task);
    if (c == NULL || c->kind != SUBMIT)
        return GEARMAN_SUCCESS;
    c->created = true;
    if (c->background)
        c->ended = true;
    ev_begin("created");
    f_int("job", c->index);
    f_str("handle", gearman_task_job_handle(task));
    ev_end();
    return GEARMAN_SUCCESS;
}

/* Whose event: job N, or status query N.  libgearman hands a packet to the newest
 * task in the client's list with the packet's handle, so a WORK_DATA, WORK_COMPLETE...
 * for a job that arrives while a GET_STATUS of that job is outstanding reaches the
 * status query's task (and its callbacks), not the job's: such an event names the
 * query. */
static void f_owner(const tctx_t *c)
{
    f_int(c->kind == SUBMIT ? "job" : "query", c->index);
}

static void on_update(gearman_task_st *task, const char *event)
{
    tctx_t *c = ctx_of(task);
    if (c == NULL)
        return;
    ev_begin(event);
    f_owner(c);
    f_bytes("data", gearman_task_data(task), gearman_task_data_size(task));
    ev_end();
}

static gearman_return_t on_data(gearman_task_st *task)
{
    on_update(task, "data");
    return GEARMAN_SUCCESS;
}

static gearman_return_t on_warning(gearman_task_st *task)
{
    on_update(task, "warning");
    return GEARMAN_SUCCESS;
}

static gearman_return_t on_status(gearman_task_st *task)
{
    tctx_t *c = ctx_of(task);
    if (c == NULL)
        return GEARMAN_SUCCESS;
    if (c->kind == STATUS) {
        /* the answer to a GET_STATUS or GET_STATUS_UNIQUE; libgearman keeps the
         * waiting-client count of STATUS_RES_UNIQUE but has no call that reads it
         * from a task */
        c->answered = true;
        ev_begin("status-answer");
        f_int("query", c->index);
        f_bool("known", gearman_task_is_known(task));
        f_bool("running", gearman_task_is_running(task));
        f_int("numerator", gearman_task_numerator(task));
        f_int("denominator", gearman_task_denominator(task));
        ev_end();
    } else {
        ev_begin("status");
        f_owner(c);
        f_int("numerator", gearman_task_numerator(task));
        f_int("denominator", gearman_task_denominator(task));
        ev_end();
    }
    return GEARMAN_SUCCESS;
}

static gearman_return_t on_complete(gearman_task_st *task)
{
    tctx_t *c = ctx_of(task);
    if (c != NULL)
        c->ended = true;
    on_update(task, "complete");
    return GEARMAN_SUCCESS;
}

static gearman_return_t on_exception(gearman_task_st *task)
{
    tctx_t *c = ctx_of(task);
    if (c == NULL)
        return GEARMAN_SUCCESS;
    c->ended = true;
    gearman_string_t exception = gearman_task_exception(task);
    ev_begin("exception");
    f_owner(c);
    f_bytes("data", exception.c_str, exception.size);
    ev_end();
    return GEARMAN_SUCCESS;
}

static gearman_return_t on_fail(gearman_task_st *task)
{
    tctx_t *c = ctx_of(task);
    if (c == NULL)
        return GEARMAN_SUCCESS;
    c->ended = true;
    ev_begin("fail");
    f_owner(c);
    ev_end();
    return GEARMAN_SUCCESS;
}

/* An epoch job's task (gearman_execute) runs no callback of ours: its creation is
 * read off it. */
static void note_epochs(void)
{
    for (size_t i = 0; i < submit_count; i++) {
        tctx_t *c = &submits[i];
        if (!c->epoch || c->task == NULL || c->reported)
            continue;
        gearman_return_t rc = gearman_task_return(c->task);
        if (rc == GEARMAN_UNKNOWN_STATE || rc == GEARMAN_IO_WAIT)
            continue;
        c->reported = c->ended = true;
        if (rc == GEARMAN_SUCCESS) {
            c->created = true;
            ev_begin("created");
            f_int("job", c->index);
            f_str("handle", gearman_task_job_handle(c->task));
            ev_end();
        } else
            client_error(c->index, rc);
    }
}

typedef bool (*until_fn)(const void *arg);

/* Runs the client's tasks until `until` holds or every task has ended.  false when
 * the library reported an error (printed as an event). */
static bool drive(until_fn until, const void *arg)
{
    for (;;) {
        gearman_return_t rc = gearman_client_run_tasks(client);
        note_epochs();
        if (rc == GEARMAN_SUCCESS)
            return true; /* no task left running */
        if (rc != GEARMAN_IO_WAIT) {
            client_error(-1, rc);
            return false;
        }
        if (until != NULL && until(arg))
            return true;
        rc = gearman_client_wait(client);
        if (rc != GEARMAN_SUCCESS) {
            client_error(-1, rc);
            return false;
        }
    }
}

static bool all_created(const void *arg)
{
    (void)arg;
    for (size_t i = 0; i < submit_count; i++)
        if (submits[i].task != NULL && !submits[i].created && !submits[i].ended)
            return false;
    return true;
}

/* a status query's task is done when answered, or when it ended otherwise (a packet
 * of the job's reached it, or sending it failed) */
static bool query_done(const void *arg)
{
    const tctx_t *c = arg;
    return c->answered || c->ended || gearman_task_return(c->task) != GEARMAN_UNKNOWN_STATE;
}

static const char *PRIORITIES[] = {"normal", "high", "low"};

/* What the API cannot express, found before anything is sent: an `unsupported`
 * event names it.  NULL when the job is fine. */
static const char *client_unsupported(const json_t *job)
{
    const json_t *value = json_object_get(job, "client_id");
    if (value != NULL && !graph_only(jbytes(value, "client_id")))
        return "gearman_client_set_identifier takes only an identifier whose every byte is "
               "printable and not a space (isgraph)";
    size_t i;
    const json_t *item;
    json_array_foreach(json_object_get(job, "submit"), i, item)
    {
        if (has_nul(jmember(item, "function", NO_BYTES)))
            return "gearman_client_add_task takes the function name as a C string (no NUL "
                   "byte)";
        if (has_nul(jmember(item, "unique", NO_BYTES)))
            return "libgearman copies a unique as a C string (no NUL byte)";
    }
    json_array_foreach(json_object_get(job, "status"), i, item)
    {
        if (has_nul(jmember(item, "handle", NO_BYTES)))
            return "gearman_client_add_task_status takes the handle as a C string (no NUL "
                   "byte)";
        if (has_nul(jmember(item, "unique", NO_BYTES)))
            return "gearman_client_add_task_status_by_unique takes the unique as a C string "
                   "(no NUL byte)";
    }
    json_array_foreach(json_object_get(job, "echo"), i, item)
    {
        if (jbytes(item, "echo").n == 0)
            return "gearman_client_echo refuses an empty workload";
    }
    return NULL;
}

static gearman_task_st *submit(tctx_t *c, const json_t *spec)
{
    bytes_t function = jmember(spec, "function", NO_BYTES);
    bytes_t unique = jmember(spec, "unique", NO_BYTES); /* absent: NULL, the library's pick */
    bytes_t workload = jmember(spec, "workload", NO_BYTES);
    const void *data = workload.n ? workload.p : NULL; /* libgearman: size 0 wants NULL */
    gearman_return_t rc = GEARMAN_SUCCESS;
    gearman_task_st *task;

    const json_t *epoch = json_object_get(spec, "epoch");
    if (epoch != NULL && !json_is_null(epoch)) {
        /* SUBMIT_JOB_EPOCH: only gearman_execute with an epoch attribute sends it (the
         * job is a background one; SUBMIT_JOB_EPOCH has no priority) */
        c->epoch = c->background = true;
        gearman_task_attr_t attr =
            gearman_task_attr_init_epoch((time_t)jnumber(epoch, 0), GEARMAN_JOB_PRIORITY_NORMAL);
        gearman_argument_t argument = gearman_argument_make(NULL, 0, data, workload.n);
        task = gearman_execute(client, function.p, function.n, unique.p, unique.n, &attr,
                               &argument, c);
        if (task == NULL)
            client_error(c->index, gearman_client_error_code(client));
        return task;
    }

    const char *priority = "normal";
    const json_t *p = json_object_get(spec, "priority");
    if (json_is_string(p))
        priority = json_string_value(p);
    int level = 0;
    for (int k = 0; k < 3; k++)
        if (strcmp(priority, PRIORITIES[k]) == 0)
            level = k;
    c->background = jbool(spec, "background", false);
    typedef gearman_task_st *(*add_fn)(gearman_client_st *, gearman_task_st *, void *,
                                       const char *, const char *, const void *, size_t,
                                       gearman_return_t *);
    static const add_fn ADD[2][3] = {
        {gearman_client_add_task, gearman_client_add_task_high, gearman_client_add_task_low},
        {gearman_client_add_task_background, gearman_client_add_task_high_background,
         gearman_client_add_task_low_background}};
    task = ADD[c->background][level](client, NULL, c, function.p, unique.p, data, workload.n,
                                     &rc);
    if (task == NULL || rc != GEARMAN_SUCCESS) {
        client_error(c->index, rc != GEARMAN_SUCCESS ? rc : gearman_client_error_code(client));
        return NULL;
    }
    return task;
}

static void status_query(int index, const json_t *query)
{
    tctx_t *c = calloc(1, sizeof *c); /* lives as long as the process: the task points to it */
    if (c == NULL)
        die("out of memory", NULL);
    c->kind = STATUS;
    c->index = index;
    gearman_return_t rc = GEARMAN_SUCCESS;
    gearman_task_st *task;

    if (json_object_get(query, "unique") != NULL) {
        bytes_t unique = jmember(query, "unique", NO_BYTES);
        /* GET_STATUS_UNIQUE: gearman_client_unique_status blocks, which this client
         * (non-blocking) cannot; it is this task with a blocking run around it */
        task = gearman_client_add_task_status_by_unique(client, NULL, unique.p, &rc);
        if (task != NULL)
            gearman_task_set_context(task, c);
    } else {
        char handle[GEARMAN_JOB_HANDLE_SIZE + 1];
        const json_t *of = json_object_get(query, "handle_of");
        if (of != NULL) {
            int job = (int)jnumber(of, -1);
            if (job < 0 || (size_t)job >= submit_count || submits[job].task == NULL ||
                !submits[job].created) {
                char text[128];
                snprintf(text, sizeof text,
                         "status query %d: job %d has no handle (it was not created)", index,
                         job);
                emit_error(-1, text);
                return;
            }
            snprintf(handle, sizeof handle, "%s", gearman_task_job_handle(submits[job].task));
        } else {
            bytes_t given = jmember(query, "handle", NO_BYTES);
            snprintf(handle, sizeof handle, "%s", given.p ? given.p : "");
            if (given.n >= sizeof handle) {
                /* gearman_job_handle_t is GEARMAN_JOB_HANDLE_SIZE bytes */
                emit_unsupported("libgearman's job handles are at most 63 bytes "
                                 "(gearman_job_handle_t)");
                exit(0);
            }
        }
        task = gearman_client_add_task_status(client, NULL, c, handle, &rc);
    }
    if (task == NULL || rc != GEARMAN_SUCCESS) {
        client_error(-1, rc != GEARMAN_SUCCESS ? rc : gearman_client_error_code(client));
        return;
    }
    c->task = task;
    drive(query_done, c);
    /* done with it: free it, as gearman_client_job_status frees its own.  A finished
     * task left in the client's list would go on taking every packet with its handle
     * (the job's WORK_COMPLETE too), since libgearman matches packets to the newest task
     * with that handle whatever its state. */
    gearman_task_free(task);
    c->task = NULL;
}

static void run_client(const json_t *job)
{
    const char *reason = client_unsupported(job);
    if (reason != NULL) {
        emit_unsupported(reason);
        return;
    }

    client = gearman_client_create(NULL);
    if (client == NULL) {
        emit_error(-1, "gearman_client_create failed");
        return;
    }
    gearman_client_set_log_fn(client, log_line, NULL, GEARMAN_VERBOSE_ERROR);
    gearman_return_t rc = gearman_client_add_server(client, host, port);
    if (rc != GEARMAN_SUCCESS) {
        client_error(-1, rc);
        return;
    }
    gearman_client_set_timeout(client, timeout_ms);
    gearman_client_set_created_fn(client, on_created);
    gearman_client_set_data_fn(client, on_data);
    gearman_client_set_warning_fn(client, on_warning);
    gearman_client_set_status_fn(client, on_status);
    gearman_client_set_complete_fn(client, on_complete);
    gearman_client_set_exception_fn(client, on_exception);
    gearman_client_set_fail_fn(client, on_fail);

    if (json_object_get(job, "client_id") != NULL) {
        bytes_t id = jmember(job, "client_id", NO_BYTES);
        rc = gearman_client_set_identifier(client, id.p, id.n); /* sends SET_CLIENT_ID now */
        if (rc != GEARMAN_SUCCESS)
            client_error(-1, rc);
    }
    if (jbool(job, "exceptions", false)) {
        /* OPTION_REQ "exceptions", and waits for the OPTION_RES (the option is sent again
         * on every new connection) */
        if (!gearman_client_set_server_option(client, "exceptions", strlen("exceptions")))
            client_error(-1, gearman_client_error_code(client));
    }
    gearman_client_add_options(client, GEARMAN_CLIENT_NON_BLOCKING);

    const json_t *specs = json_object_get(job, "submit");
    submit_count = json_array_size(specs);
    submits = calloc(submit_count ? submit_count : 1, sizeof *submits);
    if (submits == NULL)
        die("out of memory", NULL);
    for (size_t i = 0; i < submit_count; i++) {
        submits[i].kind = SUBMIT;
        submits[i].index = (int)i;
        submits[i].task = submit(&submits[i], json_array_get(specs, i));
    }
    /* every submit created (or ended) before the status queries and echoes */
    if (!drive(all_created, NULL))
        return;

    size_t i;
    const json_t *item;
    json_array_foreach(json_object_get(job, "status"), i, item) status_query((int)i, item);

    json_array_foreach(json_object_get(job, "echo"), i, item)
    {
        bytes_t text = jbytes(item, "echo");
        /* libgearman compares the ECHO_RES with what it sent and says only whether they
         * are the same: on GEARMAN_SUCCESS the answer is these bytes */
        rc = gearman_client_echo(client, text.p, text.n);
        if (rc == GEARMAN_SUCCESS) {
            ev_begin("echo");
            f_bytes("data", text.p, text.n);
            ev_end();
        } else
            client_error(-1, rc);
    }

    if (jbool(job, "wait", true))
        drive(NULL, NULL);
}

/* ------------------------------------------------------------------ worker -- */

static gearman_worker_st *worker;
static long jobs_done;
static bool failed_on_purpose;

typedef struct {
    const json_t *actions;
} fctx_t;

static void worker_error(gearman_return_t rc)
{
    const char *message = gearman_worker_error(worker);
    char text[512];
    snprintf(text, sizeof text, "%s: %s", gearman_strerror(rc),
             message && *message ? message : "(no further message)");
    emit_error(-1, text);
}

static void nap(double seconds)
{
    if (!(seconds > 0))
        return;
    time_t whole = (time_t)seconds;
    struct timespec left = {whole, (long)((seconds - (double)whole) * 1e9)};
    while (nanosleep(&left, &left) == -1 && errno == EINTR)
        ;
}

/* A worker function (gearman_worker_define_function, the v2 kind): the job's
 * function's actions, in order. */
static gearman_return_t run_job(gearman_job_st *job, void *context)
{
    const fctx_t *function = context;
    jobs_done++;
    failed_on_purpose = false;
    ev_begin("job");
    f_str("function", gearman_job_function_name(job));
    f_str("handle", gearman_job_handle(job));
    f_str("unique", gearman_job_unique(job));
    f_bytes("workload", gearman_job_workload(job), gearman_job_workload_size(job));
    ev_end();

    size_t i;
    const json_t *action;
    json_array_foreach(function->actions, i, action)
    {
        const char *kind = NULL;
        const json_t *value = NULL;
        void *iter = json_object_iter((json_t *)action);
        if (iter != NULL) {
            kind = json_object_iter_key(iter);
            value = json_object_iter_value(iter);
        }
        if (kind == NULL)
            continue;
        gearman_return_t rc = GEARMAN_SUCCESS;
        if (strcmp(kind, "data") == 0) {
            bytes_t data = jbytes(value, "data");
            rc = gearman_job_send_data(job, data.p, data.n);
        } else if (strcmp(kind, "warning") == 0) {
            bytes_t warning = jbytes(value, "warning");
            rc = gearman_job_send_warning(job, warning.p, warning.n);
        } else if (strcmp(kind, "status") == 0) {
            double numerator = jnumber(json_array_get(value, 0), 0);
            double denominator = jnumber(json_array_get(value, 1), 0);
            rc = gearman_job_send_status(job, (uint32_t)numerator, (uint32_t)denominator);
        } else if (strcmp(kind, "sleep") == 0) {
            nap(jnumber(value, 0));
        } else if (strcmp(kind, "complete") == 0) {
            bytes_t result = jbytes(value, "complete");
            rc = gearman_job_send_complete(job, result.n ? result.p : NULL, result.n);
            if (rc == GEARMAN_SUCCESS)
                return GEARMAN_SUCCESS;
        } else if (strcmp(kind, "complete-workload") == 0) {
            size_t size = gearman_job_workload_size(job);
            rc = gearman_job_send_complete(job, size ? gearman_job_workload(job) : NULL, size);
            if (rc == GEARMAN_SUCCESS)
                return GEARMAN_SUCCESS;
        } else if (strcmp(kind, "fail") == 0) {
            failed_on_purpose = true;
            return GEARMAN_FAIL; /* WORK_FAIL */
        } else if (strcmp(kind, "exception") == 0) {
            bytes_t text = jbytes(value, "exception");
            rc = gearman_job_send_exception(job, text.p, text.n);
            if (rc == GEARMAN_SUCCESS)
                return GEARMAN_SUCCESS; /* the job is finished: nothing more is sent */
        }
        if (rc != GEARMAN_SUCCESS) {
            worker_error(rc);
            return GEARMAN_ERROR; /* libgearman: drop the connection, the job is retried */
        }
    }
    return GEARMAN_SUCCESS; /* libgearman sends WORK_COMPLETE with an empty result */
}

static const char *worker_unsupported(const json_t *job)
{
    const json_t *value = json_object_get(job, "client_id");
    if (value != NULL && !graph_only(jbytes(value, "client_id")))
        return "gearman_worker_set_identifier takes only an identifier whose every byte is "
               "printable and not a space (isgraph)";
    const char *name;
    size_t name_length;
    const json_t *function;
    json_object_keylen_foreach((json_t *)json_object_get(job, "functions"), name, name_length,
                               function)
    {
        if (has_nul(latin1(name, name_length, "function")))
            return "libgearman matches an assigned job to its function with strcmp (no NUL "
                   "byte in a function name)";
        size_t i;
        const json_t *action;
        json_array_foreach(json_object_get(function, "actions"), i, action)
        {
            const json_t *text = json_object_get(action, "exception");
            if (text != NULL && jbytes(text, "exception").n == 0)
                return "gearman_job_send_exception refuses an empty exception";
        }
    }
    return NULL;
}

static void run_worker(const json_t *job)
{
    const char *reason = worker_unsupported(job);
    if (reason != NULL) {
        emit_unsupported(reason);
        return;
    }

    worker = gearman_worker_create(NULL);
    if (worker == NULL) {
        emit_error(-1, "gearman_worker_create failed");
        return;
    }
    gearman_worker_set_log_fn(worker, log_line, NULL, GEARMAN_VERBOSE_ERROR);
    gearman_return_t rc = gearman_worker_add_server(worker, host, port);
    if (rc != GEARMAN_SUCCESS) {
        worker_error(rc);
        return;
    }
    /* No gearman_worker_set_timeout: it would change what the library does, not only
     * bound a wait.  It turns GEARMAN_WORKER_TIMEOUT_RETURN on, and with that a worker
     * that lost its connection gives up at once (gearman_worker_work returns
     * GEARMAN_TIMEOUT "Option timeout return reached" after gearman_nap, which takes
     * the milliseconds for microseconds) instead of connecting again as it does by
     * default.  The worker's one unbounded wait is for a job, which the harness ends at
     * the budget anyway. */

    if (json_object_get(job, "client_id") != NULL) {
        bytes_t id = jmember(job, "client_id", NO_BYTES);
        rc = gearman_worker_set_identifier(worker, id.p, id.n);
        if (rc != GEARMAN_SUCCESS)
            worker_error(rc);
    }

    const char *key;
    size_t key_length;
    const json_t *spec;
    json_object_keylen_foreach((json_t *)json_object_get(job, "functions"), key, key_length, spec)
    {
        bytes_t name = latin1(key, key_length, "function");
        fctx_t *context = calloc(1, sizeof *context);
        if (context == NULL)
            die("out of memory", NULL);
        context->actions = json_object_get(spec, "actions");
        const json_t *timeout = json_object_get(spec, "timeout");
        uint32_t ms = timeout ? (uint32_t)jnumber(timeout, 0) : 0; /* >0: CAN_DO_TIMEOUT */
        rc = gearman_worker_define_function(worker, name.p, name.n,
                                            gearman_function_create(run_job), ms, context);
        if (rc != GEARMAN_SUCCESS)
            worker_error(rc);
    }

    long jobs = (long)jnumber(json_object_get(job, "jobs"), 1);
    while (jobs_done < jobs) {
        rc = gearman_worker_work(worker);
        if (rc == GEARMAN_SUCCESS)
            continue;
        /* a function that returned GEARMAN_FAIL makes gearman_worker_work return
         * GEARMAN_WORK_FAIL (after sending WORK_FAIL): the job's own end, not an error */
        if (rc == GEARMAN_WORK_FAIL && failed_on_purpose) {
            failed_on_purpose = false;
            continue;
        }
        worker_error(rc);
        break;
    }
}

/* -------------------------------------------------------------------- main -- */

int main(int argc, char **argv)
{
    if (argc == 2 && strcmp(argv[1], "describe") == 0) {
        out.n = 0;
        put_s("{\"library\":\"libgearman (gearmand's C client and worker library)\"");
        f_str("version", gearman_version());
        put_s(",\"roles\":[\"client\",\"worker\"],\"features\":[");
        for (int i = 0; FEATURES[i] != NULL; i++) {
            if (i)
                put(",", 1);
            put_bytes(FEATURES[i], strlen(FEATURES[i]));
        }
        put_s("]}\n");
        fwrite(out.p, 1, out.n, stdout);
        return 0;
    }
    if (argc != 2 || strcmp(argv[1], "run") != 0) {
        fprintf(stderr, "usage: %s describe|run\n", argv[0]);
        return 2;
    }

    read_environment();
    const char *path = getenv("GEARSPEC_JOB");
    if (path == NULL)
        die("GEARSPEC_JOB is not set", NULL);
    json_error_t problem;
    json_t *job = json_load_file(path, JSON_ALLOW_NUL, &problem);
    if (job == NULL || !json_is_object(job))
        die("cannot read the job", job ? "not a JSON object" : problem.text);

    const char *role = json_string_value(json_object_get(job, "role"));
    if (role != NULL && strcmp(role, "client") == 0) {
        run_client(job);
        if (client != NULL)
            gearman_client_free(client);
    } else if (role != NULL && strcmp(role, "worker") == 0) {
        run_worker(job);
        if (worker != NULL)
            gearman_worker_free(worker);
    } else
        die("the job's role is neither client nor worker", role);
    return 0;
}
