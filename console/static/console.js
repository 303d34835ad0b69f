// pushbackd console: the little behaviour the server-rendered pages need. Loaded as a file
// because the Content-Security-Policy forbids inline script; it never sees the admin token,
// only the page's CSRF token, which it sends with each call it makes.
"use strict";

const csrf = () => (document.querySelector('meta[name="csrf-token"]') || {}).content || "";

// api calls the admin API through the console's proxy (/ui/api/... → /admin/v1/...).
async function api(method, path, body) {
  const res = await fetch("/ui/api/" + path, {
    method, body, credentials: "same-origin",
    headers: { "X-CSRF-Token": csrf(), "Content-Type": "application/json" },
  });
  let data = null;
  try { data = await res.json(); } catch (e) { data = null; }
  return { status: res.status, data };
}

// Copy buttons on the endpoints page.
document.querySelectorAll("button.copy").forEach((b) => b.addEventListener("click", async () => {
  const text = document.getElementById(b.dataset.copy).textContent;
  try { await navigator.clipboard.writeText(text); b.textContent = "Copied"; } catch (e) { b.textContent = "Select and copy"; }
}));

// Runs page: refresh the table every 5 s while "refresh live" is checked, keeping selections.
const live = document.getElementById("live");
if (live) {
  setInterval(async () => {
    if (!live.checked || document.hidden) return;
    const res = await fetch(location.href, { credentials: "same-origin" });
    if (!res.ok) return;
    const doc = new DOMParser().parseFromString(await res.text(), "text/html");
    const fresh = doc.getElementById("runs-body");
    const body = document.getElementById("runs-body");
    if (!fresh || !body || body.contains(document.activeElement)) return;
    const checked = new Set([...body.querySelectorAll("input[name=id]:checked")].map((i) => i.value));
    fresh.querySelectorAll("input[name=id]").forEach((i) => { i.checked = checked.has(i.value); });
    body.replaceWith(fresh);
  }, 5000);
}

// Job page: poll the bulk replay job until it ends.
const job = document.getElementById("job");
if (job) {
  const tick = async () => {
    const res = await api("GET", "jobs/" + encodeURIComponent(job.dataset.job));
    if (res.status !== 200 || !res.data) return;
    for (const k of ["state", "done", "total", "failed"]) document.getElementById("job-" + k).textContent = res.data[k];
    const p = document.getElementById("job-progress");
    p.max = res.data.total || 1; p.value = res.data.done || 0;
    if (res.data.state === "running") setTimeout(tick, 1000);
    else document.getElementById("job-end").hidden = false;
  };
  if (document.getElementById("job-state").textContent === "running") setTimeout(tick, 500);
}

// Saga editor: highlighting, line numbers, and validation while typing.
const form = document.getElementById("editor-form");
if (form) editor(form);

