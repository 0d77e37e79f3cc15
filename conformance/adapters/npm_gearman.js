'use strict'
// The adapter of npm `gearman` (mreinstein/node-gearman, 2.x): the contract is README.md.
//
// The library is a thin layer over the protocol: one object per connection whose
// events are the packets it received (JOB_CREATED, WORK_DATA, STATUS_RES, ...), and
// whose methods send one packet each. It keeps no jobs: the application matches
// JOB_CREATED to its submits (answers come in order on one connection) and the
// WORK_* packets to jobs by handle, as this adapter does. Strings the library decodes
// (handles, warnings, exception texts, status fields) it decodes as UTF-8: they are
// printed as their UTF-8 bytes, so a byte that was lost in decoding shows as EF BF BD.
//
// The application submits one job at a time, each once the one before has its
// JOB_CREATED (or ERROR), so that every answer is the one it waits for; setWorkerId
// is SET_CLIENT_ID for a client too; known and running of a status answer are
// "1"/"0" strings from the library, printed as booleans, the rest as it gives them.
// A worker grabs with grabUniqueJob (GRAB_JOB_UNIQ), so that it learns the unique.
//
// Left out of `describe`: client.epoch (no SUBMIT_JOB_EPOCH in the API).

const fs = require('fs')
const path = require('path')

// NODE_PATH (libraries.py sets it) or, without it, where `make clients` installs.
function load (name) {
  try {
    return require(name)
  } catch (error) {
    if (error.code !== 'MODULE_NOT_FOUND') throw error
    return require(path.join(__dirname, '..', '..', '.clients', 'node', 'node_modules', name))
  }
}
const gearman = load('gearman')
const pkg = load('gearman/package.json')

const FEATURES = ['client.created', 'client.background', 'client.priority', 'client.unique',
  'client.concurrent', 'client.data', 'client.warning', 'client.progress', 'client.exceptions', 'client.status',
  'client.status-unique', 'client.echo', 'client.client-id', 'worker.data', 'worker.warning',
  'worker.status', 'worker.fail', 'worker.exception', 'worker.timeout', 'worker.client-id',
  'binary']

// Exit once everything printed has been handed to the pipe: in Node a write to a pipe
// is asynchronous, and process.exit() would cut the last (say, a 4 MiB) event short.
// The name an application would write for these bytes, for an API that encodes names
// as UTF-8: the bytes read as UTF-8 when they are UTF-8 (else as they are: such a name
// cannot be sent through this API, and the run shows what the library does with it).
function utf8Name (latin1) {
  const raw = Buffer.from(latin1, 'latin1')
  const text = raw.toString('utf8')
  return Buffer.from(text, 'utf8').equals(raw) ? text : latin1
}

function leave (status = 0) {
  process.stdout.write('', () => process.exit(status))
}

function emit (event, fields = {}) {
  process.stdout.write(JSON.stringify({ event, ...fields }) + '\n')
}

const bytes = (text) => Buffer.from(text, 'latin1') // a job's string as the bytes it stands for
const shown = (buffer) => buffer.toString('latin1') // bytes the library gave, for the report
const text = (string) => Buffer.from(string, 'utf8').toString('latin1') // a decoded string
const note = (message) => process.stderr.write(`npm_gearman: ${message}\n`)
const sleep = (seconds) => new Promise((resolve) => setTimeout(resolve, seconds * 1000))

function connection () {
  const [host, port] = process.env.GEARSPEC_SERVER.split(':')
  const seconds = Number(process.env.GEARSPEC_TIMEOUT || 0)
  const options = seconds > 0 ? { timeout: seconds * 1000 } : {}
  const library = gearman(host, Number(port), options)
  let finishing = false
  const exit = () => leave(0)
  const finish = () => {
    if (finishing) return
    finishing = true
    library.close()
    // close() half-closes the socket; a server that keeps its side open would keep the
    // event loop alive: exit once closed, or shortly after.
    setTimeout(exit, 200)
  }
  library.on('close', () => {
    if (!finishing) emit('error', { message: 'the connection closed' })
    exit()
  })
  library.on('error', (error) => {
    emit('error', { message: String(error && error.message ? error.message : error) })
    finishing = true
    setTimeout(exit, 200) // 'close' follows
  })
  library.on('timeout', () => {
    emit('error', { message: `no activity on the connection for ${seconds} s (timeout)` })
    finish()
  })
  return { library, finish }
}

