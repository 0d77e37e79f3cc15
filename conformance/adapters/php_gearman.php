<?php
/*
 * The adapter of PHP's gearman extension (pecl gearman: GearmanClient, GearmanWorker,
 * GearmanTask, GearmanJob, on libgearman), written to the contract in README.md:
 * `describe` or `run` (the job in $GEARSPEC_JOB, the server in $GEARSPEC_SERVER),
 * events as JSON lines on stdout.
 *
 * It uses the extension as an application would and reports what the extension
 * gave it; it works around nothing. What the API cannot do:
 *   - client.epoch: no epoch/SUBMIT_JOB_EPOCH call (no doEpoch, no addTaskEpoch);
 *   - client.client-id: GearmanClient has no setId (only GearmanWorker has);
 * and what it does differently:
 *   - echo: GearmanClient::ping() returns only true or false (libgearman compares the
 *     ECHO_RES to what was sent), so a true is printed as an echo of the text sent;
 *   - status by unique: jobStatusByUniqueKey() returns known, running, numerator and
 *     denominator but not the count of waiting clients (no `waiting` field);
 *   - exceptions: addServer() asks for them (OPTION_REQ) unless its third argument
 *     is false, and setExceptionCallback() asks too (an application doing both asks
 *     twice). The adapter passes false and sets the exception callback only when the
 *     job wants exceptions, which asks once; without it a WORK_EXCEPTION reaches no
 *     callback;
 *   - a worker always asks for exceptions: GearmanWorker::addServer() sends OPTION_REQ
 *     exceptions, with no argument to turn it off.
 * Jobs are addTask*() calls and runTasks(). When the job asks for status queries or
 * echoes (which come after every submit is created) or says not to wait, runTasks()
 * runs in the extension's non-blocking mode (GEARMAN_CLIENT_NON_BLOCKING, with
 * wait()) until each task is created or over; then the blocking calls; then a
 * blocking runTasks() follows the foreground jobs to their end.
 * PHP's warnings (the extension reports errors with them too) go to stderr.
 */

declare(strict_types=1);

ini_set('display_errors', 'stderr');
ini_set('log_errors', '0');
error_reporting(E_ALL);

const FEATURES = [
    'client.background', 'client.priority', 'client.unique', 'client.created',
    'client.concurrent', 'client.data', 'client.warning', 'client.progress', 'client.exceptions',
    'client.status', 'client.status-unique', 'client.echo',
    'worker.data', 'worker.warning', 'worker.status', 'worker.fail', 'worker.exception',
    'worker.timeout', 'worker.client-id', 'binary',
];

/** The last PHP warning the extension raised (some calls report errors only so). */
$GLOBALS['last_warning'] = null;
set_error_handler(function (int $level, string $message): bool {
    $GLOBALS['last_warning'] = $message;
    return false;  // and PHP prints it (to stderr) as usual
});

/** A job's string (JSON text, one character a byte) as the bytes it stands for. */
function bytes(string $text): string
{
    $out = iconv('UTF-8', 'ISO-8859-1', $text);
    if ($out === false) {
        throw new RuntimeException('a job string has a character over U+00FF');
    }
    return $out;
}

/** Bytes as JSON text, one character a byte (U+0000-U+00FF). */
function text(string $bytes): string
{
    return iconv('ISO-8859-1', 'UTF-8', $bytes);
}

/** One event, one line, flushed. */
function emit(string $event, array $fields = []): void
{
    $line = ['event' => $event];
    foreach ($fields as $key => $value) {
        $line[$key] = is_string($value) ? text($value) : $value;
    }
    fwrite(STDOUT, json_encode($line, JSON_UNESCAPED_SLASHES) . "\n");
    fflush(STDOUT);
}

function timeout_ms(): int
{
    $seconds = (float)(getenv('GEARSPEC_TIMEOUT') ?: '10');
    return max(1, (int)round($seconds * 1000));
}

function fail_event(string $what, $gearman, array $extra = []): void
{
    $message = $gearman->error();
    if ($message === false || $message === '') {
        $message = $GLOBALS['last_warning'] ?? "$what failed";
    }
    emit('error', $extra + ['message' => "$what: $message",
                            'return_code' => $gearman->returnCode()]);
}

