'use strict'
// One grenache-nodejs-http request (or map), for interop tests.
// usage: node client.js GRAPE_URL KEY JSON [request|map] [compress]
// Prints the JSON result, or "ERROR <message>", on stdout and exits.

const { PeerRPCClient } = require('grenache-nodejs-http')
const Link = require('grenache-nodejs-link')

const [grape, key, json, mode = 'request', compress] = process.argv.slice(2)
if (!grape || !key || json === undefined || !['request', 'map'].includes(mode)) {
  console.error('usage: node client.js GRAPE_URL KEY JSON [request|map] [compress]')
  process.exit(2)
}

const link = new Link({ grape })
link.start()

const peer = new PeerRPCClient(link, {})
peer.init()

const opts = { timeout: 10000, compress: compress === 'compress' }

peer[mode](key, JSON.parse(json), opts, (err, data) => {
  const out = err ? `ERROR ${err.message}\n` : JSON.stringify(data) + '\n'
  peer.stop()
  link.stop()
  // stdout to a pipe is asynchronous: exit only once the line is flushed
  process.stdout.write(out, () => process.exit(0))
})
