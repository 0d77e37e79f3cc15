'use strict'
// The adapter of npm `node-gearman` (andris9/node-gearman, 0.2.x): the contract is README.md.
//
// A small API. A client submits with gearman.submitJob(name, payload, unique, options)
// (unique and options {priority, background} are in the source, not in the README)
// and follows the returned job's events: 'data' (a Buffer), 'end', 'error' ("Job
// failed"), 'timeout'. A worker registers gearman.registerWorker(name, fn(payload,
// worker)) and answers with worker.write(data), worker.end([data]), worker.error().
//
// What it cannot do, left out of `describe` (an `unsupported` event if a job asks):
// - no event says a job was created, nor what its handle is: this adapter never prints
//   `created`;
// - the WORK_COMPLETE payload is one more 'data' chunk before 'end': the application
//   cannot tell WORK_DATA from the result (client.data), so it takes the result as the
//   job's stream, every chunk in order, as README's streaming section does;
// - WORK_WARNING, WORK_STATUS and WORK_EXCEPTION are dropped unread; no OPTION_REQ
//   (client.warning, client.progress, client.exceptions);
// - no GET_STATUS, GET_STATUS_UNIQUE, ECHO_REQ, SET_CLIENT_ID, SUBMIT_JOB_EPOCH,
//   CAN_DO_TIMEOUT; a worker cannot send WORK_WARNING, WORK_STATUS or WORK_EXCEPTION;
// - a worker grabs with GRAB_JOB only: it never learns a job's unique (printed null).

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
const Gearman = load('node-gearman')
const pkg = load('node-gearman/package.json')

const FEATURES = ['client.background', 'client.priority', 'client.unique', 'client.concurrent',
  'worker.data', 'worker.fail', 'binary']
const LINGER = 1000 // ms: how long a leaving application gives the library to send

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
const text = (string) => Buffer.from(String(string), 'utf8').toString('latin1') // a decoded string
const note = (message) => process.stderr.write(`npm_node_gearman: ${message}\n`)
const sleep = (seconds) => new Promise((resolve) => setTimeout(resolve, seconds * 1000))

function unsupported (reason) {
  emit('unsupported', { reason: `node-gearman ${pkg.version}: ${reason}` })
  leave(0)
}

function connection () {
  const [host, port] = process.env.GEARSPEC_SERVER.split(':')
  const gearman = new Gearman(host, Number(port))
  const state = { finishing: false }
  state.finish = () => {
    if (state.finishing) return
    state.finishing = true
    gearman.close()
    setTimeout(() => leave(0), 200) // in case 'close' does not come
  }
  gearman.on('close', () => {
    if (!state.finishing) emit('error', { message: 'the connection closed' })
    leave(0)
  })
  gearman.on('error', (error) => { // "Connection is automatically closed": give up, once the
    emit('error', { message: String(error && error.message ? error.message : error) })
    state.finishing = true // jobs it fails as it closes have said so
    setImmediate(() => leave(0))
  })
  return { gearman, state }
}

