// Browser tests: drive latchkey's pages in headless Chromium the way a person would, against the
// real binary, reading emails from an SMTP sink and computing authenticator codes from the
// setup key. Prints "N passed, N failed" last and exits non-zero on any failure.
import assert from "node:assert/strict";
import { mkdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

import { Server } from "./server.mjs";
import { SmtpSink } from "./smtp-sink.mjs";
import { selfCheck } from "./totp.mjs";
import { tests } from "./flows.mjs";

const here = path.dirname(fileURLToPath(import.meta.url));
const SCREENSHOTS = path.resolve(here, "../../docs/screenshots");
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
const only = process.argv[2];

async function main() {
  selfCheck();
  mkdirSync(SCREENSHOTS, { recursive: true });
  const smtp = await new SmtpSink().start();
  const server = await new Server(smtp).start();
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--no-first-run",
    ],
  });
  const world = { server, smtp, browser, screenshots: SCREENSHOTS, users: {} };
  let passed = 0;
  let failed = 0;
  let skipped = 0;
  for (const { name, run } of tests) {
    if (only && !name.includes(only)) continue;
    const started = Date.now();
    try {
      await run(world);
      passed += 1;
      console.log(`ok - ${name} (${((Date.now() - started) / 1000).toFixed(1)} s)`);
    } catch (error) {
      if (error.skip) {
        skipped += 1;
        console.log(`skip - ${name}: ${error.message}`);
        continue;
      }
      failed += 1;
      console.log(`not ok - ${name}\n${String(error.stack || error).replace(/^/gm, "    ")}`);
    }
  }
  await browser.close();
  await server.stop();
  smtp.stop();
  if (failed) console.log(`server log (last lines):\n${server.log.join("").split("\n").slice(-40).join("\n")}`);
  console.log(`${passed} passed, ${failed} failed` + (skipped ? `, ${skipped} skipped` : ""));
  process.exit(failed ? 1 : 0);
}

main().catch((error) => {
  console.log(String(error.stack || error));
  console.log("0 passed, 1 failed");
  process.exit(1);
});

