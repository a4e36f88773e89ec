// The quorumkey verifier-script SDK for AssemblyScript.
//
// A script exports `verify(): i32` and calls `accept(verifierId)` or
// `refuse(reason)` once; the nodes run it on every login of its verifier,
// after each sub-token was verified, with a fuel budget and a memory cap
// (docs/verifiers.md, "Scripts"). Everything here wraps the host functions
// of module "quorumkey" (crates/script/src/host.rs); it uses integers only,
// as nodes refuse modules with floating point.

// ---- The host functions, as imported.

@external("quorumkey", "sub_count")
declare function host_sub_count(): i32;
@external("quorumkey", "sub_name")
declare function host_sub_name(sub: i32, out: usize, cap: i32): i32;
@external("quorumkey", "sub_verifier_id")
declare function host_sub_verifier_id(sub: i32, out: usize, cap: i32): i32;
@external("quorumkey", "claim")
declare function host_claim(sub: i32, name: usize, nameLen: i32, out: usize, cap: i32): i32;
@external("quorumkey", "param")
declare function host_param(name: usize, nameLen: i32, out: usize, cap: i32): i32;
@external("quorumkey", "issued_at")
declare function host_issued_at(): i64;
@external("quorumkey", "now")
declare function host_now(): i64;
@external("quorumkey", "keccak256")
declare function host_keccak256(ptr: usize, len: i32, out: usize): void;
@external("quorumkey", "sha256")
declare function host_sha256(ptr: usize, len: i32, out: usize): void;
@external("quorumkey", "secp256k1_verify")
declare function host_secp256k1_verify(pk: usize, pkLen: i32, hash: usize, sig: usize): i32;
@external("quorumkey", "eth_personal_recover")
declare function host_eth_personal_recover(msg: usize, msgLen: i32, sig: usize, sigLen: i32, out: usize): i32;
@external("quorumkey", "ed25519_verify")
declare function host_ed25519_verify(pk: usize, msg: usize, msgLen: i32, sig: usize): i32;
@external("quorumkey", "p256_verify")
declare function host_p256_verify(pk: usize, pkLen: i32, msg: usize, msgLen: i32, sig: usize, sigLen: i32): i32;
@external("quorumkey", "accept")
declare function host_accept(ptr: usize, len: i32): void;
@external("quorumkey", "refuse")
declare function host_refuse(ptr: usize, len: i32): void;

// ---- Bytes and strings.

function utf8(text: string): Uint8Array {
  return Uint8Array.wrap(String.UTF8.encode(text));
}

function text(bytes: Uint8Array): string {
  return String.UTF8.decode(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.length));
}

// Calls a host function that hands over a value: first into a 256-byte
// buffer, again with one of the value's length if it did not fit.
type Fetch = (out: usize, cap: i32) => i32;

function fetch(get: Fetch): Uint8Array | null {
  let buffer = new Uint8Array(256);
  let len = get(buffer.dataStart, buffer.length);
  if (len < 0) return null;
  if (len > buffer.length) {
    buffer = new Uint8Array(len);
    len = get(buffer.dataStart, buffer.length);
  }
  return buffer.subarray(0, len);
}

// Closures cannot capture in AssemblyScript: the arguments of the host call
// under way live here.
let argSub: i32 = 0;
let argName: Uint8Array = new Uint8Array(0);

// ---- What the node verified.

/** How many sub-tokens the login presented (each verified). */
export function subCount(): i32 {
  return host_sub_count();
}

/** The sub-verifier name of sub-token `sub`, or null. */
export function subName(sub: i32): string | null {
  argSub = sub;
  const value = fetch((out: usize, cap: i32): i32 => host_sub_name(argSub, out, cap));
  return value == null ? null : text(value);
}

/** The user that sub-token `sub`'s sub-verifier named, or null. */
export function subVerifierId(sub: i32): string | null {
  argSub = sub;
  const value = fetch((out: usize, cap: i32): i32 => host_sub_verifier_id(argSub, out, cap));
  return value == null ? null : text(value);
}

/**
 * Claim `name` of sub-token `sub`: a string claim's text, any other value
 * as compact JSON (`true`, `12`, `["a"]`); null if absent.
 */
export function claim(sub: i32, name: string): string | null {
  argSub = sub;
  argName = utf8(name);
  const value = fetch((out: usize, cap: i32): i32 =>
    host_claim(argSub, argName.dataStart, argName.length, out, cap),
  );
  return value == null ? null : text(value);
}

/** Field `name` of the login's evidence, as `claim` gives values; null if absent. */
export function param(name: string): string | null {
  argName = utf8(name);
  const value = fetch((out: usize, cap: i32): i32 => host_param(argName.dataStart, argName.length, out, cap));
  return value == null ? null : text(value);
}

