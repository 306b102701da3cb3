'use strict'
// One grenache-nodejs-http streaming request (peer.stream), for interop tests.
// usage: node stream_client.js GRAPE_URL KEY CHUNK...
// Writes each CHUNK as it is (a pause between them, so they travel as separate chunks), ends the body,
// and prints the raw reply body, or "ERROR <message>". Sends headers _a: "upload", _ar: {"n": 1}.

const { PeerRPCClient } = require('grenache-nodejs-http')
const Link = require('grenache-nodejs-link')

const [grape, key, ...chunks] = process.argv.slice(2)
if (!grape || !key) {
  console.error('usage: node stream_client.js GRAPE_URL KEY CHUNK...')
  process.exit(2)
}

const link = new Link({ grape })
link.start()
const peer = new PeerRPCClient(link, {})
peer.init()

const finish = (text) => {
  peer.stop()
  link.stop()
  process.stdout.write(text + '\n', () => process.exit(0))
}

const stream = peer.stream(key, { timeout: 10000, headers: { _a: 'upload', _ar: { n: 1 } } })
const out = []
stream.on('data', (d) => out.push(d))
stream.on('end', () => finish(Buffer.concat(out).toString()))
stream.on('error', (err) => finish(`ERROR ${err.message}`))

let i = 0
const next = () => {
  if (i === chunks.length) return stream.end()
  stream.write(chunks[i++])
  setTimeout(next, 20)
}
next()
