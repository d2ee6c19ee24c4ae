// The flows, in order: later ones reuse the users earlier ones made (world.users).
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";

import { Server } from "./server.mjs";
import { linkContaining } from "./smtp-sink.mjs";
import {
  PASSWORD,
  describedError,
  enroll,
  finishEnrollment,
  enterAuthenticatorCode,
  newPage,
  pathOf,
  screenshot,
  signIn,
  signInWithAuthenticator,
  signOut,
  signUp,
} from "./helpers.mjs";

export const tests = [];
const test = (name, run) => tests.push({ name, run });

test("sign up and turn on two-step verification (QR page, wrong code, backup codes with copy and download)", async (world) => {
  const page = await newPage(world);
  await page.context().grantPermissions(["clipboard-read", "clipboard-write"], { origin: world.server.url });
  await page.goto("/login");
  await screenshot(world, page, "login");
  await page.goto("/signup");
  await screenshot(world, page, "signup");
  await signUp(page, "alice@example.com");
  await page.getByText("Your account is ready").waitFor();

  await page.getByRole("link", { name: "Turn on two-step verification" }).click();
  await page.waitForURL(/\/account\/2fa\/setup/);
  const key = await page.locator("#setup-key").getAttribute("data-text");
  assert.match(await page.locator("#setup-key").textContent(), /^([A-Z2-7]{4} ){7}[A-Z2-7]{4}$/, "key in groups of four");
  assert.equal(await page.locator(".qr svg").count(), 1, "inline QR code");
  const input = page.getByLabel("Code");
  assert.equal(await input.getAttribute("inputmode"), "numeric");
  assert.equal(await input.getAttribute("autocomplete"), "one-time-code");
  await screenshot(world, page, "setup");

  await enterAuthenticatorCode(page, "000000");
  assert.match(await describedError(page, "Code"), /not right/);
  assert.equal(await page.locator("#setup-key").getAttribute("data-text"), key, "the same key after a wrong code");

  const { Authenticator } = await import("./totp.mjs");
  const authenticator = new Authenticator(key);
  // Pasting "123 456" works: the field keeps the digits and submits itself.
  const code = await authenticator.code();
  await enterAuthenticatorCode(page, `${code.slice(0, 3)} ${code.slice(3)}`);
  await page.getByRole("heading", { name: "Save your backup codes" }).waitFor();
  const codes = await page.locator(".codes code").allTextContents();
  assert.equal(codes.length, 10);
  for (const backupCode of codes) assert.match(backupCode, /^[0-9A-HJKMNP-TV-Z]{4}-[0-9A-HJKMNP-TV-Z]{4}$/);
  await screenshot(world, page, "backup-codes");

  const [download] = await Promise.all([
    page.waitForEvent("download"),
    page.getByRole("button", { name: "Download .txt" }).click(),
  ]);
  assert.match(download.suggestedFilename(), /\.txt$/);
  const file = readFileSync(await download.path(), "utf8");
  for (const backupCode of codes) assert.ok(file.includes(backupCode), "download holds every code");
  await page.getByRole("button", { name: "Copy codes" }).click();
  const copied = await page.evaluate(() => navigator.clipboard.readText());
  assert.ok(copied.includes(codes[0]) && copied.includes(codes[9]), "clipboard holds the codes");

  // Continue needs the "I have saved these codes" box.
  await page.getByRole("button", { name: "Continue" }).click();
  assert.equal(pathOf(page), "/account/2fa/setup", "still on the codes page");
  await page.getByLabel("I have saved these codes").check();
  await page.getByRole("button", { name: "Continue" }).click();
  await page.waitForURL(/\/account/);
  const twoFactor = page.locator("section", { has: page.getByRole("heading", { name: "Two-step verification" }) });
  await twoFactor.getByText("On", { exact: true }).waitFor();
  await twoFactor.getByText("10 left").waitFor();
  await page.getByText("Authenticator app set up").first().waitFor();
  await screenshot(world, page, "account");
  await world.smtp.waitFor("alice@example.com", "Two-factor authentication is on");
  world.users.alice = { email: "alice@example.com", authenticator, codes };
  await page.context().close();
});

