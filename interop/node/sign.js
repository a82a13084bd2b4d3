#!/usr/bin/env node
// Signs a message with a tweetnacl secret key (nacl.sign.detached) and prints the detached
// 64-byte signature as base64 on one line.
//
// Input, either:
//   node sign.js SECRET_KEY_B64 MESSAGE_B64
// or (keeps the secret off the command line) a JSON object on stdin:
//   {"secretKey": "<base64 of the 64-byte tweetnacl secret key>", "message": "<base64>"}
'use strict';

const fs = require('fs');
const nacl = require('tweetnacl');
const util = require('tweetnacl-util');

function fail(message) {
  process.stderr.write('sign.js: ' + message + '\n');
  process.exit(2);
}

let secretB64;
let messageB64;
if (process.argv.length >= 4) {
  secretB64 = process.argv[2];
  messageB64 = process.argv[3];
} else {
  let input;
  try {
    input = JSON.parse(fs.readFileSync(0, 'utf8'));
  } catch (e) {
    fail('expected SECRET_KEY_B64 MESSAGE_B64 arguments or a JSON object on stdin (' + e.message + ')');
  }
  secretB64 = input.secretKey;
  messageB64 = input.message;
}
if (typeof secretB64 !== 'string' || typeof messageB64 !== 'string') {
  fail('secretKey and message must both be base64 strings');
}

let secretKey;
let message;
try {
  secretKey = util.decodeBase64(secretB64.trim());
  message = util.decodeBase64(messageB64.trim());
} catch (e) {
  fail('invalid base64: ' + e.message);
}
if (secretKey.length !== nacl.sign.secretKeyLength) {
  fail('secret key is ' + secretKey.length + ' bytes; tweetnacl secret keys are ' +
       nacl.sign.secretKeyLength);
}

const signature = nacl.sign.detached(message, secretKey);
process.stdout.write(util.encodeBase64(signature) + '\n');
