// The inspector page: reads /v1/inspector/* and draws the overview or one user's profile.
// No framework and no innerHTML with data: item titles come from catalogs and users, so every
// value is set as text.
"use strict";

const KEY_STORAGE = "iprof-api-key";
const SVG = "http://www.w3.org/2000/svg";

class AuthNeeded extends Error {}
class NotFound extends Error {}

// --- small DOM helpers ---------------------------------------------------------------------

function el(tag, attributes, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "text") node.textContent = value;
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function svg(tag, attributes, ...children) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attributes || {})) {
    if (name === "text") node.textContent = value;
    else node.setAttribute(name, String(value));
  }
  children.flat(Infinity).forEach((child) => child && node.append(child));
  return node;
}

function section(id, title, ...content) {
  return el("section", { "aria-labelledby": id, class: "card" }, el("h2", { id, text: title }), ...content);
}

function userLink(userId) {
  return el("a", { href: "/users/" + encodeURIComponent(userId), text: userId });
}

function day(iso) {
  return iso ? iso.slice(0, 16).replace("T", " ") : "";
}

function windowLabel(window) {
  return `Window ${window.index} · ${day(window.start)} → ${day(window.end)} · ${window.events} events` +
    (window.closed ? "" : " (open)");
}

function percent(weight) {
  return `${Math.round(weight * 100)}%`;
}

function show(...nodes) {
  const main = document.getElementById("main");
  main.replaceChildren(...nodes);
}

function showProblem(message) {
  show(el("div", { role: "alert", class: "problem" }, el("h1", { text: "Nothing to show" }), el("p", { text: message })));
}

// --- the API, with the key from session storage ---------------------------------------------

async function api(path) {
  const key = sessionStorage.getItem(KEY_STORAGE);
  const headers = key ? { Authorization: "Bearer " + key } : {};
  const response = await fetch(path, { headers });
  const body = await response.json().catch(() => ({}));
  if (response.status === 401 || response.status === 403) {
    throw new AuthNeeded(body.error ? body.error.message : "an API key is needed");
  }
  if (response.status === 404) throw new NotFound(body.error ? body.error.message : "not found");
  if (!response.ok) throw new Error(body.error ? body.error.message : `HTTP ${response.status}`);
  return body;
}

function askForKey(message) {
  const panel = document.getElementById("key-panel");
  panel.hidden = false;
  document.getElementById("key-message").textContent =
    message + ". The key is kept in this browser tab only and never put in the address.";
  show(el("p", { class: "muted", text: "Waiting for an API key." }));
  document.getElementById("api-key").focus();
}

// --- the overview ---------------------------------------------------------------------------

async function renderOverview() {
  document.title = "Overview · interest-profiler inspector";
  const data = await api("/v1/inspector/overview?limit=20");
  show(
    el("h1", { text: "Overview" }),
    el("p", { text: `${data.users} users with events. Open a user above, or one of those below.` }),
    section("recent-drift", "Recent interest drift", driftTable(data.recent_drift)),
    section("fallback-checks", "Why LLM answers were rejected", checksTable(data.fallback_checks)),
    section("recent-fallbacks", "Recent LLM fallbacks", fallbackTable(data.recent_fallbacks)),
  );
}

function table(caption, headings, rows, emptyText) {
  if (!rows.length) return el("p", { class: "muted", text: emptyText });
  return el("table", {},
    el("caption", { text: caption }),
    el("thead", {}, el("tr", {}, headings.map((h) => el("th", { scope: "col", text: h })))),
    el("tbody", {}, rows.map((cells) => el("tr", {}, cells.map((c) => el("td", {}, c))))),
  );
}

function driftTable(entries) {
  return table(
    "Users whose interests drifted, most recent first",
    ["User", "Window", "Score / threshold", "Gained", "Lost"],
    entries.map((e) => [
      userLink(e.user_id), windowLabel(e.window), `${e.score} / ${e.threshold}`,
      e.gained.join(", ") || "—", e.lost.join(", ") || "—",
    ]),
    "No drift detected yet.",
  );
}

function checksTable(counts) {
  return table(
    "Stored profiles made from the extractive fallback, by the check the LLM answer failed",
    ["Check", "Profiles"],
    Object.entries(counts).sort((a, b) => b[1] - a[1]).map(([check, n]) => [check, String(n)]),
    "No LLM answer was rejected.",
  );
}

function fallbackTable(entries) {
  return table(
    "Profiles where the LLM answer was rejected and the extractive summary used, newest first",
    ["User", "Window", "Why", "Model", "When"],
    entries.map((e) => [
      userLink(e.user_id), windowLabel(e.window), e.fallback_reason,
      `${e.model || "—"} (${e.quantization || "—"})`, day(e.created_at),
    ]),
    "No fallbacks: either every LLM answer was usable or no LLM is configured.",
  );
}

// --- one user -------------------------------------------------------------------------------