test("sign out, then sign in with the authenticator app", async (world) => {
  const alice = world.users.alice;
  const page = await newPage(world);
  await signIn(page, alice.email);
  assert.equal(pathOf(page), "/login/2fa");
  await page.getByRole("link", { name: "Lost your authenticator?" }).waitFor();
  await screenshot(world, page, "login-2fa");
  await enterAuthenticatorCode(page, await alice.authenticator.code());
  await page.waitForURL(/\/account$/);
  await signOut(page);
  await page.getByText("You are signed out.").waitFor();
  await page.goto("/account");
  assert.equal(pathOf(page), "/login", "signed out for real");
  await page.context().close();
});

test("sign in with a backup code; a used or wrong code is refused next to the field", async (world) => {
  const alice = world.users.alice;
  const page = await newPage(world);
  await signIn(page, alice.email);
  await page.getByRole("link", { name: "Use a backup code instead" }).click();
  await page.getByLabel("Code").fill(alice.codes[0].toLowerCase().replace("-", " "));
  await page.getByRole("button", { name: "Verify" }).click();
  await page.waitForURL(/\/account$/);
  await page.getByText("9 left").waitFor();
  await signOut(page);

  await signIn(page, alice.email);
  await page.getByRole("link", { name: "Use a backup code instead" }).click();
  await page.getByLabel("Code").fill(alice.codes[0]);
  await page.getByRole("button", { name: "Verify" }).click();
  assert.match(await describedError(page, "Code"), /already used/);
  await page.getByLabel("Code").fill("ZZZZ-ZZZZ");
  await page.getByRole("button", { name: "Verify" }).click();
  assert.match(await describedError(page, "Code"), /not right/);
  await screenshot(world, page, "login-2fa-error");
  await page.context().close();
});

test("regenerate backup codes: new codes work, old ones stop", async (world) => {
  const alice = world.users.alice;
  const page = await newPage(world);
  await signIn(page, alice.email);
  await page.getByRole("link", { name: "Use a backup code instead" }).click();
  await page.getByLabel("Code").fill(alice.codes[1]);
  await page.getByRole("button", { name: "Verify" }).click();
  await page.waitForURL(/\/account$/);
  await page.getByRole("link", { name: "Backup codes" }).click();
  await page.waitForURL(/\/account\/2fa\/backup-codes/);
  await page.getByText("8 unused codes").waitFor();
  await screenshot(world, page, "regenerate");
  await page.getByRole("button", { name: "Create new backup codes" }).click();
  await page.getByRole("heading", { name: "Save your backup codes" }).waitFor();
  const fresh = await page.locator(".codes code").allTextContents();
  assert.equal(fresh.length, 10);
  assert.ok(!fresh.includes(alice.codes[2]));
  await page.getByLabel("I have saved these codes").check();
  await page.getByRole("button", { name: "Continue" }).click();
  await page.getByText("10 left").waitFor();
  await signOut(page);

  await signIn(page, alice.email);
  await page.getByRole("link", { name: "Use a backup code instead" }).click();
  await page.getByLabel("Code").fill(alice.codes[2]);
  await page.getByRole("button", { name: "Verify" }).click();
  assert.match(await describedError(page, "Code"), /not right/, "an old code no longer works");
  await page.getByLabel("Code").fill(fresh[0]);
  await page.getByRole("button", { name: "Verify" }).click();
  await page.waitForURL(/\/account$/);
  alice.codes = fresh.slice(1);
  await page.context().close();
});

test("turn off two-step verification with a current code; sign-in is one step again", async (world) => {
  const page = await newPage(world);
  await signUp(page, "dave@example.com");
  const { authenticator } = await enroll(page);
  await page.getByRole("link", { name: "Turn off" }).click();
  await page.waitForURL(/\/account\/2fa\/disable/);
  await screenshot(world, page, "disable");
  await page.getByLabel("Code").fill("123456");
  await page.getByRole("button", { name: "Turn off two-step verification" }).click();
  assert.match(await describedError(page, "Code"), /not right/);
  await page.getByLabel("Code").fill(await authenticator.code());
  await page.getByRole("button", { name: "Turn off two-step verification" }).click();
  await page.waitForURL(/\/account\?done=two_factor_disabled/);
  await page.getByText("Two-step verification is off.").waitFor();
  await signOut(page);
  await signIn(page, "dave@example.com");
  assert.equal(pathOf(page), "/account", "no second step any more");
  await page.context().close();
});

