// Example (b): one OAuth login plus an Ethereum wallet's signature. The
// app asks the provider for an ID token with a fresh `nonce`, and the
// wallet to sign (personal_sign, EIP-191) a message that names that
// nonce; the login carries the message and the signature as evidence
// (`message`, `signature`). The user is the wallet's address: whoever
// holds the wallet, as vouched for by a live OAuth session.
import { accept, claim, ethPersonalRecover, hexDecode, hexEncode, param, refuse, subCount } from "../sdk/quorumkey";

export function verify(): i32 {
  if (subCount() != 1) {
    refuse("sign in with the provider once");
    return 1;
  }
  const nonce = claim(0, "nonce");
  if (nonce == null || nonce.length < 16) {
    refuse("the ID token must carry a nonce of at least 16 characters");
    return 1;
  }
  const message = param("message");
  const signatureHex = param("signature");
  if (message == null || signatureHex == null) {
    refuse("the login must carry the wallet's message and signature");
    return 1;
  }
  if (!message.includes("nonce: " + nonce)) {
    refuse("the signed message does not name this login's nonce");
    return 1;
  }
  const signature = hexDecode(signatureHex);
  if (signature == null || signature.length != 65) {
    refuse("the signature is not 65 bytes of hex");
    return 1;
  }
  const address = ethPersonalRecover(Uint8Array.wrap(String.UTF8.encode(message)), signature);
  if (address == null) {
    refuse("the signature does not recover to an address");
    return 1;
  }
  accept("0x" + hexEncode(address));
  return 0;
}
