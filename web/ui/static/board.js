// board.js makes the board live: it follows /v1/board/stream (server-sent
// events) and rewrites cells in place, building the same markup as the
// server's "cell" template. Without it the board is a plain page.
(function () {
  'use strict';
  var live = document.getElementById('live');
  if (!live || !window.EventSource || !live.dataset.stream) { return; }
  var positionEl = document.getElementById('position');
  var cells = new Map();
  var refetchTimer = null;

  function index() {
    cells.clear();
    document.querySelectorAll('#grid td[data-key]').forEach(function (td) { cells.set(td.dataset.key, td); });
  }

  function span(cls, text) {
    var s = document.createElement('span');
    if (cls) { s.className = cls; }
    s.textContent = text;
    return s;
  }

  function sig(c) { return [c.level, c.label, c.figures, c.flags, c.closed].join('|'); }

  // render replaces a cell's content, keeping keyboard focus on it.
  function render(td, c) {
    var s = sig(c);
    if (td.dataset.sig === s) { return; }
    var hadFocus = td.contains(document.activeElement);
    td.dataset.sig = s;
    td.className = 'cell ' + c.level + (c.closed ? ' closed' : '') + ' changed';
    td.textContent = '';
    if (c.pools > 0) {
      var a = document.createElement('a');
      a.href = c.href;
      a.title = c.description;
      var shown = span('', '');
      shown.setAttribute('aria-hidden', 'true');
      shown.append(span('pct', c.label), span('fig', c.figures), span('flags', c.flags));
      a.append(span('sr-only', c.description), shown);
      td.append(a);
      if (hadFocus) { a.focus(); }
    } else {
      var dash = span('dash', '·');
      dash.setAttribute('aria-hidden', 'true');
      td.append(span('sr-only', 'no pool'), dash);
    }
    setTimeout(function () { td.classList.remove('changed'); }, 1500);
  }

  function gone(key) {
    var parts = key.split('|');
    return { key: key, pools: 0, level: 'gone', label: 'no pool', figures: '', flags: '', closed: false,
      description: parts[0] + ' ' + parts[1] + ': no pool' };
  }

  // refetch replaces the whole grid when a cell has no place on the page
  // (a new slot, region or kind), debounced so a burst refetches once.
  function refetch() {
    if (refetchTimer) { return; }
    refetchTimer = setTimeout(function () {
      refetchTimer = null;
      var focused = document.activeElement && document.activeElement.closest && document.activeElement.closest('td[data-key]');
      var focusKey = focused ? focused.dataset.key : null;
      fetch(live.dataset.grid, { headers: { Accept: 'text/html' }, credentials: 'same-origin' })
        .then(function (r) { if (!r.ok) { throw new Error('grid: HTTP ' + r.status); } return r.text(); })
        .then(function (html) {
          var t = document.createElement('template');
          t.innerHTML = html;
          var fresh = t.content.getElementById('grid');
          var old = document.getElementById('grid');
          if (!fresh || !old) { return; }
          old.replaceWith(fresh);
          index();
          if (focusKey && cells.has(focusKey)) {
            var a = cells.get(focusKey).querySelector('a');
            if (a) { a.focus(); }
          }
        })
        .catch(function (err) { setState('error', 'Could not refresh the grid (' + err.message + '); reload the page.'); });
    }, 250);
  }

  function setState(state, text) {
    live.dataset.state = state;
    live.textContent = text;
  }

  function moved(pos) {
    live.dataset.position = pos;
    setState('live', 'Live: board at stream position ' + pos + ', updated ' + new Date().toISOString().slice(11, 19) + ' UTC.');
  }

  function apply(c) {
    var td = cells.get(c.key);
    if (td) { render(td, c); } else if (c.pools > 0) { refetch(); }
  }

  index();
  var es = new EventSource(live.dataset.stream);
  es.addEventListener('open', function () { setState('live', 'Live: connected.'); });
  es.addEventListener('error', function () { setState('reconnecting', 'Connection lost; reconnecting…'); });
  es.addEventListener('snapshot', function (e) {
    var snap = JSON.parse(e.data);
    var seen = new Set();
    snap.cells.forEach(function (c) { seen.add(c.key); apply(c); });
    cells.forEach(function (td, key) { if (!seen.has(key) && td.querySelector('a')) { render(td, gone(key)); } });
    moved(snap.position);
  });
  es.addEventListener('cell', function (e) {
    apply(JSON.parse(e.data));
    moved(e.lastEventId);
  });
  window.addEventListener('pagehide', function () { es.close(); });
  if (positionEl) { live.dataset.position = positionEl.textContent; }
})();
