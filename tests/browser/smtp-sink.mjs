// A tiny SMTP server that latchkey delivers to during the browser tests, so a test can read the
// emails a person would get (recovery links, notices). It speaks just enough SMTP for lettre:
// greeting, EHLO/HELO, MAIL, RCPT, DATA (with dot-unstuffing), RSET, NOOP, QUIT.
import net from "node:net";

export class SmtpSink {
  constructor() {
    this.emails = [];
    this.waiters = [];
  }

  async start() {
    this.server = net.createServer((socket) => this.#serve(socket));
    await new Promise((resolve) => this.server.listen(0, "127.0.0.1", resolve));
    this.port = this.server.address().port;
    return this;
  }

  url() {
    return `smtp://127.0.0.1:${this.port}`;
  }

  stop() {
    this.server?.close();
  }

  #serve(socket) {
    let buffer = "";
    let inData = false;
    let data = [];
    let envelope = { from: "", to: [] };
    const reply = (line) => socket.write(line + "\r\n");
    reply("220 sink ESMTP ready");
    socket.setEncoding("utf8");
    socket.on("error", () => {});
    socket.on("data", (chunk) => {
      buffer += chunk;
      let index;
      while ((index = buffer.indexOf("\r\n")) >= 0) {
        const line = buffer.slice(0, index);
        buffer = buffer.slice(index + 2);
        if (inData) {
          if (line === ".") {
            inData = false;
            this.#received(envelope, data.join("\r\n"));
            envelope = { from: "", to: [] };
            data = [];
            reply("250 OK queued");
          } else {
            data.push(line.startsWith("..") ? line.slice(1) : line);
          }
          continue;
        }
        const verb = line.slice(0, 4).toUpperCase();
        if (verb === "EHLO") {
          reply("250-sink");
          reply("250-8BITMIME");
          reply("250 SMTPUTF8");
        } else if (verb === "HELO") reply("250 sink");
        else if (verb === "MAIL") {
          envelope.from = (line.match(/<([^>]*)>/) || [])[1] || "";
          reply("250 OK");
        } else if (verb === "RCPT") {
          envelope.to.push((line.match(/<([^>]*)>/) || [])[1] || "");
          reply("250 OK");
        } else if (verb === "DATA") {
          inData = true;
          reply("354 End data with <CR><LF>.<CR><LF>");
        } else if (verb === "RSET") {
          envelope = { from: "", to: [] };
          reply("250 OK");
        } else if (verb === "NOOP") reply("250 OK");
        else if (verb === "QUIT") {
          reply("221 Bye");
          socket.end();
        } else reply("502 Command not implemented");
      }
    });
  }

  #received(envelope, raw) {
    const email = parseEmail(raw);
    email.to = envelope.to;
    this.emails.push(email);
    for (const waiter of [...this.waiters]) {
      if (waiter.match(email)) {
        this.waiters.splice(this.waiters.indexOf(waiter), 1);
        waiter.resolve(email);
      }
    }
  }

  /** The first email (already received or still to come) to `recipient` whose subject contains `subjectPart`. */
  waitFor(recipient, subjectPart, { after = 0, timeoutMs = 15000 } = {}) {
    const match = (email) =>
      this.emails.indexOf(email) >= after && email.to.includes(recipient) && email.subject.includes(subjectPart);
    const found = this.emails.find(match);
    if (found) return Promise.resolve(found);
    return new Promise((resolve, reject) => {
      const waiter = { match, resolve };
      this.waiters.push(waiter);
      setTimeout(() => {
        const index = this.waiters.indexOf(waiter);
        if (index >= 0) {
          this.waiters.splice(index, 1);
          const seen = this.emails.map((e) => `${e.to} ${e.subject}`).join("; ");
          reject(new Error(`no email to ${recipient} about "${subjectPart}" (received: ${seen || "none"})`));
        }
      }, timeoutMs);
    });
  }
}

function splitHeaders(block) {
  const index = block.indexOf("\r\n\r\n");
  const head = index >= 0 ? block.slice(0, index) : block;
  const body = index >= 0 ? block.slice(index + 4) : "";
  const headers = {};
  for (const line of head.replace(/\r\n[ \t]+/g, " ").split("\r\n")) {
    const colon = line.indexOf(":");
    if (colon > 0) headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
  }
  return { headers, body };
}

function decodeBody(body, encoding = "") {
  encoding = encoding.toLowerCase();
  if (encoding === "base64") return Buffer.from(body.replace(/\s+/g, ""), "base64").toString("utf8");
  if (encoding === "quoted-printable") {
    const bytes = body
      .replace(/=\r\n/g, "")
      .replace(/=([0-9A-F]{2})/gi, (_, hex) => String.fromCharCode(parseInt(hex, 16)));
    return Buffer.from(bytes, "latin1").toString("utf8");
  }
  return body;
}

function decodeHeader(value = "") {
  return value.replace(/=\?utf-8\?([bq])\?([^?]*)\?=/gi, (_, kind, text) =>
    kind.toLowerCase() === "b"
      ? Buffer.from(text, "base64").toString("utf8")
      : decodeBody(text.replace(/_/g, " "), "quoted-printable")
  ).replace(/\?=\s+=\?/g, "");
}

/** Subject and the decoded text/plain and text/html parts of a (multipart) message. */
export function parseEmail(raw) {
  const { headers, body } = splitHeaders(raw);
  const email = { subject: decodeHeader(headers.subject), text: "", html: "", raw };
  const visit = (partHeaders, partBody) => {
    const type = (partHeaders["content-type"] || "text/plain").toLowerCase();
    const boundary = (partHeaders["content-type"] || "").match(/boundary="?([^";]+)"?/i);
    if (type.startsWith("multipart/") && boundary) {
      for (const piece of partBody.split("--" + boundary[1]).slice(1)) {
        if (piece.startsWith("--")) break;
        const inner = splitHeaders(piece.replace(/^\r\n/, ""));
        visit(inner.headers, inner.body);
      }
    } else if (type.startsWith("text/plain") && !email.text) {
      email.text = decodeBody(partBody, partHeaders["content-transfer-encoding"]);
    } else if (type.startsWith("text/html") && !email.html) {
      email.html = decodeBody(partBody, partHeaders["content-transfer-encoding"]);
    }
  };
  visit(headers, body);
  return email;
}

/** The first http(s) link in the email's text containing `part`. */
export function linkContaining(email, part) {
  const links = email.text.match(/https?:\/\/[^\s<>"]+/g) || [];
  const link = links.find((candidate) => candidate.includes(part));
  if (!link) throw new Error(`no link containing ${part} in: ${email.text}`);
  return link;
}