function editor(form) {
  const saga = form.dataset.saga;
  const src = document.getElementById("source");
  const hl = document.getElementById("highlight");
  const gutter = document.getElementById("gutter");
  const problems = document.getElementById("problems");
  // own says whether an error is in the saga's own file: only those mark its lines (an
  // error in a partner file has that file's line numbers).
  const own = (file) => !file || [".yaml", ".yml"].some((ext) => file === saga + ext || file.endsWith("/" + saga + ext));
  let errorLines = new Map(); // line → messages
  [...problems.querySelectorAll(".problem")].filter((p) => own(p.dataset.file))
    .forEach((p) => errorLines.set(Number(p.dataset.line), p.textContent));

  function span(cls, text) { const s = document.createElement("span"); s.className = cls; s.textContent = text; return s; }

  // highlightLine splits one YAML line into comment, key, string and ${ } expression
  // spans: enough colour to read a saga, not a YAML parser.
  function highlightLine(line) {
    const out = document.createElement("span");
    out.className = "tl";
    let rest = line;
    const key = /^(\s*(?:-\s+)?)([\w.$-]+)(:)(?=\s|$)/.exec(rest);
    if (key) { out.append(key[1], span("tk", key[2]), key[3]); rest = rest.slice(key[0].length); }
    const re = /(#.*$)|("(?:[^"\\]|\\.)*"|'[^']*')|(\$\{[^}]*\})/g;
    let at = 0, m;
    while ((m = re.exec(rest))) {
      if (m[1] && m.index > 0 && !/\s/.test(rest[m.index - 1])) continue;
      out.append(rest.slice(at, m.index));
      out.append(span(m[1] ? "tc" : m[2] ? "ts" : "tx", m[0]));
      at = m.index + m[0].length;
      if (m[1]) break;
    }
    out.append(rest.slice(at));
    return out;
  }

  function paint() {
    const lines = src.value.split("\n");
    hl.replaceChildren(...lines.map((l, i) => {
      const s = highlightLine(l);
      if (errorLines.has(i + 1)) s.classList.add("err");
      return [s, "\n"];
    }).flat());
    gutter.replaceChildren(...lines.map((_, i) => {
      const li = document.createElement("li");
      li.textContent = String(i + 1);
      li.id = "ln-" + (i + 1);
      if (errorLines.has(i + 1)) { li.className = "err"; li.title = errorLines.get(i + 1); }
      return li;
    }));
  }

  // showErrors lists each error with a button that puts the caret at its line and column.
  function showErrors(errs) {
    errorLines = new Map();
    problems.replaceChildren();
    for (const e of errs) {
      const mine = own(e.file);
      const text = (mine ? "" : e.file + ": ") + "line " + e.line + ", column " + e.column + ": " + e.message;
      const b = document.createElement("button");
      b.type = "button"; b.className = "error problem"; b.dataset.line = e.line; b.textContent = text;
      if (mine) {
        errorLines.set(e.line, text);
        b.addEventListener("click", () => caret(e.line, e.column));
      }
      problems.append(b);
    }
    if (!errs.length) problems.append(span("ok", "valid"));
    paint();
  }

  function caret(line, col) {
    const lines = src.value.split("\n");
    let pos = 0;
    for (let i = 0; i < line - 1 && i < lines.length; i++) pos += lines[i].length + 1;
    pos += Math.max(0, col - 1);
    src.focus();
    src.setSelectionRange(pos, pos);
  }

  let timer = null, seq = 0;
  async function validate() {
    const mine = ++seq;
    const res = await api("POST", "sagas/" + encodeURIComponent(saga) + "/validate", src.value);
    if (mine !== seq) return; // a newer keystroke's check is on its way
    if (res.status === 200 && res.data) showErrors(res.data.errors || []);
    else problems.replaceChildren(span("error", (res.data && res.data.error) || ("the admin API answered " + res.status)));
  }
  src.addEventListener("input", () => { paint(); clearTimeout(timer); timer = setTimeout(validate, 300); });
  src.addEventListener("keydown", (e) => {
    // Tab indents (YAML wants spaces); Escape then Tab leaves the editor, so the keyboard
    // is never trapped.
    if (e.key === "Escape") { src.dataset.escape = "1"; return; }
    if (e.key === "Tab" && !e.shiftKey && src.dataset.escape !== "1") {
      e.preventDefault();
      src.setRangeText("  ", src.selectionStart, src.selectionEnd, "end");
      src.dispatchEvent(new Event("input"));
    }
    delete src.dataset.escape;
  });
  paint();

  const out = document.getElementById("plan-out");
  const summary = document.getElementById("try-summary");
  const sample = document.getElementById("sample");
  const tests = document.getElementById("tests");
  const path = (what) => "sagas/" + encodeURIComponent(saga) + "/" + what;
  // show puts an answer under the buttons: the result, or the API's error with the draft's
  // own errors marked in the editor as validation marks them.
  function show(res, ok) {
    if (res.status === 200 && res.data) {
      summary.textContent = ok(res.data);
      summary.className = "ok";
      out.textContent = JSON.stringify(res.data, null, 2);
      return;
    }
    summary.className = "error";
    summary.textContent = (res.data && res.data.error) || ("the admin API answered " + res.status);
    out.textContent = res.data && res.data.errors ? res.data.errors.map((e) => (e.file ? e.file + ":" : "") + e.line + ":" + e.column + ": " + e.message).join("\n") : "";
    if (res.data && res.data.errors && /draft/.test(res.data.error || "")) showErrors(res.data.errors);
  }
  // pending clears the last answer, so an old one is never read as the new one's.
  function pending(what) { summary.className = "hint"; summary.textContent = what + "…"; out.textContent = ""; }
  document.getElementById("plan").addEventListener("click", async () => {
    pending("planning");
    let req;
    try { req = JSON.parse(sample.value || "{}"); } catch (e) { show({ status: 400, data: { error: "the sample request is not JSON: " + e.message } }); return; }
    if (req === null || typeof req !== "object" || Array.isArray(req)) { show({ status: 400, data: { error: "the sample request is a JSON object, e.g. {\"body\": {}, \"outputs\": {}}" } }); return; }
    req.saga = src.value;
    show(await api("POST", path("plan"), JSON.stringify(req)), (p) => "plan of the draft: " + ((p.steps || []).length) + " steps, ends " + p.ends);
  });
  document.getElementById("test").addEventListener("click", async () => {
    pending("running the tests");
    const req = { saga: src.value };
    if (tests.value.trim() !== "") req.tests = tests.value;
    show(await api("POST", path("test"), JSON.stringify(req)), (r) => r.passed + " passed, " + r.failed + " failed");
  });
}

