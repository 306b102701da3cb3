'use strict'
// A grenache-nodejs-ws RPC server for interop tests and benchmarks.
// usage: node ws_server.js PKG GRAPE_URL KEY
// Replies {"from":"node","got":payload}; replies Error('ERR_NODE_FAIL') to {"fail":true}; to {"sleep":ms}
// it replies after ms. Prints "READY <port>" once listening on 127.0.0.1 and announced.
// With GRENACHE_TLS_DIR it serves wss (the `secure` mode: client certificates required) and adds "cn".

const Link = require('grenache-nodejs-link')
const { load, secure, loopback } = require('./wslib')

const [pkg, grape, key] = process.argv.slice(2)
if (!pkg || !grape || !key) {
  console.error('usage: node ws_server.js PKG GRAPE_URL KEY')
  process.exit(2)
}
const { Grenache, Ws } = load(pkg)

const link = new Link({ grape })
link.start()

const sec = secure()
const conf = {}
if (sec) conf.secure = { ...sec, verifyClient: () => true }
const peer = new Grenache.PeerRPCServer(link, conf)
peer.init()

const service = peer.transport('server')
loopback(service, Ws, (port) => {
  service.port = port
  const announce = (cb) => link.announce(key, port, {}, cb)
  setInterval(() => announce(() => {}), 1000)
  announce(() => process.stdout.write(`READY ${port}\n`))
})
service.listen(0)

service.on('request', (rid, k, payload, handler, cert) => {
  if (payload && payload.fail === true) {
    handler.reply(new Error('ERR_NODE_FAIL'))
    return
  }
  const reply = { from: 'node', got: payload }
  if (sec) reply.cn = cert && cert.subject ? cert.subject.CN : null
  if (payload && typeof payload.sleep === 'number') {
    setTimeout(() => handler.reply(null, reply), payload.sleep)
    return
  }
  handler.reply(null, reply)
})

const shutdown = () => {
  link.stop()
  peer.stop()
  process.exit(0)
}
process.on('SIGTERM', shutdown)
process.on('SIGINT', shutdown)
