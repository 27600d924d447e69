// The cloud3 viewer page: owns the WebSocket and the DOM; everything a device does (keys,
// handshake, document sync, chunk verification, decompression) happens in the wasm Viewer.
import init, { Viewer, closeReason } from './pkg/cloud3_wasm.js';

const $ = (id) => document.getElementById(id);
const store = window.localStorage;
const state = {
  viewer: null, ws: null, cwd: '', tree: [], open: null, backoff: 500, revoked: false,
  // Enrolling with a code typed here (a refusal is then about the code or the account).
  enrolling: false,
  // The path the URL names (`#/dir/file`), applied once the tree holds it.
  route: '',
  sort: { key: 'name', descending: false },
  selected: -1,
  treeDirty: false,
  // Bumped by each render, so batches of rows from an older one stop.
  rendering: 0,
};
const KEYS = ['cloud3.secret', 'cloud3.enrolled', 'cloud3.user'];
const collator = new Intl.Collator(undefined, { numeric: true, sensitivity: 'base' });

function setStatus(kind, text) {
  $('status').dataset.state = kind;
  $('status').textContent = text;
}

function say(text) {
  $('message').textContent = text || '';
}

function formatSize(n) {
  if (n < 1024) return `${n} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let value = n;
  let unit = -1;
  while (value >= 1024 && unit < units.length - 1) { value /= 1024; unit += 1; }
  return `${value.toFixed(value < 10 ? 1 : 0)} ${units[unit]}`;
}

const dateFormat = new Intl.DateTimeFormat(undefined, { dateStyle: 'short', timeStyle: 'medium' });

function formatDate(ms) {
  return ms ? dateFormat.format(ms) : '';
}

function send(frames) {
  for (const frame of frames) {
    if (state.ws && state.ws.readyState === WebSocket.OPEN) state.ws.send(frame);
  }
}

function connect() {
  const url = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/ws`;
  setStatus('loading', 'connecting…');
  const ws = new WebSocket(url);
  ws.binaryType = 'arraybuffer';
  state.ws = ws;
  ws.onmessage = (event) => {
    try {
      send(state.viewer.receive(new Uint8Array(event.data)));
    } catch (error) {
      say(error.message);
    }
    handleEvents();
  };
  ws.onclose = (event) => {
    if (state.ws !== ws) return;
    state.ws = null;
    const reason = closeReason(event.code);
    if (event.code === 4003 || event.code === 4001) {
      state.revoked = true;
      const why = event.reason || reason;
      if (state.enrolling || !store.getItem('cloud3.enrolled')) {
        // The code or the account is wrong (or the code was used or expired): say so, and
        // keep what was typed so it can be corrected.
        state.enrolling = false;
        showEnrol();
        setStatus('error', 'enrolment refused');
        say(`The relay refused the code for account "${store.getItem('cloud3.user') || ''}": ${why}. `
          + 'Check the account name and the code (a code works once, for 10 minutes; '
          + 'get a new one with cloud3 pair --read-only).');
      } else {
        setStatus('revoked', reason);
        say(`This browser's device was refused: ${why}. Sign out and enrol it again with a new code.`);
      }
      return;
    }
    setStatus('offline', 'offline: reconnecting…');
    setTimeout(connect, state.backoff);
    state.backoff = Math.min(state.backoff * 2, 15000);
  };
}

function handleEvents() {
  for (const event of JSON.parse(state.viewer.events())) {
    switch (event.kind) {
      case 'welcome':
        state.backoff = 500;
        if (state.enrolling) say('');
        state.enrolling = false;
        store.setItem('cloud3.secret', state.viewer.secretHex());
        store.setItem('cloud3.enrolled', '1');
        setStatus('online', event.readOnly ? 'online · read-only' : 'online');
        $('enrol').hidden = true;
        $('browser').hidden = false;
        $('sign-out').hidden = false;
        break;
      case 'tree':
        // A catch-up arrives as many messages: derive and draw the tree once per frame.
        if (!state.treeDirty) {
          state.treeDirty = true;
          requestAnimationFrame(refreshTree);
        }
        break;
      case 'file':
        if (state.open && state.open.key === event.key) show(state.viewer.bytes(event.key));
        break;
      case 'error':
        if (event.code === 'hash-mismatch') setStatus('error', 'hash mismatch: chunk refused');
        say(event.message);
        break;
      default:
        break;
    }
  }
}

function refreshTree() {
  state.treeDirty = false;
  if (!state.viewer) return;
  state.tree = JSON.parse(state.viewer.tree());
  applyRoute();
}

// Routing: the URL's hash names a folder or a file (`#/docs/notes/readme.txt`), so Back,
// Forward, reloads and links work.
function hashOf(path) {
  return `#/${path.split('/').filter(Boolean).map(encodeURIComponent).join('/')}`;
}

