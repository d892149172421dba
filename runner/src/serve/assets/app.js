// The dashboard's pages (sweeps, a sweep's jobs, a job, a sweep's report), drawn from the JSON
// API and kept current by polling it: no reload, no external asset. Every text that comes from
// the database goes into the page through textContent, never as markup.
'use strict';
(function () {
  const app = document.getElementById('app');
  const live = document.getElementById('live');
  const POLL_MS = 1500;
  const FINISHED = ['completed', 'failed', 'diverged', 'cancelled'];

  // ---- helpers ----
  function el(tag, attrs, ...kids) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === 'class') e.className = v;
      else if (k === 'text') e.textContent = String(v);
      else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
      else e.setAttribute(k, String(v));
    }
    for (const kid of kids.flat(Infinity)) {
      if (kid === null || kid === undefined) continue;
      e.append(kid instanceof Node ? kid : document.createTextNode(String(kid)));
    }
    return e;
  }
  // Replaces a node's children (arrays flattened, null and undefined left out).
  function fill(node, ...kids) {
    node.replaceChildren(...kids.flat(Infinity).filter((k) => k !== null && k !== undefined));
  }
  const enc = encodeURIComponent;
  async function getJSON(url) {
    const r = await fetch(url, { cache: 'no-store' });
    let body = null;
    try { body = await r.json(); } catch (_) { /* not JSON */ }
    if (!r.ok) throw new Error((body && body.error) || ('HTTP ' + r.status));
    return body;
  }
  function num(v, digits) {
    if (v === null || v === undefined) return '—';
    if (typeof v !== 'number') return String(v);
    if (digits === undefined) return Number.isInteger(v) ? v.toLocaleString('en') : v.toPrecision(4);
    return v.toFixed(digits);
  }
  function duration(s) {
    if (s === null || s === undefined) return '—';
    s = Math.round(s);
    if (s < 60) return s + ' s';
    if (s < 3600) return Math.floor(s / 60) + ' min ' + (s % 60) + ' s';
    return Math.floor(s / 3600) + ' h ' + Math.floor((s % 3600) / 60) + ' min';
  }
  function badge(status) { return el('span', { class: 'badge st-' + status, text: status }); }
  function bar(fraction) {
    const pct = Math.round(Math.max(0, Math.min(1, fraction || 0)) * 100);
    return el('span', { class: 'bar', title: pct + '%' }, el('span', { class: 'fill', style: 'width:' + pct + '%' }));
  }
  // A table with a header row; `body` is a <tbody> or the rows to put in one.
  function table(headers, body, attrs) {
    const tbody = body instanceof Node && body.tagName === 'TBODY' ? body : el('tbody', {}, body);
    return el('table', attrs || {}, el('thead', {}, el('tr', {}, headers.map((h) => el('th', { text: h })))), tbody);
  }
  // An <img> chart that keeps its last picture while the next one loads and hides on errors.
  function chart(id, alt) {
    const img = el('img', { id: id, class: 'chart', alt: alt });
    const note = el('p', { class: 'muted', text: 'no data yet' });
    img.addEventListener('load', () => { img.hidden = false; note.hidden = true; });
    img.addEventListener('error', () => { img.hidden = true; note.hidden = false; });
    img.hidden = true;
    return { box: el('div', { class: 'chart-box' }, img, note), set(url) {
      if (!url) { img.hidden = true; note.hidden = false; return; }
      if (img.getAttribute('src') !== url) img.setAttribute('src', url);
    } };
  }
  // Runs `fn` now and again after each poll interval; the header tells whether it worked.
  function poll(fn, interval) {
    const tick = async () => {
      let next = POLL_MS;
      try {
        next = (await fn()) || interval || POLL_MS;
        live.textContent = 'live · ' + new Date().toLocaleTimeString();
        live.className = 'live ok';
      } catch (e) {
        live.textContent = 'not updating: ' + e.message;
        live.className = 'live err';
      }
      setTimeout(tick, next);
    };
    tick();
  }
  function counts(c) {
    return Object.entries(c || {}).map(([k, v]) => el('span', { class: 'count st-' + k, text: v + ' ' + k }));
  }
  function gpuText(j) {
    if (j.gpu_name) return j.gpu === null ? j.gpu_name : j.gpu + ': ' + j.gpu_name;
    if (j.gpu !== null && j.gpu !== undefined) return 'gpu ' + j.gpu;
    return j.device || '—';
  }

  // ---- sweeps ----
  function sweepsPage() {
    const body = el('tbody');
    fill(app, el('h1', { text: 'Sweeps' }),
      table(['sweep', 'state', 'progress', 'jobs', 'ETA', 'created'], body, { id: 'sweeps' }));
    poll(async () => {
      const d = await getJSON('/api/sweeps');
      if (!d.sweeps.length) {
        fill(body, el('tr', {}, el('td', { colspan: 6, class: 'muted', text: 'no sweep in this database yet' })));
        return;
      }
      fill(body, ...d.sweeps.map((s) => el('tr', { 'data-sweep': s.name },
        el('td', {}, el('a', { href: s.url, text: s.name }), el('div', { class: 'muted', text: s.description })),
        el('td', {}, badge(s.state)),
        el('td', {}, bar(s.fraction), ' ', s.done + '/' + s.total),
        el('td', {}, counts(s.counts)),
        el('td', { text: duration(s.eta_s) }),
        el('td', { text: s.created_at }))));
    });
  }

  // ---- one sweep ----
  function sweepPage(name) {
    const params = new URLSearchParams(location.search);
    const state = { where: params.getAll('where').join(' '), sort: params.get('sort') || '', order: params.get('order') || 'asc' };
    const head = el('div', { id: 'summary' });
    const input = el('input', { name: 'where', value: state.where, size: 48, placeholder: 'model.d_state=16 train.seq_len>=64 status!=completed' });
    const err = el('p', { class: 'error', id: 'filter-error' });
    const form = el('form', { id: 'filter', onsubmit: (ev) => { ev.preventDefault(); state.where = input.value.trim(); refresh(); } },
      el('label', {}, 'filter ', input), ' ', el('button', { type: 'submit', text: 'apply' }), ' ',
      el('button', { type: 'button', text: 'clear', onclick: () => { input.value = ''; state.where = ''; refresh(); } }),
      el('span', { class: 'muted', text: ' KEY OP VALUE, OP one of = != >= <= > < ~ (contains); keys: columns or config paths' }));
    const jobs = el('table', { id: 'jobs' });
    const curves = chart('sweep-chart', 'training loss of every job');
    let lastChart = 0;
    fill(app, el('h1', { text: name }), head, form, err, jobs, el('h2', { text: 'Training curves' }), curves.box);

    function setSort(key) {
      if (state.sort === key) state.order = state.order === 'asc' ? 'desc' : 'asc';
      else { state.sort = key; state.order = 'asc'; }
      refresh();
    }
    function query() {
      const q = new URLSearchParams();
      for (const w of state.where.split(/\s+/).filter(Boolean)) q.append('where', w);
      if (state.sort) { q.set('sort', state.sort); q.set('order', state.order); }
      return q.toString();
    }
    async function refresh() {
      const qs = query();
      history.replaceState(null, '', location.pathname + (qs ? '?' + qs : ''));
      let d;
      try {
        d = await getJSON('/api/sweeps/' + enc(name) + '/jobs' + (qs ? '?' + qs : ''));
        err.textContent = '';
      } catch (e) {
        if (!state.where) throw e;
        err.textContent = e.message;
        d = await getJSON('/api/sweeps/' + enc(name) + '/jobs' + (state.sort ? '?sort=' + enc(state.sort) + '&order=' + state.order : ''));
      }
      const s = d.sweep;
      fill(head,
        el('p', {}, badge(s.state), ' ', bar(s.fraction), ' ', s.done + ' of ' + s.total + ' jobs done · ',
          counts(s.counts), ' · ETA ', el('span', { id: 'eta', text: duration(s.eta_s) }), ' · ',
          el('a', { href: '/sweeps/' + enc(name) + '/report', text: 'report figures and fits' })),
        s.description ? el('p', { class: 'muted', text: s.description }) : null);
      const cols = [['id', 'job']].concat(d.varied_keys.map((k) => [k, k]),
        [['status', 'status'], ['step', 'step'], ['last_loss', 'last loss'], ['tokens_per_s', 'tokens/s'],
          ['gpu', 'GPU'], ['attempts', 'attempts']]);
      const th = cols.map(([key, label]) => el('th', { class: 'sortable', 'data-key': key, onclick: () => setSort(key) },
        label, state.sort === key ? (state.order === 'asc' ? ' ▲' : ' ▼') : ''));
      const rows = d.jobs.map((j) => el('tr', { 'data-job': j.id, 'data-status': j.status },
        el('td', {}, el('a', { class: 'job-link', href: j.url, title: j.label, text: j.id.slice(0, 12) })),
        d.varied_keys.map((k) => el('td', { class: 'num', text: num((j.varied || {})[k]) })),
        el('td', { class: 'status', title: j.error || '' }, badge(j.status)),
        el('td', { class: 'num' }, bar(j.progress), ' ', (j.step === null ? '—' : j.step) + (j.total_steps ? '/' + j.total_steps : '')),
        el('td', { class: 'num', text: num(j.last_loss, 4) }),
        el('td', { class: 'num', text: j.tokens_per_s === null ? '—' : Math.round(j.tokens_per_s).toLocaleString('en') }),
        el('td', { text: gpuText(j) }),
        el('td', { class: 'num', text: j.attempts })));
      if (!rows.length) rows.push(el('tr', {}, el('td', { colspan: cols.length, class: 'muted', text: 'no job matches' })));
      fill(jobs, el('thead', {}, el('tr', {}, th)), el('tbody', {}, rows));
      const running = s.state === 'running';
      if (Date.now() - lastChart > (running ? 4000 : 0) || !curves.box.querySelector('img').getAttribute('src')) {
        lastChart = Date.now();
        curves.set('/charts/sweeps/' + enc(name) + '/metrics.svg?key=loss&v=' + enc(s.version));
      }
      return running ? POLL_MS : POLL_MS * 2;
    }
    poll(refresh);
  }

  // ---- one job ----
  function jobPage(id) {
    const title = el('h1');
    const facts = el('dl', { id: 'facts' });
    const training = chart('chart-training', 'training loss');
    const during = chart('chart-during', 'collapse ratio during training');
    const duringHead = el('h2', { text: 'Evaluations during training' });
    const evals = el('div', { id: 'evals' });
    const attempts = el('div', { id: 'attempts' });
    const log = el('pre', { id: 'log', class: 'log' });
    const logHead = el('h2', { text: 'Log' });
    const metrics = el('div', { id: 'metrics' });
    const artifacts = el('div', { id: 'artifacts' });
    const config = el('pre', { id: 'config', class: 'config' });
    let evalVersion = null;
    fill(app, title, facts, el('h2', { text: 'Training curves' }), training.box, duringHead, during.box,
      el('h2', { text: 'Evaluations' }), evals, el('h2', { text: 'Attempts' }), attempts, logHead, log,
      el('h2', { text: 'Latest metrics' }), metrics, el('h2', { text: 'Artifacts' }), artifacts,
      el('h2', { text: 'Resolved config' }), config);

    poll(async () => {
      const d = await getJSON('/api/jobs/' + enc(id));
      const j = d.job;
      fill(title, j.label || j.id, ' ', badge(j.status));
      const fact = (k, v) => [el('dt', { text: k }), el('dd', {}, v)];
      fill(facts, ...[
        fact('id', j.id),
        fact('sweeps', d.sweeps.map((s, i) => [i ? ', ' : '', el('a', { href: '/sweeps/' + enc(s), text: s })])),
        fact('step', [bar(j.progress), ' ', (j.step === null ? '—' : j.step) + (j.total_steps ? ' / ' + j.total_steps : '')]),
        j.stopped_early === null || j.stopped_early === undefined ? [] : fact('stopped early', 'at step ' + j.stopped_early),
        fact('last loss', num(j.last_loss, 4)),
        fact('tokens/s', j.tokens_per_s === null ? '—' : Math.round(j.tokens_per_s).toLocaleString('en')),
        fact('peak memory', j.peak_mem_gb === null ? '—' : num(j.peak_mem_gb, 2) + ' GB'),
        fact('device', gpuText(j) + (j.host ? ' on ' + j.host : '')),
        fact('state size', num(j.state_size)),
        fact('parameters', num(j.n_params)),
        fact('training length', num(j.train_len)),
        fact('run directory', d.run_dir),
        j.error ? fact('error', el('span', { class: 'error', text: (j.error_class ? j.error_class + ': ' : '') + j.error })) : [],
      ].flat());
      training.set(d.charts.training);
      during.set(d.charts.during_training);
      duringHead.hidden = during.box.hidden = !d.charts.during_training;
      const ev = JSON.stringify(d.evals.map((e) => [e.index, e.step])) + ':' + j.version;
      if (ev !== evalVersion) {
        evalVersion = ev;
        fill(evals, ...(d.evals.length ? d.evals.map((e) => {
          const c = chart('eval-' + e.index, e.kind + ' evaluation ' + e.index);
          c.set(e.chart ? e.chart + '?v=' + j.version : null);
          const summary = Object.entries(e.summary).map(([k, v]) => el('tr', {}, el('td', { text: k }), el('td', { class: 'num', text: num(v) })));
          return el('section', { class: 'eval', 'data-kind': e.kind },
            el('h3', { text: '#' + e.index + ' ' + e.kind + ' (step ' + e.step + ')' }),
            summary.length ? el('table', {}, el('tbody', {}, summary)) : null,
            e.chart ? c.box : el('p', { class: 'muted', text: 'no chart for this kind; the result is in /api/jobs/' + j.id }));
        }) : [el('p', { class: 'muted', text: 'no evaluation yet' })]));
      }
      fill(attempts, d.attempts.length ? table(['#', 'status', 'backend', 'host', 'GPU', 'started', 'ended', 'exit', 'error', 'log'],
        d.attempts.map((a) => el('tr', {},
          el('td', { text: a.number }), el('td', {}, badge(a.status)), el('td', { text: a.backend }),
          el('td', { text: a.host || '—' }), el('td', { text: a.gpu_name || a.gpu || '—' }),
          el('td', { text: a.started_at }), el('td', { text: a.ended_at || '…' }),
          el('td', { text: a.exit_code === null ? '—' : a.exit_code }),
          el('td', { class: 'error', text: a.error ? (a.error_class ? a.error_class + ': ' : '') + a.error : '' }),
          el('td', {}, a.log_url ? el('a', { href: a.log_url, text: 'log' }) : '—')))) : el('p', { class: 'muted', text: 'not started yet' }));
      if (d.log) {
        logHead.textContent = 'Log tail (attempt ' + d.log.attempt + (d.log.path ? ': ' + d.log.path : '') + ')';
        log.textContent = d.log.error || d.log.lines.join('\n') || '(empty)';
      } else {
        log.textContent = '(no attempt yet)';
      }
      fill(metrics, table(['metric', 'step', 'value'], Object.entries(d.latest_metrics).map(([k, m]) =>
        el('tr', {}, el('td', { text: k }), el('td', { class: 'num', text: m.step }), el('td', { class: 'num', text: num(m.value) })))));
      fill(artifacts, d.artifacts.length ? el('ul', {}, d.artifacts.map((a) =>
        el('li', {}, el('a', { href: a.url, text: a.kind + (a.step === null ? '' : ' @ step ' + a.step) }), ' ', el('code', { text: a.path }))))
        : el('p', { class: 'muted', text: 'none recorded' }));
      if (config.textContent !== d.config_yaml) config.textContent = d.config_yaml;
      return FINISHED.includes(j.status) ? POLL_MS * 4 : POLL_MS;
    });
  }

  // ---- a sweep's report ----
  function reportPage(name) {
    const box = el('div', { id: 'report' }, el('p', { class: 'muted', text: 'drawing the report…' }));
    fill(app, el('h1', { text: name + ': report' }), box);
    let version = null;
    const law = (name, f) => f
      ? el('tr', {}, el('td', { text: name }), el('td', { text: f.law }), el('td', { class: 'num', text: num(f.fit.r2, 4) }), el('td', { class: 'num', text: f.fit.n }))
      : el('tr', {}, el('td', { text: name }), el('td', { class: 'muted', text: 'not fitted' }), el('td', { text: '—' }), el('td', { text: '—' }));
    poll(async () => {
      const r = await getJSON('/api/sweeps/' + enc(name) + '/report');
      if (r.version === version) return 10000;
      version = r.version;
      fill(box,
        el('p', {}, 'Drawn by the reports crate at ' + r.generated_at + ' · ', el('a', { href: r.index_url, text: 'the full static report' })),
        el('h2', { text: 'Fitted laws (S in millions of state parameters, T in thousands of tokens)' }),
        table(['quantity', 'law', 'R²', 'points'], [law('T_forget', r.fits.t_forget), law('T_recall', r.fits.t_recall)], { id: 'fits' }),
        el('h2', { text: 'T_forget per state size' }),
        table(['state size', 'T_forget', 'lengths tried', 'collapsed at'], r.forget.map((f) => el('tr', {},
          el('td', { class: 'num', text: num(f.state_size) }), el('td', { text: f.t_forget_text }),
          el('td', { text: f.lengths_tried.join(', ') }), el('td', { text: f.collapsed_lengths.join(', ') || '—' })))),
        el('h2', { text: 'T_recall per state size' }),
        table(['state size', 'T_recall', 'jobs'], r.recalls.map((x) => el('tr', {},
          el('td', { class: 'num', text: num(x.state_size) }), el('td', { class: 'num', text: num(x.t_recall) }), el('td', { class: 'num', text: x.jobs })))),
        el('h2', { text: 'Figures' }),
        r.figures.length ? r.figures.map((f) => el('figure', {}, el('img', { class: 'chart', src: f.url, alt: f.file }), el('figcaption', { text: f.file })))
          : el('p', { class: 'muted', text: 'no figure yet' }),
        r.skipped.length ? [el('h2', { text: 'Not drawn' }), el('ul', {}, r.skipped.map((s) => el('li', { text: s.what + ': ' + s.why })))] : null);
      return 10000;
    });
  }

  const page = app.dataset.page;
  if (page === 'sweeps') sweepsPage();
  else if (page === 'sweep') sweepPage(app.dataset.sweep);
  else if (page === 'job') jobPage(app.dataset.job);
  else if (page === 'report') reportPage(app.dataset.sweep);
})();
