'use strict'
// Benchmark load generator on grenache-nodejs-http (or grenache-nodejs-ws 1.0.0 with TRANSPORT=ws).
// usage: node node_client.js GRAPE_URL KEY INFLIGHT SECONDS WARMUP_SECONDS [http|ws]
// Keeps INFLIGHT requests outstanding; after the warm-up, records every request started and finished
// inside the measured window. Prints one JSON line: {requests, errors, seconds, rps, p50_ms, p99_ms}.
// With GRENACHE_TLS_DIR (key.pem, cert.pem, ca.pem) it uses the `secure` mode (https / wss).

const fs = require('fs')
const path = require('path')
const Link = require('grenache-nodejs-link')

const [grape, key, inflightArg, secondsArg, warmupArg, transport = 'http'] = process.argv.slice(2)
const { PeerRPCClient } = transport === 'ws' ? require('grenache-nodejs-ws-1') : require('grenache-nodejs-http')
const inflight = parseInt(inflightArg, 10)
const seconds = parseFloat(secondsArg)
const warmup = parseFloat(warmupArg)
if (!grape || !key || !(inflight > 0) || !(seconds > 0) || !(warmup >= 0)) {
  console.error('usage: node node_client.js GRAPE_URL KEY INFLIGHT SECONDS WARMUP_SECONDS')
  process.exit(2)
}

const link = new Link({ grape })
link.start()
const tlsDir = process.env.GRENACHE_TLS_DIR
const conf = {}
if (tlsDir) {
  const read = (name) => fs.readFileSync(path.join(tlsDir, name))
  conf.secure = { key: read('key.pem'), cert: read('cert.pem'), ca: read('ca.pem') }
}
const peer = new PeerRPCClient(link, conf)
peer.init()

const now = () => Number(process.hrtime.bigint()) / 1e6 // ms
const t0 = now()
const measureFrom = t0 + warmup * 1000
const measureTo = measureFrom + seconds * 1000
const latencies = []
let errors = 0
let firstError = null
let n = 0
let running = inflight

function pct (sorted, p) {
  if (!sorted.length) return null
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))]
}

function finish () {
  latencies.sort((a, b) => a - b)
  const out = {
    requests: latencies.length,
    errors,
    first_error: firstError,
    seconds,
    rps: latencies.length / seconds,
    p50_ms: pct(latencies, 0.5),
    p99_ms: pct(latencies, 0.99)
  }
  peer.stop()
  link.stop()
  process.stdout.write(JSON.stringify(out) + '\n', () => process.exit(0))
}

function loop () {
  const start = now()
  if (start >= measureTo) {
    if (--running === 0) finish()
    return
  }
  peer.request(key, { msg: 'hello', n: n++ }, { timeout: 10000 }, (err) => {
    const end = now()
    if (start >= measureFrom && end <= measureTo) {
      if (err) {
        errors++
        firstError = firstError || err.message
      } else {
        latencies.push(end - start)
      }
    }
    setImmediate(loop)
  })
}

for (let i = 0; i < inflight; i++) loop()
