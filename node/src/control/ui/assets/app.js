// superpeer's web UI. Plain script, no build step, no dependencies.
//
// Everything shown that came from the network (file names, addresses, node ids, reasons)
// is attacker-controlled: the DOM is built with createElement and text nodes only, never
// innerHTML, and no attribute that can run or load anything is set from data.
'use strict';

(() => {
  const SESSION_EXPIRED = 'session expired: run superpeer ui again';
  const MAX_LINE = 1024 * 1024;
  const PAGES = ['search', 'downloads', 'sharing', 'network'];

  const $ = (id) => document.getElementById(id);

  const ui = {
    state: null, // the latest {status, sharing}
    expired: false,
    events: null,
    groups: new Map(), // content id -> search result group
    search: null, // the running search's AbortController
    searchNote: new Map(), // content id -> message after a click on Download
    samples: [], // [{t, uploaded, received, forwarded}] for rates
    actionNote: '',
    renderQueued: false,
  };

  // ---- DOM building: text only ----------------------------------------------------------

  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === 'class') el.className = value;
      else if (key === 'onclick') el.addEventListener('click', value);
      else if (key === 'value' || key === 'max') el[key] = value;
      else el.setAttribute(key, String(value));
    }
    for (const child of children.flat(Infinity)) {
      if (child === null || child === undefined || child === false) continue;
      el.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return el;
  }

  function pill(text, kind, title) {
    return h('span', { class: 'pill ' + (kind || ''), title }, text);
  }

  function definitions(pairs) {
    return h('dl', {}, pairs.filter(Boolean).map(([term, value]) => [h('dt', {}, term), h('dd', {}, value)]));
  }

  // ---- formatting ------------------------------------------------------------------------

  function bytes(n) {
    if (!Number.isFinite(n) || n < 0) return '?';
    const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
    let i = 0;
    while (n >= 1024 && i < units.length - 1) {
      n /= 1024;
      i++;
    }
    return (i === 0 ? String(n) : n.toFixed(n < 10 ? 1 : 0)) + ' ' + units[i];
  }

  function duration(seconds) {
    if (!Number.isFinite(seconds) || seconds < 0) return '';
    seconds = Math.round(seconds);
    if (seconds < 60) return seconds + ' s';
    if (seconds < 3600) return Math.floor(seconds / 60) + ' min ' + (seconds % 60) + ' s';
    return Math.floor(seconds / 3600) + ' h ' + Math.floor((seconds % 3600) / 60) + ' min';
  }

  function short(id) {
    const text = String(id || '');
    return text.length > 12 ? text.slice(0, 12) + '…' : text;
  }

  function nodeId(id) {
    return h('span', { class: 'mono', title: String(id || '') }, short(id));
  }

  // ---- talking to the daemon -------------------------------------------------------------

  function expired() {
    ui.expired = true;
    if (ui.events) ui.events.close();
    $('role').textContent = 'signed out';
    $('role').className = 'badge';
    banner(SESSION_EXPIRED);
    live('off');
  }

  function banner(text) {
    const el = $('banner');
    el.textContent = text || '';
    el.hidden = !text;
  }

  function live(how) {
    $('live').className = 'live ' + how;
    $('live').title = how === 'on' ? 'live updates' : 'not connected';
  }

  async function post(path, body) {
    let response;
    try {
      response = await fetch(path, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify(body || {}),
        credentials: 'same-origin',
      });
    } catch (e) {
      throw new Error('the daemon is not answering (is it still running?)');
    }
    if (response.status === 401) {
      expired();
      throw new Error(SESSION_EXPIRED);
    }
    const data = await response.json().catch(() => ({}));
    if (!response.ok) throw new Error(data.error || 'the daemon answered HTTP ' + response.status);
    return data;
  }

  // Asks for the state once: at start, and to tell an expired session from a stopped daemon.
  async function refresh() {
    let response;
    try {
      response = await fetch('/ui/api/state', { credentials: 'same-origin' });
    } catch (e) {
      banner('the daemon is not answering (is it still running?)');
      live('off');
      return false;
    }
    if (response.status === 401) {
      expired();
      return false;
    }
    if (!response.ok) return false;
    onState(await response.json());
    return true;
  }

  function connect() {
    if (ui.expired) return;
    const events = new EventSource('/ui/events');
    ui.events = events;
    events.addEventListener('status', (e) => {
      live('on');
      banner('');
      onState(JSON.parse(e.data));
    });
    events.addEventListener('expired', () => {
      events.close();
      expired();
    });
    events.onerror = () => {
      live('off');
      if (events.readyState === EventSource.CLOSED) {
        refresh().then((ok) => {
          if (ok) setTimeout(connect, 2000);
        });
      }
    };
  }

  function onState(state) {
    ui.state = state;
    const now = performance.now() / 1000;
    const s = state.status;
    ui.samples.push({
      t: now,
      uploaded: state.sharing.uploaded_bytes,
      received: s.queries_received || 0,
      forwarded: s.queries_forwarded || 0,
    });
    while (ui.samples.length > 2 && now - ui.samples[0].t > 30) ui.samples.shift();
    render();
  }

  // A rate per second over the samples kept (about the last 30 s).
  function rate(field) {
    const first = ui.samples[0];
    const last = ui.samples[ui.samples.length - 1];
    if (!first || last.t - first.t < 1) return 0;
    return Math.max(0, (last[field] - first[field]) / (last.t - first.t));
  }

  // ---- pages -----------------------------------------------------------------------------

  function showPage() {
    const wanted = location.hash.slice(1);
    const page = PAGES.includes(wanted) ? wanted : 'search';
    for (const name of PAGES) $('page-' + name).hidden = name !== page;
    for (const link of document.querySelectorAll('#nav a')) {
      link.classList.toggle('active', link.dataset.page === page);
    }
    render();
  }

  function render() {
    if (ui.renderQueued) return;
    ui.renderQueued = true;
    requestAnimationFrame(() => {
      ui.renderQueued = false;
      renderHeader();
      renderResults();
      renderDownloads();
      renderSharing();
      renderNetwork();
    });
  }

  function renderHeader() {
    if (!ui.state) return;
    const s = ui.state.status;
    const role = $('role');
    role.textContent = s.role;
    role.className = 'badge ' + (s.role === 'supernode' ? 'supernode' : '');
    const running = s.downloads.filter((d) => d.state === 'running' || d.state === 'searching').length;
    $('downloads-count').textContent = String(running);
    $('downloads-count').hidden = running === 0;
  }

  // ---- search ----------------------------------------------------------------------------

  async function runSearch(words) {
    if (ui.search) ui.search.abort();
    const control = new AbortController();
    ui.search = control;
    ui.groups = new Map();
    ui.searchNote = new Map();
    searchStatus('Searching…');
    $('search-empty').hidden = true;
    render();
    let response;
    try {
      response = await fetch('/ui/api/search', {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ words }),
        credentials: 'same-origin',
        signal: control.signal,
      });
    } catch (e) {
      if (!control.signal.aborted) searchStatus('the daemon is not answering (is it still running?)', true);
      return;
    }
    if (response.status === 401) {
      expired();
      searchStatus(SESSION_EXPIRED, true);
      return;
    }
    if (!response.ok) {
      const data = await response.json().catch(() => ({}));
      searchStatus(data.error || 'the search failed (HTTP ' + response.status + ')', true);
      return;
    }
    let refused = null;
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = '';
    for (;;) {
      let chunk;
      try {
        chunk = await reader.read();
      } catch (e) {
        if (control.signal.aborted) return;
        refused = 'the search was cut off';
        break;
      }
      if (chunk.done) break;
      buffer += decoder.decode(chunk.value, { stream: true });
      let newline;
      while ((newline = buffer.indexOf('\n')) >= 0) {
        const line = buffer.slice(0, newline).trim();
        buffer = buffer.slice(newline + 1);
        if (!line) continue;
        const item = JSON.parse(line);
        if (item.error) refused = String(item.error);
        else addResult(item);
      }
      if (buffer.length > MAX_LINE) {
        control.abort();
        refused = 'the daemon sent a result line that is too long';
        break;
      }
      searchStatus(countText() + ' so far…');
      render();
    }
    if (ui.search === control) ui.search = null;
    if (refused) searchStatus(refused, true);
    else if (ui.groups.size === 0) searchStatus('Nothing found for “' + words + '”. Try fewer or other words.');
    else searchStatus(countText() + '.');
    render();
  }

  function countText() {
    const n = ui.groups.size;
    return n + (n === 1 ? ' file' : ' files');
  }

  function searchStatus(text, isError) {
    const el = $('search-status');
    el.textContent = text;
    el.className = isError ? 'error-text' : 'muted';
  }

  // Results of one content id from every line and holder, whatever their names.
  function addResult(result) {
    const id = String(result.content_id);
    let group = ui.groups.get(id);
    if (!group) {
      group = { id, names: new Map(), sizes: new Set(), holders: new Map() };
      ui.groups.set(id, group);
    }
    const name = String(result.name);
    group.names.set(name, (group.names.get(name) || 0) + 1);
    group.sizes.add(Number(result.size));
    for (const holder of result.holders || []) group.holders.set(String(holder.node_id), holder);
  }

  function downloadOf(id) {
    if (!ui.state) return null;
    return ui.state.status.downloads.find((d) => d.content_id === id) || null;
  }

  function renderResults() {
    const list = $('search-results');
    const groups = [...ui.groups.values()].sort((a, b) => b.holders.size - a.holders.size);
    list.replaceChildren(...groups.map(resultItem));
  }

  function resultItem(group) {
    const names = [...group.names.entries()].sort((a, b) => b[1] - a[1]).map(([name]) => name);
    const holders = [...group.holders.values()];
    const firewalled = holders.filter((holder) => holder.firewalled).length;
    const sizes = [...group.sizes].map(bytes).join(' or ');
    const download = downloadOf(group.id);
    const note = ui.searchNote.get(group.id);
    let button;
    if (download && (download.state === 'running' || download.state === 'searching')) {
      button = h('button', { class: 'secondary', disabled: true }, 'Downloading…');
    } else if (download && download.state === 'finished') {
      button = h('button', { class: 'secondary', onclick: () => go('downloads') }, 'Downloaded');
    } else {
      button = h('button', { class: 'download', 'data-cid': group.id, onclick: () => startDownload(group.id) }, 'Download');
    }
    return h('div', { class: 'item result', 'data-cid': group.id },
      h('div', { class: 'item-head' },
        h('div', { class: 'item-main' },
          h('div', { class: 'name' }, names[0]),
          h('div', { class: 'meta' },
            h('span', {}, sizes),
            h('span', {}, holders.length + (holders.length === 1 ? ' holder' : ' holders')),
            firewalled > 0 ? pill(firewalled + ' firewalled', 'warn', 'behind a NAT or firewall: reached through its supernode') : null,
            h('span', { class: 'mono', title: group.id }, short(group.id))),
          names.length > 1 ? h('div', { class: 'variants' }, 'Also named: ' + names.slice(1).join(' · ')) : null,
          note ? h('div', { class: note.error ? 'small error-text' : 'small muted' }, note.text) : null,
          h('details', {},
            h('summary', {}, 'Holders'),
            h('table', {},
              h('tr', {}, h('th', {}, 'Node'), h('th', {}, 'Address'), h('th', {}, 'Reached')),
              holders.map((holder) => h('tr', { class: 'holder' },
                h('td', {}, nodeId(holder.node_id)),
                h('td', { class: 'mono' }, String(holder.addr)),
                h('td', {}, holder.firewalled
                  ? pill('firewalled', 'warn', 'behind a NAT or firewall: reached through its supernode')
                  : pill('direct', ''))))))),
        h('div', { class: 'item-actions' }, button)));
  }

  async function startDownload(id) {
    ui.searchNote.set(id, { text: 'Starting…' });
    render();
    try {
      await post('/ui/api/get', { content_id: id });
      ui.searchNote.set(id, { text: 'Downloading: see Downloads.' });
    } catch (e) {
      ui.searchNote.set(id, { text: e.message, error: true });
    }
    render();
  }

  // ---- downloads -------------------------------------------------------------------------

  const STATES = {
    searching: ['finding holders', 'info'],
    running: ['downloading', 'info'],
    finished: ['complete and verified', 'good'],
    failed: ['failed', 'bad'],
    paused: ['paused', 'warn'],
    cancelled: ['cancelled', ''],
  };

  function renderDownloads() {
    if (!ui.state) return;
    const downloads = ui.state.status.downloads;
    $('downloads-empty').hidden = downloads.length > 0;
    $('downloads-list').replaceChildren(...downloads.map(downloadItem));
  }

  function downloadItem(d) {
    const [label, kind] = STATES[d.state] || [String(d.state), ''];
    const size = Number(d.size);
    const done = Number(d.bytes_done);
    const percent = size > 0 ? Math.floor((100 * done) / size) : 0;
    const rateNow = Number(d.rate) || 0;
    const left = rateNow > 0 ? duration((size - done) / rateNow) + ' left' : null;
    const bar = h('progress', { value: done, max: Math.max(size, 1) });
    if (d.state === 'finished') bar.classList.add('done');
    if (d.state === 'paused' || d.state === 'cancelled' || d.state === 'failed') bar.classList.add('stopped');
    const actions = [];
    if (d.state === 'running' || d.state === 'searching') {
      actions.push(h('button', { class: 'secondary pause', onclick: () => act('pause', d.content_id) }, 'Pause'));
    }
    if (d.state === 'paused') {
      actions.push(h('button', { class: 'resume', onclick: () => act('resume', d.content_id) }, 'Resume'));
    }
    if (d.state === 'running' || d.state === 'searching' || d.state === 'paused') {
      actions.push(h('button', { class: 'danger cancel', onclick: () => act('cancel', d.content_id) }, 'Cancel'));
    }
    if (d.state === 'failed' || d.state === 'cancelled') {
      actions.push(h('button', { class: 'secondary retry', onclick: () => retry(d.content_id) }, 'Try again'));
    }
    const sources = d.sources || [];
    return h('div', { class: 'item download-item', 'data-cid': d.content_id, 'data-state': d.state },
      h('div', { class: 'item-head' },
        h('div', { class: 'item-main' },
          h('div', { class: 'name' }, d.name || short(d.content_id)),
          h('div', { class: 'meta' },
            pill(label, kind),
            size > 0 ? h('span', { class: 'progress-text' }, bytes(done) + ' of ' + bytes(size) + ' (' + percent + '%)') : null,
            d.state === 'running' ? h('span', {}, bytes(rateNow) + '/s') : null,
            d.state === 'running' && left ? h('span', {}, left) : null,
            h('span', { class: 'mono', title: d.content_id }, short(d.content_id)))),
        h('div', { class: 'item-actions' }, actions)),
      bar,
      d.error ? h('div', { class: 'small error-text' }, String(d.error)) : null,
      d.path ? h('div', { class: 'saved' }, 'Verified against its content id and saved to ', h('span', { class: 'mono path' }, String(d.path))) : null,
      sources.length > 0
        ? h('table', { class: 'sources' },
          h('tr', {}, h('th', {}, 'Source'), h('th', {}, 'State'), h('th', { class: 'num' }, 'Bytes'), h('th', {}, 'Reached')),
          sources.map((source) => h('tr', {},
            h('td', {}, nodeId(source.node_id)),
            h('td', {}, sourceState(source)),
            h('td', { class: 'num' }, bytes(Number(source.bytes))),
            h('td', {}, source.reached ? String(source.reached) : '—'))))
        : null);
  }

  function sourceState(source) {
    if (source.state === 'dropped') return [pill('dropped', 'bad'), ' ', h('span', { class: 'small muted' }, String(source.reason || ''))];
    if (source.state === 'sending') return pill('sending', 'good');
    if (source.state === 'sent') return pill('sent', 'good');
    if (source.state === 'connected') return pill('connected', 'info');
    return Number(source.bytes) > 0 ? pill('sent', 'good') : '—';
  }

  async function act(action, id) {
    try {
      await post('/ui/api/downloads/' + action, { content_id: id });
    } catch (e) {
      banner(e.message);
    }
  }

  async function retry(id) {
    try {
      await post('/ui/api/get', { content_id: id });
    } catch (e) {
      banner(e.message);
    }
  }

  // ---- sharing ---------------------------------------------------------------------------

  function renderSharing() {
    if (!ui.state) return;
    const s = ui.state.status;
    const sharing = ui.state.sharing;
    const publication = s.publication;
    const folder = sharing.folder
      ? h('div', { class: 'card wide' },
        h('h2', {}, 'Shared folder'),
        h('p', { class: 'mono path' }, String(sharing.folder)),
        h('p', {}, h('span', { class: 'big' }, String(s.shared_files)), ' ', s.shared_files === 1 ? 'file shared' : 'files shared'),
        hashingView(s.hashing),
        publication ? h('p', { class: 'muted' }, publicationText(publication)) : null)
      : h('div', { class: 'card wide' },
        h('h2', {}, 'Shared folder'),
        h('p', {}, 'This node shares no folder.'),
        h('p', { class: 'muted' }, 'Start the daemon with --share DIR to share the files of a folder (changes are picked up as they happen).'));
    const upRate = rate('uploaded');
    const uploads = h('div', { class: 'card wide' },
      h('h2', {}, 'Uploads'),
      sharing.upload_sessions > 0
        ? h('p', {}, h('span', { class: 'big' }, String(sharing.upload_sessions)), ' ', 'in progress, to ' + sharing.upload_peers + (sharing.upload_peers === 1 ? ' peer' : ' peers'))
        : h('p', { class: 'muted' }, 'No uploads in progress.'),
      definitions([
        ['Uploaded since start', bytes(Number(sharing.uploaded_bytes)) + ' in ' + sharing.uploaded_pieces + ' pieces'],
        ['Rate', upRate > 0 ? bytes(upRate) + '/s' : 'idle'],
      ]));
    $('sharing').replaceChildren(folder, uploads);
  }

  // New or changed files are hashed before they are shared: show how far that is.
  function hashingView(hashing) {
    if (!hashing || !(Number(hashing.files) > 0)) return null;
    const total = Number(hashing.bytes);
    const done = Number(hashing.bytes_done);
    const share = total > 0 ? Math.min(1, done / total) : 0;
    return h('div', { id: 'hashing' },
      h('p', {}, 'Hashing ' + hashing.files_done + ' of ' + hashing.files + (Number(hashing.files) === 1 ? ' file' : ' files') + ': ' + bytes(done) + ' of ' + bytes(total)),
      h('progress', { value: done, max: Math.max(total, 1), title: Math.round(share * 100) + '%' }));
  }

  function publicationText(p) {
    const total = p.indexed + p.pending;
    let text = 'Indexed by the supernode: ' + p.indexed + ' of ' + total;
    if (p.reason) text += ' (' + p.pending + ' not indexed: ' + p.reason + ')';
    return text;
  }

  // ---- network ---------------------------------------------------------------------------

  const REACH = {
    public: ['public', 'good', 'Others can connect to this node directly.'],
    nat: ['behind a NAT', 'warn', 'Others reach this node through its supernode: a reverse connection, a hole punch, or a relay.'],
    unknown: ['unknown', '', 'No supernode has told this node yet whether it can be reached.'],
  };

  function renderNetwork() {
    if (!ui.state) return;
    const s = ui.state.status;
    const cards = [];
    cards.push(h('div', { class: 'card' },
      h('h2', {}, 'This node'),
      definitions([
        ['Role', h('span', { class: 'badge ' + (s.role === 'supernode' ? 'supernode' : '') }, s.role)],
        ['Node id', nodeId(s.node_id)],
        ['Listening on', h('span', { class: 'mono' }, s.listen)],
        ['Advertised', h('span', { class: 'mono' }, s.advertise)],
      ])));
    const supernode = s.supernode
      ? definitions([
        ['Node id', nodeId(s.supernode.node_id)],
        ['Address', h('span', { class: 'mono' }, String(s.supernode.addr))],
        ['Round trip', Number(s.supernode.rtt_ms).toFixed(1) + ' ms'],
      ])
      : h('p', { class: 'muted' }, s.role === 'supernode'
        ? 'This node is a supernode: leaves attach to it.'
        : 'Not attached yet: looking for a supernode…');
    cards.push(h('div', { class: 'card', id: 'net-supernode' }, h('h2', {}, 'Supernode'), supernode));
    if (s.role !== 'supernode') cards.push(candidatesCard(s.candidates || []));
    const reach = s.reachability || {};
    const [reachLabel, reachKind, reachText] = REACH[reach.kind] || [String(reach.kind || 'unknown'), '', ''];
    cards.push(h('div', { class: 'card', id: 'net-reachability' },
      h('h2', {}, 'Reachability'),
      h('p', {}, pill(reachLabel, reachKind)),
      h('p', { class: 'muted small' }, reachText),
      definitions([
        reach.mapping ? ['NAT mapping', String(reach.mapping)] : null,
        reach.observed ? ['Seen at', h('span', { class: 'mono' }, String(reach.observed))] : null,
      ])));
    if (s.role === 'supernode') cards.push(...supernodeCards(s));
    cards.push(roleCard(s));
    $('network').replaceChildren(...cards);
  }

  // The supernodes a leaf knows and what its probes measured: why it picked the one it did.
  function candidatesCard(candidates) {
    const load = (c) => c.capacity === undefined ? '—'
      : c.capacity === 0 ? String(c.leaves) + ' leaves' : c.leaves + ' of ' + c.capacity;
    return h('div', { class: 'card wide', id: 'net-candidates' },
      h('h2', {}, 'Candidates'),
      candidates.length === 0
        ? h('p', { class: 'muted' }, 'No supernode known yet: the list servers and --peer name them.')
        : h('table', {},
          h('tr', {}, h('th', {}, 'Supernode'), h('th', {}, 'Address'), h('th', { class: 'num' }, 'Round trip'), h('th', { class: 'num' }, 'Leaves'), h('th', {}, '')),
          candidates.map((c) => h('tr', { class: 'candidate' },
            h('td', {}, nodeId(c.node_id)),
            h('td', { class: 'mono' }, String(c.addr)),
            h('td', { class: 'num' }, c.rtt_ms === undefined ? 'not measured' : Number(c.rtt_ms).toFixed(1) + ' ms'),
            h('td', { class: 'num' }, load(c)),
            h('td', {}, c.attached ? pill('attached', 'good') : null)))));
  }

  function supernodeCards(s) {
    const perMinute = (field) => (rate(field) * 60).toFixed(1) + ' a minute';
    const neighbours = Object.entries((s.summaries && s.summaries.neighbors) || {});
    const cards = [h('div', { class: 'card', id: 'net-load' },
      h('h2', {}, 'As a supernode'),
      definitions([
        ['Leaves', String(s.leaves ?? 0)],
        ['Neighbours', String(s.neighbors ?? 0)],
        ['Files indexed', String(s.indexed ?? 0)],
        ['Queries from neighbours', (s.queries_received ?? 0) + ' (' + perMinute('received') + ')'],
        ['Queries to neighbours', (s.queries_forwarded ?? 0) + ' (' + perMinute('forwarded') + ')'],
        s.directory ? ['Supernodes known', String(s.directory.members)] : null,
      ]))];
    cards.push(h('div', { class: 'card' },
      h('h2', {}, 'Neighbours'),
      neighbours.length === 0
        ? h('p', { class: 'muted' }, 'No neighbour yet: other supernodes come from the list server.')
        : h('table', {},
          h('tr', {}, h('th', {}, 'Supernode'), h('th', {}, 'Its summary')),
          neighbours.map(([id, generation]) => h('tr', {},
            h('td', {}, nodeId(id)),
            h('td', {}, generation === null ? 'not yet' : 'generation ' + generation))))));
    if (s.relay) {
      cards.push(h('div', { class: 'card', id: 'net-relay' },
        h('h2', {}, 'Relay for firewalled leaves'),
        definitions([
          ['Sessions now', String(s.relay.active)],
          ['Relayed since start', String(s.relay.admitted)],
          ['Refused (over the caps)', String(s.relay.refused)],
          ['Cut off', String(s.relay.cut_off)],
          ['Bytes relayed', bytes(Number(s.relay.bytes))],
        ])));
    }
    return cards;
  }

  function roleCard(s) {
    const isSupernode = s.role === 'supernode';
    const button = isSupernode
      ? h('button', { class: 'secondary', id: 'demote', onclick: () => changeRole('demote') }, 'Step down to leaf')
      : h('button', { id: 'promote', onclick: () => changeRole('promote') }, 'Promote to supernode');
    return h('div', { class: 'card' },
      h('h2', {}, 'Role'),
      h('p', { class: 'muted small' }, isSupernode
        ? 'Stepping down sends this node\'s leaves to other supernodes; it goes on sharing, searching and downloading as a leaf.'
        : 'A supernode indexes the files of up to hundreds of leaves and routes their queries. It must be reachable from outside.'),
      button,
      ui.actionNote ? h('p', { class: 'small', id: 'role-note' }, ui.actionNote) : null);
  }

  async function changeRole(how) {
    ui.actionNote = how === 'promote' ? 'Promoting… (waiting for a list server to dial back)' : 'Stepping down…';
    render();
    try {
      const answer = await post('/ui/api/' + how, {});
      ui.actionNote = how === 'promote'
        ? 'Now a supernode.' + (answer.note ? ' ' + answer.note : '')
        : 'Now a leaf.';
    } catch (e) {
      ui.actionNote = e.message;
    }
    render();
  }

  // ---- start -----------------------------------------------------------------------------

  function go(page) {
    location.hash = '#' + page;
  }

  function start() {
    window.addEventListener('hashchange', showPage);
    $('search-form').addEventListener('submit', (e) => {
      e.preventDefault();
      const words = $('search-words').value.trim();
      if (!words) {
        searchStatus('Type at least one word.', true);
        return;
      }
      runSearch(words);
    });
    showPage();
    refresh().then((ok) => {
      if (ok) connect();
    });
  }

  start();
})();
