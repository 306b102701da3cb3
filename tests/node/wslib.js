'use strict'
// Shared by the grenache-nodejs-ws test scripts: load one of the two pinned versions, keep its servers on
// 127.0.0.1 (grenache-nodejs-ws listens on all interfaces), and read TLS material.
// PKG is "grenache-nodejs-ws" (0.7.10) or "grenache-nodejs-ws-1" (the npm alias of 1.0.0).

const fs = require('fs')
const https = require('https')
const path = require('path')

const PKGS = ['grenache-nodejs-ws', 'grenache-nodejs-ws-1']

function load (pkg) {
  if (!PKGS.includes(pkg)) throw new Error(`PKG must be one of ${PKGS.join(', ')}`)
  const Grenache = require(pkg)
  // the ws module that this version of grenache-nodejs-ws itself uses
  const Ws = require(require.resolve('ws', { paths: [path.dirname(require.resolve(pkg))] }))
  return { Grenache, Ws }
}

// TLS material from GRENACHE_TLS_DIR (key.pem, cert.pem, ca.pem), or null
function secure () {
  const dir = process.env.GRENACHE_TLS_DIR
  if (!dir) return null
  const read = (name) => fs.readFileSync(path.join(dir, name))
  return { key: read('key.pem'), cert: read('cert.pem'), ca: read('ca.pem') }
}

// bind a grenache-nodejs-ws RPC server transport to loopback; calls onListening(port)
function loopback (service, Ws, onListening) {
  service.getSocket = (opts) => new Ws.Server({ ...opts, host: '127.0.0.1' })
  // as grenache-nodejs-ws's own getSecureSocket, but on 127.0.0.1
  service.getSecureSocket = (port, sec) => {
    const opts = Object.assign({}, sec, { requestCert: true })
    const httpsServer = https.createServer(opts, (req, res) => {
      req.socket.write('')
      req.socket.end()
    }).listen(port, '127.0.0.1')
    return new Ws.Server({ server: httpsServer, verifyClient: sec.verifyClient })
  }
  const wait = () => {
    const server = service.socket && service.socket._server
    if (!server) return setImmediate(wait)
    if (server.listening) return onListening(server.address().port)
    server.once('listening', () => onListening(server.address().port))
  }
  wait()
}

module.exports = { load, secure, loopback }