function client (job) {
  if (job.client_id !== undefined) unsupported('no SET_CLIENT_ID in its API')
  if (job.exceptions) unsupported('no OPTION_REQ (exceptions) in its API, and WORK_EXCEPTION is ignored')
  if ((job.status || []).length) unsupported('no GET_STATUS or GET_STATUS_UNIQUE in its API')
  if ((job.echo || []).length) unsupported('no ECHO_REQ in its API')
  const submits = job.submit || []
  if (submits.some((s) => s.epoch !== undefined && s.epoch !== null)) {
    unsupported('no SUBMIT_JOB_EPOCH in its API')
  }
  const { gearman, state } = connection()
  const seconds = Number(process.env.GEARSPEC_TIMEOUT || 0)
  const wait = job.wait !== false
  const open = new Set()
  const leave = () => setTimeout(() => {
    note(`no sign from the library that its submits were sent: left after ${LINGER} ms`)
    state.finishing = true
    leave(0)
  }, LINGER)
  const ended = (index) => {
    if (!open.delete(index)) return
    if (open.size === 0 && wait) {
      if (submits.some((s) => s.background)) leave()
      else state.finish()
    }
  }
  submits.forEach((submit, index) => {
    const options = { background: !!submit.background }
    if (submit.priority && submit.priority !== 'normal') options.priority = submit.priority
    const unique = submit.unique === undefined ? undefined : bytes(submit.unique)
    const submitted = gearman.submitJob(utf8Name(submit.function), bytes(submit.workload || ''), unique,
      options)
    const chunks = []
    submitted.on('data', (chunk) => chunks.push(chunk))
    submitted.on('end', () => {
      emit('complete', { job: index, data: shown(Buffer.concat(chunks)) })
      ended(index)
    })
    submitted.on('error', (error) => {
      const message = String(error && error.message ? error.message : error)
      if (message === 'Job failed') emit('fail', { job: index })
      else emit('error', { job: index, message })
      ended(index)
    })
    submitted.on('timeout', (error) => {
      emit('error', { job: index, message: String(error && error.message ? error.message : error) })
      ended(index)
    })
    if (submit.background) return // the library tells nothing of a background job
    open.add(index)
    if (seconds > 0) submitted.setTimeout(seconds * 1000)
  })
  if (!wait || open.size === 0) leave()
}

function worker (job) {
  if (job.client_id !== undefined) unsupported('no SET_CLIENT_ID in its API')
  const functions = job.functions || {}
  for (const [name, fn] of Object.entries(functions)) {
    if (fn.timeout !== undefined && fn.timeout !== null) {
      unsupported(`registerWorker takes no timeout (no CAN_DO_TIMEOUT) for ${name}`)
    }
    for (const action of fn.actions || []) {
      const [kind] = Object.keys(action)
      if (kind === 'warning') unsupported('a worker cannot send WORK_WARNING')
      if (kind === 'status') unsupported('a worker cannot send WORK_STATUS')
      if (kind === 'exception') unsupported('a worker cannot send WORK_EXCEPTION')
    }
  }
  const { gearman, state } = connection()
  const wanted = job.jobs === undefined ? 1 : Number(job.jobs)
  let done = 0
  // The library grabs the next job by itself after each; once done, close when it
  // says it is idle (the server had no job for that grab), or after LINGER.
  const quit = () => {
    gearman.on('idle', state.finish)
    setTimeout(state.finish, LINGER)
  }
  for (const [name, fn] of Object.entries(functions)) {
    gearman.registerWorker(utf8Name(name), async (payload, work) => {
      emit('job', { function: name, handle: text(work.handle), unique: null,
        workload: payload === undefined ? '' : shown(payload) })
      if (done >= wanted) { // a job more than asked for: leave without it
        state.finish()
        return
      }
      let ending = false
      for (const action of fn.actions || []) {
        const [[kind, value]] = Object.entries(action)
        if (kind === 'data') work.write(bytes(value))
        else if (kind === 'sleep') await sleep(Number(value))
        else if (kind === 'fail') { work.error(); ending = true; break }
        else if (kind === 'complete') { work.end(bytes(value)); ending = true; break }
        else if (kind === 'complete-workload') { work.end(payload); ending = true; break }
      }
      if (!ending) work.end()
      done++
      if (done === wanted) quit()
    })
  }
  if (wanted <= 0) quit()
}

if (process.argv[2] === 'describe') {
  process.stdout.write(JSON.stringify({ library: 'node-gearman (npm, andris9/node-gearman)',
    version: pkg.version, roles: ['client', 'worker'], features: FEATURES }) + '\n')
} else if (process.argv[2] === 'run') {
  const job = JSON.parse(fs.readFileSync(process.env.GEARSPEC_JOB, 'utf8'))
  if (job.role === 'client') client(job)
  else worker(job)
} else {
  process.stderr.write('usage: npm_node_gearman.js describe|run\n')
  leave(2)
}
