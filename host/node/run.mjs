#!/usr/bin/env node
// sigstore-kms-alibabakms under Node.js: the portable component (the host binary's
// `--write-wasm`), transpiled by jco, run as a complete cosign KMS plugin. cosign's argv goes
// to the component's wasi:cli/run, the message comes on stdin, the one JSON answer goes to
// stdout. HTTP goes through preview2-shim, that is Node's own https stack (it trusts the OS
// store and NODE_EXTRA_CA_CERTS).
//
// What this runner grants the component, and what it does not: the environment variables
// the plugin reads (names starting ALIBABA_CLOUD_, ALICLOUD_ or SIGSTORE_ALIBABAKMS_), no
// files (so no credential files: use the environment, RRSA needs its token file and is not
// available here) and no key-metadata cache. It has no sandbox of the native host's: the
// component may reach any host Node reaches. A Node host that needs the native binary's
// allow-list must restrict egress itself (a proxy, a network policy).
import { _setArgs, _setEnv } from "@bytecodealliance/preview2-shim/cli";

const PASSED = /^(ALIBABA_CLOUD_|ALICLOUD_|SIGSTORE_ALIBABAKMS_)/;
_setArgs(["sigstore-kms-alibabakms", ...process.argv.slice(2)]);
_setEnv(Object.fromEntries(Object.entries(process.env).filter(([k]) => PASSED.test(k))));

const { run } = await import(new URL("./gen/guest.js", import.meta.url));
try {
  run.run();
} catch (e) {
  // The component already wrote its errorMessage; an Err result is exit status 1.
  if (!(e && e.constructor && e.constructor.name === "ComponentError")) {
    process.stderr.write(`sigstore-kms-alibabakms (node): ${e && e.stack ? e.stack : e}\n`);
  }
  process.exitCode = 1;
}
