// Saturn dashboard: the views. Each function takes the whole dashboard state and updates
// its part of the page; none of them fetches anything. Server text is always escaped.
"use strict";
(function (S) {
  const esc = S.esc;
  const $ = (id) => document.getElementById(id);
  const ACTIVE = new Set(["queued", "profiling", "scheduled", "running"]);
  S.STATES = ["queued", "profiling", "scheduled", "running", "completed", "failed", "cancelled", "stopped"];
  S.ACTIVE = ACTIVE;
  const views = {};
  S.views = views;

  const badge = (state) => `<span class="badge s-${esc(state)}">${esc(state)}</span>`;
  const swatch = (id) => `<span class="swatch" style="background:${S.jobColor(id)}" aria-hidden="true"></span>`;

  /** Seconds left for a job: the agent's eta_s, else the plan's end for it. */
  S.etaSeconds = function (job, ctx) {
    if (job.eta_s != null && Number.isFinite(job.eta_s)) return { s: job.eta_s, planned: false };
    const asg = ctx.planByJob.get(job.id);
    if (asg && ACTIVE.has(job.state) && ctx.nowS != null) {
      return { s: Math.max(0, asg.end_s - ctx.nowS), planned: true };
    }
    return null;
  };

  function metricsText(metrics) {
    return Object.entries(metrics || {})
      .slice(0, 3)
      .map(([k, v]) => `<span class="metric"><span class="metric-name">${esc(k)}</span> ${S.fmtNumber(v)}</span>`)
      .join(" ");
  }

  // --- header ---------------------------------------------------------------------

  views.header = function (state) {
    const st = state.status;
    const name = (st && (st.cluster || st.cluster_name)) || location.host || "local";
    $("cluster-name").textContent = st && st.answered_by ? `${name} · via ${st.answered_by}` : name;
    document.title = `Saturn · ${name}`;
    const items = [];
    if (st) {
      const agents = st.agents || [];
      const gpus = agents.flatMap((a) => a.gpus || []);
      const busy = gpus.filter((g) => g.busy_job).length;
      items.push(["Leader", st.leader ? esc(st.leader) : `<span class="warn">none</span>`],
        ["Term", esc(st.term ?? "—")],
        ["Agents", `${agents.filter((a) => a.healthy).length}/${agents.length} healthy`],
        ["GPUs busy", `${busy}/${gpus.length}`]);
    }
    if (state.jobs) {
      const count = (s) => state.jobs.filter((j) => j.state === s).length;
      items.push(["Jobs", `${count("running")} running · ${state.jobs.filter((j) => ACTIVE.has(j.state) && j.state !== "running").length} waiting`]);
    }
    const html = items.map(([k, v]) => `<div><dt>${k}</dt><dd>${v}</dd></div>`).join("");
    if ($("summary")._html !== html) $("summary").innerHTML = $("summary")._html = html;
    views.connection(state);
  };

  views.connection = function (state) {
    const el = $("conn");
    const age = state.lastOk ? Math.round((Date.now() - state.lastOk) / 1000) : null;
    let cls, text;
    if (state.unauthorized) { cls = "bad"; text = state.authError ? "wrong token" : "API token needed"; }
    else if (!state.failing) { cls = state.lastOk ? "ok" : "wait"; text = state.lastOk ? "live" : "connecting…"; }
    else { cls = "wait"; text = age == null ? "connecting…" : `reconnecting… (last update ${S.fmtDuration(age)} ago)`; }
    el.className = `conn ${cls}`;
    el.title = state.error || "";
    if (el.textContent !== text) el.textContent = text;
    document.body.classList.toggle("stale", !!state.failing && !!state.lastOk);
    $("auth").hidden = !state.unauthorized;
    const why = $("auth-error");
    if (why.textContent !== state.authError) why.textContent = state.authError;
    why.hidden = !state.authError;
  };

  // --- mesh -----------------------------------------------------------------------

  function gpuTile(gpu, ctx, showModel) {
    const job = gpu.busy_job ? ctx.jobsById.get(gpu.busy_job) : null;
    const util = Number.isFinite(gpu.utilization_pct) ? Math.round(gpu.utilization_pct) : null;
    const mem = Number.isFinite(gpu.memory_mib) ? `${Math.round(gpu.memory_mib / 1024)} GiB` : "";
    const jobName = gpu.busy_job ? (job && job.name) || gpu.busy_job : "idle";
    const title = `GPU ${gpu.index}: ${gpu.model || "?"} ${mem}` +
      (gpu.busy_job ? ` — ${jobName} (${gpu.busy_job})` : " — idle") + (util != null ? ` — ${util}% utilised` : "");
    const busy = gpu.busy_job
      ? ` busy" type="button" data-job="${esc(gpu.busy_job)}" style="--job:${S.jobColor(gpu.busy_job)}"` : `"`;
    const selected = gpu.busy_job && gpu.busy_job === ctx.selected ? " selected" : "";
    const tag = gpu.busy_job ? "button" : "div";
    return `<${tag} class="gpu-tile${selected}${busy} title="${esc(title)}">` +
      `<span class="gpu-top"><span class="gpu-idx">${esc(gpu.index)}</span><span class="gpu-job">${esc(jobName)}</span></span>` +
      (showModel ? `<span class="gpu-model">${esc(gpu.model || "")}</span>` : "") +
      `<span class="gpu-bottom"><span class="util" aria-hidden="true"><span style="width:${util ?? 0}%"></span></span>` +
      `<span class="gpu-meta">${util != null ? `${util}%` : ""}</span></span></${tag}>`;
  }

  /** "8 × A100-80GB" (or "4 × A100-80GB, 2 × V100-16GB"). */
  function gpuSummary(gpus) {
    const counts = new Map();
    for (const g of gpus) counts.set(g.model || "GPU", (counts.get(g.model || "GPU") || 0) + 1);
    return [...counts].map(([model, n]) => `${n} × ${model}`).join(", ");
  }

  views.mesh = function (state, ctx) {
    const st = state.status;
    const agents = (st && st.agents) || [];
    $("mesh-count").textContent = st ? `${agents.length} agent${agents.length === 1 ? "" : "s"}` : "";
    if (st && agents.length === 0) {
      $("mesh").innerHTML = `<p class="empty">No agents reported yet.</p>`;
      return;
    }
    if ($("mesh").querySelector(".empty")) $("mesh").innerHTML = "";
    S.patchList($("mesh"), agents, (a) => {
      const leader = st.leader === a.name;
      const addrs = (a.addrs || []).join("\n");
      const mixed = new Set((a.gpus || []).map((g) => g.model)).size > 1;
      const gpus = (a.gpus || []).map((g) => gpuTile(g, ctx, mixed)).join("");
      const html = `<header class="agent-head">` +
        `<span class="health ${a.healthy ? "up" : "down"}" title="${a.healthy ? "healthy" : "unhealthy"}"></span>` +
        `<h3>${esc(a.name)}</h3>` +
        (leader ? `<span class="pill leader">leader</span>` : "") +
        `<span class="pill role-${esc(a.role)}">${esc(a.role || "?")}</span>` +
        (a.healthy ? "" : `<span class="pill down">unreachable</span>`) + `</header>` +
        `<div class="agent-sub"><span class="addr" title="${esc(addrs)}">${esc((a.addrs || [])[0] || a.peer_id || "")}</span>` +
        `<span class="gpu-summary">${esc(gpuSummary(a.gpus || []))}</span></div>` +
        (gpus ? `<div class="gpus">${gpus}</div>` : `<div class="no-gpus">no GPUs — votes and plans only</div>`);
      const cls = `agent-card${a.healthy ? "" : " unhealthy"}${leader ? " is-leader" : ""}`;
      return { key: a.name, html, attrs: { class: cls, "data-agent": a.name, "aria-label": `agent ${a.name}` } };
    }, () => document.createElement("article"));
  };

  // --- plan -----------------------------------------------------------------------

  views.planSummary = function (plan, nowMs) {
    if (!plan) return "";
    const parts = [];
    const x = plan.makespan_s, y = plan.baseline_makespan_s;
    let head = `predicted makespan <strong>${S.fmtDuration(x)}</strong>`;
    if (Number.isFinite(y) && y > 0) {
      const gain = ((y - x) / y) * 100;
      const sign = gain >= 0 ? "−" : "+";
      head += ` vs max-heuristic <strong>${S.fmtDuration(y)}</strong> ` +
        `<span class="${gain >= 0 ? "gain" : "loss"}">(${sign}${Math.abs(gain).toFixed(1)}%)</span>`;
    }
    parts.push(head);
    if (Number.isFinite(plan.lower_bound_s)) parts.push(`lower bound ${S.fmtDuration(plan.lower_bound_s)}`);
    if (plan.solver) parts.push(`${esc(plan.solver)}${Number.isFinite(plan.solve_ms) ? ` in ${plan.solve_ms} ms` : ""}`);
    if (plan.epoch != null) parts.push(`epoch ${esc(plan.epoch)}`);
    const made = plan.made_at_ms ?? plan.made_at;
    if (made != null) parts.push(`<span title="${esc(S.fmtTime(made))}">made ${S.fmtAgo(made, nowMs)}</span>`);
    return parts.join(" · ");
  };

  // --- jobs table -----------------------------------------------------------------

  views.filters = function (state) {
    const jobs = state.jobs || [];
    const counts = { all: jobs.length, active: jobs.filter((j) => ACTIVE.has(j.state)).length };
    for (const s of S.STATES) counts[s] = jobs.filter((j) => j.state === s).length;
    const html = ["all", "active", ...S.STATES].map((f) =>
      `<button type="button" class="chip${f === state.filter ? " on" : ""}${counts[f] ? "" : " zero"}" ` +
      `data-filter="${f}" aria-pressed="${f === state.filter}">${f} <span class="n">${counts[f]}</span></button>`).join("");
    if ($("filters")._html !== html) $("filters").innerHTML = $("filters")._html = html;
  };

  function progressCell(job) {
    const pct = job.steps > 0 ? Math.min(100, (100 * (job.steps_done || 0)) / job.steps) : 0;
    return `<div class="progress" role="progressbar" aria-valuemin="0" aria-valuemax="100" aria-valuenow="${pct.toFixed(0)}">` +
      `<div class="fill s-${esc(job.state)}" style="width:${pct.toFixed(1)}%"></div></div>` +
      `<span class="progress-text">${(job.steps_done || 0).toLocaleString()} / ${(job.steps || 0).toLocaleString()}` +
      ` <span class="pct">${pct.toFixed(0)}%</span></span>`;
  }

  /** Training attempts: `attempt` (SATURN_ATTEMPT) counts trial runs too. */
  function trainingAttempts(j) {
    if (j.training_attempts != null) return j.training_attempts;
    return j.attempt != null ? Math.max(0, j.attempt - (j.trials || 0)) : "—";
  }

  views.jobs = function (state, ctx) {
    views.filters(state);
    const q = state.search.trim().toLowerCase();
    const shown = (state.jobs || []).filter((j) =>
      (state.filter === "all" || (state.filter === "active" ? ACTIVE.has(j.state) : j.state === state.filter)) &&
      (!q || `${j.id} ${j.name} ${j.technique || ""}`.toLowerCase().includes(q)));
    S.patchList($("jobs-body"), shown, (j) => {
      const eta = S.etaSeconds(j, ctx);
      const etaText = eta ? `${eta.planned ? "~" : ""}${S.fmtDuration(eta.s)}` : "—";
      const restarts = j.restarts ? ` <span class="muted" title="restarts">↻${esc(j.restarts)}</span>` : "";
      const html =
        `<td>${badge(j.state)}</td>` +
        `<td><div class="name">${swatch(j.id)}<span class="job-name">${esc(j.name || j.id)}</span><span class="job-id">${esc(j.id)}</span></div></td>` +
        `<td>${esc(j.technique || "—")}</td>` +
        `<td class="num">${S.gpuCount(j.placement) || "—"}</td>` +
        `<td class="mono">${esc(S.fmtPlacement(j.placement)) || "—"}</td>` +
        `<td class="progress-cell">${progressCell(j)}</td>` +
        `<td class="num" title="${eta && eta.planned ? "from the plan" : ""}">${etaText}</td>` +
        `<td class="num attempts" title="training attempts · trial runs (profiling)">${esc(trainingAttempts(j))}${restarts} <span class="muted trials">· ${esc(j.trials ?? 0)} trial${j.trials === 1 ? "" : "s"}</span></td>` +
        `<td class="metrics">${metricsText(j.metrics) || (j.error ? `<span class="err-text" title="${esc(j.error)}">${esc(j.error)}</span>` : "—")}</td>`;
      const cls = `job-row${j.id === state.selected ? " selected" : ""}`;
      return { key: j.id, html, attrs: { class: cls, "data-job": j.id, tabindex: "0", "aria-selected": String(j.id === state.selected) } };
    }, () => document.createElement("tr"));
    const empty = !state.jobs ? "Loading jobs…" : state.jobs.length === 0
      ? "No jobs yet. Submit some with saturn job run FILE.toml." : shown.length === 0 ? "No job matches this filter." : "";
    $("jobs-empty").textContent = empty;
    $("jobs-empty").hidden = !empty;
  };

  // --- job detail -----------------------------------------------------------------

  views.detail = function (state, ctx) {
    const panel = $("detail");
    const job = state.selected && (state.detail && state.detail.id === state.selected
      ? { ...ctx.jobsById.get(state.selected), ...state.detail } : ctx.jobsById.get(state.selected));
    panel.hidden = !state.selected;
    document.body.classList.toggle("detail-open", !!state.selected);
    if (!state.selected) return;
    if (!job) {
      $("detail-title").textContent = state.selected;
      $("detail-body").innerHTML = `<p class="empty">Loading ${esc(state.selected)}…</p>`;
      return;
    }
    $("detail-title").innerHTML = `${swatch(job.id)}${esc(job.name || job.id)}`;
    const eta = S.etaSeconds(job, ctx);
    const kv = [
      ["State", badge(job.state)], ["Id", `<code>${esc(job.id)}</code>`],
      ["Technique", esc(job.technique || "—")], ["Placement", `<span class="mono">${esc(S.fmtPlacement(job.placement)) || "—"}</span>`],
      ["Progress", progressCell(job)], ["ETA", eta ? `${eta.planned ? "~" : ""}${S.fmtDuration(eta.s)}${eta.planned ? " (plan)" : ""}` : "—"],
      ["Attempts", `${esc(trainingAttempts(job))} training${job.restarts != null ? ` · ${esc(job.restarts)} restart${job.restarts === 1 ? "" : "s"}` : ""} · ${esc(job.trials ?? 0)} trial run${job.trials === 1 ? "" : "s"}`],
      ["Submitted", timeCell(job.submitted_at, ctx)], ["Started", timeCell(job.started_at, ctx)],
      ["Finished", timeCell(job.finished_at, ctx)], ["Exit code", esc(job.exit_code ?? "—")],
    ];
    const ckpt = job.checkpoint;
    if (ckpt) {
      const copies = ckpt.copies && ckpt.copies.length ? ckpt.copies.map(esc).join(", ") : "none verified";
      const short = ckpt.copies && ckpt.copies.length < ckpt.copies_wanted ? ` <span class="muted">(${esc(ckpt.copies.length)} of ${esc(ckpt.copies_wanted)} wanted)</span>` : "";
      kv.push(["Checkpoint", `step ${esc(ckpt.step)} · ${S.fmtBytes(ckpt.size)} · <code title="SHA-256 ${esc(ckpt.digest)}">${esc(String(ckpt.digest).slice(0, 12))}</code>`]);
      kv.push(["Copies on", `${copies}${short}`]);
      kv.push(["Replicated", `${S.fmtBytes(ckpt.bytes_replicated)} <span class="muted">· steps kept ${esc((ckpt.steps || []).join(", "))}</span>`]);
    }
    for (const [k, v] of Object.entries(job.metrics || {})) kv.push([esc(k), S.fmtNumber(v)]);
    const events = (job.events || []).map((e) => `<li><span class="muted">${esc(S.fmtTime(S.toMs(e.at)))}</span> ${esc(e.text)}</li>`).join("");
    const history = job.metric_history || {};
    const width = Math.min(560, $("detail").clientWidth - 48);
    const charts = Object.entries(history).filter(([, pts]) => Array.isArray(pts) && pts.length)
      .map(([name, pts]) => `<figure class="chart"><figcaption>${esc(name)} <span class="muted">vs step</span></figcaption>${S.lineChart(name, pts, width)}</figure>`)
      .join("");
    const html = `<dl class="kv">${kv.map(([k, v]) => `<div><dt>${k}</dt><dd>${v}</dd></div>`).join("")}</dl>` +
      (job.error ? `<div class="error-box" role="alert">${esc(job.error)}</div>` : "") +
      (events ? `<h3>Events</h3><ul class="events">${events}</ul>` : "") +
      (charts ? `<h3>Metrics</h3>${charts}` : "");
    const body = $("detail-body");
    if (body._html !== html) body.innerHTML = body._html = html;
    views.logs(state);
  };

  function timeCell(t, ctx) {
    const ms = S.toMs(t);
    return ms == null ? "—" : `<span title="${esc(S.fmtTime(ms))}">${S.fmtAgo(ms, ctx.nowMs)}</span>`;
  }

  /** The log tail keeps following the end unless the reader scrolled up. */
  views.logs = function (state) {
    const pre = $("detail-log");
    const text = state.logs == null ? "Loading log…" : state.logs || "(no output yet)";
    if (pre.textContent === text) return;
    const atBottom = pre.scrollHeight - pre.scrollTop - pre.clientHeight < 24;
    pre.textContent = text;
    if (atBottom) pre.scrollTop = pre.scrollHeight;
  };
})(window.Saturn = window.Saturn || {});