test("every page works without JavaScript: sign up, enroll, sign in with the authenticator", async (world) => {
  const page = await newPage(world, { javaScriptEnabled: false });
  await signUp(page, "erin@example.com");
  const { authenticator } = await enroll(page, { javascript: false });
  await page.getByText("10 left").waitFor();
  await signOut(page);
  await signIn(page, "erin@example.com");
  await enterAuthenticatorCode(page, await authenticator.code(), { javascript: false });
  await page.waitForURL(/\/account$/);
  await page.context().close();
});

test("forms with a missing or forged CSRF token are refused", async (world) => {
  const page = await newPage(world);
  await page.goto("/login");
  await page.locator('input[name="csrf"]').evaluate((input) => {
    input.value = "forged-token-forged-token-forged";
  });
  await page.getByLabel("Email").fill("alice@example.com");
  await page.getByLabel("Password").fill(PASSWORD);
  const [refused] = await Promise.all([
    page.waitForResponse((response) => response.request().method() === "POST"),
    page.getByRole("button", { name: "Sign in" }).click(),
  ]);
  assert.equal(refused.status(), 403);
  await page.getByRole("heading", { name: "This form has expired" }).waitFor();
  await screenshot(world, page, "csrf-refused");

  await signUp(page, "frank@example.com");
  await page.locator('form:has(button:text("Sign out this device")) input[name="csrf"]').evaluate((input) => input.remove());
  const [missing] = await Promise.all([
    page.waitForResponse((response) => response.request().method() === "POST"),
    page.getByRole("button", { name: /Sign out this device/ }).click(),
  ]);
  assert.equal(missing.status(), 403);
  await page.goto("/account");
  assert.equal(pathOf(page), "/account", "the refused form signed nothing out");
  await page.context().close();
});

test("confirm it's you before a sensitive change, and never return to another site", async (world) => {
  // Sudo lasts 3 s here; sudo_until is whole seconds, so waiting 4.2 s always outlasts it.
  const server = await new Server(world.smtp, { LATCHKEY_SUDO_TTL: "3s" }).start();
  try {
    const page = await newPage(world, { baseURL: server.url });
    await signUp(page, "bob@example.com");
    await page.waitForTimeout(4200);
    await Promise.all([
      page.waitForURL(/\/account\/reauth\?next=%2Faccount%2Fpassword/),
      page.getByRole("link", { name: "Change password" }).click(),
    ]);
    await screenshot(world, page, "reauth");
    await page.getByLabel("Password").fill("not my password");
    await page.getByRole("button", { name: "Continue" }).click();
    assert.match(await describedError(page, "Password"), /not right/);
    await page.getByLabel("Password").fill(PASSWORD);
    await page.getByRole("button", { name: "Continue" }).click();
    await page.waitForURL(/\/account\/password$/);
    await screenshot(world, page, "password");
    await page.getByLabel("New password").fill("short");
    await page.getByRole("button", { name: "Change password" }).click();
    assert.match(await describedError(page, "New password"), /8/);
    await page.getByLabel("New password").fill("a brand new passphrase");
    await page.getByRole("button", { name: "Change password" }).click();
    await page.waitForURL(/\/account\?done=password_changed/);

    for (const evil of ["//evil.example/", "https://evil.example/", "/\\evil.example"]) {
      await page.goto(`/account/reauth?next=${encodeURIComponent(evil)}`);
      await page.getByLabel("Password").fill("a brand new passphrase");
      await page.getByRole("button", { name: "Continue" }).click();
      await page.waitForLoadState();
      assert.equal(new URL(page.url()).origin, server.url, `stayed on latchkey after next=${evil}`);
      assert.equal(pathOf(page), "/account");
    }
    await page.context().close();
  } finally {
    await server.stop();
  }
});

