'use strict'
// grenache-nodejs-ws requests for interop tests.
// usage: node ws_client.js PKG GRAPE_URL KEY JSON [request|map] [COUNT]
// Sends COUNT (default 1) requests at once; prints each result (JSON) or "ERROR <message>", one per line,
// in the order sent, then exits. With GRENACHE_TLS_DIR it uses wss and presents its certificate.

const Link = require('grenache-nodejs-link')
const { load, secure } = require('./wslib')

const [pkg, grape, key, json, mode = 'request', countArg = '1'] = process.argv.slice(2)
if (!pkg || !grape || !key || json === undefined || !['request', 'map'].includes(mode)) {
  console.error('usage: node ws_client.js PKG GRAPE_URL KEY JSON [request|map] [COUNT]')
  process.exit(2)
}
const { Grenache } = load(pkg)

const link = new Link({ grape })
link.start()

const sec = secure()
const peer = new Grenache.PeerRPCClient(link, sec ? { secure: sec } : {})
peer.init()

const count = parseInt(countArg, 10)
const out = new Array(count)
let done = 0
for (let i = 0; i < count; i++) {
  peer[mode](key, JSON.parse(json), { timeout: 10000 }, (err, data) => {
    out[i] = err ? `ERROR ${err.message}` : JSON.stringify(data)
    if (++done === count) {
      peer.stop()
      link.stop()
      process.stdout.write(out.join('\n') + '\n', () => process.exit(0))
    }
  })
}
