'use strict'
// Behaves as the Grapevine chat server (ismaelpamplona/grapevine-p2p-chat, src/server.js) does:
// `node grapevine_server.js NAME PORT` serves grenache-nodejs-ws RPC on PORT, announces NAME there every
// second, and answers a payload {"message": m} with the string "Echo: m".
// The Grape is $GRENACHE_GRAPE (Grapevine's is http://127.0.0.1:30001); the server binds 127.0.0.1.

const Link = require('grenache-nodejs-link')
const { load, loopback } = require('./wslib')

const [name, portArg] = process.argv.slice(2)
const port = parseInt(portArg, 10)
if (!name || !(port >= 0)) {
  console.error('usage: node grapevine_server.js NAME PORT')
  process.exit(2)
}
const { Grenache, Ws } = load(process.env.GRENACHE_WS_PKG || 'grenache-nodejs-ws-1')

const link = new Link({ grape: process.env.GRENACHE_GRAPE || 'http://127.0.0.1:30001' })
link.start()

const peer = new Grenache.PeerRPCServer(link, {})
peer.init()

const service = peer.transport('server')
loopback(service, Ws, (bound) => {
  service.port = bound
  const announce = (cb) => link.announce(name, bound, {}, cb)
  setInterval(() => announce(() => {}), 1000)
  announce(() => console.log(`Grapevine server ${name} listening on port ${bound}`))
})
service.listen(port)

service.on('request', (rid, key, payload, handler) => {
  console.log(`${name} received: ${payload.message}`)
  handler.reply(null, `Echo: ${payload.message}`)
})

process.on('SIGTERM', () => {
  link.stop()
  peer.stop()
  process.exit(0)
})