// A queue of what the application waits for, in the order it asked: the library
// hands every answer (JOB_CREATED, OPTION_RES, STATUS_RES, ECHO_RES, ERROR) to one
// event for the whole connection.
function waiter (library) {
  let pending = null
  const answer = (kind) => (...args) => {
    if (pending === null) {
      note(`${kind} with nothing waiting for it`)
      if (kind === 'ERROR') emit('error', { message: `${args[0]}: ${args[1]}` })
      return
    }
    const { resolve } = pending
    pending = null
    resolve({ kind, args })
  }
  for (const kind of ['JOB_CREATED', 'OPTION_RES', 'STATUS_RES', 'STATUS_RES_UNIQUE',
    'ECHO_RES', 'ERROR']) {
    library.on(kind, answer(kind))
  }
  return () => new Promise((resolve) => { pending = { resolve } })
}

async function client (job) {
  for (const submit of job.submit || []) {
    if (submit.epoch !== undefined && submit.epoch !== null) {
      emit('unsupported', { reason: 'npm gearman has no SUBMIT_JOB_EPOCH (submitJob takes ' +
        'unique_id, background, priority and encoding only)' })
      return
    }
  }
  const { library, finish } = connection()
  const next = waiter(library)
  const handles = [] // job index -> handle (string)
  const byHandle = new Map() // handle -> [job index]
  const open = new Set() // foreground jobs not ended
  let waitingForEnds = false
  const ended = (index) => { // the handle is forgotten: a later job may be given it again
    open.delete(index)
    const handle = handles[index]
    const rest = (byHandle.get(handle) || []).filter((other) => other !== index)
    if (rest.length) byHandle.set(handle, rest)
    else byHandle.delete(handle)
    if (waitingForEnds && open.size === 0) finish()
  }
  // The job a JOB_CREATED is for is taken as the event comes, not when the awaiting
  // code resumes: the library delivers the rest of the same read (the job's first
  // updates, say) before any promise continuation runs.
  const awaitingCreated = []
  library.on('JOB_CREATED', (handle) => {
    const index = awaitingCreated.shift()
    if (index === undefined) return
    handles[index] = handle
    byHandle.set(handle, [...(byHandle.get(handle) || []), index])
    emit('created', { job: index, handle: text(handle) })
  })
  const jobsOf = (kind, handle) => {
    const found = byHandle.get(handle)
    if (!found) note(`${kind} for handle ${JSON.stringify(handle)}, which is no job's`)
    return found || []
  }
  library.on('WORK_DATA', (packet) => {
    for (const index of jobsOf('WORK_DATA', packet.handle)) {
      emit('data', { job: index, data: shown(packet.payload) })
    }
  })
  library.on('WORK_WARNING', (packet) => {
    for (const index of jobsOf('WORK_WARNING', packet.handle)) {
      emit('warning', { job: index, data: text(packet.warning) })
    }
  })
  library.on('WORK_STATUS', (packet) => {
    for (const index of jobsOf('WORK_STATUS', packet.handle)) {
      emit('status', { job: index, numerator: packet.percent_num,
        denominator: packet.percent_den })
    }
  })
  library.on('WORK_COMPLETE', (packet) => {
    for (const index of jobsOf('WORK_COMPLETE', packet.handle)) {
      emit('complete', { job: index, data: shown(packet.payload) })
      ended(index)
    }
  })
  library.on('WORK_FAIL', (packet) => {
    for (const index of jobsOf('WORK_FAIL', packet.handle)) {
      emit('fail', { job: index })
      ended(index)
    }
  })
  library.on('WORK_EXCEPTION', (packet) => {
    for (const index of jobsOf('WORK_EXCEPTION', packet.handle)) {
      emit('exception', { job: index, data: text(packet.exception) })
      ended(index)
    }
  })

  await new Promise((resolve) => library.connect(resolve))
  if (job.client_id !== undefined) library.setWorkerId(job.client_id)
  if (job.exceptions) {
    library.setOption('exceptions')
    const got = await next()
    if (got.kind === 'ERROR') emit('error', { message: `${got.args[0]}: ${got.args[1]}` })
  }
  const submits = job.submit || []
  for (let index = 0; index < submits.length; index++) {
    const submit = submits[index]
    const options = { background: !!submit.background, priority: submit.priority || 'normal' }
    if (submit.unique !== undefined) options.unique_id = submit.unique
    if (!submit.background) open.add(index)
    awaitingCreated.push(index)
    library.submitJob(submit.function, bytes(submit.workload || ''), options)
    const got = await next()
    if (got.kind !== 'JOB_CREATED') {
      awaitingCreated.splice(awaitingCreated.indexOf(index), 1)
      emit('error', { job: index, message: `${got.args[0]}: ${got.args[1]}` })
      open.delete(index)
    }
  }
  const queries = job.status || []
  for (let index = 0; index < queries.length; index++) {
    const query = queries[index]
    if (query.unique !== undefined) {
      library.getJobStatusUnique(query.unique)
    } else if (query.handle !== undefined) {
      library.getJobStatus(query.handle)
    } else if (handles[query.handle_of] !== undefined) {
      library.getJobStatus(handles[query.handle_of])
    } else {
      emit('error', { message: `status query ${index}: job ${query.handle_of} has no handle` })
      continue
    }
    const got = await next()
    if (got.kind === 'ERROR') {
      emit('error', { message: `${got.args[0]}: ${got.args[1]}` })
      continue
    }
    const answer = got.args[0]
    const fields = { query: index, known: answer.known === '1', running: answer.running === '1',
      numerator: answer.percent_done_num, denominator: answer.percent_done_den }
    if (got.kind === 'STATUS_RES') fields.handle = text(answer.handle)
    else fields.unique = text(answer.unique_id) // the library gives no waiting-client count
    emit('status-answer', fields)
  }
  for (const echo of job.echo || []) {
    library.echo(bytes(echo))
    const got = await next()
    if (got.kind === 'ERROR') emit('error', { message: `${got.args[0]}: ${got.args[1]}` })
    else emit('echo', { data: shown(got.args[0]) })
  }
  if (job.wait === false || open.size === 0) {
    finish()
    return
  }
  waitingForEnds = true
}

