'use strict'
// Behaves as Bitfinex's grenache-nodejs-example-fib-client does: asks `fibonacci_worker` for the n-th
// Fibonacci number ({"number": n}) and prints it.
// usage: node fib_client.js GRAPE_URL N [http|ws]

const Link = require('grenache-nodejs-link')

const [grape, n, transport = 'http'] = process.argv.slice(2)
if (!grape || n === undefined || !['http', 'ws'].includes(transport)) {
  console.error('usage: node fib_client.js GRAPE_URL N [http|ws]')
  process.exit(2)
}

const link = new Link({ grape })
link.start()

const PeerRPCClient = transport === 'ws'
  ? require('./wslib').load('grenache-nodejs-ws-1').Grenache.PeerRPCClient
  : require('grenache-nodejs-http').PeerRPCClient
const peer = new PeerRPCClient(link, {})
peer.init()

const payload = { number: parseInt(n, 10) }
peer.request('fibonacci_worker', payload, { timeout: 100000 }, (err, result) => {
  const out = err
    ? `ERROR ${err.message}`
    : `Fibonacci number at place ${payload.number} in the sequence: ${result}`
  peer.stop()
  link.stop()
  process.stdout.write(out + '\n', () => process.exit(0))
})
