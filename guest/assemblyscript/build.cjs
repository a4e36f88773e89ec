// Compiles every example script in examples/ to build/NAME.wasm.
//
//   npm ci && npm run build
//
// Flags: the stub runtime (a bump allocator, no garbage collector: a script
// runs once per login and its memory is thrown away), no `env.abort`
// import (an assertion traps instead), optimized for size. The result
// imports only the quorumkey host functions and uses no floats, which is
// what nodes accept (docs/verifiers.md).
"use strict";

const { execFileSync } = require("child_process");
const fs = require("fs");
const path = require("path");

const here = __dirname;
const out = path.join(here, "build");
fs.mkdirSync(out, { recursive: true });
const asc = path.join(here, "node_modules", ".bin", "asc");
for (const file of fs.readdirSync(path.join(here, "examples")).filter((f) => f.endsWith(".ts")).sort()) {
  const name = path.basename(file, ".ts");
  execFileSync(
    asc,
    [
      path.join("examples", file),
      "--runtime", "stub",
      "--use", "abort=",
      "--noAssert",
      "-Oz",
      "--outFile", path.join("build", `${name}.wasm`),
    ],
    { cwd: here, stdio: "inherit" },
  );
  console.log(`build/${name}.wasm`);
}
