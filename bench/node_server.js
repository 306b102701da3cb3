'use strict'
// Benchmark RPC server on grenache-nodejs-http (the anchor). usage: node node_server.js GRAPE_URL KEY
// Replies {"from":"node","got":payload}; prints "READY <port>" once listening on 127.0.0.1 and announced.

const { PeerRPCServer } = require('grenache-nodejs-http')
const Link = require('grenache-nodejs-link')

const [grape, key] = process.argv.slice(2)
if (!grape || !key) {
  console.error('usage: node node_server.js GRAPE_URL KEY')
  process.exit(2)
}

const link = new Link({ grape })
link.start()

const peer = new PeerRPCServer(link, { timeout: 300000 })
peer.init()

const service = peer.transport('server')
// grenache-nodejs-http listens on all interfaces; keep the benchmark on loopback
const getSocket = service.getSocket.bind(service)
service.getSocket = (secure) => {
  const socket = getSocket(secure)
  const listen = socket.listen.bind(socket)
  socket.listen = (port) => listen(port, '127.0.0.1')
  return socket
}
service.listen(0)

service.on('request', (rid, k, payload, handler) => {
  handler.reply(null, { from: 'node', got: payload })
})

service.socket.on('listening', () => {
  service.port = service.socket.address().port
  const announce = (cb) => link.announce(key, service.port, {}, cb)
  setInterval(() => announce(() => {}), 1000)
  announce(() => process.stdout.write(`READY ${service.port}\n`))
})

const shutdown = () => {
  link.stop()
  peer.stop()
  process.exit(0)
}
process.on('SIGTERM', shutdown)
process.on('SIGINT', shutdown)