test("recover by email after losing the authenticator: waiting period, password, new authenticator", async (world) => {
  const page = await newPage(world);
  await signUp(page, "grace@example.com");
  await enroll(page);
  await signOut(page);

  await signIn(page, "grace@example.com");
  await page.getByRole("link", { name: "Lost your authenticator?" }).click();
  await page.waitForURL(/\/recover$/);
  await screenshot(world, page, "recover");
  // The same answer for an unknown address as for a real one.
  await page.getByLabel("Email").fill("nobody@example.com");
  await page.getByRole("button", { name: "Send recovery email" }).click();
  const unknown = (await page.locator(".alert").textContent()).replace("nobody@example.com", "ADDRESS");
  await page.goto("/recover");
  await page.getByLabel("Email").fill("grace@example.com");
  await page.getByRole("button", { name: "Send recovery email" }).click();
  const known = (await page.locator(".alert").textContent()).replace("grace@example.com", "ADDRESS");
  assert.equal(known, unknown, "the page does not tell whether the account exists");

  const email = await world.smtp.waitFor("grace@example.com", "Recover your account");
  const link = linkContaining(email, "/recover/");
  await page.goto(link);
  await page.getByText("waiting period").first().waitFor();
  await screenshot(world, page, "recover-link");
  await page.getByRole("button", { name: "Start recovery" }).click();
  // LATCHKEY_RECOVERY_DELAY=0s: the waiting period is already over.
  await world.smtp.waitFor("grace@example.com", "Recovery of your account has started");
  await page.getByLabel("Password").fill("wrong password");
  await page.getByRole("button", { name: "Finish recovery" }).click();
  assert.match(await describedError(page, "Password"), /not right/);
  await page.getByLabel("Password").fill(PASSWORD);
  await page.getByRole("button", { name: "Finish recovery" }).click();
  await page.waitForURL(/\/account\/2fa\/setup/);
  await page.getByText("You're back in").waitFor();
  await screenshot(world, page, "recovered-setup");
  await page.goto("/account");
  assert.equal(pathOf(page), "/account/2fa/setup", "a recovered session may only enroll");
  await finishEnrollment(page);
  await page.getByText("10 left").waitFor();
  await world.smtp.waitFor("grace@example.com", "Your account was recovered");

  await page.goto(link);
  await page.getByRole("heading", { name: "This link has expired" }).waitFor();
  await page.context().close();
});

test("a pending recovery shows on the account page and can be cancelled there or from the email", async (world) => {
  const owner = await newPage(world);
  await signUp(owner, "heidi@example.com");
  await enroll(owner);

  const stranger = await newPage(world);
  const start = async (lostPassword) => {
    const before = world.smtp.emails.length;
    await stranger.goto("/recover");
    await stranger.getByLabel("Email").fill("heidi@example.com");
    await stranger.getByRole("button", { name: "Send recovery email" }).click();
    const link = linkContaining(await world.smtp.waitFor("heidi@example.com", "Recover your account", { after: before }), "/recover/");
    await stranger.goto(link);
    if (lostPassword) await stranger.getByLabel("I have lost my password too").check();
    await stranger.getByRole("button", { name: "Start recovery" }).click();
    const notice = await world.smtp.waitFor("heidi@example.com", "Recovery of your account has started", { after: before });
    return { link, cancel: linkContaining(notice, "/recover/cancel/") };
  };

  // Lost password too: the longer waiting period (7 days by default) applies.
  const first = await start(true);
  await stranger.getByText("Recovery started").waitFor();
  await screenshot(world, stranger, "recover-pending");
  await owner.goto("/account");
  await owner.getByRole("heading", { name: "An account recovery is in progress" }).waitFor();
  await screenshot(world, owner, "account-recovery-pending");
  await owner.getByRole("button", { name: "Cancel recovery" }).click();
  await owner.getByText("The account recovery was cancelled").waitFor();
  assert.equal(await owner.getByRole("heading", { name: "An account recovery is in progress" }).count(), 0);
  const cancelled = await stranger.goto(first.link);
  assert.equal(cancelled.status(), 410);

  const second = await start(true);
  await owner.goto(second.cancel);
  await screenshot(world, owner, "recover-cancel");
  await owner.getByRole("button", { name: "Cancel recovery" }).click();
  await owner.getByRole("heading", { name: "Recovery cancelled" }).waitFor();
  await owner.goto("/account");
  assert.equal(await owner.getByRole("heading", { name: "An account recovery is in progress" }).count(), 0);

  // The owner can turn recovery by email off altogether.
  await owner.getByRole("button", { name: "Turn off recovery by email" }).click();
  await owner.getByText("Recovery by email is off. Keep your backup codes safe.").waitFor();
  await owner.getByRole("button", { name: "Turn on recovery by email" }).waitFor();
  const before = world.smtp.emails.length;
  await stranger.goto("/recover");
  await stranger.getByLabel("Email").fill("heidi@example.com");
  await stranger.getByRole("button", { name: "Send recovery email" }).click();
  await world.smtp.waitFor("heidi@example.com", "Account recovery by email is turned off", { after: before });
  await owner.context().close();
  await stranger.context().close();
});