function pathOfHash() {
  const hash = location.hash.replace(/^#\/?/, '');
  try {
    return hash.split('/').filter(Boolean).map(decodeURIComponent).join('/');
  } catch {
    return '';
  }
}

function go(path) {
  if (location.hash !== hashOf(path)) location.hash = hashOf(path);
  else applyRoute();
}

// Shows what the URL names (a path not in the tree yet is shown once it arrives), then draws.
function applyRoute() {
  const path = state.route;
  const entry = path === '' ? null : state.tree.find((e) => e.path === path);
  if (path === '' || (entry && entry.kind === 'dir')) {
    setCwd(path);
    closeFile();
  } else if (entry) {
    setCwd(entry.parent);
    if (!state.open || state.open.entry.path !== path) open(entry, -1);
  }
  render();
}

function setCwd(path) {
  if (state.cwd === path) return;
  state.cwd = path;
  state.selected = -1;
  $('filter').value = '';
}

function closeFile() {
  state.open = null;
  $('file').hidden = true;
}

const KINDS = [
  ['image', /\.(png|jpe?g|gif|webp|svg|bmp|ico|heic|tiff?)$/i],
  ['archive', /\.(zip|tar|gz|tgz|bz2|xz|zst|7z|rar)$/i],
  ['audio', /\.(mp3|ogg|oga|flac|wav|m4a|opus)$/i],
  ['video', /\.(mp4|mkv|webm|mov|avi)$/i],
  ['pdf', /\.pdf$/i],
];

function kindOf(entry) {
  if (entry.kind === 'dir') return 'dir';
  if (entry.kind === 'symlink') return 'link';
  const match = KINDS.find(([, pattern]) => pattern.test(entry.name));
  if (match) return match[0];
  return TEXT.test(entry.name) ? 'text' : 'other';
}

function compare(a, b) {
  if ((a.kind === 'dir') !== (b.kind === 'dir')) return a.kind === 'dir' ? -1 : 1;
  const { key, descending } = state.sort;
  let order = 0;
  if (key === 'size') order = a.size - b.size;
  else if (key === 'date') order = a.mtime - b.mtime;
  if (order === 0) order = collator.compare(a.name, b.name);
  return descending ? -order : order;
}

function visibleEntries() {
  const filter = $('filter').value.trim().toLowerCase();
  return state.tree
    .filter((e) => e.parent === state.cwd && (!filter || e.name.toLowerCase().includes(filter)))
    .sort(compare);
}

const FIRST_ROWS = 200;
const ROW_BATCH = 2000;

// Rows for entries[from..to] of the current listing.
function rowsFor(entries, from, to) {
  const rows = document.createDocumentFragment();
  entries.slice(from, to).forEach((entry, offset) => {
    const index = from + offset;
    const row = document.createElement('div');
    row.className = index === state.selected ? 'row entry selected' : 'row entry';
    row.setAttribute('role', 'row');
    row.dataset.path = entry.path;
    row.dataset.kind = kindOf(entry);
    const cell = () => {
      const element = document.createElement('span');
      element.setAttribute('role', 'cell');
      return element;
    };
    const name = cell();
    const icon = document.createElement('span');
    icon.className = 'icon';
    icon.setAttribute('aria-hidden', 'true');
    icon.dataset.kind = row.dataset.kind; // style.css draws each kind's icon
    const a = document.createElement('a');
    a.href = hashOf(entry.path);
    a.textContent = entry.kind === 'dir' ? `${entry.name}/` : entry.name;
    name.append(icon, a);
    const size = cell();
    size.className = 'size';
    size.textContent = entry.kind === 'dir' ? '' : formatSize(entry.size);
    const date = cell();
    date.className = 'date';
    date.textContent = formatDate(entry.mtime);
    row.append(name, size, date);
    if (entry.flagged) {
      // The relay's scan flagged this version: a warning, and no way to open or download it.
      row.classList.add('flagged');
      const warning = document.createElement('span');
      warning.className = 'warning';
      warning.textContent = ` ⚠ flagged by the relay's malware scan: ${entry.verdict}`;
      name.append(warning);
    }
    row.onclick = (event) => {
      if (event.target.closest('a')) return; // the link navigates
      go(entry.path);
    };
    rows.append(row);
  });
  return rows;
}

function render() {
  const crumbs = $('breadcrumbs');
  crumbs.replaceChildren();
  const parts = state.cwd ? state.cwd.split('/') : [];
  const link = (label, path) => {
    const a = document.createElement('a');
    a.textContent = label;
    a.href = hashOf(path);
    return a;
  };
  crumbs.append(link('/', ''));
  parts.forEach((part, i) => {
    crumbs.append(' ', link(part, parts.slice(0, i + 1).join('/')), ' /');
  });
  for (const header of $('tree').querySelectorAll('[data-sort]')) {
    if (header.dataset.sort === state.sort.key) header.setAttribute('aria-sort', state.sort.descending ? 'descending' : 'ascending');
    else header.removeAttribute('aria-sort');
  }
  const entries = visibleEntries();
  // The first screenful at once, the rest in batches after it is on screen: a folder of
  // 10,000 entries shows at once and fills in (a newer render stops an older one's batches).
  state.rendering += 1;
  const generation = state.rendering;
  const body = $('rows');
  body.replaceChildren(rowsFor(entries, 0, FIRST_ROWS));
  const more = (from) => {
    if (generation !== state.rendering || from >= entries.length) return;
    body.append(rowsFor(entries, from, from + ROW_BATCH));
    setTimeout(() => more(from + ROW_BATCH), 0);
  };
  setTimeout(() => more(FIRST_ROWS), 0);
  const inFolder = state.tree.reduce((n, e) => n + (e.parent === state.cwd ? 1 : 0), 0);
  $('count').textContent = entries.length === inFolder
    ? `${inFolder} ${inFolder === 1 ? 'entry' : 'entries'}`
    : `${entries.length} of ${inFolder} entries match`;
  if (state.open) {
    const current = state.tree.find((e) => e.id === state.open.entry.id);
    if (current && state.open.version < 0 && current.size !== state.open.entry.size) open(current, -1);
    else if (current && state.open.version < 0 && current.mtime !== state.open.entry.mtime) open(current, -1);
  }
}

function select(index) {
  const rows = $('rows').children;
  if (rows.length === 0) return;
  const next = Math.max(0, Math.min(rows.length - 1, index));
  if (rows[state.selected]) {
    rows[state.selected].classList.remove('selected');
    rows[state.selected].removeAttribute('aria-selected');
  }
  state.selected = next;
  rows[next].classList.add('selected');
  rows[next].setAttribute('aria-selected', 'true');
  rows[next].scrollIntoView({ block: 'nearest' });
}

function parentOf(path) {
  return path.includes('/') ? path.slice(0, path.lastIndexOf('/')) : '';
}

// Keyboard: arrows move through the listing, Enter opens, Backspace goes up a folder.
document.addEventListener('keydown', (event) => {
  if ($('browser').hidden || event.altKey || event.ctrlKey || event.metaKey) return;
  const typing = event.target instanceof HTMLInputElement;
  if (event.key === 'ArrowDown' || event.key === 'ArrowUp') {
    event.preventDefault();
    if (typing) event.target.blur();
    select(state.selected + (event.key === 'ArrowDown' ? 1 : -1));
  } else if (event.key === 'Enter' && !typing) {
    const row = $('rows').children[state.selected];
    if (row) {
      event.preventDefault();
      go(row.dataset.path);
    }
  } else if (event.key === 'Backspace' && !typing) {
    event.preventDefault();
    go(state.open ? state.cwd : parentOf(state.cwd));
  }
});

for (const header of document.querySelectorAll('#tree [data-sort]')) {
  header.querySelector('button').onclick = () => {
    const key = header.dataset.sort;
    state.sort = { key, descending: state.sort.key === key ? !state.sort.descending : false };
    state.selected = -1;
    render();
  };
}

$('filter').oninput = () => {
  state.selected = -1;
  render();
};

window.addEventListener('hashchange', () => {
  state.route = pathOfHash();
  applyRoute();
});

function open(entry, version) {
  say('');
  $('file').hidden = false;
  $('file-name').textContent = entry.path + (version >= 0 ? ` (version ${version})` : '');
  $('download').hidden = true;
  $('download').removeAttribute('href');
  if (entry.flagged && version < 0) {
    state.open = null;
    $('preview').textContent = `Not available: the relay's malware scan flagged this file (${entry.verdict}).`;
    $('versions').replaceChildren();
    $('versions-note').hidden = true;
    return;
  }
  $('preview').textContent = 'loading…';
  try {
    const opened = state.viewer.open(entry.id, version);
    // Only versions the relay's retention window keeps; they keep their numbers.
    const history = JSON.parse(state.viewer.history(entry.id));
    const note = $('versions-note');
    note.hidden = history.dropped === 0;
    note.textContent = history.dropped === 0 ? ''
      : `${history.dropped === 1 ? '1 older version was' : `${history.dropped} older versions were`} dropped: `
        + `replaced before ${formatDate(history.cutoff)}, outside the relay's ${history.windowDays}-day retention window`;
    const list = $('versions');
    list.replaceChildren();
    history.versions.forEach((v) => {
      const item = document.createElement('li');
      // The command line's numbers (`cloud3 history`, `restore --version N`): one numbering.
      item.value = v.version;
      const a = document.createElement('a');
      a.textContent = `${formatDate(v.writtenAt)} · ${formatSize(v.size)} · ${v.author}`;
      a.onclick = () => open(entry, v.version);
      item.append(a);
      list.append(item);
    });
    state.open = { entry, version, key: opened.key };
    send(opened.frames);
    handleEvents();
  } catch (error) {
    say(error.message);
  }
}

const TEXT = /\.(txt|md|json|toml|rs|js|ts|css|html|csv|log|py|sh|yaml|yml|c|h)$/i;
// Nothing active is shown inline: the type comes from the bytes (magic numbers), never from the
// name, and only raster images and plain text are previewed. Everything is downloaded as
// application/octet-stream, so a polyglot file (HTML or SVG posing as anything) never runs as
// a page on the relay's origin.
function inlineType(bytes) {
  const starts = (...magic) => magic.every((b, i) => bytes[i] === b);
  if (starts(0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a)) return 'image/png';
  if (starts(0xff, 0xd8, 0xff)) return 'image/jpeg';
  if (starts(0x47, 0x49, 0x46, 0x38)) return 'image/gif';
  if (starts(0x52, 0x49, 0x46, 0x46) && bytes[8] === 0x57 && bytes[9] === 0x45 && bytes[10] === 0x42 && bytes[11] === 0x50) return 'image/webp';
  if (bytes.includes(0)) return null;
  try {
    new TextDecoder('utf-8', { fatal: true }).decode(bytes);
    return 'text/plain';
  } catch {
    return null;
  }
}

function show(bytes) {
  const entry = state.open.entry;
  const type = inlineType(bytes);
  const download = $('download');
  download.href = URL.createObjectURL(new Blob([bytes], { type: 'application/octet-stream' }));
  download.download = entry.name;
  download.hidden = false;
  const preview = $('preview');
  preview.replaceChildren();
  preview.dataset.type = type || 'download';
  if (type && type.startsWith('image/')) {
    const img = document.createElement('img');
    img.alt = entry.name;
    img.src = URL.createObjectURL(new Blob([bytes], { type }));
    preview.append(img);
  } else if (type === 'text/plain') {
    const pre = document.createElement('pre');
    pre.textContent = new TextDecoder().decode(bytes);
    preview.append(pre);
  } else {
    preview.textContent = `${formatSize(bytes.length)} of binary data: use Download.`;
  }
  preview.dataset.bytes = String(bytes.length);
}

function showEnrol() {
  $('enrol').hidden = false;
  $('browser').hidden = true;
  $('file').hidden = true;
  $('sign-out').hidden = true;
  setStatus('offline', 'not enrolled');
}

// Sign-out forgets this browser's device key; the relay keeps the device enrolled until another
// device revokes it (`cloud3 revoke`).
$('sign-out').onclick = () => {
  const ws = state.ws;
  state.ws = null;
  if (ws) ws.close();
  for (const key of KEYS) store.removeItem(key);
  Object.assign(state, { viewer: null, tree: [], open: null, cwd: '', selected: -1, revoked: false, enrolling: false });
  $('rows').replaceChildren();
  $('user').value = '';
  $('code').value = '';
  if (location.hash) history.pushState(null, '', location.pathname);
  state.route = '';
  showEnrol();
  say('Signed out: this browser forgot its device key. To retire the device, run cloud3 devices and cloud3 revoke on an enrolled device.');
};

$('enrol-form').onsubmit = (event) => {
  event.preventDefault();
  const user = $('user').value.trim();
  store.setItem('cloud3.user', user);
  store.removeItem('cloud3.enrolled');
  state.viewer = new Viewer(store.getItem('cloud3.secret') || '', user);
  store.setItem('cloud3.secret', state.viewer.secretHex());
  state.viewer.enrolWith($('code').value, $('device-name').value || 'browser');
  state.revoked = false;
  state.enrolling = true;
  say('');
  connect();
};

// For tests and the curious: try to change the folder from this (read-only) device.
window.cloud3 = {
  tryWrite() {
    send(state.viewer.writeAttempt());
  },
  state,
};

await init();
state.route = pathOfHash();
setStatus('offline', 'not connected');
if (store.getItem('cloud3.enrolled') && store.getItem('cloud3.secret')) {
  $('sign-out').hidden = false;
  state.viewer = new Viewer(store.getItem('cloud3.secret'), store.getItem('cloud3.user') || '');
  connect();
} else {
  showEnrol();
}
