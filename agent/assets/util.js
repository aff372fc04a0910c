// Saturn dashboard: small helpers shared by the views (escaping, formatting, colours,
// axis ticks, keyed DOM patching). Plain browser JS, no build step: every file adds to
// the global `Saturn` namespace and index.html loads them in order.
"use strict";
(function (S) {
  const HTML_ESCAPES = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };

  /** Escapes any value for use in HTML text or a quoted attribute. */
  S.esc = function (value) {
    return String(value ?? "").replace(/[&<>"']/g, (c) => HTML_ESCAPES[c]);
  };

  /** "1h 02m", "4m 05s", "12s": a duration in seconds for people. */
  S.fmtDuration = function (seconds) {
    if (seconds == null || !Number.isFinite(seconds)) return "—";
    const s = Math.max(0, Math.round(seconds));
    const d = Math.floor(s / 86400), h = Math.floor((s % 86400) / 3600);
    const m = Math.floor((s % 3600) / 60), sec = s % 60;
    const two = (n) => String(n).padStart(2, "0");
    if (d > 0) return `${d}d ${two(h)}h`;
    if (h > 0) return `${h}h ${two(m)}m`;
    if (m > 0) return `${m}m ${two(sec)}s`;
    return `${sec}s`;
  };

  /** Short axis label for a tick at `seconds` (ticks are round, so drop zero parts). */
  S.fmtTick = function (seconds) {
    const s = Math.round(seconds);
    if (s === 0) return "0";
    const sign = s < 0 ? "−" : "";
    const a = Math.abs(s);
    const h = Math.floor(a / 3600), m = Math.floor((a % 3600) / 60), sec = a % 60;
    if (h > 0) return sign + (m ? `${h}h${String(m).padStart(2, "0")}` : `${h}h`);
    if (m > 0) return sign + (sec ? `${m}m${String(sec).padStart(2, "0")}` : `${m}m`);
    return `${sign}${sec}s`;
  };

  /** Four significant digits, no exponent for ordinary loss/accuracy values. */
  S.fmtNumber = function (v) {
    if (typeof v !== "number" || !Number.isFinite(v)) return S.esc(v);
    const a = Math.abs(v);
    if (a !== 0 && (a < 1e-3 || a >= 1e6)) return v.toExponential(2);
    return String(Number(v.toPrecision(4)));
  };

  /** Parses an ISO string or a number of seconds/milliseconds since the epoch into ms. */
  S.toMs = function (t) {
    if (t == null || t === "") return null;
    if (typeof t === "number") return t > 1e11 ? t : t * 1000;
    const ms = Date.parse(t);
    return isNaN(ms) ? null : ms;
  };

  /** "3m ago" / "in 2m" relative to `nowMs`. */
  /** Bytes as B, KiB, MiB, GiB or TiB (binary units, one decimal above KiB). */
  S.fmtBytes = function (n) {
    if (n == null || !isFinite(n)) return "—";
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i += 1; }
    return i === 0 ? `${n} B` : `${n.toFixed(1)} ${units[i]}`;
  };

  S.fmtAgo = function (t, nowMs) {
    const ms = S.toMs(t);
    if (ms == null) return "—";
    const delta = (nowMs - ms) / 1000;
    return delta >= 0 ? `${S.fmtDuration(delta)} ago` : `in ${S.fmtDuration(-delta)}`;
  };

  /** Absolute local time for tooltips. */
  S.fmtTime = function (t) {
    const ms = S.toMs(t);
    return ms == null ? "" : new Date(ms).toLocaleString();
  };

  /** "0-3,6" for [0,1,2,3,6]. */
  S.fmtIndices = function (gpus) {
    const xs = [...(gpus || [])].sort((a, b) => a - b);
    const parts = [];
    for (let i = 0; i < xs.length; i++) {
      let j = i;
      while (j + 1 < xs.length && xs[j + 1] === xs[j] + 1) j++;
      parts.push(j > i ? `${xs[i]}-${xs[j]}` : `${xs[i]}`);
      i = j;
    }
    return parts.join(",");
  };

  /** "node-b[0-3] node-c[0-3]" for a placement. */
  S.fmtPlacement = function (placement) {
    return (placement || []).map((p) => `${p.host}[${S.fmtIndices(p.gpus)}]`).join(" ");
  };

  S.gpuCount = function (placement) {
    return (placement || []).reduce((n, p) => n + (p.gpus ? p.gpus.length : 0), 0);
  };

  // Mid-tone colours that all carry white label text, none red (red means failure and
  // marks "now" in the Gantt chart).
  const PALETTE = ["#2563eb", "#db2777", "#059669", "#7c3aed", "#c2410c", "#0891b2", "#65a30d",
    "#c026d3", "#1e3a8a", "#a16207", "#0f766e", "#57534e", "#4338ca", "#9d174d", "#3f6212", "#0e7490"];

  /**
   * A stable colour per job: the same job has the same colour in the mesh, the Gantt
   * chart and the table. Ids are numbered (j-000017), so consecutive jobs — typically
   * one sweep — get different palette entries; other ids fall back to a string hash.
   */
  S.jobColor = function (id) {
    let n = parseInt(String(id).replace(/\D/g, ""), 10);
    if (isNaN(n)) {
      n = 0;
      for (const ch of String(id)) n = (Math.imul(n, 31) + ch.charCodeAt(0)) >>> 0;
    }
    return PALETTE[n % PALETTE.length];
  };

  /** Round tick positions covering [lo, hi], about `count` of them. */
  S.niceTicks = function (lo, hi, count) {
    if (!(hi > lo)) return [lo];
    const raw = (hi - lo) / Math.max(1, count);
    const mag = Math.pow(10, Math.floor(Math.log10(raw)));
    const step = [1, 2, 5, 10].map((k) => k * mag).find((s) => s >= raw) || 10 * mag;
    const out = [];
    for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) {
      out.push(Number(v.toPrecision(12)));
    }
    return out;
  };

  /** Like niceTicks, but on durations: steps of 1/2/5/10/15/30 s, min, h. */
  S.timeTicks = function (lo, hi, count) {
    if (!(hi > lo)) return [lo];
    const steps = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200,
      10800, 21600, 43200, 86400, 172800, 604800];
    const raw = (hi - lo) / Math.max(1, count);
    const step = steps.find((s) => s >= raw) || Math.ceil(raw / 86400) * 86400;
    const out = [];
    for (let v = Math.ceil(lo / step) * step; v <= hi; v += step) out.push(v);
    return out;
  };

  /**
   * Keyed list update: reuses one element per key and rewrites its HTML only when it
   * changed, so a once-a-second refresh keeps focus, hover and scroll where they were.
   * `render(item)` returns {key, html, attrs}; `create()` makes a new element.
   */
  S.patchList = function (container, items, render, create) {
    const existing = new Map();
    for (const el of container.children) existing.set(el.dataset.key, el);
    let cursor = container.firstElementChild;
    for (const item of items) {
      const { key, html, attrs } = render(item);
      let el = existing.get(key);
      if (el) existing.delete(key);
      else {
        el = create();
        el.dataset.key = key;
      }
      if (el._html !== html) {
        el.innerHTML = html;
        el._html = html;
      }
      for (const [name, value] of Object.entries(attrs || {})) {
        if (el.getAttribute(name) !== value) el.setAttribute(name, value);
      }
      if (el !== cursor) container.insertBefore(el, cursor);
      else cursor = cursor.nextElementSibling;
    }
    for (const el of existing.values()) el.remove();
  };
})(window.Saturn = window.Saturn || {});
