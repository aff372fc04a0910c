// Saturn dashboard: talking to the agent's HTTP API (or to the fixture files when the
// page is opened with ?fixtures=1). Every URL is relative to the page, so the dashboard
// works from any agent and behind a reverse proxy sub-path.
"use strict";
(function (S) {
  const params = new URLSearchParams(location.search);
  const TIMEOUT_MS = 4000;

  /** Thrown for an HTTP status the caller may want to tell apart (401, 404...). */
  class HttpError extends Error {
    constructor(status, message) {
      super(message);
      this.status = status;
    }
  }
  S.HttpError = HttpError;

  const api = {
    fixtures: params.has("fixtures") && params.get("fixtures") !== "0",
    /** Server clock minus browser clock, in ms, estimated from the Date header. */
    clockSkewMs: 0,
    // The fixtures' notional "now" is moved to page-load time so times look current.
    fixtureShiftMs: null,
  };
  S.api = api;
  /**
   * Hands the token to the agent once: `POST v1/login` checks it and answers with an
   * HttpOnly, SameSite=Strict session cookie that authorises every later request. The page
   * never stores the token itself (no script can read it back; see api/auth.rs for why).
   * Resolves to "" when accepted, else to the reason, for the page to show.
   */
  api.login = async function (token) {
    if (api.fixtures) return "";
    try {
      const response = await fetch("v1/login", {
        method: "POST", headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ token }), cache: "no-store", credentials: "same-origin",
      });
      if (response.ok) return "";
      let message = `${response.status} ${response.statusText}`;
      try { const body = await response.json(); if (body && body.error) message = body.error; } catch (_) { /* keep */ }
      return message;
    } catch (err) {
      return `cannot reach the agent: ${err.message || err}`;
    }
  };
  /** The server's idea of now (ms), so the Gantt "now" line agrees with made_at. */
  api.now = function () {
    return Date.now() + api.clockSkewMs;
  };

  function noteServerDate(response, sentAt) {
    const date = Date.parse(response.headers.get("Date") || "");
    if (isNaN(date)) return;
    // The header has 1 s resolution; only correct skews it can actually show.
    const skew = date + 500 - (sentAt + Date.now()) / 2;
    api.clockSkewMs = Math.abs(skew) > 1500 ? skew : 0;
  }

  async function request(url, accept) {
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(), TIMEOUT_MS);
    const headers = { Accept: accept };
    const sentAt = Date.now();
    try {
      // The session cookie set by api.login authorises the request.
      const response = await fetch(url, { headers, signal: controller.signal, cache: "no-store", credentials: "same-origin" });
      if (!api.fixtures) noteServerDate(response, sentAt);
      if (!response.ok) {
        let message = `${response.status} ${response.statusText}`;
        try {
          const body = await response.json();
          if (body && body.error) message = body.error;
        } catch (_) { /* not JSON: keep the status line */ }
        throw new HttpError(response.status, message);
      }
      return response;
    } catch (err) {
      if (err.name === "AbortError") throw new Error("request timed out");
      throw err;
    } finally {
      clearTimeout(timer);
    }
  }

  // --- fixtures -----------------------------------------------------------------

  function fixtureUrl(path) {
    const parts = path.split("?")[0].split("/").filter(Boolean); // ["v1", "jobs", "j-1", "logs"]
    if (parts[1] === "jobs" && parts.length === 3) return `assets/fixtures/job-${parts[2]}.json`;
    if (parts[1] === "jobs" && parts[3] === "logs") return `assets/fixtures/logs-${parts[2]}.txt`;
    return `assets/fixtures/${parts[1]}.json`;
  }

  /** Moves every `*_at` time of a fixture by the same amount so "now" is page load. */
  function shiftTimes(value) {
    if (Array.isArray(value)) return value.map(shiftTimes);
    if (!value || typeof value !== "object") return value;
    const out = {};
    for (const [k, v] of Object.entries(value)) {
      if (/_at$/.test(k) && typeof v === "string" && !isNaN(Date.parse(v))) {
        out[k] = new Date(Date.parse(v) + api.fixtureShiftMs).toISOString();
      } else if (k === "made_at_ms" && typeof v === "number") {
        out[k] = v + api.fixtureShiftMs;
      } else out[k] = shiftTimes(v);
    }
    return out;
  }

  async function fixtureJson(path) {
    if (api.fixtureShiftMs == null) {
      const meta = await (await request("assets/fixtures/plan.json", "application/json")).json();
      api.fixtureShiftMs = meta._fixture_now ? Date.now() - Date.parse(meta._fixture_now) : 0;
    }
    try {
      return shiftTimes(await (await request(fixtureUrl(path), "application/json")).json());
    } catch (err) {
      // One file per job would be tedious: fall back to the job's row in jobs.json.
      const m = path.match(/^v1\/jobs\/([^/?]+)$/);
      if (!m) throw err;
      const all = await fixtureJson("v1/jobs");
      const job = (all.jobs || []).find((j) => j.id === decodeURIComponent(m[1]));
      if (!job) throw new HttpError(404, `no job ${m[1]}`);
      return job;
    }
  }

  async function fixtureText(path) {
    try {
      return await (await request(fixtureUrl(path), "text/plain")).text();
    } catch (_) {
      return await (await request("assets/fixtures/logs.txt", "text/plain")).text();
    }
  }

  // --- public calls --------------------------------------------------------------

  /** GET a JSON document; `path` is relative, like "v1/status". */
  api.getJson = async function (path) {
    if (api.fixtures) return fixtureJson(path);
    return (await request(path, "application/json")).json();
  };

  /** GET a text document (log tails). */
  api.getText = async function (path) {
    if (api.fixtures) return fixtureText(path);
    return (await request(path, "text/plain")).text();
  };

  api.status = () => api.getJson("v1/status");
  api.jobs = async function () {
    const body = await api.getJson("v1/jobs");
    return Array.isArray(body) ? body : body.jobs || [];
  };
  api.job = (id) => api.getJson(`v1/jobs/${encodeURIComponent(id)}`);
  api.logs = (id, tail) => api.getText(`v1/jobs/${encodeURIComponent(id)}/logs?tail=${tail}`);

  /** The current plan, or null when the leader has not made one yet (404 or {plan:null}). */
  api.plan = async function () {
    try {
      const body = await api.getJson("v1/plan");
      if (body && Object.prototype.hasOwnProperty.call(body, "plan")) return body.plan;
      return body && Array.isArray(body.assignments) ? body : null;
    } catch (err) {
      if (err instanceof HttpError && err.status === 404) return null;
      throw err;
    }
  };
})(window.Saturn = window.Saturn || {});