function client(array $job, string $host, int $port): void
{
    if (array_key_exists('client_id', $job)) {
        emit('unsupported', ['reason' => 'GearmanClient has no call to set a client id '
                                         . '(SET_CLIENT_ID): only GearmanWorker::setId']);
        return;
    }
    foreach ($job['submit'] ?? [] as $submit) {
        if (isset($submit['epoch'])) {
            emit('unsupported', ['reason' => 'the gearman extension has no epoch job '
                                             . '(SUBMIT_JOB_EPOCH) call']);
            return;
        }
    }
    $exceptions = !empty($job['exceptions']);
    $client = new GearmanClient();
    // addServer() asks for exceptions unless told not to, and setExceptionCallback()
    // asks (again): asked once, by the callback, when the job wants them.
    if (!$client->addServer($host, $port, false)) {
        fail_event('addServer', $client);
        return;
    }
    $client->setTimeout(timeout_ms());

    $handles = [];   // job index => its handle, from the created callback
    $done = [];      // job index => true once it completed, failed or raised
    $client->setCreatedCallback(function (GearmanTask $task, $index) use (&$handles) {
        $handles[$index] = $task->jobHandle();
        emit('created', ['job' => $index, 'handle' => $handles[$index]]);
        return GEARMAN_SUCCESS;
    });
    $client->setDataCallback(function (GearmanTask $task, $index) {
        emit('data', ['job' => $index, 'data' => $task->data()]);
        return GEARMAN_SUCCESS;
    });
    $client->setWarningCallback(function (GearmanTask $task, $index) {
        emit('warning', ['job' => $index, 'data' => $task->data()]);
        return GEARMAN_SUCCESS;
    });
    $client->setStatusCallback(function (GearmanTask $task, $index) {
        emit('status', ['job' => $index, 'numerator' => $task->taskNumerator(),
                        'denominator' => $task->taskDenominator()]);
        return GEARMAN_SUCCESS;
    });
    $client->setCompleteCallback(function (GearmanTask $task, $index) use (&$done) {
        $done[$index] = true;
        emit('complete', ['job' => $index, 'data' => $task->data()]);
        return GEARMAN_SUCCESS;
    });
    $client->setFailCallback(function (GearmanTask $task, $index) use (&$done) {
        $done[$index] = true;
        emit('fail', ['job' => $index]);
        return GEARMAN_SUCCESS;
    });
    if ($exceptions) {
        $client->setExceptionCallback(function (GearmanTask $task, $index) use (&$done) {
            $done[$index] = true;
            emit('exception', ['job' => $index, 'data' => $task->data()]);
            return GEARMAN_SUCCESS;
        });
    }

    $added = [];  // job index => background?
    foreach ($job['submit'] ?? [] as $index => $submit) {
        $background = !empty($submit['background']);
        $method = ['high' => 'addTaskHigh', 'normal' => 'addTask',
                   'low' => 'addTaskLow'][$submit['priority'] ?? 'normal']
                  . ($background ? 'Background' : '');
        $arguments = [bytes($submit['function']), bytes($submit['workload'] ?? ''), $index];
        if (isset($submit['unique'])) {
            // (its stub says ?string $unique_key = null, but passing null is a TypeError)
            $arguments[] = bytes($submit['unique']);
        }
        $GLOBALS['last_warning'] = null;
        $task = $client->$method(...$arguments);
        if ($task === false) {
            fail_event($method, $client, ['job' => $index]);
            continue;
        }
        $added[$index] = $background;
    }

    $wait = $job['wait'] ?? true;
    $queries = $job['status'] ?? [];
    $echoes = $job['echo'] ?? [];
    if ($queries || $echoes || !$wait) {
        // Submit and run until every job is created (or over), then ask: the
        // extension's non-blocking mode, runTasks() and wait() until then.
        $client->addOptions(GEARMAN_CLIENT_NON_BLOCKING);
        while ($added && array_diff_key($added, $handles, $done)) {
            $GLOBALS['last_warning'] = null;
            if (!$client->runTasks()) {
                fail_event('runTasks', $client);
                return;
            }
            if ($client->returnCode() === GEARMAN_SUCCESS) {
                break;  // every task is over
            }
            if (array_diff_key($added, $handles, $done) && !$client->wait()) {
                fail_event('wait', $client);
                return;
            }
        }
        $client->removeOptions(GEARMAN_CLIENT_NON_BLOCKING);
        foreach ($queries as $index => $query) {
            status_query($client, $index, $query, $handles);
        }
        foreach ($echoes as $echo) {
            $GLOBALS['last_warning'] = null;
            if ($client->ping(bytes($echo))) {
                emit('echo', ['data' => bytes($echo),
                              'note' => 'GearmanClient::ping() returned true (it returns no data)']);
            } else {
                fail_event('ping', $client);
            }
        }
    }
    if ($wait && $added) {
        $GLOBALS['last_warning'] = null;
        if (!$client->runTasks()) {
            fail_event('runTasks', $client);
        }
    }
}

