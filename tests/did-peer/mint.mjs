// Mints (and checks) DID-JWTs with the did-jwt reference library.
//
// Input: one JSON request, or an array of them, as the first argument or on
// stdin. Output: one JSON result per request (an array for an array), on
// stdout. A request that fails gives {"error": "..."} in its place.
//
// Requests ("op" defaults to "mint"):
//
//   {"op": "mint", "kind": KIND, "aud": "..." | [...], "ttl": 300,
//    "claims": {...}, "drop": ["iat"], "header": {...}, "iss": "...",
//    "seed": "<64 hex>", "chain": "1", "address_case": "checksum" | "lower"}
//     KIND: key-ed25519 | key-secp256k1 | key-p256 | pkh-es256k-r | pkh-es256k
//     -> {"jwt", "iss", "did", "kid", "alg", "kind", "seed", "public_key",
//         "address" (did:pkh), "jwk" (the key's did:jwk, Ed25519)}
//   The token is createJWT(claims + {aud}, {issuer: iss || did, signer,
//   expiresIn: ttl}, header) with the signer did-jwt provides for the key
//   type. "drop" removes claims (iat included) before signing. In "iss" and
//   in string header values, {did}, {kid}, {address}, {jwk} name this key's
//   values and {N.did}, {N.kid}, ... those of the N-th result of the same
//   batch ({-1.did}: the result just before this one).
//
//   {"op": "verify", "jwt": "...", "aud": "..."}
//     -> {"verified": true, "issuer", "payload", "header"} or
//        {"verified": false, "reason": "..."}
//   did-jwt's verifyJWT with the did:key and did:pkh resolvers.
//
//   {"op": "decode", "jwt": "..."} -> {"header", "payload", "signature"}

import { readFileSync } from 'node:fs'
import { ed25519 } from '@noble/curves/ed25519'
import { secp256k1 } from '@noble/curves/secp256k1'
import { p256 } from '@noble/curves/nist'
import { keccak_256 } from '@noble/hashes/sha3'
import { bytesToHex, hexToBytes, randomBytes } from '@noble/hashes/utils'
import { createJWT, decodeJWT, verifyJWT, EdDSASigner, ES256KSigner, ES256Signer } from 'did-jwt'
import { Resolver } from 'did-resolver'
import { getResolver as keyResolver } from 'key-did-resolver'
import { getResolver as pkhResolver } from 'pkh-did-resolver'

const BASE58 = '123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz'

function base58btc(bytes) {
  let n = 0n
  for (const b of bytes) n = (n << 8n) | BigInt(b)
  let out = ''
  while (n > 0n) {
    out = BASE58[Number(n % 58n)] + out
    n /= 58n
  }
  for (const b of bytes) {
    if (b !== 0) break
    out = '1' + out
  }
  return out
}

function b64url(bytes) {
  return Buffer.from(bytes).toString('base64url')
}

// Multicodec prefixes (unsigned varints) of the public key types did:key uses here.
const MULTICODEC = {
  'key-ed25519': [0xed, 0x01],
  'key-secp256k1': [0xe7, 0x01],
  'key-p256': [0x80, 0x24],
}

function didKey(kind, publicKey) {
  const mb = 'z' + base58btc(Uint8Array.from([...MULTICODEC[kind], ...publicKey]))
  return { did: `did:key:${mb}`, kid: `did:key:${mb}#${mb}` }
}

// EIP-55: a hex digit is upper case where the keccak-256 of the lower-case
// address has a nibble of 8 or more.
function ethereumAddress(uncompressed, letterCase) {
  const hex = bytesToHex(keccak_256(uncompressed.slice(1)).slice(-20))
  if (letterCase === 'lower') return '0x' + hex
  const hash = bytesToHex(keccak_256(new TextEncoder().encode(hex)))
  let out = '0x'
  for (let i = 0; i < hex.length; i++) {
    out += parseInt(hash[i], 16) >= 8 ? hex[i].toUpperCase() : hex[i]
  }
  return out
}

function privateKey(req, curve) {
  if (req.seed) {
    const bytes = hexToBytes(req.seed)
    if (bytes.length !== 32) throw new Error('seed: 32 bytes of hex expected')
    return bytes
  }
  return curve === 'ed25519' ? randomBytes(32) : curve.utils.randomPrivateKey()
}