/** The earliest issue time of the sub-tokens (Unix seconds; the same on every node). */
export function issuedAt(): i64 {
  return host_issued_at();
}

/**
 * This node's clock (Unix seconds). Nodes' clocks differ by seconds: a
 * check against it may pass on some nodes and fail on others near its edge.
 */
export function now(): i64 {
  return host_now();
}

// ---- Cryptography.

/** keccak256 of `data`. */
export function keccak256(data: Uint8Array): Uint8Array {
  const out = new Uint8Array(32);
  host_keccak256(data.dataStart, data.length, out.dataStart);
  return out;
}

/** SHA-256 of `data`. */
export function sha256(data: Uint8Array): Uint8Array {
  const out = new Uint8Array(32);
  host_sha256(data.dataStart, data.length, out.dataStart);
  return out;
}

/** Whether `signature` (64 bytes r‖s) is `publicKey`'s (SEC1) secp256k1 signature of the 32-byte `hash`. */
export function secp256k1Verify(publicKey: Uint8Array, hash: Uint8Array, signature: Uint8Array): bool {
  if (hash.length != 32 || signature.length != 64) return false;
  return host_secp256k1_verify(publicKey.dataStart, publicKey.length, hash.dataStart, signature.dataStart) == 1;
}

/**
 * The Ethereum address (20 bytes) whose key made `signature` (65 bytes,
 * r‖s‖v) over `message` as `personal_sign` does (EIP-191), or null.
 */
export function ethPersonalRecover(message: Uint8Array, signature: Uint8Array): Uint8Array | null {
  const out = new Uint8Array(20);
  const ok = host_eth_personal_recover(message.dataStart, message.length, signature.dataStart, signature.length, out.dataStart);
  return ok == 1 ? out : null;
}

/** Whether `signature` (64 bytes) is the ed25519 signature of `message` by `publicKey` (32 bytes). */
export function ed25519Verify(publicKey: Uint8Array, message: Uint8Array, signature: Uint8Array): bool {
  if (publicKey.length != 32 || signature.length != 64) return false;
  return host_ed25519_verify(publicKey.dataStart, message.dataStart, message.length, signature.dataStart) == 1;
}

/**
 * Whether `signature` (r‖s or DER) is `publicKey`'s (SEC1) ECDSA P-256
 * signature, with SHA-256, of `message`. For a WebAuthn assertion the
 * message is authenticatorData ‖ sha256(clientDataJSON).
 */
export function p256Verify(publicKey: Uint8Array, message: Uint8Array, signature: Uint8Array): bool {
  return (
    host_p256_verify(publicKey.dataStart, publicKey.length, message.dataStart, message.length, signature.dataStart, signature.length) == 1
  );
}

// ---- The answer.

/** The login is `verifierId`'s (UTF-8, 1 to 256 bytes). Call once. */
export function accept(verifierId: string): void {
  const bytes = utf8(verifierId);
  host_accept(bytes.dataStart, bytes.length);
}

/** The login is refused, with `reason` (cut at 256 bytes). Call once. */
export function refuse(reason: string): void {
  const bytes = utf8(reason);
  host_refuse(bytes.dataStart, bytes.length);
}

// ---- Helpers.

/** ASCII lower case (other characters unchanged). */
export function asciiLower(value: string): string {
  const bytes = utf8(value);
  for (let i = 0; i < bytes.length; i++) {
    const c = bytes[i];
    if (c >= 65 && c <= 90) bytes[i] = c + 32;
  }
  return text(bytes);
}

function nibble(c: i32): i32 {
  if (c >= 48 && c <= 57) return c - 48;
  if (c >= 97 && c <= 102) return c - 87;
  if (c >= 65 && c <= 70) return c - 55;
  return -1;
}

/** Hex (with or without 0x, either case) to bytes, or null. */
export function hexDecode(value: string): Uint8Array | null {
  let digits = utf8(value);
  if (digits.length >= 2 && digits[0] == 48 && (digits[1] == 120 || digits[1] == 88)) digits = digits.subarray(2);
  if (digits.length % 2 != 0) return null;
  const out = new Uint8Array(digits.length / 2);
  for (let i = 0; i < out.length; i++) {
    const high = nibble(digits[2 * i]);
    const low = nibble(digits[2 * i + 1]);
    if (high < 0 || low < 0) return null;
    out[i] = <u8>((high << 4) | low);
  }
  return out;
}

/** Bytes to lower-case hex, without 0x. */
export function hexEncode(bytes: Uint8Array): string {
  const out = new Uint8Array(bytes.length * 2);
  for (let i = 0; i < bytes.length; i++) {
    const high = bytes[i] >> 4;
    const low = bytes[i] & 15;
    out[2 * i] = <u8>(high < 10 ? 48 + high : 87 + high);
    out[2 * i + 1] = <u8>(low < 10 ? 48 + low : 87 + low);
  }
  return text(out);
}
