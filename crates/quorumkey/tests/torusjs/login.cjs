// Logs a user in to a quorumkey network with the unmodified public
// @toruslabs/torus.js 8.0.1, exactly as an app would.
//
//   node login.cjs REQUEST.json
//
// REQUEST.json: {"network": <the devnet's network.json>, "verifier": "...",
// "verifierId": "...", "idToken": "..." (omit to only look up)}.
// Prints one JSON line: {"lookup": {address, X, Y}, "login": {ethAddress,
// privKey}} or {"error": "..."} (then exits with status 1).
"use strict";

const fs = require("fs");

// torus.js runs in browsers, where a request to a node that is down fails
// with "Failed to fetch"; its KeyAssign then tries the next node. Node's
// fetch says "fetch failed" instead, which torus.js 8.0.1 does not
// recognize, so a KeyAssign that first picks a down node (at random)
// would fail here and not in a browser. The network error is reworded as
// a browser's; the library itself is untouched.
const nodeFetch = globalThis.fetch;
globalThis.fetch = async (...args) => {
  try {
    return await nodeFetch(...args);
  } catch (error) {
    if (error instanceof TypeError && error.message === "fetch failed") {
      throw new TypeError("Failed to fetch", { cause: error });
    }
    throw error;
  }
};

const TorusUtils = require("@toruslabs/torus.js").default;

async function main() {
  const request = JSON.parse(fs.readFileSync(process.argv[2], "utf8"));
  const network = request.network;
  const aux = network.auxiliary;
  const torus = new TorusUtils({
    network: "quorumkey-devnet",
    clientId: "quorumkey-e2e",
    enableOneKey: false,
    allowHost: aux.allow_host,
    signerHost: aux.signer_host,
    metadataHost: aux.metadata_host,
    serverTimeOffset: 0,
  });
  const endpoints = network.nodes.map((node) => node.endpoint);
  const nodePubs = network.nodes.map((node) => ({ X: node.pub_key_X, Y: node.pub_key_Y }));
  const indexes = network.nodes.map((node) => node.index);
  const out = {};
  const pub = await torus.getPublicAddress(
    endpoints,
    nodePubs,
    { verifier: request.verifier, verifierId: request.verifierId },
    true,
  );
  out.lookup = { address: pub.address, X: pub.X, Y: pub.Y };
  if (request.idToken) {
    const key = await torus.retrieveShares(
      endpoints,
      indexes,
      request.verifier,
      { verifier_id: request.verifierId },
      request.idToken,
    );
    out.login = { ethAddress: key.ethAddress, privKey: key.privKey };
  }
  process.stdout.write(JSON.stringify(out) + "\n");
}

// torus.js leaves its 60 s request timers running after it has its
// answers: exit as soon as the result is written.
main()
  .then(() => process.exit(0))
  .catch((error) => {
    const message = error && error.message ? error.message : String(error);
    process.stdout.write(JSON.stringify({ error: message }) + "\n");
    process.exit(1);
  });