test("reset a forgotten password: the emailed link plus a second factor", async (world) => {
  const page = await newPage(world);
  await signUp(page, "ivan@example.com");
  const { authenticator, codes } = await enroll(page);
  await signOut(page);
  await page.getByRole("link", { name: "Forgot your password?" }).click();
  await page.getByLabel("Email").fill("ivan@example.com");
  await page.getByRole("button", { name: "Send reset link" }).click();
  await page.getByText("Check your email").waitFor();
  const link = linkContaining(await world.smtp.waitFor("ivan@example.com", "Reset your password"), "/reset-password/");
  await page.goto(link);
  await screenshot(world, page, "reset-password");
  await page.getByLabel("New password").fill("a fresh passphrase here");
  await page.getByLabel("Code").fill("000000");
  await page.getByRole("button", { name: "Set new password" }).click();
  assert.match(await describedError(page, "Code"), /not right/);
  await page.getByLabel("New password").fill("a fresh passphrase here");
  await page.getByLabel("Code").fill(await authenticator.code());
  await page.getByRole("button", { name: "Set new password" }).click();
  await page.waitForURL(/\/login\?done=password_reset/);
  await signIn(page, "ivan@example.com", "a fresh passphrase here");
  await page.getByRole("link", { name: "Use a backup code instead" }).click();
  await page.getByLabel("Code").fill(codes[0]);
  await page.getByRole("button", { name: "Verify" }).click();
  await page.waitForURL(/\/account$/);
  await page.goto(link);
  await page.getByRole("heading", { name: "This link has expired" }).waitFor();
  await page.context().close();
});

test("an administrator sees the audit log; a user may not", async (world) => {
  world.server.cli(["user", "create", "--email", "admin@example.com", "--admin", "--password-stdin"], `${PASSWORD}\n`);
  const page = await newPage(world);
  await signIn(page, "admin@example.com");
  await page.goto("/admin/audit");
  await page.getByRole("heading", { name: "Audit log" }).waitFor();
  await page.getByRole("cell", { name: /totp_enabled/ }).first().waitFor();
  await screenshot(world, page, "admin-audit");
  await page.context().close();

  const user = await newPage(world);
  await signIn(user, "dave@example.com");
  const response = await user.goto("/admin/audit");
  assert.equal(response.status(), 403);
  await user.context().close();
});

test("security keys: add one with a (virtual) authenticator, then sign in with it", async (world) => {
  const server = await new Server(world.smtp, {}, { host: "localhost" }).start();
  try {
    const page = await newPage(world, { baseURL: server.url });
    const cdp = await page.context().newCDPSession(page);
    await cdp.send("WebAuthn.enable");
    await cdp.send("WebAuthn.addVirtualAuthenticator", {
      options: {
        protocol: "ctap2",
        transport: "usb",
        hasResidentKey: true,
        hasUserVerification: true,
        isUserVerified: true,
        automaticPresenceSimulation: true,
      },
    });
    await signUp(page, "lena@example.com");
    await page.getByRole("link", { name: "Use a security key" }).click();
    await page.waitForURL(/\/account\/2fa\/security-keys/);
    await page.getByLabel("Name of the key").fill("Test key");
    await page.getByRole("button", { name: "Add security key" }).click();
    // The first factor turns two-step verification on: its backup codes follow.
    await page.getByRole("heading", { name: "Save your backup codes" }).waitFor();
    await page.getByLabel("I have saved these codes").check();
    await page.getByRole("button", { name: "Continue" }).click();
    await page.waitForURL(/\/account/);
    await page.getByText("Security keys").first().waitFor();
    await page.goto("/account/2fa/security-keys");
    await page.getByText("Test key").waitFor();
    await screenshot(world, page, "security-keys");
    await signOut(page);

    await signIn(page, "lena@example.com");
    await page.getByRole("link", { name: "Use a security key instead" }).click();
    await screenshot(world, page, "login-security-key");
    await page.getByRole("button", { name: "Use your security key" }).click();
    await page.waitForURL(/\/account$/);
    await page.context().close();
  } finally {
    await server.stop();
  }
});

