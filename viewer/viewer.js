// The cloud3 viewer page: owns the WebSocket and the DOM; everything a device does (keys,
// handshake, document sync, chunk verification, decompression) happens in the wasm Viewer.
import init, { Viewer, closeReason } from './pkg/cloud3_wasm.js';

const $ = (id) => document.getElementById(id);
const store = window.localStorage;
const state = { viewer: null, ws: null, cwd: '', tree: [], open: null, backoff: 500, revoked: false };

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

function formatDate(ms) {
  return ms ? new Date(ms).toLocaleString() : '';
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
      setStatus('revoked', reason);
      if (!store.getItem('cloud3.enrolled')) showEnrol();
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
        store.setItem('cloud3.secret', state.viewer.secretHex());
        store.setItem('cloud3.enrolled', '1');
        setStatus('online', event.readOnly ? 'online · read-only' : 'online');
        $('enrol').hidden = true;
        $('browser').hidden = false;
        break;
      case 'tree':
        state.tree = JSON.parse(state.viewer.tree());
        render();
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

function render() {
  const crumbs = $('breadcrumbs');
  crumbs.replaceChildren();
  const parts = state.cwd ? state.cwd.split('/') : [];
  const link = (label, path) => {
    const a = document.createElement('a');
    a.textContent = label;
    a.onclick = () => { state.cwd = path; render(); };
    return a;
  };
  crumbs.append(link('/', ''));
  parts.forEach((part, i) => {
    crumbs.append(' ', link(part, parts.slice(0, i + 1).join('/')), ' /');
  });
  const body = $('tree').querySelector('tbody');
  body.replaceChildren();
  const entries = state.tree
    .filter((e) => e.parent === state.cwd)
    .sort((a, b) => (a.kind === 'dir') === (b.kind === 'dir') ? a.name.localeCompare(b.name) : a.kind === 'dir' ? -1 : 1);
  for (const entry of entries) {
    const row = document.createElement('tr');
    row.className = 'entry';
    row.dataset.path = entry.path;
    const name = document.createElement('td');
    name.textContent = entry.kind === 'dir' ? `${entry.name}/` : entry.name;
    const size = document.createElement('td');
    size.className = 'size';
    size.textContent = entry.kind === 'dir' ? '' : formatSize(entry.size);
    const date = document.createElement('td');
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
    row.onclick = () => (entry.kind === 'dir' ? (state.cwd = entry.path, render()) : open(entry, -1));
    body.append(row);
  }
  if (state.open) {
    const current = state.tree.find((e) => e.id === state.open.entry.id);
    if (current && state.open.version < 0 && current.size !== state.open.entry.size) open(current, -1);
    else if (current && state.open.version < 0 && current.mtime !== state.open.entry.mtime) open(current, -1);
  }
}

function open(entry, version) {
  say('');
  $('file').hidden = false;
  $('file-name').textContent = entry.path + (version >= 0 ? ` (version ${version + 1})` : '');
  $('download').hidden = true;
  $('download').removeAttribute('href');
  if (entry.flagged && version < 0) {
    state.open = null;
    $('preview').textContent = `Not available: the relay's malware scan flagged this file (${entry.verdict}).`;
    $('versions').replaceChildren();
    return;
  }
  $('preview').textContent = 'loading…';
  try {
    const opened = state.viewer.open(entry.id, version);
    const versions = JSON.parse(state.viewer.history(entry.id));
    const list = $('versions');
    list.replaceChildren();
    versions.forEach((v) => {
      const item = document.createElement('li');
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
  setStatus('offline', 'not enrolled');
}

$('enrol-form').onsubmit = (event) => {
  event.preventDefault();
  const user = $('user').value.trim();
  store.setItem('cloud3.user', user);
  store.removeItem('cloud3.enrolled');
  state.viewer = new Viewer(store.getItem('cloud3.secret') || '', user);
  store.setItem('cloud3.secret', state.viewer.secretHex());
  state.viewer.enrolWith($('code').value, $('device-name').value || 'browser');
  state.revoked = false;
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
setStatus('offline', 'not connected');
if (store.getItem('cloud3.enrolled') && store.getItem('cloud3.secret')) {
  state.viewer = new Viewer(store.getItem('cloud3.secret'), store.getItem('cloud3.user') || '');
  connect();
} else {
  showEnrol();
}