async function renderUser(userId) {
  document.title = `${userId} · interest-profiler inspector`;
  document.getElementById("user-id").value = userId;
  let data;
  try {
    data = await api("/v1/inspector/users/" + encodeURIComponent(userId));
  } catch (error) {
    if (error instanceof NotFound) {
      showProblem(`There is no user "${userId}": no events were ever recorded for this id. Check the spelling, or pick a user from the overview.`);
      return;
    }
    throw error;
  }
  const titles = (ids) => ids.map((id) => (data.items[id] ? data.items[id].title : id));
  show(
    el("h1", { text: `User ${data.user_id}` }),
    currentProfile(data.profile, titles),
    driftSection(data.history),
    historySection(data.history),
    recommendationsSection(data),
    provenanceSection(data.profile.provenance),
  );
}

function currentProfile(profile, titles) {
  const rows = profile.interests.map((interest) =>
    el("li", { class: "interest" },
      el("div", { class: "interest-head" },
        el("span", { class: "label", text: interest.label }),
        el("span", { class: "weight", text: percent(interest.weight) })),
      el("div", { class: "bar", role: "presentation" },
        el("span", { "data-weight": interest.weight })),
      el("p", { class: "evidence" }, "Shown by: ", titles(interest.evidence).join(" · "))));
  const list = el("ol", { class: "interests", "aria-label": "Interests, strongest first" }, rows);
  list.querySelectorAll(".bar span").forEach((bar) => {
    bar.style.width = percent(Number(bar.dataset.weight));
  });
  return section("current", "Current profile",
    el("p", { class: "muted", text: windowLabel(profile.window) }),
    el("p", { class: "summary", text: profile.summary }),
    profile.interests.length ? list : el("p", { class: "muted", text: "No interests found in this window." }));
}

function driftSection(history) {
  const detections = history.filter((p) => p.drift && p.drift.detected);
  const list = detections.length
    ? el("ul", { class: "detections" }, detections.map((p) => el("li", {},
      el("strong", { text: `▲ Drift in window ${p.window.index}` }),
      ` (${day(p.window.end)}): score ${p.drift.score} above threshold ${p.drift.threshold}. `,
      `Gained: ${p.drift.gained.join(", ") || "—"}. Lost: ${p.drift.lost.join(", ") || "—"}.`)))
    : el("p", { text: "No drift detected in this user's history." });
  return section("drift", "Drift over windows", driftChart(history), list, driftDataTable(history));
}

function driftChart(history) {
  const width = 720, height = 260, left = 56, right = 24, top = 36, bottom = 40;
  const points = history.map((p, i) => ({ i, p, drift: p.drift }));
  // Rounded up to a tenth, so the top tick is a round number and markers have room above.
  const largest = Math.max(0.5, ...points.map((q) => (q.drift ? Math.max(q.drift.score || 0, q.drift.threshold) : 0)));
  const highest = Math.ceil(largest * 10 + 0.5) / 10;
  const x = (i) => left + (history.length < 2 ? (width - left - right) / 2 : (i * (width - left - right)) / (history.length - 1));
  const y = (v) => top + (1 - v / highest) * (height - top - bottom);
  const detected = points.filter((q) => q.drift && q.drift.detected);
  const description = `${history.length} windows. ` + (detected.length
    ? `Drift detected in window${detected.length > 1 ? "s" : ""} ${detected.map((q) => q.p.window.index).join(", ")}.`
    : "No drift detected.") + " Dashed line: threshold; dots: drift score; triangles: detections.";
  const scored = points.filter((q) => q.drift && q.drift.score !== null);
  const chart = svg("svg", { viewBox: `0 0 ${width} ${height}`, role: "img", "aria-labelledby": "drift-title drift-desc", class: "chart" },
    svg("title", { id: "drift-title", text: "Drift score over windows" }),
    svg("desc", { id: "drift-desc", text: description }),
    svg("line", { x1: left, y1: y(0), x2: width - right, y2: y(0), class: "axis" }),
    svg("line", { x1: left, y1: top, x2: left, y2: y(0), class: "axis" }),
    svg("text", { x: left - 6, y: top + 4, class: "tick", "text-anchor": "end", text: highest.toFixed(1) }),
    svg("text", { x: left - 6, y: y(0), class: "tick", "text-anchor": "end", text: "0" }),
    svg("text", { x: 4, y: 14, class: "tick", text: "distance from earlier windows" }),
    svg("text", { x: width / 2, y: height - 6, class: "tick", "text-anchor": "middle", text: "window (oldest → newest)" }),
    svg("polyline", { class: "threshold", points: points.filter((q) => q.drift).map((q) => `${x(q.i)},${y(q.drift.threshold)}`).join(" ") }),
    svg("polyline", { class: "score", points: scored.map((q) => `${x(q.i)},${y(q.drift.score)}`).join(" ") }),
    scored.map((q) => svg("circle", { cx: x(q.i), cy: y(q.drift.score), r: 4, class: "point" })),
    detected.map((q) => svg("g", { class: "detection" },
      svg("path", { d: `M ${x(q.i)} ${y(q.drift.score) - 16} l -7 12 l 14 0 z` }),
      svg("text", { x: x(q.i), y: y(q.drift.score) - 20, "text-anchor": "middle", text: "drift" }))),
    points.map((q) => svg("text", { x: x(q.i), y: y(0) + 16, class: "tick", "text-anchor": "middle", text: String(q.p.window.index) })),
  );
  return el("figure", {}, chart, el("figcaption", { text: description }));
}

