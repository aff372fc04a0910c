// Saturn dashboard: state, polling and events. Polls the agent about once a second; a
// failed request keeps the last good data on screen and shows "reconnecting…", so the
// page rides through a leader change or an agent restart without going blank.
"use strict";
(function (S) {
  const $ = (id) => document.getElementById(id);
  const POLL_MS = 1000;
  const HIDDEN_POLL_MS = 5000; // a background tab needs no second-by-second updates
  const LOG_TAIL = 200;

  const state = {
    status: null, jobs: null, plan: null, // last good answers
    lastOk: 0, failing: false, unauthorized: false, authError: "", error: "",
    filter: "all", search: "",
    selected: null, detail: null, logs: null,
  };
  S.state = state;
  let gantt = null; // last chart, to move its now marker without redrawing

  /** Derived lookups every view needs, computed once per render. */
  function context() {
    const nowMs = S.api.now();
    const jobsById = new Map((state.jobs || []).map((j) => [j.id, j]));
    const planByJob = new Map(((state.plan && state.plan.assignments) || []).map((a) => [a.job, a]));
    const madeAt = state.plan ? S.toMs(state.plan.made_at_ms ?? state.plan.made_at) : null;
    const nowS = madeAt == null ? null : (nowMs - madeAt) / 1000;
    return { nowMs, nowS, jobsById, planByJob, selected: state.selected };
  }

  function renderPlan(ctx) {
    const wrap = $("gantt");
    $("plan-summary").innerHTML = S.views.planSummary(state.plan, ctx.nowMs);
    $("plan-legend").hidden = !state.plan;
    if (!state.plan) {
      gantt = null;
      const text = state.status ? "No plan yet: the leader makes one once jobs are profiled." : "Waiting for the agent…";
      if (wrap.textContent !== text) wrap.innerHTML = `<p class="empty">${text}</p>`;
      return;
    }
    gantt = S.gantt(state.plan, {
      agents: (state.status && state.status.agents) || [], jobsById: ctx.jobsById,
      nowS: ctx.nowS, width: wrap.clientWidth - 2, selected: state.selected,
    });
    if (wrap._svg !== gantt.svg) {
      wrap.innerHTML = gantt.svg || `<p class="empty">The plan has no assignments.</p>`;
      wrap._svg = gantt.svg;
    }
    moveNowMarker(ctx.nowS);
  }

  function moveNowMarker(nowS) {
    const marker = $("gantt").querySelector(".now-marker");
    if (!marker || !gantt) return;
    const x = gantt.nowX(nowS);
    marker.style.display = x == null ? "none" : "";
    if (x != null) marker.setAttribute("transform", `translate(${x.toFixed(1)},0)`);
  }

  function render() {
    const ctx = context();
    S.views.header(state);
    S.views.mesh(state, ctx);
    renderPlan(ctx);
    S.views.jobs(state, ctx);
    S.views.detail(state, ctx);
  }
  S.render = render;

  // --- polling --------------------------------------------------------------------

  async function poll() {
    const [status, jobs, plan] = await Promise.allSettled([S.api.status(), S.api.jobs(), S.api.plan()]);
    const failed = [status, jobs, plan].filter((r) => r.status === "rejected").map((r) => r.reason);
    if (status.status === "fulfilled") state.status = status.value;
    if (jobs.status === "fulfilled") state.jobs = jobs.value;
    if (plan.status === "fulfilled") state.plan = plan.value;
    state.failing = failed.length > 0;
    state.unauthorized = failed.some((e) => e instanceof S.HttpError && e.status === 401);
    state.error = failed.length ? String(failed[0].message || failed[0]) : "";
    if (!failed.length) state.lastOk = Date.now();
  }

  async function pollDetail() {
    const id = state.selected;
    if (!id) return;
    const [job, logs] = await Promise.allSettled([S.api.job(id), S.api.logs(id, LOG_TAIL)]);
    if (state.selected !== id) return; // the reader moved on meanwhile
    if (job.status === "fulfilled") state.detail = job.value;
    if (logs.status === "fulfilled") state.logs = logs.value;
    else if (state.logs == null) state.logs = `(log unavailable: ${logs.reason.message || logs.reason})`;
  }

  /** One loop: chained timeouts, never overlapping requests, whatever the latency. */
  async function loop() {
    try {
      await Promise.all([poll(), pollDetail()]);
      render();
    } catch (err) {
      // A bug in a view must not stop the polling; show it and try again next tick.
      state.failing = true;
      state.error = String(err && err.message || err);
      console.error(err);
    }
    setTimeout(loop, document.hidden ? HIDDEN_POLL_MS : POLL_MS);
  }

  // --- selection and events -------------------------------------------------------

  function select(id) {
    const previous = state.selected;
    state.selected = id || null;
    if (state.selected !== previous) { state.detail = null; state.logs = null; }
    history.replaceState(null, "", id ? `#job=${encodeURIComponent(id)}` : location.pathname + location.search);
    render();
    if (id && id !== previous) {
      pollDetail().then(render, () => {});
      $("detail-close").focus({ preventScroll: true });
    }
  }
  S.select = select;

  function onJobClick(event) {
    const target = event.target.closest("[data-job]");
    if (target) select(target.dataset.job);
  }

  function showTooltip(event) {
    const tip = $("tooltip");
    const bar = event.target.closest(".gantt-bar");
    if (!bar) { tip.hidden = true; return; }
    const ctx = context();
    const asg = ctx.planByJob.get(bar.dataset.job);
    const job = ctx.jobsById.get(bar.dataset.job);
    if (!asg) { tip.hidden = true; return; }
    tip.innerHTML = `<strong>${S.esc((job && job.name) || asg.job)}</strong> <span class="muted">${S.esc(asg.job)}</span><br>` +
      `${S.esc(asg.technique || "?")} on <span class="mono">${S.esc(S.fmtPlacement(asg.placement))}</span><br>` +
      `${S.fmtTick(asg.start_s)} → ${S.fmtTick(asg.end_s)} · ${S.fmtDuration(asg.end_s - asg.start_s)} · ${S.esc(asg.state || (job && job.state) || "")}`;
    tip.hidden = false;
    const x = Math.min(event.clientX + 14, window.innerWidth - tip.offsetWidth - 8);
    const y = event.clientY + 16 + tip.offsetHeight > window.innerHeight ? event.clientY - tip.offsetHeight - 10 : event.clientY + 16;
    tip.style.left = `${x}px`;
    tip.style.top = `${y}px`;
  }

  function bindEvents() {
    $("mesh").addEventListener("click", onJobClick);
    $("gantt").addEventListener("click", onJobClick);
    $("gantt").addEventListener("mousemove", showTooltip);
    $("gantt").addEventListener("mouseleave", () => { $("tooltip").hidden = true; });
    $("jobs-body").addEventListener("click", onJobClick);
    $("jobs-body").addEventListener("keydown", (e) => {
      if (e.key === "Enter" || e.key === " ") { e.preventDefault(); onJobClick(e); }
    });
    $("filters").addEventListener("click", (e) => {
      const chip = e.target.closest("[data-filter]");
      if (chip) { state.filter = chip.dataset.filter; render(); }
    });
    $("search").addEventListener("input", (e) => { state.search = e.target.value; render(); });
    $("detail-close").addEventListener("click", () => select(null));
    document.addEventListener("keydown", (e) => {
      if (e.key === "Escape" && state.selected) select(null);
    });
    $("auth").addEventListener("submit", (e) => {
      e.preventDefault();
      const token = $("token").value.trim();
      $("token").value = "";
      login(token);
    });
    // Redraw the Gantt at the new width; the now marker alone moves every tick.
    new ResizeObserver(() => { if (state.plan) renderPlan(context()); }).observe($("gantt"));
    setInterval(() => { if (gantt) moveNowMarker(context().nowS); }, 1000);
    document.addEventListener("visibilitychange", () => { if (!document.hidden) render(); });
  }

  /** Sends the token once; on success the session cookie authorises the polling. */
  async function login(token) {
    const why = token ? await S.api.login(token) : "no token given";
    state.authError = why ? `Token refused: ${why}` : "";
    state.unauthorized = !!why;
    if (!why) await poll();
    render();
  }

  async function start() {
    // `#token=...` (a fragment never reaches the server, nor its logs) logs in once and
    // is removed from the address bar; `#job=ID` opens a job.
    const hash = new URLSearchParams(location.hash.slice(1));
    if (hash.has("job")) state.selected = hash.get("job");
    if (S.api.fixtures) document.body.classList.add("fixtures");
    bindEvents();
    const token = hash.get("token");
    if (token != null) {
      history.replaceState(null, "", location.pathname + location.search + (state.selected ? `#job=${encodeURIComponent(state.selected)}` : ""));
      await login(token.trim());
    }
    render();
    loop();
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})(window.Saturn = window.Saturn || {});
