'use strict'
// Behaves as Bitfinex's grenache-nodejs-example-fib-server does: serves `fibonacci_worker`, answering a
// payload {"number": n} with the n-th Fibonacci number (fib(0) = fib(1) = 1), announced every second.
// usage: node fib_server.js GRAPE_URL [http|ws]   (the original is grenache-nodejs-http on port 1337;
// here any free port on 127.0.0.1; Grapevine's forks run it on grenache-nodejs-ws)
// Prints "READY <port>" once announced.

const Link = require('grenache-nodejs-link')

const [grape, transport = 'http'] = process.argv.slice(2)
if (!grape || !['http', 'ws'].includes(transport)) {
  console.error('usage: node fib_server.js GRAPE_URL [http|ws]')
  process.exit(2)
}

function fibonacci (n) {
  if (n <= 1) {
    return 1
  }
  return fibonacci(n - 1) + fibonacci(n - 2)
}

const link = new Link({ grape })
link.start()

const onListening = (peer, service) => (port) => {
  service.port = port
  const announce = (cb) => link.announce('fibonacci_worker', port, {}, cb)
  setInterval(() => announce(() => {}), 1000)
  announce(() => process.stdout.write(`READY ${port}\n`))
}

let peer, service
if (transport === 'ws') {
  const { load, loopback } = require('./wslib')
  const { Grenache, Ws } = load('grenache-nodejs-ws-1')
  peer = new Grenache.PeerRPCServer(link, {})
  peer.init()
  service = peer.transport('server')
  loopback(service, Ws, onListening(peer, service))
  service.listen(0)
} else {
  const { PeerRPCServer } = require('grenache-nodejs-http')
  peer = new PeerRPCServer(link, { timeout: 300000 })
  peer.init()
  service = peer.transport('server')
  const getSocket = service.getSocket.bind(service)
  service.getSocket = (secure) => {
    const socket = getSocket(secure)
    const listen = socket.listen.bind(socket)
    socket.listen = (port) => listen(port, '127.0.0.1')
    return socket
  }
  service.listen(0)
  service.socket.on('listening', () => onListening(peer, service)(service.socket.address().port))
}

service.on('request', (rid, key, payload, handler) => {
  const result = fibonacci(payload.number)
  handler.reply(null, result)
})

process.on('SIGTERM', () => {
  link.stop()
  peer.stop()
  process.exit(0)
})
