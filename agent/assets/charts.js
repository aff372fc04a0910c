// Saturn dashboard: SVG charts built as strings — the plan's Gantt chart and the metric
// line charts. Charts are drawn at the container's pixel width (no viewBox scaling) so
// text stays crisp and readable at any window size.
"use strict";
(function (S) {
  const esc = S.esc;
  const CHAR_W = 6.4; // average width of an 11px system-font character, for truncation

  function fit(text, px) {
    const max = Math.floor(px / CHAR_W);
    if (max < 3) return "";
    return text.length <= max ? text : text.slice(0, max - 1) + "…";
  }

  function fmtStep(v) {
    if (Math.abs(v) >= 1e6) return `${Number((v / 1e6).toPrecision(3))}M`;
    if (Math.abs(v) >= 1e3) return `${Number((v / 1e3).toPrecision(3))}k`;
    return String(v);
  }

  /** Keeps at most `max` points (evenly spaced, always the last) so long runs stay cheap. */
  function thin(points, max) {
    if (points.length <= max) return points;
    const stride = points.length / max;
    const out = [];
    for (let i = 0; i < max - 1; i++) out.push(points[Math.floor(i * stride)]);
    out.push(points[points.length - 1]);
    return out;
  }

  /**
   * A line chart of one metric against the step: `points` is [[step, value], ...].
   * Returns SVG markup.
   */
  S.lineChart = function (name, points, width) {
    const clean = thin(points.filter((p) => Array.isArray(p) && Number.isFinite(p[0]) && Number.isFinite(p[1])), 800);
    const W = Math.max(240, width), H = 170, L = 52, R = 14, T = 12, B = 26;
    if (clean.length === 0) return "";
    const xs = clean.map((p) => p[0]), ys = clean.map((p) => p[1]);
    let x0 = Math.min(...xs), x1 = Math.max(...xs), y0 = Math.min(...ys), y1 = Math.max(...ys);
    if (x1 === x0) x1 = x0 + 1;
    if (y1 === y0) { y0 -= 0.5; y1 += 0.5; }
    const pad = (y1 - y0) * 0.06;
    y0 -= pad; y1 += pad;
    const sx = (v) => L + ((v - x0) / (x1 - x0)) * (W - L - R);
    const sy = (v) => T + (1 - (v - y0) / (y1 - y0)) * (H - T - B);
    const parts = [];
    for (const t of S.niceTicks(y0, y1, 4)) {
      parts.push(`<line class="grid" x1="${L}" x2="${W - R}" y1="${sy(t)}" y2="${sy(t)}"/>`,
        `<text class="tick" x="${L - 6}" y="${sy(t) + 4}" text-anchor="end">${S.fmtNumber(t)}</text>`);
    }
    for (const t of S.niceTicks(x0, x1, 5)) {
      parts.push(`<text class="tick" x="${sx(t)}" y="${H - 8}" text-anchor="middle">${fmtStep(t)}</text>`);
    }
    const d = clean.map((p, i) => `${i ? "L" : "M"}${sx(p[0]).toFixed(1)},${sy(p[1]).toFixed(1)}`).join("");
    const last = clean[clean.length - 1];
    parts.push(`<path class="series" d="${d}"/>`,
      `<circle class="last" cx="${sx(last[0])}" cy="${sy(last[1])}" r="3"><title>step ${last[0]}: ${S.fmtNumber(last[1])}</title></circle>`,
      `<line class="axis" x1="${L}" x2="${W - R}" y1="${H - B}" y2="${H - B}"/>`);
    return `<svg class="line-chart" width="${W}" height="${H}" role="img" ` +
      `aria-label="${esc(name)} against step, latest ${S.fmtNumber(last[1])} at step ${last[0]}">` +
      parts.join("") + `</svg>`;
  };

  /** The Gantt's rows: every GPU the mesh reports, plus any the plan names that it does not. */
  function ganttRows(plan, agents) {
    const hosts = new Map();
    for (const a of agents) hosts.set(a.name, new Set((a.gpus || []).map((g) => g.index)));
    for (const asg of plan.assignments || []) {
      for (const p of asg.placement || []) {
        if (!hosts.has(p.host)) hosts.set(p.host, new Set());
        for (const g of p.gpus || []) hosts.get(p.host).add(g);
      }
    }
    const rows = [];
    for (const [host, gpus] of hosts) {
      [...gpus].sort((a, b) => a - b).forEach((gpu, i) => rows.push({ host, gpu, first: i === 0 }));
    }
    return rows;
  }

  /**
   * The current plan as a Gantt chart: one row per host:GPU, one bar per assignment and
   * GPU. `ctx` = {agents, jobsById, nowS (now - made_at, seconds), width, selected}.
   * Returns {svg, rows, nowX(nowS)}: the "now" marker is moved by the caller through
   * nowX each second, so the rest of the chart is only redrawn when the plan changes.
   */
  S.gantt = function (plan, ctx) {
    const rows = ganttRows(plan, ctx.agents);
    if (rows.length === 0) return { svg: "", rows: 0, nowX: () => null };
    const rowIndex = new Map(rows.map((r, i) => [`${r.host}\u0000${r.gpu}`, i]));
    const rowH = rows.length > 32 ? 12 : rows.length > 16 ? 16 : 20;
    const L = 118, R = 16, T = 36, B = 8;
    const W = Math.max(480, Math.floor(ctx.width)), H = T + rows.length * rowH + B;
    const asgs = (plan.assignments || []).filter((a) => Number.isFinite(a.start_s) && Number.isFinite(a.end_s));
    const ends = asgs.map((a) => a.end_s);
    const makespan = Number.isFinite(plan.makespan_s) ? plan.makespan_s : Math.max(0, ...ends);
    const t0 = Math.min(0, ...asgs.map((a) => a.start_s));
    let t1 = Math.max(makespan, ...ends, 1);
    // A plan older than its own makespan: stretch the axis to now, in whole minutes so
    // the chart is not redrawn every second.
    if (ctx.nowS != null && ctx.nowS > t1) t1 = Math.ceil((ctx.nowS * 1.05) / 60) * 60;
    t1 += (t1 - t0) * 0.02;
    const sx = (t) => L + ((t - t0) / (t1 - t0)) * (W - L - R);
    const parts = [];

    // Axis: ticks with a light grid through the rows.
    for (const t of S.timeTicks(t0, t1, Math.max(3, Math.floor((W - L) / 90)))) {
      const x = sx(t).toFixed(1);
      parts.push(`<line class="grid" x1="${x}" x2="${x}" y1="${T - 4}" y2="${H - B}"/>`,
        `<text class="tick" x="${x}" y="${T - 9}" text-anchor="middle">${S.fmtTick(t)}</text>`);
    }
    // Row labels, with a rule between hosts.
    rows.forEach((r, i) => {
      const y = T + i * rowH;
      if (r.first) {
        if (i > 0) parts.push(`<line class="host-rule" x1="0" x2="${W - R}" y1="${y}" y2="${y}"/>`);
        parts.push(`<text class="host-label" x="4" y="${y + rowH / 2 + 4}">${esc(fit(r.host, 84))}</text>`);
      }
      if (rowH >= 12) {
        parts.push(`<text class="gpu-label" x="${L - 8}" y="${y + rowH / 2 + 3.5}" text-anchor="end">gpu ${r.gpu}</text>`);
      }
    });

    // Bars: one rect per (assignment, host, GPU) — the hooks tests and highlighting use.
    for (const asg of asgs) {
      const job = ctx.jobsById.get(asg.job);
      const name = (job && job.name) || asg.job;
      const state = asg.state || (job && job.state) || "scheduled";
      const x = sx(asg.start_s), w = Math.max(2, sx(asg.end_s) - x);
      const selected = ctx.selected === asg.job ? " selected" : "";
      parts.push(`<g class="gantt-job${selected}" data-job="${esc(asg.job)}">`);
      for (const p of asg.placement || []) {
        const ys = [];
        for (const gpu of p.gpus || []) {
          const row = rowIndex.get(`${p.host}\u0000${gpu}`);
          if (row == null) continue;
          const y = T + row * rowH + 1.5;
          ys.push(y);
          parts.push(`<rect class="gantt-bar state-${esc(state)}" data-job="${esc(asg.job)}" ` +
            `data-host="${esc(p.host)}" data-gpu="${gpu}" x="${x.toFixed(1)}" y="${y}" ` +
            `width="${w.toFixed(1)}" height="${rowH - 3}" rx="2" fill="${S.jobColor(asg.job)}"/>`);
        }
        // One label per host block, inside its upper-middle bar: centred on the whole
        // block it would straddle the gap between two bars (or miss the bars entirely
        // when the block's GPUs are not adjacent rows).
        const label = rowH >= 12 ? fit(name, w - 8) : "";
        if (label && ys.length) {
          const sorted = [...ys].sort((a, b) => a - b);
          const mid = sorted[Math.floor((sorted.length - 1) / 2)] + (rowH - 3) / 2;
          parts.push(`<text class="bar-label" x="${(x + 4).toFixed(1)}" y="${(mid + 4).toFixed(1)}">${esc(label)}</text>`);
        }
      }
      parts.push(`</g>`);
    }

    // Makespan marker, then the now marker (moved later through nowX).
    const mx = sx(makespan).toFixed(1);
    parts.push(`<line class="makespan-line" x1="${mx}" x2="${mx}" y1="${T - 4}" y2="${H - B}"/>`,
      `<g class="now-marker" style="display:none"><line class="now-line" x1="0" x2="0" y1="14" y2="${H - B}"/>` +
      `<rect class="now-tag" x="-16" y="0" width="32" height="14" rx="3"/>` +
      `<text class="now-text" x="0" y="10.5" text-anchor="middle">now</text></g>`);
    const cls = ctx.selected ? "gantt has-selection" : "gantt";
    const svg = `<svg class="${cls}" width="${W}" height="${H}" role="img" ` +
      `aria-label="Plan: ${asgs.length} assignments on ${rows.length} GPUs, makespan ${S.fmtDuration(makespan)}">` +
      parts.join("") + `</svg>`;
    const nowX = (nowS) => (nowS != null && nowS >= t0 && nowS <= t1 ? sx(nowS) : null);
    return { svg, rows: rows.length, nowX };
  };
})(window.Saturn = window.Saturn || {});
