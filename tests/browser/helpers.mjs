// What a person does on the pages, as reusable steps: open a fresh browser, sign up, sign in,
// turn on two-step verification, take screenshots at desktop and phone widths.
import assert from "node:assert/strict";
import path from "node:path";

import { Authenticator } from "./totp.mjs";

export const PASSWORD = "correct horse battery staple";
export const DESKTOP = { width: 1280, height: 900 };
export const PHONE = { width: 390, height: 844 };

/** A fresh browser profile (no cookies) on the test server. */
export async function newPage(world, options = {}) {
  const context = await world.browser.newContext({
    baseURL: world.server.url,
    viewport: DESKTOP,
    acceptDownloads: true,
    ...options,
  });
  const page = await context.newPage();
  page.setDefaultTimeout(10000);
  return page;
}

/** Full-page screenshots at 1280 px and 390 px wide: docs/screenshots/NAME-desktop.png, NAME-phone.png. */
export async function screenshot(world, page, name) {
  await page.setViewportSize(DESKTOP);
  await page.screenshot({ path: path.join(world.screenshots, `${name}-desktop.png`), fullPage: true });
  await page.setViewportSize(PHONE);
  await page.screenshot({ path: path.join(world.screenshots, `${name}-phone.png`), fullPage: true });
  await page.setViewportSize(DESKTOP);
}

export function pathOf(page) {
  return new URL(page.url()).pathname;
}

export async function signUp(page, email) {
  await page.goto("/signup");
  await page.getByLabel("Email").fill(email);
  await page.getByLabel("Password").fill(PASSWORD);
  await page.getByRole("button", { name: "Create account" }).click();
  await page.waitForURL(/\/account/);
}

/** The password step; leaves the page on /login/2fa or /account. */
export async function signIn(page, email, password = PASSWORD) {
  await page.goto("/login");
  await page.getByLabel("Email").fill(email);
  await page.getByLabel("Password").fill(password);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.waitForURL(/\/(login\/2fa|account)/);
}

/** Types a six-digit code; with JavaScript the field submits itself, without it we press the button. */
export async function enterAuthenticatorCode(page, code, { javascript = true, button = "Verify" } = {}) {
  const field = page.getByLabel("Code");
  if (javascript) {
    await Promise.all([page.waitForEvent("framenavigated"), field.fill(code)]);
  } else {
    await field.fill(code);
    await page.getByRole("button", { name: button }).click();
  }
  await page.waitForLoadState();
}

export async function signInWithAuthenticator(page, user) {
  await signIn(page, user.email);
  assert.equal(pathOf(page), "/login/2fa");
  await enterAuthenticatorCode(page, await user.authenticator.code());
  await page.waitForURL(/\/account/);
}

export async function signOut(page) {
  await page.getByRole("button", { name: "Sign out", exact: true }).click();
  await page.waitForURL(/\/login\?done=signed_out/);
}

/**
 * From the account page: turn on two-step verification by reading the setup key and computing the
 * code, then save the backup codes. Answers { authenticator, codes }.
 */
export async function enroll(page, { javascript = true } = {}) {
  await page.getByRole("link", { name: "Turn on two-step verification" }).click();
  await page.waitForURL(/\/account\/2fa\/setup/);
  return finishEnrollment(page, { javascript });
}

export async function finishEnrollment(page, { javascript = true } = {}) {
  const key = await page.locator("#setup-key").getAttribute("data-text");
  assert.match(key, /^[A-Z2-7]{32}$/, "a 160-bit base32 key");
  const authenticator = new Authenticator(key);
  await enterAuthenticatorCode(page, await authenticator.code(), { javascript, button: "Verify and continue" });
  await page.getByRole("heading", { name: "Save your backup codes" }).waitFor();
  const codes = await page.locator(".codes code").allTextContents();
  assert.equal(codes.length, 10);
  await page.getByLabel("I have saved these codes").check();
  await page.getByRole("button", { name: "Continue" }).click();
  await page.waitForURL(/\/account/);
  return { authenticator, codes };
}

/** The error text tied to a field by aria-describedby. */
export async function describedError(page, label) {
  const field = page.getByLabel(label);
  assert.equal(await field.getAttribute("aria-invalid"), "true", `${label} is marked invalid`);
  const ids = ((await field.getAttribute("aria-describedby")) || "").split(/\s+/).filter(Boolean);
  const texts = [];
  for (const id of ids) texts.push(await page.locator(`[id="${id}"]`).textContent());
  return texts.join(" ").trim();
}