function status_query(GearmanClient $client, int $index, array $query, array $handles): void
{
    $GLOBALS['last_warning'] = null;
    if (array_key_exists('unique', $query)) {
        $answer = $client->jobStatusByUniqueKey(bytes($query['unique']));
        if ($GLOBALS['last_warning'] !== null) {  // it leaves returnCode() as it was
            emit('error', ['message' => "jobStatusByUniqueKey: {$GLOBALS['last_warning']}"]);
            return;
        }
    } else {
        if (array_key_exists('handle_of', $query)) {
            $handle = $handles[$query['handle_of']] ?? null;
            if ($handle === null) {
                emit('error', ['message' => "job {$query['handle_of']} got no handle to ask about"]);
                return;
            }
        } else {
            $handle = bytes($query['handle']);
        }
        $answer = $client->jobStatus($handle);
        if ($client->returnCode() !== GEARMAN_SUCCESS) {
            fail_event('jobStatus', $client);
            return;
        }
    }
    [$known, $running, $numerator, $denominator] = $answer;
    emit('status-answer', ['query' => $index, 'known' => $known, 'running' => $running,
                           'numerator' => $numerator, 'denominator' => $denominator]);
}

function worker(array $job, string $host, int $port): void
{
    $worker = new GearmanWorker();
    if (!$worker->addServer($host, $port)) {
        fail_event('addServer', $worker);
        return;
    }
    $worker->setTimeout(timeout_ms());
    if (array_key_exists('client_id', $job) && !$worker->setId(bytes($job['client_id']))) {
        fail_event('setId', $worker);
        return;
    }
    foreach ($job['functions'] as $name => $function) {
        $name = bytes((string)$name);
        $actions = $function['actions'] ?? [];
        $timeout = (int)($function['timeout'] ?? 0);
        if (!$worker->addFunction($name, handler($actions), null, $timeout)) {
            fail_event('addFunction', $worker);
            return;
        }
    }
    $jobs = (int)($job['jobs'] ?? 1);
    for ($n = 0; $n < $jobs; $n++) {
        $GLOBALS['last_warning'] = null;
        if (!$worker->work()) {
            $code = $worker->returnCode();
            if ($code === GEARMAN_WORK_FAIL || $code === GEARMAN_WORK_EXCEPTION) {
                continue;  // work() says so of a job that failed or raised: a job done
            }
            fail_event('work', $worker);
            return;
        }
    }
}

function handler(array $actions): Closure
{
    return function (GearmanJob $job) use ($actions) {
        emit('job', ['function' => $job->functionName(), 'handle' => $job->handle(),
                     'unique' => $job->unique(), 'workload' => $job->workload()]);
        foreach ($actions as $action) {
            $kind = array_key_first($action);
            $value = $action[$kind];
            $GLOBALS['last_warning'] = null;
            switch ($kind) {
                case 'data':
                    $sent = $job->sendData(bytes($value));
                    break;
                case 'warning':
                    $sent = $job->sendWarning(bytes($value));
                    break;
                case 'status':
                    $sent = $job->sendStatus((int)$value[0], (int)$value[1]);
                    break;
                case 'sleep':
                    usleep((int)round((float)$value * 1e6));
                    $sent = true;
                    break;
                case 'fail':
                    if (!$job->sendFail()) {
                        emit('error', ['message' => 'sendFail: ' . job_error($job)]);
                    }
                    return null;
                case 'exception':
                    if (!$job->sendException(bytes($value))) {
                        emit('error', ['message' => 'sendException: ' . job_error($job)]);
                    }
                    return null;
                case 'complete':
                    return bytes($value);
                case 'complete-workload':
                    return $job->workload();
                default:
                    $sent = true;
            }
            if ($sent === false) {
                emit('error', ['message' => "send $kind: " . job_error($job)]);
            }
        }
        return '';
    };
}

function job_error(GearmanJob $job): string
{
    return $GLOBALS['last_warning'] ?? ('return code ' . $job->returnCode());
}

function main(array $argv): int
{
    if (($argv[1] ?? '') === 'describe') {
        fwrite(STDOUT, json_encode([
            'library' => 'PHP gearman extension (pecl gearman) on libgearman',
            'version' => phpversion('gearman') . ' (libgearman ' . gearman_version() . ')',
            'roles' => ['client', 'worker'],
            'features' => FEATURES,
        ], JSON_UNESCAPED_SLASHES) . "\n");
        return 0;
    }
    if (($argv[1] ?? '') !== 'run') {
        fwrite(STDERR, "usage: php php_gearman.php describe|run\n");
        return 2;
    }
    $job = json_decode(file_get_contents(getenv('GEARSPEC_JOB')), true, 512,
                       JSON_THROW_ON_ERROR);
    $server = getenv('GEARSPEC_SERVER');
    $colon = strrpos($server, ':');
    $host = substr($server, 0, $colon);
    $port = (int)substr($server, $colon + 1);
    try {
        if ($job['role'] === 'client') {
            client($job, $host, $port);
        } else {
            worker($job, $host, $port);
        }
    } catch (GearmanException $error) {
        emit('error', ['message' => get_class($error) . ': ' . $error->getMessage()]);
    }
    return 0;
}

exit(main($argv));
