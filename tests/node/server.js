'use strict'
// A grenache-nodejs-http RPC server for interop tests and benchmarks.
// usage: node server.js GRAPE_URL KEY
// Replies {"from":"node","got":payload}; replies Error('ERR_NODE_FAIL') to {"fail":true}.
// Prints "READY <port>" once listening on 127.0.0.1 (and after the first announce went out).
// With GRENACHE_TLS_DIR=<dir holding key.pem, cert.pem, ca.pem> it serves HTTPS (the `secure` mode),
// asks for a client certificate, and adds "cn": the client certificate's CN (null without one).

const fs = require('fs')
const path = require('path')
const { PeerRPCServer } = require('grenache-nodejs-http')
const Link = require('grenache-nodejs-link')

const [grape, key] = process.argv.slice(2)
if (!grape || !key) {
  console.error('usage: node server.js GRAPE_URL KEY')
  process.exit(2)
}

const link = new Link({ grape })
link.start()

const tlsDir = process.env.GRENACHE_TLS_DIR
const conf = { timeout: 300000 }
if (tlsDir) {
  const read = (name) => fs.readFileSync(path.join(tlsDir, name))
  conf.secure = {
    key: read('key.pem'),
    cert: read('cert.pem'),
    ca: read('ca.pem'),
    requestCert: true,
    rejectUnauthorized: false
  }
}
const peer = new PeerRPCServer(link, conf)
peer.init()

const service = peer.transport('server')
// grenache-nodejs-http listens on all interfaces; keep it on loopback
const getSocket = service.getSocket.bind(service)
service.getSocket = (secure) => {
  const socket = getSocket(secure)
  const listen = socket.listen.bind(socket)
  socket.listen = (port) => listen(port, '127.0.0.1')
  return socket
}
service.listen(0)

service.on('request', (rid, k, payload, handler, cert) => {
  if (payload && payload.fail === true) {
    handler.reply(new Error('ERR_NODE_FAIL'))
    return
  }
  const reply = { from: 'node', got: payload }
  if (tlsDir) reply.cn = cert && cert.subject ? cert.subject.CN : null
  handler.reply(null, reply)
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