// {did, kid, alg, signer, public_key, address?, jwk?} for one request.
function identity(req) {
  const kind = req.kind
  switch (kind) {
    case 'key-ed25519': {
      const sk = privateKey(req, 'ed25519')
      const pk = ed25519.getPublicKey(sk)
      const jwk = { crv: 'Ed25519', kty: 'OKP', x: b64url(pk) }
      return { ...didKey(kind, pk), alg: 'EdDSA', signer: EdDSASigner(sk), sk, pk, jwk }
    }
    case 'key-secp256k1': {
      const sk = privateKey(req, secp256k1)
      const pk = secp256k1.getPublicKey(sk, true)
      return { ...didKey(kind, pk), alg: 'ES256K', signer: ES256KSigner(sk), sk, pk }
    }
    case 'key-p256': {
      const sk = privateKey(req, p256)
      const pk = p256.getPublicKey(sk, true)
      return { ...didKey(kind, pk), alg: 'ES256', signer: ES256Signer(sk), sk, pk }
    }
    case 'pkh-es256k-r':
    case 'pkh-es256k': {
      const sk = privateKey(req, secp256k1)
      const pk = secp256k1.getPublicKey(sk, true)
      const address = ethereumAddress(secp256k1.getPublicKey(sk, false), req.address_case)
      const did = `did:pkh:eip155:${req.chain ?? '1'}:${address}`
      const recoverable = kind === 'pkh-es256k-r'
      return {
        did,
        kid: `${did}#blockchainAccountId`,
        alg: recoverable ? 'ES256K-R' : 'ES256K',
        signer: ES256KSigner(sk, recoverable),
        sk,
        pk,
        address,
      }
    }
    default:
      throw new Error(`unknown kind ${JSON.stringify(kind)}`)
  }
}

function fill(template, own, earlier) {
  if (typeof template !== 'string') return template
  return template.replace(/\{(?:(-?\d+)\.)?(did|kid|address|jwk)\}/g, (whole, index, name) => {
    let source = own
    if (index !== undefined) {
      const i = Number(index)
      source = earlier[i < 0 ? earlier.length + i : i]
    }
    const value = source?.[name]
    if (typeof value !== 'string') throw new Error(`${whole}: no such value`)
    return value
  })
}

async function mint(req, earlier) {
  const id = identity(req)
  const own = {
    did: id.did,
    kid: id.kid,
    address: id.address,
    jwk: id.jwk && `did:jwk:${b64url(Buffer.from(JSON.stringify(id.jwk)))}`,
  }
  const issuer = fill(req.iss ?? '{did}', own, earlier)
  const header = { alg: id.alg }
  for (const [k, v] of Object.entries(req.header ?? {})) header[k] = fill(v, own, earlier)
  const payload = { ...(req.claims ?? {}) }
  if (req.aud !== undefined) payload.aud = req.aud
  // createJWT sets iat itself; an explicit undefined leaves it out.
  for (const name of req.drop ?? []) payload[name] = undefined
  if ((req.drop ?? []).includes('iss')) throw new Error('iss cannot be dropped: createJWT always sets it')
  const jwt = await createJWT(payload, { issuer, signer: id.signer, expiresIn: req.ttl }, header)
  return {
    kind: req.kind,
    jwt,
    iss: issuer,
    did: id.did,
    kid: id.kid,
    alg: id.alg,
    seed: bytesToHex(id.sk),
    public_key: bytesToHex(id.pk),
    ...(id.address ? { address: id.address } : {}),
    ...(own.jwk ? { jwk: own.jwk } : {}),
  }
}

const resolver = new Resolver({ ...keyResolver(), ...pkhResolver() })

async function verify(req) {
  try {
    const options = { resolver }
    if (req.aud !== undefined) options.audience = req.aud
    const result = await verifyJWT(req.jwt, options)
    const { header } = decodeJWT(req.jwt)
    return { verified: true, issuer: result.issuer, payload: result.payload, header }
  } catch (e) {
    return { verified: false, reason: String(e?.message ?? e) }
  }
}

function decode(req) {
  const { header, payload, signature } = decodeJWT(req.jwt, false)
  return { header, payload, signature }
}

async function handle(req, earlier) {
  switch (req.op ?? 'mint') {
    case 'mint':
      return mint(req, earlier)
    case 'verify':
      return verify(req)
    case 'decode':
      return decode(req)
    default:
      throw new Error(`unknown op ${JSON.stringify(req.op)}`)
  }
}

async function main() {
  const text = process.argv[2] ?? readFileSync(0, 'utf8')
  const input = JSON.parse(text)
  const batch = Array.isArray(input) ? input : [input]
  const results = []
  for (const req of batch) {
    try {
      results.push(await handle(req, results))
    } catch (e) {
      results.push({ error: String(e?.message ?? e) })
    }
  }
  process.stdout.write(JSON.stringify(Array.isArray(input) ? results : results[0]) + '\n')
}

main().catch((e) => {
  process.stderr.write(`mint: ${e?.stack ?? e}\n`)
  process.exit(1)
})
