'use strict'
// One grenache-nodejs-http request (or map), for interop tests.
// usage: node client.js GRAPE_URL KEY JSON [request|map] [compress]
// Prints the JSON result, or "ERROR <message>", on stdout and exits.
// With GRENACHE_TLS_DIR=<dir holding key.pem, cert.pem, ca.pem> it uses HTTPS (the `secure` mode):
// the server must present a certificate from that CA naming 127.0.0.1; ours is sent to it.

const fs = require('fs')
const path = require('path')
const { PeerRPCClient } = require('grenache-nodejs-http')
const Link = require('grenache-nodejs-link')

const [grape, key, json, mode = 'request', compress] = process.argv.slice(2)
if (!grape || !key || json === undefined || !['request', 'map'].includes(mode)) {
  console.error('usage: node client.js GRAPE_URL KEY JSON [request|map] [compress]')
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

const opts = { timeout: 10000, compress: compress === 'compress' }

peer[mode](key, JSON.parse(json), opts, (err, data) => {
  const out = err ? `ERROR ${err.message}\n` : JSON.stringify(data) + '\n'
  peer.stop()
  link.stop()
  // stdout to a pipe is asynchronous: exit only once the line is flushed
  process.stdout.write(out, () => process.exit(0))
})