function driftDataTable(history) {
  const rows = history.map((p) => [
    String(p.window.index), day(p.window.end),
    p.drift && p.drift.score !== null ? String(p.drift.score) : "— (first window)",
    p.drift ? String(p.drift.threshold) : "—",
    p.drift && p.drift.detected ? "yes" : "no",
  ]);
  return el("details", {}, el("summary", { text: "The chart's data as a table" }),
    table("Drift score per window", ["Window", "Ends", "Score", "Threshold", "Drift detected"], rows, ""));
}

function historySection(history) {
  const items = history.slice().reverse().map((p) => el("li", { class: p.drift && p.drift.detected ? "window drifted" : "window" },
    el("h3", { text: windowLabel(p.window) }),
    p.drift && p.drift.detected ? el("p", { class: "badge", text: `▲ Drift detected (score ${p.drift.score} > ${p.drift.threshold})` }) : null,
    el("p", { text: p.summary }),
    el("p", { class: "muted", text: madeBy(p.provenance) }),
    el("p", { class: "muted", text: `Interests: ${p.interests.map((i) => `${i.label} ${percent(i.weight)}`).join(", ") || "none"}` })));
  return section("history", "Profile history (newest first)", el("ol", { class: "timeline", reversed: true }, items));
}

function madeBy(provenance) {
  const model = provenance.model ? ` with ${provenance.model} (${provenance.quantization})` : "";
  const fallback = provenance.fallback_reason ? ` — LLM answer rejected: ${provenance.fallback_reason}` : "";
  return `Made by the ${provenance.summarizer} summarizer${model}${fallback}.`;
}

function recommendationsSection(data) {
  if (data.recommendations_error) {
    return section("recommendations", "Recommendations", el("p", { role: "status", text: `Unavailable: ${data.recommendations_error}` }));
  }
  const items = data.recommendations.map((r) => el("li", {},
    el("span", { class: "label", text: data.items[r.item_id] ? data.items[r.item_id].title : r.item_id }),
    el("span", { class: "muted", text: ` (${r.item_id}, score ${r.score})` }),
    el("p", { class: "reason", text: r.reason })));
  return section("recommendations", "Recommendations", el("ol", { class: "recommendations" }, items));
}

function provenanceSection(provenance) {
  const fields = [
    ["Summarizer", provenance.summarizer], ["Model", provenance.model], ["Quantization", provenance.quantization],
    ["Prompt hash", provenance.prompt_hash], ["Embedder", provenance.embedder],
    ["Fallback reason", provenance.fallback_reason], ["Generation time", provenance.duration_ms != null ? `${provenance.duration_ms} ms` : null],
  ];
  const list = el("dl", { class: "provenance" }, fields.map(([name, value]) => [
    el("dt", { text: name }), el("dd", { text: value === null || value === undefined ? "—" : String(value) }),
  ]));
  const note = provenance.fallback_reason
    ? el("p", { role: "note", class: "badge", text: "The LLM's answer was rejected; this profile is the extractive fallback." })
    : null;
  return section("provenance", "How this profile was made", note, list);
}

// --- wiring ---------------------------------------------------------------------------------

// Offered only while this tab holds a key: with no keys configured there is nothing to forget.
function showForgetKey() {
  document.getElementById("forget-key-item").hidden = !sessionStorage.getItem(KEY_STORAGE);
}

async function route() {
  showForgetKey();
  try {
    const path = decodeURIComponent(location.pathname);
    if (path.startsWith("/users/")) await renderUser(path.slice("/users/".length));
    else await renderOverview();
    document.getElementById("key-panel").hidden = true;
    announce(`Showing ${document.querySelector("main h1").textContent}.`);
  } catch (error) {
    if (error instanceof AuthNeeded) askForKey(error.message);
    else if (error instanceof URIError) showProblem("This address is not a valid user link.");
    else showProblem(error.message);
  }
}

// One short sentence for screen readers, instead of re-reading the whole page on each render.
function announce(text) {
  document.getElementById("status").textContent = text;
}

document.addEventListener("DOMContentLoaded", () => {
  document.getElementById("search").addEventListener("submit", (event) => {
    event.preventDefault();
    const userId = document.getElementById("user-id").value;  // ids may have spaces: kept
    if (userId.trim()) location.assign("/users/" + encodeURIComponent(userId));
  });
  document.getElementById("key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    sessionStorage.setItem(KEY_STORAGE, document.getElementById("api-key").value);
    document.getElementById("api-key").value = "";
    route();
  });
  document.getElementById("forget-key").addEventListener("click", () => {
    sessionStorage.removeItem(KEY_STORAGE);
    route();
  });
  route();
});
