#!/usr/bin/env node
// Makes an agent identity exactly the way the article's script does:
//
//   const keypair = nacl.sign.keyPair();
//   publicKey = util.encodeBase64(keypair.publicKey)
//
// and prints one JSON line: {"publicKey": "<base64, 32 bytes>", "secretKey": "<base64, 64 bytes>"}.
// The secret key is tweetnacl's 64-byte form (32-byte seed followed by the 32-byte public key);
// the interop test needs it to sign client assertions later. Never do this with a real key.
'use strict';

const nacl = require('tweetnacl');
const util = require('tweetnacl-util');

const keypair = nacl.sign.keyPair();
const publicKey = util.encodeBase64(keypair.publicKey);
const secretKey = util.encodeBase64(keypair.secretKey);

process.stdout.write(JSON.stringify({ publicKey: publicKey, secretKey: secretKey }) + '\n');
