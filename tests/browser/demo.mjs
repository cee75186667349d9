// Drives the demo page (/demo) in a headless Chromium with playwright-core.
//
//   node demo.mjs '{"url": "http://127.0.0.1:PORT/demo", "case": "answer"|"no-engine",
//                   "prompt": "...", "code": "...", "screenshot": "/abs/path.png"}'
//
// Cases:
//   answer     sends the prompt and expects the completed task: the planner's
//              message, the coder's reply with `code` in it, and the memory
//              rows of the session (plan, prompt, reply).
//   no-engine  expects the no-engine notice, then sends anyway and expects
//              the failed state with the engine's message.
//
// Prints one JSON line: {"ok": bool, "failures": [...], "observed": {...}}
// and exits 0 when every check passed, 1 when one failed, 2 when the
// browser could not be driven at all. CHROMIUM names the browser binary
// (default /usr/bin/chromium).

import { chromium } from "playwright-core";
import fs from "node:fs";
import path from "node:path";

const opts = JSON.parse(process.argv[2] || "{}");
const executablePath = process.env.CHROMIUM || "/usr/bin/chromium";
const failures = [];
const observed = { case: opts.case, timings_ms: {}, console: [], page_errors: [], foreign_requests: [] };

function check(condition, message) {
  if (!condition) failures.push(message);
  return condition;
}

async function timed(name, fn) {
  const t0 = Date.now();
  try {
    return await fn();
  } finally {
    observed.timings_ms[name] = Date.now() - t0;
  }
}

// Waits for predicate (run in the page) to hold; returns false on timeout
// instead of throwing, so the caller can say what was missing.
async function waitIn(page, predicate, arg, timeout) {
  try {
    await page.waitForFunction(predicate, arg, { timeout, polling: 100 });
    return true;
  } catch (e) {
    if (e && e.name === "TimeoutError") return false;
    throw e;
  }
}

const text = (page, selector) =>
  page.evaluate((s) => {
    const n = document.querySelector(s);
    return n ? n.textContent : null;
  }, selector);
const attr = (page, selector, name) =>
  page.evaluate(([s, a]) => {
    const n = document.querySelector(s);
    return n ? n.getAttribute(a) : null;
  }, [selector, name]);
const visible = (page, selector) =>
  page.evaluate((s) => {
    const n = document.querySelector(s);
    return !!n && !n.hidden && n.getClientRects().length > 0;
  }, selector);

async function snapshot(page) {
  return page.evaluate(() => {
    const t = (id) => {
      const n = document.getElementById(id);
      return n ? n.textContent : null;
    };
    const state = document.getElementById("state");
    const notice = document.getElementById("notice");
    return {
      identity: t("identity"),
      identity_status: document.getElementById("identity").getAttribute("data-status"),
      engine: t("engine"),
      engine_status: document.getElementById("engine").getAttribute("data-status"),
      notice: notice.hidden ? null : notice.textContent,
      state: state.textContent,
      state_attr: state.getAttribute("data-state"),
      final: state.getAttribute("data-final") === "true",
      task_id: t("task-id"),
      task_actors: document.getElementById("task-actors").getAttribute("data-chain"),
      planner_message: t("planner-message"),
      plan: t("plan"),
      coder_reply: t("coder-reply"),
      code_blocks: Array.from(document.querySelectorAll("#coder-reply pre code"), (c) => c.textContent),
      session: t("session"),
      memory_rows: Array.from(document.querySelectorAll("#memory-rows tr[data-kind]"), (tr) => ({
        kind: tr.getAttribute("data-kind"),
        new: tr.getAttribute("data-new") === "true",
        actor: tr.getAttribute("data-actor"),
        cells: Array.from(tr.cells, (c) => c.textContent),
      })),
    };
  });
}

async function signIn(page) {
  const signedIn = await timed("sign_in", () =>
    waitIn(page, () => document.getElementById("identity").getAttribute("data-status") !== "pending",
      null, 15000));
  check(signedIn, "the page did not finish fetching /dev/token within 15 s");
  const status = await attr(page, "#identity", "data-status");
  const who = await text(page, "#identity");
  check(status === "ok" && /^did:/.test(who || ""),
    `the page shows no signed-in DID (identity: ${JSON.stringify(who)}, notice: ${JSON.stringify(await text(page, "#notice"))})`);
  const checked = await timed("engine_check", () =>
    waitIn(page, () => document.getElementById("engine").getAttribute("data-status") !== "checking",
      null, 15000));
  check(checked, "the engine check did not finish within 15 s");
}

async function send(page) {
  await page.fill("#prompt", opts.prompt);
  const enabled = await waitIn(page, () => !document.getElementById("send").disabled, null, 5000);
  check(enabled, "the Send button stayed disabled");
  await page.click("#send");
}

