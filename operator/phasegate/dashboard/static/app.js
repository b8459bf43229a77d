// phasegate dashboard: plain JavaScript, no library, charts drawn as inline SVG.
"use strict";

const TOKEN = document.querySelector('meta[name="phasegate-token"]').content;
const REFRESH = Math.max(0.5, parseFloat(document.querySelector('meta[name="phasegate-refresh"]').content) || 2);
const COLORS = ["#175cd3", "#c4320a", "#12805c", "#7a5af8", "#b54708", "#0e9384", "#dd2590", "#475467"];
const sections = {};
let updates = 0;

function esc(value) {
  return String(value ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
}

function fmt(value) {
  if (value === null || value === undefined) return "no data";
  if (value === 0) return "0";
  const a = Math.abs(value);
  return a >= 1000 || a < 0.001 ? value.toExponential(2) : String(+value.toPrecision(4));
}

function duration(seconds) {
  seconds = Math.round(seconds);
  if (seconds < 60) return `${seconds}s`;
  const h = Math.floor(seconds / 3600), m = Math.floor((seconds % 3600) / 60), s = seconds % 60;
  return h ? `${h}h${m ? m + "m" : ""}` : `${m}m${s ? s + "s" : ""}`;
}

function selected() {
  const [ns, name] = decodeURIComponent(location.hash.slice(1)).split("/");
  return ns && name ? { ns, name } : null;
}

async function api(path, options) {
  const answer = await fetch(path, options);
  const body = await answer.json().catch(() => ({ error: `HTTP ${answer.status}` }));
  if (!answer.ok) throw new Error(body.error || `HTTP ${answer.status}`);
  return body;
}

// Only touch the DOM where something changed: typed text and focus survive a refresh.
function put(id, html, parent) {
  let node = document.getElementById(id);
  if (!node) {
    node = document.createElement("div");
    node.id = id;
    parent.appendChild(node);
  }
  if (sections[id] !== html) {
    node.innerHTML = html;
    sections[id] = html;
  }
  return node;
}

function renderList(body) {
  document.getElementById("scope").textContent = `${body.scope} · as ${body.user}`;
  const chosen = selected();
  const rows = body.rollouts.map((r) => {
    const key = `${r.namespace}/${r.name}`;
    const isSel = chosen && chosen.ns === r.namespace && chosen.name === r.name;
    const phase = r.phase ? `${r.phase} (${r.phaseIndex + 1}/${r.phases})` : "-";
    return `<tr data-key="${esc(key)}" class="${isSel ? "selected" : ""}"><td>${esc(r.namespace)}</td>` +
      `<td><a href="#${esc(key)}">${esc(r.name)}</a></td><td>${esc(r.revision)}</td>` +
      `<td class="state ${esc(r.state)}">${esc(r.state)}</td><td>${esc(phase)}</td>` +
      `<td>${r.weight ?? "-"}%</td><td>${esc(r.progress || "-")}</td><td>${esc(r.message)}</td></tr>`;
  });
  const tbody = document.querySelector("#rollouts tbody");
  const html = rows.join("") || `<tr><td colspan="8" class="muted">no rollouts</td></tr>`;
  if (sections.list !== html) {
    tbody.innerHTML = html;
    sections.list = html;
  }
}

function timelineSvg(t) {
  const width = 900, height = 64, total = t.phases.reduce((a, p) => a + Math.max(p.duration, 1), 0) || 1;
  let x = 0, parts = "";
  t.phases.forEach((p, i) => {
    const w = (Math.max(p.duration, 1) / total) * width;
    const fill = p.where === "done" ? "#d1fadf" : p.where === "current" ? "#d1e9ff" : "#f2f4f7";
    parts += `<g class="phase ${p.where}" data-phase="${esc(p.name)}"><rect x="${x}" y="18" width="${w - 2}" height="26" fill="${fill}" stroke="#98a2b3"/>` +
      `<text x="${x + 4}" y="14">${esc(p.name)} ${p.weight}%${p.approval.length ? " · approval" : ""}${p.notBefore ? " · not before" : ""}</text>` +
      `<text x="${x + 4}" y="58">${duration(p.duration)}</text>`;
    for (const c of p.checkpoints) {
      const cx = x + (c.offset / Math.max(p.duration, 1)) * (w - 2);
      const color = c.verdict === "Passed" ? "#12805c" : c.verdict === "Failed" ? "#c4320a" : c.verdict ? "#b54708" : "#98a2b3";
      parts += `<line x1="${cx}" x2="${cx}" y1="18" y2="44" stroke="${color}" stroke-width="2"><title>${esc(p.name)} @ ${duration(c.offset)}: ${esc(c.verdict || "not yet")}</title></line>`;
    }
    if (i === t.index && p.duration > 0) {
      const cx = x + Math.min(1, t.phase.elapsed / p.duration) * (w - 2);
      parts += `<path d="M${cx - 5},18 L${cx + 5},18 L${cx},26 Z" fill="#101828"><title>now</title></path>`;
    }
    parts += "</g>";
    x += w;
  });
  return `<svg viewBox="0 0 ${width} ${height}" width="100%" role="img" aria-label="phase timeline">${parts}</svg>`;
}

function chartSvg(series, thresholds, window, options = {}) {
  const width = 420, height = 170, left = 52, right = 8, top = 8, bottom = 22;
  const values = series.flatMap((s) => s.points.map((p) => p[1])).concat(thresholds.map((t) => t.value));
  if (!series.some((s) => s.points.length)) {
    return `<svg viewBox="0 0 ${width} ${height}" width="100%" class="chart nodata"><text x="${width / 2 - 40}" y="${height / 2}">no data yet</text>` +
      thresholds.map((t) => `<text x="${left}" y="${height - 6}">${esc(t.name)} ${fmt(t.value)}</text>`).join("") + `</svg>`;
  }
  let lo = Math.min(...values), hi = Math.max(...values);
  if (lo === hi) { lo -= Math.abs(lo) * 0.1 || 1; hi += Math.abs(hi) * 0.1 || 1; }
  const pad = (hi - lo) * 0.08; lo -= pad; hi += pad;
  const x = (t) => left + ((t - window.start) / Math.max(1, window.end - window.start)) * (width - left - right);
  const y = (v) => top + (1 - (v - lo) / (hi - lo)) * (height - top - bottom);
  let svg = `<svg viewBox="0 0 ${width} ${height}" width="100%" class="chart" role="img">`;
  svg += `<rect x="${left}" y="${top}" width="${width - left - right}" height="${height - top - bottom}" fill="#fcfcfd" stroke="#eaecf0"/>`;
  for (const v of [hi - pad, (hi + lo) / 2, lo + pad]) {
    svg += `<text x="2" y="${y(v) + 4}">${fmt(v)}</text>`;
  }
  svg += `<text x="${left}" y="${height - 6}">${new Date(window.start * 1000).toLocaleTimeString()}</text>`;
  svg += `<text x="${width - right - 60}" y="${height - 6}">${new Date(window.end * 1000).toLocaleTimeString()}</text>`;
  for (const t of thresholds) {
    svg += `<line class="threshold" data-bound="${esc(t.name)}" x1="${left}" x2="${width - right}" y1="${y(t.value)}" y2="${y(t.value)}" stroke="#c4320a" stroke-dasharray="5 4"><title>${esc(t.name)} ${fmt(t.value)}</title></line>`;
    svg += `<text x="${width - right - 3}" y="${y(t.value) - 3}" text-anchor="end" style="fill:#c4320a">${esc(t.name)} ${fmt(t.value)}</text>`;
  }
  series.forEach((s, i) => {
    const color = options.colors ? options.colors[i] : COLORS[i % COLORS.length];
    const d = s.points.map((p, j) => `${j ? "L" : "M"}${x(p[0]).toFixed(1)},${y(p[1]).toFixed(1)}`).join("");
    svg += `<path class="series" data-series="${esc(s.name)}" d="${d}" fill="none" stroke="${color}" stroke-width="1.6"><title>${esc(s.name)}</title></path>`;
  });
  return svg + "</svg>";
}

function legend(series) {
  return `<div class="legend">` + series.map((s, i) => {
    const last = s.points.length ? s.points[s.points.length - 1][1] : null;
    return `<span><i style="background:${COLORS[i % COLORS.length]}"></i>${esc(s.name)} ${fmt(last)}</span>`;
  }).join("") + `</div>`;
}

function thresholdsOf(c) {
  const out = [];
  if (c.max !== null) out.push({ name: c.segmentsBy ? "max spread" : "max", value: c.max });
  if (c.min !== null) out.push({ name: "min", value: c.min });
  return out;
}

function segmentBars(series) {
  const latest = series.map((s) => ({ name: s.name, v: s.points.length ? s.points[s.points.length - 1][1] : null }));
  const hi = Math.max(...latest.map((l) => Math.abs(l.v ?? 0)), 1e-12);
  const width = 420, row = 18;
  let svg = `<svg viewBox="0 0 ${width} ${latest.length * row + 4}" width="100%" class="segments" role="img" aria-label="segments side by side">`;
  latest.forEach((l, i) => {
    const w = ((Math.abs(l.v ?? 0)) / hi) * (width - 170);
    svg += `<text x="2" y="${i * row + 13}">${esc(l.name)}</text><rect x="110" y="${i * row + 3}" width="${w}" height="12" fill="${COLORS[i % COLORS.length]}"/>` +
      `<text x="${116 + w}" y="${i * row + 13}">${fmt(l.v)}</text>`;
  });
  return svg + "</svg>";
}

function chartCard(c, window) {
  let html = `<div class="card rule" data-rule="${esc(c.rule)}"><h3>${esc(c.metric)} <span class="muted">${esc(c.kind)} · ${esc(c.rule)} · ${esc(c.threshold)}${c.for ? " for " + duration(c.for) : ""}</span></h3>`;
  if (c.error) return html + `<p class="error">${esc(c.error)}</p></div>`;
  const judged = c.derived !== null;
  html += chartSvg(c.series, judged ? [] : thresholdsOf(c), window) + legend(c.series);
  if (c.segmentsBy && c.series.length) html += `<h3>segments by ${esc(c.segmentsBy)}, side by side</h3>` + segmentBars(c.series);
  if (judged) {
    html += `<h3>${esc(c.derived.name)} (judged)</h3>` + chartSvg([c.derived], thresholdsOf(c), window) + legend([c.derived]);
  }
  return html + `<details><summary class="muted">query</summary>` +
    Object.entries(c.queries).map(([b, q]) => `<p><b>${esc(b)}</b> <code>${esc(q)}</code></p>`).join("") + `</details></div>`;
}

function approvalsCard(a, user) {
  if (!a) return "";
  let html = `<div class="card" id="approvals"><h2>Approval needed before ${esc(a.phase)}</h2>`;
  html += `<p class="muted">Each group must approve; you act as <b>${esc(user)}</b> with your own credentials.</p>`;
  for (const g of a.given) html += `<p class="Pass">✓ ${esc(g.group)} approved${g.by && g.by !== g.group ? " by " + esc(g.by) : ""}</p>`;
  for (const r of a.rejections || []) html += `<p class="Fail">✗ ${esc(r.group || r.by)} rejected${r.reason ? ": " + esc(r.reason) : ""}</p>`;
  for (const g of a.missing) {
    html += `<div class="approval-row" data-group="${esc(g)}"><b>${esc(g)}</b>` +
      `<input type="text" placeholder="reason (optional)" data-reason="${esc(g)}">` +
      `<button class="approve" data-action="approve" data-phase="${esc(a.phase)}" data-group="${esc(g)}">Approve as ${esc(g)}</button>` +
      `<button class="reject" data-action="reject" data-phase="${esc(a.phase)}" data-group="${esc(g)}">Reject</button></div>`;
  }
  return html + `<p id="control-result" class="muted"></p></div>`;
}

function checkpointTable(checkpoints) {
  if (!checkpoints.length) return `<div class="card"><h2>Checkpoints</h2><p class="muted">none judged yet</p></div>`;
  let html = `<div class="card"><h2>Checkpoints</h2><table id="checkpoints"><thead><tr><th>phase @ offset</th><th>verdict</th><th>rule</th><th>metric</th><th>value</th><th>threshold</th><th>verdict</th><th>reason</th></tr></thead><tbody>`;
  for (const c of checkpoints.slice().reverse()) {
    const results = c.results || [{}];
    results.forEach((r, i) => {
      html += "<tr>" + (i ? "<td></td><td></td>" : `<td>${esc(c.phase)} @ ${esc(c.offset)}</td><td class="verdict ${esc(c.verdict)}">${esc(c.verdict)}</td>`) +
        `<td>${esc(r.rule)}</td><td>${esc(r.metric)}</td><td>${r.rule ? fmt(r.value) : ""}</td><td>${esc(r.threshold)}</td>` +
        `<td class="verdict ${esc(r.verdict)}">${esc(r.verdict)}</td><td>${esc(r.reason)}</td></tr>`;
    });
  }
  return html + "</tbody></table></div>";
}

function renderDetail(d, user) {
  const root = document.getElementById("detail");
  root.hidden = false;
  const t = d.timeline;
  put("d-head", `<div class="card"><h2>${esc(d.namespace)}/${esc(d.name)} <span class="muted">${esc(d.revision)}</span> ` +
    `<span class="state ${esc(d.state)}" id="detail-state">${esc(d.state)}</span></h2>` +
    `<p id="detail-message">${esc(d.message)}</p><p>canary weight <b id="detail-weight">${d.weight ?? "-"}%</b>` +
    ` · phase <b id="detail-phase">${esc(d.phase || "-")}</b> · checkpoints ${esc(d.progress || "-")}</p>` +
    (d.problems.length ? `<p class="error">${d.problems.map(esc).join("<br>")}</p>` : "") + `</div>`, root);
  put("d-times", `<div class="card times"><div>phase elapsed<b id="phase-elapsed">${duration(t.phase.elapsed)}</b></div>` +
    `<div>phase remaining<b id="phase-remaining">${duration(t.phase.remaining)}</b></div>` +
    `<div>release elapsed<b>${duration(t.release.elapsed)}</b></div>` +
    `<div>release remaining<b id="release-remaining">${duration(t.release.remaining)}</b> <span class="muted">planned, without waits</span></div></div>`, root);
  put("d-timeline", `<div class="card"><h2>Phases</h2>${timelineSvg(t)}</div>`, root);
  put("d-approvals", approvalsCard(d.approvals, user), root);
  const alerts = d.alertsError ? `<p class="error">${esc(d.alertsError)}</p>` : d.alerts.length
    ? "<ul>" + d.alerts.map((a) => `<li class="Fail">${esc(a.alertname)} ${esc(Object.entries(a).filter(([k]) => k !== "alertname" && k !== "__name__").map(([k, v]) => `${k}=${v}`).join(" "))}</li>`).join("") + "</ul>"
    : `<p class="Pass">no critical alert firing</p>`;
  const decision = d.decision ? `<p><b class="${esc(d.decision.action)}">${esc(d.decision.action)}</b> ${esc(d.decision.reason)} <span class="muted">${esc(d.decision.time)}</span></p>` : `<p class="muted">no decision yet</p>`;
  put("d-status", `<div class="grid"><div class="card" id="alerts"><h2>Critical alerts</h2>${alerts}<p class="muted"><code>${esc(d.alertsQuery)}</code></p></div>` +
    `<div class="card"><h2>Decision</h2>${decision}</div></div>`, root);
  put("d-charts", `<h2>Rules of ${esc(d.phase || (t.phases[0] || {}).name || "")} <span class="muted">live, Prometheus ${esc(d.prometheus || "not set")}</span></h2>` +
    `<div class="grid">${d.charts.map((c) => chartCard(c, d.window)).join("")}</div>`, root);
  put("d-checkpoints", checkpointTable(d.checkpoints), root);
}

let listUser = "";
let busy = false;
async function refresh() {
  if (busy) return; // a slow answer is not overtaken by the next tick
  busy = true;
  try {
    const list = await api("/api/rollouts");
    listUser = list.user;
    renderList(list);
    document.getElementById("list-error").hidden = true;
    const chosen = selected();
    const listed = chosen && list.rollouts.some((r) => r.namespace === chosen.ns && r.name === chosen.name);
    if (chosen && !listed) {
      location.hash = ""; // deleted, or not in this dashboard's namespaces: back to the list
    } else if (chosen) {
      renderDetail(await api(`/api/rollouts/${encodeURIComponent(chosen.ns)}/${encodeURIComponent(chosen.name)}`), listUser);
    } else {
      document.getElementById("detail").hidden = true;
    }
    document.getElementById("live").className = "";
    document.body.dataset.updates = String(++updates);
  } catch (error) {
    const node = document.getElementById("list-error");
    node.textContent = String(error.message || error);
    node.hidden = false;
    document.getElementById("live").className = "stale";
  } finally {
    busy = false;
  }
}

document.querySelector("#rollouts tbody").addEventListener("click", (event) => {
  const row = event.target.closest("tr[data-key]");
  if (row) location.hash = row.dataset.key;
});

document.getElementById("detail").addEventListener("click", async (event) => {
  const button = event.target.closest("button[data-action]");
  const chosen = selected();
  if (!button || !chosen) return;
  const reason = document.querySelector(`input[data-reason="${CSS.escape(button.dataset.group)}"]`);
  const out = document.getElementById("control-result");
  button.disabled = true;
  try {
    const done = await api(`/api/rollouts/${encodeURIComponent(chosen.ns)}/${encodeURIComponent(chosen.name)}/control`, {
      method: "POST",
      headers: { "Content-Type": "application/json", "X-Phasegate-Token": TOKEN },
      body: JSON.stringify({ action: button.dataset.action, phase: button.dataset.phase, group: button.dataset.group, reason: reason ? reason.value : "" }),
    });
    out.className = "Pass";
    out.textContent = `${button.dataset.action} for ${button.dataset.group} requested as ${done.by}; the operator applies it at its next evaluation`;
  } catch (error) {
    out.className = "error";
    out.textContent = String(error.message || error);
    button.disabled = false;
  }
});

window.addEventListener("hashchange", () => {
  for (const key of Object.keys(sections)) if (key !== "list") delete sections[key];
  document.getElementById("detail").innerHTML = "";
  refresh();
});
refresh();
setInterval(refresh, REFRESH * 1000);