test("an administrator resets a user's two-step verification with a required reason", async (world) => {
  const user = await newPage(world);
  await signUp(user, "judy@example.com");
  await enroll(user);
  await user.context().close();

  const page = await newPage(world);
  await signIn(page, "admin@example.com");
  await page.getByRole("link", { name: "Admin", exact: true }).click();
  await page.waitForURL(/\/admin$/);
  await page.getByLabel("Email").fill("judy");
  await page.getByRole("button", { name: "Find users" }).click();
  await screenshot(world, page, "admin-users");
  await page.getByRole("link", { name: "judy@example.com" }).click();
  await page.waitForURL(/\/admin\/users\//);
  await page.getByText("Two-step verification").first().waitFor();
  // The browser insists on a reason; so does the server when the browser is bypassed.
  await page.getByRole("button", { name: "Reset two-factor authentication" }).click();
  assert.match(page.url(), /\/admin\/users\/[^?]+$/, "an empty reason is not sent");
  await page.getByLabel("Reason").evaluate((field) => field.removeAttribute("required"));
  await page.getByLabel("Reason").fill("   ");
  await page.getByRole("button", { name: "Reset two-factor authentication" }).click();
  assert.match(await describedError(page, "Reason"), /reason/i);
  await screenshot(world, page, "admin-user");
  await page.getByLabel("Reason").fill("Lost phone; identity checked by video call");
  await page.getByRole("button", { name: "Reset two-factor authentication" }).click();
  await page.getByText("Two-step verification was reset").waitFor();
  const notice = await world.smtp.waitFor("judy@example.com", "An administrator reset your two-factor authentication");
  assert.ok(notice.text.includes("Lost phone; identity checked by video call"), "the user is told the reason");
  await page.getByRole("link", { name: "All of this user's events in the audit log" }).click();
  await page.getByRole("cell", { name: /2fa_reset/ }).first().waitFor();
  await page.context().close();

  const again = await newPage(world);
  await signIn(again, "judy@example.com");
  assert.equal(pathOf(again), "/account", "sign-in is one step after the reset");
  await again.context().close();
});

test("with two approvals, a second administrator approves the reset", async (world) => {
  const server = await new Server(world.smtp, { LATCHKEY_ADMIN_RESET_APPROVALS: "2" }).start();
  try {
    for (const admin of ["first-admin@example.com", "second-admin@example.com"]) {
      server.cli(["user", "create", "--email", admin, "--admin", "--password-stdin"], `${PASSWORD}\n`);
    }
    const user = await newPage(world, { baseURL: server.url });
    await signUp(user, "kim@example.com");
    await enroll(user);
    await user.context().close();

    const first = await newPage(world, { baseURL: server.url });
    await signIn(first, "first-admin@example.com");
    await first.goto("/admin?email=kim");
    await first.getByRole("link", { name: "kim@example.com" }).click();
    await first.getByLabel("Reason").fill("Lost phone; identity checked in person");
    await first.getByRole("button", { name: "Reset two-factor authentication" }).click();
    await first.getByText("Another administrator must approve it").waitFor();
    await first.goto("/admin");
    await first.getByText("Waiting for another administrator").waitFor();
    await first.context().close();

    const second = await newPage(world, { baseURL: server.url });
    await signIn(second, "second-admin@example.com");
    await second.goto("/admin");
    await second.getByRole("heading", { name: "Resets waiting for approval" }).waitFor();
    await screenshot(world, second, "admin-approvals");
    await second.getByRole("button", { name: "Approve reset" }).click();
    await second.getByText("Approved: the reset took effect").waitFor();
    await second.context().close();
  } finally {
    await server.stop();
  }
});