async function answerCase(page) {
  await signIn(page);
  check((await attr(page, "#engine", "data-status")) === "ok",
    `the engine check failed with the stand-in running: ${JSON.stringify(await text(page, "#engine"))}`);
  check(!(await visible(page, "#notice")), `a notice is shown: ${JSON.stringify(await text(page, "#notice"))}`);
  await send(page);

  const seenStates = new Set();
  const finished = await timed("task", async () => {
    const deadline = Date.now() + (opts.task_timeout_ms || 60000);
    while (Date.now() < deadline) {
      const s = await attr(page, "#state", "data-state");
      if (s) seenStates.add(s);
      if ((await attr(page, "#state", "data-final")) === "true") return true;
      await new Promise((r) => setTimeout(r, 100));
    }
    return false;
  });
  observed.states_seen = Array.from(seenStates);
  check(finished, `the task did not reach a final state within ${(opts.task_timeout_ms || 60000) / 1000} s ` +
    `(state shown: ${JSON.stringify(await text(page, "#state"))})`);

  // The memory rows keep arriving for a moment after the task ends.
  const rowsIn = await timed("memory_rows", () =>
    waitIn(page, () => {
      const kinds = Array.from(document.querySelectorAll("#memory-rows tr[data-kind]"),
        (tr) => tr.getAttribute("data-kind"));
      return kinds.includes("plan") && kinds.includes("prompt") && kinds.includes("reply");
    }, null, 10000));

  const s = await snapshot(page);
  Object.assign(observed, s);
  check(s.state === "completed" && s.state_attr === "TASK_STATE_COMPLETED",
    `the state shows ${JSON.stringify(s.state)} (${s.state_attr}), not completed; ` +
    `planner message: ${JSON.stringify(s.planner_message)}`);
  check(/^Plan stored as [0-9a-f-]{36}; the coder answered\.$/.test((s.planner_message || "").trim()),
    `the planner's message is missing or unexpected: ${JSON.stringify(s.planner_message)}`);
  check(s.code_blocks.some((c) => c.includes(opts.code)),
    `the coder's reply has no code block with the stand-in's code ${JSON.stringify(opts.code)}: ` +
    `${JSON.stringify(s.coder_reply)}`);
  check((s.plan || "").trim().length > 0, "no plan is shown");
  check(/^[0-9a-f]{16}$/.test((s.session || "").trim()), `no session is shown: ${JSON.stringify(s.session)}`);
  const kinds = s.memory_rows.map((r) => r.kind);
  check(rowsIn, `the memory rows lack plan/prompt/reply after 10 s: ${JSON.stringify(kinds)}`);
  check(kinds.filter((k) => k === "prompt" || k === "reply").length >= 2,
    `fewer than two mirrored rows (prompt/reply): ${JSON.stringify(kinds)}`);
}

async function noEngineCase(page) {
  await signIn(page);
  const shown = await timed("notice", () =>
    waitIn(page, () => {
      const n = document.getElementById("notice");
      return !n.hidden && n.textContent.includes("No model engine is answering");
    }, null, 10000));
  check(shown, `the no-engine notice did not appear within 10 s (notice: ${JSON.stringify(await text(page, "#notice"))})`);
  check((await attr(page, "#engine", "data-status")) === "down",
    `the engine status is ${JSON.stringify(await text(page, "#engine"))}, not down`);
  await send(page);
  const finished = await timed("task", () =>
    waitIn(page, () => document.getElementById("state").getAttribute("data-final") === "true",
      null, opts.task_timeout_ms || 30000));
  const s = await snapshot(page);
  Object.assign(observed, s);
  check(finished, `the task did not reach a final state within ${(opts.task_timeout_ms || 30000) / 1000} s ` +
    `(state shown: ${JSON.stringify(s.state)})`);
  check(s.state === "failed" && s.state_attr === "TASK_STATE_FAILED",
    `the state shows ${JSON.stringify(s.state)} (${s.state_attr}), not failed`);
  check(/model engine is not answering/.test(s.planner_message || ""),
    `the failure message does not name the engine: ${JSON.stringify(s.planner_message)}`);
}

async function main() {
  const launchArgs = process.getuid && process.getuid() === 0 ? ["--no-sandbox"] : [];
  const browser = await chromium.launch({ executablePath, headless: true, args: launchArgs });
  try {
    const context = await browser.newContext({ viewport: { width: 1100, height: 900 } });
    const page = await context.newPage();
    const origin = new URL(opts.url).origin;
    page.on("console", (m) => observed.console.push(`${m.type()}: ${m.text()}`));
    page.on("pageerror", (e) => observed.page_errors.push(String(e && e.message ? e.message : e)));
    page.on("request", (r) => {
      const u = r.url();
      if (!u.startsWith(origin + "/") && !u.startsWith("data:")) observed.foreign_requests.push(u);
    });
    const response = await page.goto(opts.url, { waitUntil: "load", timeout: 15000 });
    check(response && response.status() === 200, `GET ${opts.url} answered ${response && response.status()}`);
    check(/^text\/html/.test((response && response.headers()["content-type"]) || ""),
      `/demo is not served as text/html: ${response && response.headers()["content-type"]}`);
    observed.title = await page.title();

    try {
      if (opts.case === "answer") await answerCase(page);
      else if (opts.case === "no-engine") await noEngineCase(page);
      else throw new Error(`unknown case ${JSON.stringify(opts.case)}`);
    } finally {
      if (opts.screenshot) {
        fs.mkdirSync(path.dirname(opts.screenshot), { recursive: true });
        await page.screenshot({ path: opts.screenshot, fullPage: true });
        observed.screenshot = opts.screenshot;
      }
    }
    check(observed.page_errors.length === 0, `the page threw: ${observed.page_errors.join("; ")}`);
    check(observed.foreign_requests.length === 0,
      `the page loaded resources from elsewhere: ${observed.foreign_requests.join(", ")}`);
  } finally {
    await browser.close();
  }
}

try {
  await main();
  process.stdout.write(JSON.stringify({ ok: failures.length === 0, failures, observed }) + "\n");
  process.exit(failures.length === 0 ? 0 : 1);
} catch (e) {
  failures.push(`the browser could not be driven: ${e && e.stack ? e.stack : e}`);
  process.stdout.write(JSON.stringify({ ok: false, failures, observed }) + "\n");
  process.exit(2);
}