async function worker (job) {
  const { library, finish } = connection()
  const functions = job.functions || {}
  const wanted = job.jobs === undefined ? 1 : Number(job.jobs)
  let done = 0
  const grab = () => library.grabUniqueJob()

  const work = async (assigned) => {
    const name = assigned.func_name
    emit('job', { function: text(name), handle: text(assigned.handle),
      unique: assigned.unique_id === undefined ? null : text(assigned.unique_id),
      workload: shown(assigned.payload) })
    const handle = assigned.handle
    // The name as the library decoded it (UTF-8), or as the job wrote it.
    const key = Object.keys(functions).find((k) => k === name || utf8Name(k) === name)
    const fn = key === undefined ? null : functions[key]
    if (fn === null) {
      emit('error', { message: `assigned a job for ${JSON.stringify(name)}, not registered` })
      library.sendWorkFail(handle)
    } else {
      let ending = false
      for (const action of fn.actions || []) {
        const [[kind, value]] = Object.entries(action)
        if (kind === 'data') library.sendWorkData(handle, bytes(value))
        else if (kind === 'warning') library.sendWorkWarning(handle, bytes(value))
        else if (kind === 'status') library.sendWorkStatus(handle, String(value[0]), String(value[1]))
        else if (kind === 'sleep') await sleep(Number(value))
        else if (kind === 'fail') { library.sendWorkFail(handle); ending = true; break }
        else if (kind === 'exception') {
          library.sendWorkException(handle, bytes(value)); ending = true; break
        } else if (kind === 'complete') {
          library.sendWorkComplete(handle, bytes(value)); ending = true; break
        } else if (kind === 'complete-workload') {
          library.sendWorkComplete(handle, assigned.payload || Buffer.alloc(0)); ending = true; break
        }
      }
      if (!ending) library.sendWorkComplete(handle, Buffer.alloc(0))
    }
    done++
    if (done >= wanted) finish()
    else grab()
  }
  library.on('JOB_ASSIGN_UNIQ', work)
  library.on('JOB_ASSIGN', work)
  library.on('NO_JOB', () => library.preSleep())
  library.on('NOOP', grab)

  await new Promise((resolve) => library.connect(resolve))
  if (job.client_id !== undefined) library.setWorkerId(job.client_id)
  for (const [name, fn] of Object.entries(functions)) {
    library.addFunction(utf8Name(name), fn.timeout === undefined || fn.timeout === null
      ? 0 : Number(fn.timeout))
  }
  if (wanted <= 0) finish()
  else grab()
}

if (process.argv[2] === 'describe') {
  process.stdout.write(JSON.stringify({ library: 'gearman (npm, mreinstein/node-gearman)',
    version: pkg.version, roles: ['client', 'worker'], features: FEATURES }) + '\n')
} else if (process.argv[2] === 'run') {
  const job = JSON.parse(fs.readFileSync(process.env.GEARSPEC_JOB, 'utf8'))
  ;(job.role === 'client' ? client : worker)(job)
} else {
  process.stderr.write('usage: npm_gearman.js describe|run\n')
  leave(2)
}
