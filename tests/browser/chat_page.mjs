// Drives the chat page in headless Chromium (Debian's /usr/bin/chromium,
// through playwright-core) against a running wasmgate in dev mode:
// continue as demo, add a task by chat, see the streamed confirmation, the
// tool call and the task list, reload and find the conversation again, and
// see a server error shown to the person. Saves screenshots for a human.
//
// Usage: node chat_page.mjs BASE_URL SCREENSHOT_DIR

import { mkdirSync } from "node:fs";
import { chromium } from "playwright-core";

const [base, shots] = process.argv.slice(2);
mkdirSync(shots, { recursive: true });

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  // Without these, Chromium's background traffic hits this machine's
  // closed network; the sandbox needs privileges CI does not have.
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});

let failed = false;
function check(condition, message) {
  if (!condition) {
    console.error(`FAIL: ${message}`);
    failed = true;
  } else {
    console.log(`ok: ${message}`);
  }
}

try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
  const foreign = [];
  page.on("request", (request) => {
    if (!request.url().startsWith(base)) foreign.push(request.url());
  });
  const consoleErrors = [];
  page.on("console", (message) => {
    // The deliberate 400 below is logged by the browser as a failed load.
    if (message.type() === "error" && !message.text().includes("400")) consoleErrors.push(message.text());
  });

  // Sign in as the dev-mode demo user.
  await page.goto(base);
  await page.getByRole("button", { name: "Continue as demo" }).click();
  await page.getByText("Signed in as demo").waitFor();
  check(!(await page.locator("#sign-in").isVisible()), "the sign-in form is gone once signed in");
  const message = page.getByRole("textbox", { name: "Message" });
  check(await message.evaluate((el) => el === document.activeElement), "the message box has focus after sign-in");

  // A turn: the confirmation streams in, the tool call shows, the list updates.
  await message.fill("Add a task to buy milk");
  await message.press("Enter");
  const reply = page.locator(".msg.assistant").last();
  await reply.getByText("Buy milk").waitFor();
  check(true, `the streamed confirmation reads: ${await reply.innerText()}`);
  const call = page.locator(".tool").first();
  check((await call.innerText()).includes("Called add_task"), "the tool call is shown");
  await call.locator("summary").click();
  check((await call.innerText()).includes('"title":"Buy milk"'), "the tool call shows its arguments");
  check((await call.innerText()).includes('"status":"created"'), "the tool call shows its result");
  await page.locator("#task-list li", { hasText: "Buy milk" }).waitFor();
  check(true, "the task list shows the new task");
  check(await page.getByRole("button", { name: "Add a task to buy milk" }).isVisible(),
    "the conversation is listed by its title");

  // Reload: still signed in, the same conversation on screen.
  await page.reload();
  await page.getByText("Signed in as demo").waitFor();
  await page.locator(".msg.user", { hasText: "Add a task to buy milk" }).waitFor();
  await page.locator(".msg.assistant", { hasText: "Buy milk" }).waitFor();
  check(true, "after a reload the conversation is shown again");
  await page.screenshot({ path: `${shots}/chat-page.png`, fullPage: true });

  // A question offers its options as buttons; choosing one answers it.
  await message.fill("Add a task to buy oat milk");
  await message.press("Enter");
  await page.locator(".msg.assistant", { hasText: "Buy oat milk" }).waitFor();
  await message.fill("Delete the milk task");
  await message.press("Enter");
  const choice = page.locator(".choices button", { hasText: "Buy oat milk" });
  await choice.waitFor();
  check(await page.locator(".choices button").count() === 2, "the question offers both matching tasks");
  check(await page.locator(".tool", { hasText: "ask_user" }).count() === 0, "the question is not shown as a tool call");
  await page.screenshot({ path: `${shots}/chat-page-question.png`, fullPage: true });
  await choice.click();
  await page.locator(".msg.user", { hasText: "\"Buy oat milk\"" }).waitFor();
  await page.locator(".msg.assistant", { hasText: "Deleted" }).last().waitFor();
  check(await page.locator(".choices").count() === 0, "the options are gone once answered");
  await page.locator("#task-list li", { hasText: "Buy oat milk" }).waitFor({ state: "detached" });
  check(true, "the chosen task is deleted");

  // A server error reaches the person, and what they typed is kept.
  const tooLong = "x".repeat(8001);
  await message.fill(tooLong);
  await message.press("Enter");
  const alert = page.locator("#chat-error");
  await alert.getByText("at most 8000 characters").waitFor();
  check(await alert.getAttribute("role") === "alert", "the error is announced (role=alert)");
  check(await message.inputValue() === tooLong, "the refused message is still in the box");
  check(await page.locator(".msg.user", { hasText: "xxxxxxxx" }).count() === 0,
    "the refused message is not shown as sent");

  // Phone width: one column, nothing cut off sideways.
  await page.setViewportSize({ width: 390, height: 844 });
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  check(overflow <= 0, `no sideways scrolling at phone width (overflow ${overflow}px)`);
  await page.screenshot({ path: `${shots}/chat-page-phone.png`, fullPage: true });

  check(foreign.length === 0, `the page loads nothing from elsewhere (${foreign.join(", ") || "none"})`);
  check(consoleErrors.length === 0, `no console errors (${consoleErrors.join(" | ") || "none"})`);
} catch (error) {
  console.error(`FAIL: ${error.stack ?? error}`);
  failed = true;
} finally {
  await browser.close();
}
process.exit(failed ? 1 : 0);
