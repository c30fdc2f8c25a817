// dedupcache dashboard: polls api/stats once a second and renders it.
//
// Every figure is an element with data-stat="<field of /api/stats>" (a
// dotted path for nested fields, e.g. entries_released.evicted) or
// data-derived="<name>" for figures computed here. After each render its
// data-value attribute holds the raw number shown, so tests can compare the
// page with /api/stats; an element without data-value shows no figure.
// <body data-polls> counts the polls rendered.
//
// No libraries and no build step: the Go binary embeds this file as is.
'use strict';

(() => {
  const POLL_MS = 1000;
  const WINDOW_S = 300; // seconds of history kept and charted
  const MIN_SPAN_S = 60; // the charts' time axis spans at least this
  const TOP_EVERY = 5; // polls between two reads of api/top-bodies

  const $ = (id) => document.getElementById(id);
  const statEls = [...document.querySelectorAll('[data-stat]')];
  const derivedEls = [...document.querySelectorAll('[data-derived]')];

  // Samples for the charts: uptime (server seconds) and the ratios.
  const hist = { t: [], hit: [], hitNow: [], dedup: [] };
  let prev = null; // the previous stats document, for rates
  let polls = 0;
  let topBodiesAbsent = false; // api/top-bodies answered 404 or 401: stop asking

  // ---- formatting ----

  const nf = new Intl.NumberFormat('en-US');
  function bytes(v) {
    const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
    let i = 0;
    while (Math.abs(v) >= 1024 && i < units.length - 1) { v /= 1024; i++; }
    if (i === 0) return nf.format(Math.round(v)) + ' B';
    return (Math.abs(v) >= 100 ? String(Math.round(v)) : String(parseFloat(v.toPrecision(3)))) + ' ' + units[i];
  }
  function duration(s) {
    s = Math.floor(s);
    if (s < 60) return s + ' s';
    if (s < 3600) return Math.floor(s / 60) + ' min ' + (s % 60) + ' s';
    if (s < 86400) return Math.floor(s / 3600) + ' h ' + Math.floor((s % 3600) / 60) + ' min';
    return Math.floor(s / 86400) + ' d ' + Math.floor((s % 86400) / 3600) + ' h';
  }
  const formats = {
    count: (v) => nf.format(Math.round(v)),
    percent: (v) => (v > 0 && v < 0.001 ? '<0.1 %' : (v * 100).toFixed(1) + ' %'),
    ratio: (v) => v.toFixed(2) + '×',
    bytes,
    rate: (v) => (v < 10 ? v.toFixed(1) : nf.format(Math.round(v))),
    duration,
  };

  // render shows v in el and records it in data-value; a value that is not
  // a finite number clears both.
  function render(el, v) {
    if (typeof v !== 'number' || !Number.isFinite(v)) {
      el.textContent = '–';
      el.removeAttribute('data-value');
      return;
    }
    el.dataset.value = String(v);
    el.textContent = (formats[el.dataset.format] || formats.count)(v);
  }

  function field(obj, path) {
    for (const k of path.split('.')) {
      if (obj === null || typeof obj !== 'object') return undefined;
      obj = obj[k];
    }
    return obj;
  }

  const pct = (part, whole) => (whole > 0 ? Math.max(0, Math.min(100, (part / whole) * 100)) : 0) + '%';

  // ---- figures ----

  // derive computes the figures that are not fields of the stats document.
  function derive(st) {
    const d = {};
    d.memory_used_ratio = st.memory_limit_bytes > 0 ? st.memory_bytes / st.memory_limit_bytes : undefined;
    d.body_memory_bytes = st.memory_bytes - st.entry_bytes - st.header_bytes;
    if (st.entries > 0) {
      d.bytes_per_key = st.memory_bytes / st.entries;
      d.keys_more = Math.floor(Math.max(0, st.memory_limit_bytes - st.memory_bytes) / d.bytes_per_key);
    }
    const dt = prev ? st.uptime_seconds - prev.uptime_seconds : 0;
    if (dt > 0) {
      d.rate_total = 0;
      for (const k of ['hits', 'stale', 'misses', 'bypasses']) {
        d['rate_' + k] = Math.max(0, st[k] - prev[k]) / dt;
        d.rate_total += d['rate_' + k];
      }
      const hit = st.hits + st.stale - prev.hits - prev.stale;
      const all = hit + st.misses - prev.misses;
      d.hit_ratio_now = all > 0 ? hit / all : null;
    }
    return d;
  }

  function update(st) {
    if (prev && st.uptime_seconds < prev.uptime_seconds) prev = null; // restarted
    const d = derive(st);
    for (const el of statEls) render(el, field(st, el.dataset.stat));
    for (const el of derivedEls) render(el, d[el.dataset.derived]);
    $('break-even').hidden = typeof st.break_even_bytes !== 'number';
    const sh = st.shared;
    $('shared').hidden = !sh;
    if (sh) $('shared-state').textContent = sh.healthy ? 'connected' : 'unreachable: serving from memory and the origin';

    $('bar-stored').style.width = pct(st.bytes_stored, st.bytes_logical);
    $('bar-saved').style.width = pct(st.bytes_saved, st.bytes_logical);
    $('bar-mem-entries').style.width = pct(st.entry_bytes, st.memory_limit_bytes);
    $('bar-mem-headers').style.width = pct(st.header_bytes, st.memory_limit_bytes);
    $('bar-mem-bodies').style.width = pct(d.body_memory_bytes, st.memory_limit_bytes);
    for (const k of ['hits', 'stale', 'misses', 'bypasses']) {
      $('rate-bar-' + k).style.width = pct(d['rate_' + k] || 0, d.rate_total || 0);
    }

    hist.t.push(st.uptime_seconds);
    hist.hit.push(st.hit_ratio);
    hist.hitNow.push(d.hit_ratio_now === undefined ? null : d.hit_ratio_now);
    hist.dedup.push(st.dedup_ratio);
    while (hist.t.length && hist.t[0] < st.uptime_seconds - WINDOW_S) {
      for (const k in hist) hist[k].shift();
    }
    drawCharts();
    prev = st;
  }

  // ---- charts: hand-drawn on <canvas> ----

  function niceCeil(v) {
    const p = Math.pow(10, Math.floor(Math.log10(v)));
    for (const m of [1, 1.5, 2, 2.5, 3, 4, 5, 7.5, 10]) if (m * p >= v) return m * p;
    return 10 * p;
  }

  // chart draws series ({values, color, dash, fill}) against hist.t on a
  // y scale from lo to hi.
  function chart(canvas, series, lo, hi, yFmt) {
    const w = canvas.clientWidth;
    const h = canvas.clientHeight;
    if (!w || !h) return;
    const dpr = window.devicePixelRatio || 1;
    if (canvas.width !== Math.round(w * dpr) || canvas.height !== Math.round(h * dpr)) {
      canvas.width = Math.round(w * dpr);
      canvas.height = Math.round(h * dpr);
    }
    const g = canvas.getContext('2d');
    g.setTransform(dpr, 0, 0, dpr, 0, 0);
    g.clearRect(0, 0, w, h);
    const css = getComputedStyle(document.documentElement);
    const muted = css.getPropertyValue('--muted').trim();
    const grid = css.getPropertyValue('--grid').trim();
    const L = 44, R = 6, T = 6, B = 18;
    const pw = w - L - R;
    const ph = h - T - B;
    const now = hist.t.length ? hist.t[hist.t.length - 1] : 0;
    // The axis grows with the history, from MIN_SPAN_S to WINDOW_S.
    const span = Math.min(WINDOW_S, Math.max(MIN_SPAN_S, hist.t.length ? now - hist.t[0] : 0));
    const x = (t) => L + pw * (1 - (now - t) / span);
    const y = (v) => T + ph * (1 - (v - lo) / (hi - lo));

    g.font = '11px system-ui, sans-serif';
    g.lineWidth = 1;
    g.strokeStyle = grid;
    g.fillStyle = muted;
    g.textBaseline = 'middle';
    g.textAlign = 'right';
    for (const f of [0, 0.5, 1]) {
      const v = lo + f * (hi - lo);
      g.beginPath();
      g.moveTo(L, Math.round(y(v)) + 0.5);
      g.lineTo(w - R, Math.round(y(v)) + 0.5);
      g.stroke();
      g.fillText(yFmt(v), L - 6, y(v));
    }
    g.textBaseline = 'alphabetic';
    g.textAlign = 'left';
    g.fillText('−' + (span < 120 ? Math.round(span) + ' s' : Math.round(span / 60) + ' min'), L, h - 4);
    g.textAlign = 'right';
    g.fillText('now', w - R, h - 4);

    for (const s of series) {
      g.strokeStyle = s.color;
      g.fillStyle = s.color;
      g.lineWidth = s.dash ? 1.5 : 2;
      g.setLineDash(s.dash || []);
      g.beginPath();
      let open = false;
      let first = -1;
      let last = -1;
      for (let i = 0; i < hist.t.length; i++) {
        const v = s.values[i];
        if (v === null || v === undefined) { open = false; continue; }
        const px = x(hist.t[i]);
        const py = y(Math.max(lo, Math.min(hi, v)));
        if (open) g.lineTo(px, py); else g.moveTo(px, py);
        open = true;
        if (first < 0) first = i;
        last = i;
      }
      g.stroke();
      g.setLineDash([]);
      if (s.fill && first >= 0 && last > first) {
        g.lineTo(x(hist.t[last]), y(lo));
        g.lineTo(x(hist.t[first]), y(lo));
        g.closePath();
        g.globalAlpha = 0.12;
        g.fill();
        g.globalAlpha = 1;
      }
      if (last >= 0) {
        g.beginPath();
        g.arc(x(hist.t[last]), y(Math.max(lo, Math.min(hi, s.values[last]))), 2.5, 0, 2 * Math.PI);
        g.fill();
      }
    }
  }

  function drawCharts() {
    const css = getComputedStyle(document.documentElement);
    const color = (name) => css.getPropertyValue(name).trim();
    chart($('chart-hit'), [
      { values: hist.hit, color: color('--c-hit'), fill: true },
      { values: hist.hitNow, color: color('--c-hit'), dash: [4, 3] },
    ], 0, 1, (v) => Math.round(v * 100) + '%');
    const top = niceCeil(Math.max(2, ...hist.dedup.map((v) => v * 1.05)));
    chart($('chart-dedup'), [
      { values: hist.dedup, color: color('--c-saved'), fill: true },
    ], 1, top, (v) => parseFloat(v.toFixed(2)) + '×');
  }

  // ---- most shared bodies (optional endpoint) ----

  async function loadTopBodies() {
    let res;
    try {
      res = await fetch('api/top-bodies', { cache: 'no-store' });
    } catch (e) {
      return; // offline: the stats poll reports it
    }
    if (res.status === 404 || res.status === 401) {
      // Absent, or guarded by admin.token (the page cannot send it).
      topBodiesAbsent = true;
      $('top-bodies').hidden = true;
      return;
    }
    if (!res.ok) return;
    let rows;
    try {
      rows = await res.json();
    } catch (e) {
      return;
    }
    if (!Array.isArray(rows)) return;
    const tbody = $('top-rows');
    const trs = rows.map((b) => {
      const tr = document.createElement('tr');
      const cell = (text, cls, value) => {
        const td = document.createElement('td');
        td.textContent = text;
        if (cls) td.className = cls;
        if (value !== undefined) td.dataset.value = String(value);
        tr.append(td);
        return td;
      };
      cell(formats.count(b.refs), 'n', b.refs);
      cell(bytes(b.size), 'n', b.size);
      const body = cell('', 'body');
      const line = (text, cls) => {
        const div = document.createElement('div');
        div.className = cls;
        div.textContent = text;
        div.title = text;
        body.append(div);
      };
      line(String(b.hash), 'hash');
      for (const k of (Array.isArray(b.example_keys) ? b.example_keys : []).slice(0, 3)) line(String(k), 'key');
      return tr;
    });
    tbody.replaceChildren(...trs);
    $('top-bodies').hidden = false;
  }

  // ---- polling ----

  function setStatus(state, text) {
    const el = $('status');
    el.dataset.state = state;
    el.textContent = text;
  }

  async function poll() {
    try {
      const res = await fetch('api/stats', { cache: 'no-store', headers: { Accept: 'application/json' } });
      if (!res.ok) throw new Error('HTTP ' + res.status);
      update(await res.json());
      polls++;
      document.body.dataset.polls = String(polls);
      setStatus('live', 'live · ' + new Date().toLocaleTimeString());
      if (!topBodiesAbsent && polls % TOP_EVERY === 1) await loadTopBodies();
    } catch (e) {
      setStatus('offline', 'offline (' + e.message + ') · retrying');
    } finally {
      setTimeout(poll, POLL_MS);
    }
  }

  window.addEventListener('resize', drawCharts);
  poll();
})();
