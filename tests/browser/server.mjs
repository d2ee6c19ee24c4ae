// Starts the real `latchkey serve` binary on a free port with a fresh data directory, pointed at
// the SMTP sink, and stops it afterwards.
import { spawn, spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";

export const BINARY = process.env.LATCHKEY_BIN || path.resolve(process.env.CARGO_TARGET_DIR || "../../target", "debug/latchkey");

async function freePort() {
  const server = net.createServer();
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address();
  await new Promise((resolve) => server.close(resolve));
  return port;
}

export class Server {
  /** `host` names the server in its public URL (WebAuthn needs a domain name such as localhost, not an IP). */
  constructor(smtp, overrides = {}, { host = "127.0.0.1" } = {}) {
    this.smtp = smtp;
    this.overrides = overrides;
    this.host = host;
  }

  async start() {
    this.dataDir = mkdtempSync(path.join(os.tmpdir(), "latchkey-browser-"));
    this.port = await freePort();
    this.url = `http://${this.host}:${this.port}`;
    this.env = {
      PATH: process.env.PATH,
      HOME: process.env.HOME,
      RUST_LOG: process.env.RUST_LOG || "warn",
      LATCHKEY_BIND: `127.0.0.1:${this.port}`,
      LATCHKEY_DATA_DIR: this.dataDir,
      LATCHKEY_PUBLIC_URL: this.url,
      LATCHKEY_SMTP_URL: this.smtp.url(),
      LATCHKEY_REQUIRE_2FA: "none",
      LATCHKEY_RECOVERY_DELAY: "0s",
      LATCHKEY_BACKGROUND_INTERVAL: "200ms",
      // Test-strength Argon2: the browser tests are about pages, not hashing cost.
      LATCHKEY_PASSWORD_HASH: "argon2id:m=1024,t=1,p=1",
      ...this.overrides,
    };
    this.log = [];
    this.process = spawn(BINARY, ["serve"], { env: this.env, stdio: ["ignore", "pipe", "pipe"] });
    this.process.stdout.on("data", (chunk) => this.log.push(chunk.toString()));
    this.process.stderr.on("data", (chunk) => this.log.push(chunk.toString()));
    const deadline = Date.now() + 30000;
    for (;;) {
      if (this.process.exitCode !== null) throw new Error(`latchkey exited: ${this.log.join("")}`);
      try {
        const response = await fetch(`http://127.0.0.1:${this.port}/healthz`);
        if (response.ok) return this;
      } catch {
        // not listening yet
      }
      if (Date.now() > deadline) throw new Error(`latchkey did not start: ${this.log.join("")}`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }

  /** Runs a CLI command against this server's data directory (e.g. `user create`). */
  cli(args, input) {
    const result = spawnSync(BINARY, args, { env: this.env, input, encoding: "utf8" });
    if (result.status !== 0) throw new Error(`latchkey ${args.join(" ")} failed: ${result.stderr}${result.stdout}`);
    return result.stdout;
  }

  async stop() {
    if (this.process && this.process.exitCode === null) {
      const exited = new Promise((resolve) => this.process.once("exit", resolve));
      this.process.kill("SIGTERM");
      await Promise.race([exited, new Promise((resolve) => setTimeout(resolve, 5000))]);
      if (this.process.exitCode === null) this.process.kill("SIGKILL");
    }
    rmSync(this.dataDir, { recursive: true, force: true });
  }
}
