'use strict'
// Run one of grenache-nodejs-ws's own examples unchanged, against our Grape and on loopback.
// usage: node run_example.js GRAPE_URL EXAMPLE_FILE
// The examples hard-code grape http://127.0.0.1:30001 and listen on all interfaces: the Link they
// create is pointed at GRAPE_URL, and ws servers they create are bound to 127.0.0.1.

const Module = require('module')
const path = require('path')

const [grape, file] = process.argv.slice(2)
if (!grape || !file) {
  console.error('usage: node run_example.js GRAPE_URL EXAMPLE_FILE')
  process.exit(2)
}

const patched = new Set()
const load = Module._load
Module._load = function (request, parent, isMain) {
  const mod = load.apply(this, arguments)
  if (request === 'grenache-nodejs-link') {
    return class extends mod {
      constructor (conf) {
        super({ ...conf, grape })
      }
    }
  }
  if (request === 'ws' && !patched.has(mod)) {
    patched.add(mod)
    const Server = mod.Server
    mod.Server = class extends Server {
      constructor (opts, cb) {
        super(opts && opts.port !== undefined && !opts.host ? { ...opts, host: '127.0.0.1' } : opts, cb)
      }
    }
  }
  return mod
}

require(path.resolve(file))
