'use strict'
// Behaves as the Grapevine chat client (ismaelpamplona/grapevine-p2p-chat, src/client.js) does:
// prompts for a peer name and a message, looks the name up, sends {"message": m} over grenache-nodejs-ws
// with a 10 s timeout, prints the reply, and asks again; stops at the end of its input.
// The Grape is $GRENACHE_GRAPE (Grapevine's is http://127.0.0.1:30001).

const readline = require('readline')
const Link = require('grenache-nodejs-link')
const { load } = require('./wslib')

const { Grenache } = load(process.env.GRENACHE_WS_PKG || 'grenache-nodejs-ws-1')

const link = new Link({ grape: process.env.GRENACHE_GRAPE || 'http://127.0.0.1:30001' })
link.start()
const peer = new Grenache.PeerRPCClient(link, {})
peer.init()

const rl = readline.createInterface({ input: process.stdin, output: process.stdout, terminal: false })
const lines = rl[Symbol.asyncIterator]()
const ask = async (question) => {
  process.stdout.write(question)
  const { value, done } = await lines.next()
  return done ? null : value.trim()
}

async function main () {
  while (true) {
    const name = await ask('Enter peer name: ')
    if (name === null) break
    const message = await ask('Enter message: ')
    if (message === null) break
    const reply = await new Promise((resolve) => {
      peer.request(name, { message }, { timeout: 10000 }, (err, data) => {
        resolve(err ? `Error: ${err.message}` : `Response from ${name}: ${data}`)
      })
    })
    console.log(reply)
  }
  peer.stop()
  link.stop()
  process.stdout.write('', () => process.exit(0))
}
main()
