/*
 * spy_magic flame graph: an interactive, dependency-free flame graph drawn on a <canvas>.
 *
 * Usage:
 *   SpyFlameGraph.render(container, data, options) -> instance
 * where `data` is built by spy_magic/profile/flametree.py: one flame tree (format
 * "spy_magic.flametree" v1: a string table plus, per thread, flat node arrays), or both
 * views of a profile (format "spy_magic.flameviews" v1: the tree by line and the tree by
 * function over one string table, the exact own/total of each function, and the seconds
 * one sample stands for), and options (all optional):
 *   height:     'auto' (default: fit the tree, at most maxHeight px), 'fill' (fill the
 *               container, which must have a height), or a number of px
 *   maxHeight:  cap for 'auto' (default 600)
 *   orientation:'flame' (root at the bottom, default) or 'icicle' (root at the top)
 *   groupBy:    'none' (merge threads, default), 'process' or 'thread'
 *   by:         'line' or 'function': the view shown first (default: the data's "by")
 *   search:     an initial search term
 *   table:      the <table> of functions the page rendered from the same data (rows in
 *               the data's order): made sortable, a row click finds the function
 *   globalKeys: also handle keys typed while nothing else has the focus (standalone page)
 *   css:        a stylesheet (flamegraph.css) to inject once into the document
 *
 * Nothing is aggregated here beyond merging the selected threads' trees: both views and
 * every function total come from Python, so the page and the tables agree. The notebook's
 * PNG draws the same sum of all threads, made by flametree.merge_threads: keep the two
 * alike (which nodes are one, sibling order).
 *
 * The instance: state(), findFrames(name), zoomTo(idOrName), reset(), back(),
 * setSearch(term), setOrientation(o), setFilter({pid, thread}), setGroupBy(g), setBy(by),
 * sortTable(key, descending), destroy(). The last rendered instance is also
 * window.__spyFlame, and each one its root element's __spyFlame (hooks for tests).
 *
 * Shipping: this file is an ES module (the export block at the very end) that also runs
 * as a classic script once that block is cut off (spy_magic/profile/html.py does so; the
 * marker line must stay right before the exports). Either way it sets
 * window.SpyFlameGraph. It loads nothing from the network.
 */
var SpyFlameGraph = (function () {
  'use strict';

  var ROW = 18;          // px per stack level
  var READABLE_SHARE = 0.01;  // the auto height fits the levels whose boxes cover this much
  var MIN_W = 0.5;       // px: narrower frames are not drawn but aggregated
  var LABEL_MIN = 26;    // px: narrower frames get no label
  var FONT = '11.5px system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", ' +
    'Arial, sans-serif';
  var ELLIPSIS = '\u2026';

  // Node kinds: how a frame is coloured.
  var K_ROOT = 0, K_USER = 1, K_STDLIB = 2, K_LIB = 3, K_NATIVE = 4, K_OTHER = 5,
    K_GROUP = 6;
  var KIND_NAMES = ['root', 'user', 'stdlib', 'library', 'native', 'other', 'group'];

  // ------------------------------------------------------------------ small helpers
  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    if (attrs) {
      for (var k in attrs) {
        if (!Object.prototype.hasOwnProperty.call(attrs, k)) continue;
        var v = attrs[k];
        if (v === undefined || v === null || v === false) continue;
        if (k === 'class') node.className = v;
        else if (k === 'text') node.textContent = v;
        else if (k.slice(0, 2) === 'on') node.addEventListener(k.slice(2), v);
        else node.setAttribute(k, v === true ? '' : String(v));
      }
    }
    if (children) {
      for (var i = 0; i < children.length; i++) {
        var c = children[i];
        if (c === null || c === undefined || c === false) continue;
        node.appendChild(typeof c === 'string' ? document.createTextNode(c) : c);
      }
    }
    return node;
  }

  function fmtInt(n) {
    return String(Math.round(n)).replace(/\B(?=(\d{3})+(?!\d))/g, ',');
  }

  // 12.3% for shares of 1% and more, 0.42% below, "<0.01%" for crumbs.
  function fmtPct(fraction) {
    if (!(fraction > 0)) return '0.0%';
    var p = fraction * 100;
    if (p >= 1) return p.toFixed(1) + '%';
    if (p < 0.01) return '<0.01%';
    return p.toFixed(2) + '%';
  }

  // Three significant figures, as spy_magic/profile/summary.py's fmt_seconds prints them.
  function fmtSec(seconds) {
    if (!(seconds > 0)) return '0 s';
    if (seconds >= 100) return seconds.toFixed(0) + ' s';
    if (seconds >= 10) return seconds.toFixed(1) + ' s';
    if (seconds >= 1) return seconds.toFixed(2) + ' s';
    var ms = seconds * 1000;
    if (ms >= 10) return ms.toFixed(0) + ' ms';
    if (ms >= 1) return ms.toFixed(1) + ' ms';
    return ms.toFixed(2) + ' ms';
  }

  function escapeRegex(s) {
    return s.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
  }

  function hashString(s) {  // FNV-1a, 32 bits
    var h = 2166136261;
    for (var i = 0; i < s.length; i++) {
      h ^= s.charCodeAt(i);
      h = Math.imul(h, 16777619);
    }
    return h >>> 0;
  }

  var RE_LIB = /[\\/](?:site|dist)-packages[\\/]/;
  var RE_STDLIB = /(?:^<frozen |[\\/]lib[\\/](?:pypy|python)\d*(?:\.\d+)?t?[\\/]|[\\/]Lib[\\/])/;

  function fileKind(file) {
    if (!file) return K_NATIVE;
    if (RE_LIB.test(file)) return K_LIB;
    if (RE_STDLIB.test(file)) return K_STDLIB;
    return K_USER;
  }

  // Colours: warm for the user's own code, blue for the standard library, teal for
  // installed packages; the hue within each band (and a little lightness) hashes the name,
  // so one function keeps its colour across views, filters and runs.
  function kindColors(kind, name) {
    var h = hashString(name);
    var a = (h & 0xffff) / 0xffff, b = ((h >>> 16) & 0xff) / 255;
    var hue, sat, light;
    switch (kind) {
      case K_USER: hue = 4 + 44 * a; sat = 82; light = 63 + 7 * b; break;
      case K_STDLIB: hue = 200 + 28 * a; sat = 58; light = 70 + 7 * b; break;
      case K_LIB: hue = 155 + 30 * a; sat = 40; light = 62 + 8 * b; break;
      case K_NATIVE: hue = 262 + 22 * a; sat = 28; light = 74 + 6 * b; break;
      case K_GROUP: hue = 220; sat = 14; light = 72; break;
      case K_OTHER: hue = 220; sat = 6; light = 80; break;
      default: hue = 220; sat = 10; light = 76; break;  // root
    }
    var h = hue.toFixed(1), faint = Math.min(sat, 14) + '%,';
    return [
      'hsl(' + h + ',' + sat + '%,' + light.toFixed(1) + '%)',
      'hsl(' + h + ',' + faint + '91%)',  // dimmed, light theme
      'hsl(' + h + ',' + faint + '22%)',  // dimmed, dark theme
    ];
  }

  function basename(path) {
    var i = Math.max(path.lastIndexOf('/'), path.lastIndexOf('\\'));
    return i >= 0 ? path.slice(i + 1) : path;
  }

  // ------------------------------------------------------------------ the data
  function toI32(a) { return a instanceof Int32Array ? a : Int32Array.from(a); }
  function toF64(a) { return a instanceof Float64Array ? a : Float64Array.from(a); }

  function Model(data) {
    if (typeof data === 'string') data = JSON.parse(data);
    if (!data || data.format !== 'spy_magic.flametree') {
      throw new Error('not a spy_magic flame tree (format "spy_magic.flametree")');
    }
    if (data.version !== 1) throw new Error('unsupported flame tree version ' + data.version);
    this.strings = data.strings;
    this.total = data.total;
    this.pruned = data.pruned || 0;
    this.minFraction = data.min_fraction || 0;
    this.processNames = data.processes || {};
    var pids = [], seen = {};
    this.threads = data.threads.map(function (t, i) {
      var n = t.nodes;
      if (!seen[t.pid]) { seen[t.pid] = true; pids.push(t.pid); }
      return {
        index: i, pid: t.pid, tid: t.tid, name: t.name || '', total: t.total,
        parent: toI32(n.parent), nameId: toI32(n.name), fileId: toI32(n.file),
        line: toI32(n.line), self: toF64(n.self), tot: toF64(n.total),
        opcode: n.opcode ? toI32(n.opcode) : null,
      };
    });
    pids.sort(function (x, y) { return x - y; });
    this.pids = pids;
    this.pidTotals = {};
    for (var i = 0; i < this.threads.length; i++) {
      var t = this.threads[i];
      this.pidTotals[t.pid] = (this.pidTotals[t.pid] || 0) + t.total;
    }
  }

  var BY = ['line', 'function'];

  // The views of `data` ({line: Model, function: Model}; a single tree is the 'line' view)
  // and the exact own/total of each function, keyed "nameId:fileId" in the shared strings.
  function Views(data) {
    if (typeof data === 'string') data = JSON.parse(data);
    this.models = {};
    this.functions = new Map();
    this.perSample = 0;
    this.by = 'line';
    if (!data || data.format !== 'spy_magic.flameviews') {
      this.models.line = new Model(data);
      return;
    }
    if (data.version !== 1) throw new Error('unsupported flame views version ' + data.version);
    for (var i = 0; i < BY.length; i++) {
      var tree = data.views && data.views[BY[i]];
      if (tree) this.models[BY[i]] = new Model(Object.assign({}, tree, { strings: data.strings }));
    }
    if (!this.models.line && !this.models['function']) throw new Error('flame views hold no tree');
    this.by = this.models[data.by] ? data.by : (this.models.line ? 'line' : 'function');
    this.perSample = data.seconds_per_sample > 0 ? data.seconds_per_sample : 0;
    var f = data.functions || { name: [] };
    this.functionList = f;
    this.diff = data.diff ? new Diff(data.diff) : null;
    for (var k = 0; k < f.name.length; k++) {
      this.functions.set(f.name[k] + ':' + f.file[k], { self: f.self[k], total: f.total[k], row: k });
    }
  }

  // A diff against a baseline (diff.py): each function's own share in both runs and the
  // noise bound of the change, keyed "nameId:fileId" like the functions.
  function Diff(d) {
    this.summary = d.summary || '';
    this.baseTotal = d.base_total;
    this.entries = new Map();
    this.maxChange = 0;
    for (var k = 0; k < d.name.length; k++) {
      var change = d.new_share[k] - d.base_share[k];
      var e = { base: d.base_share[k], now: d.new_share[k], change: change, noise: d.noise[k],
        significant: Math.abs(change) > d.noise[k] };
      this.entries.set(d.name[k] + ':' + d.file[k], e);
      if (e.significant && Math.abs(change) > this.maxChange) this.maxChange = Math.abs(change);
    }
  }

  // [fill, dimmed light, dimmed dark] for a diff entry: red grew, blue shrank, the deeper
  // the larger the change; grey within noise (or no own time in either run).
  Diff.prototype.colors = function (e) {
    if (!e || !e.significant) return ['hsl(220,8%,84%)', 'hsl(220,8%,93%)', 'hsl(220,8%,22%)'];
    var s = Math.min(1, Math.abs(e.change) / (this.maxChange || 1));
    var hue = e.change > 0 ? 2 : 214;
    var light = (86 - 34 * Math.sqrt(s)).toFixed(1);
    return ['hsl(' + hue + ',78%,' + light + '%)', 'hsl(' + hue + ',30%,92%)',
      'hsl(' + hue + ',30%,22%)'];
  };

  Diff.prototype.label = function (e) {
    if (!e) return 'no own time in either run';
    if (!e.significant) return 'within noise (\u00b1' + fmtPct(e.noise) + ')';
    return (e.change > 0 ? 'grew +' : 'shrank \u2212') + fmtPct(Math.abs(e.change)) +
      ' (noise \u00b1' + fmtPct(e.noise) + ')';
  };

  Model.prototype.processLabel = function (pid) {
    var name = this.processNames[String(pid)];
    return name ? name + ' (pid ' + pid + ')' : 'pid ' + pid;
  };

  Model.prototype.threadLabel = function (t, withPid) {
    var s = (t.name || 'thread') + ' (' + t.tid + ')';
    return withPid ? 'pid ' + t.pid + ' \u203a ' + s : s;
  };

  // A node's "CALL 70;LOAD_ATTR 30" (flametree.opcodes_text) added to its merged counts.
  function addOpcodes(opcodes, id, text) {
    var counts = opcodes.get(id);
    if (!counts) { counts = {}; opcodes.set(id, counts); }
    var parts = text.split(';');
    for (var i = 0; i < parts.length; i++) {
      var cut = parts[i].lastIndexOf(' ');
      var op = parts[i].slice(0, cut);
      counts[op] = (counts[op] || 0) + Number(parts[i].slice(cut + 1));
    }
  }

  // "opcode: CALL 70%, LOAD_ATTR 30%": the instructions of the samples ending in a node.
  function opcodesText(counts) {
    var ops = Object.keys(counts), sum = 0, i;
    for (i = 0; i < ops.length; i++) sum += counts[ops[i]];
    ops.sort(function (a, b) { return counts[b] - counts[a] || (a < b ? -1 : 1); });
    var shown = ops.slice(0, 3).map(function (op) {
      return ops.length === 1 ? op : op + ' ' + fmtPct(counts[op] / sum);
    });
    return shown.join(', ') + (ops.length > 3 ? ', ' + (ops.length - 3) + ' more' : '');
  }

  // The merged tree of the selected threads: flat typed arrays, children sorted heaviest
  // first, x offsets (in samples) and depths precomputed.
  function buildTree(model, threads, groupBy) {
    var cap = 1, i;
    for (i = 0; i < threads.length; i++) cap += threads[i].parent.length + 2;
    var strings = model.strings.slice();
    var extra = new Map();
    function intern(s) {
      var id = extra.get(s);
      if (id === undefined) { id = strings.length; strings.push(s); extra.set(s, id); }
      return id;
    }
    var parent = new Int32Array(cap), name = new Int32Array(cap), file = new Int32Array(cap),
      line = new Int32Array(cap), kind = new Uint8Array(cap),
      self = new Float64Array(cap), total = new Float64Array(cap);
    parent[0] = -1;
    name[0] = intern('all');
    kind[0] = K_ROOT;
    var n = 1;
    var index = new Map();
    var opcodes = new Map();  // node -> {instruction: samples}, summed over the threads
    var multiPid = model.pids.length > 1;

    function child(p, nm, fl, ln, kd) {
      var key = p + ':' + nm + ':' + fl + ':' + ln;
      var id = index.get(key);
      if (id === undefined) {
        id = n++;
        index.set(key, id);
        parent[id] = p; name[id] = nm; file[id] = fl; line[id] = ln; kind[id] = kd;
      }
      return id;
    }

    for (i = 0; i < threads.length; i++) {
      var t = threads[i];
      var top = 0;
      total[0] += t.total;
      if (groupBy === 'process' || (groupBy === 'thread' && multiPid)) {
        top = child(top, intern(model.processLabel(t.pid)), 0, -1, K_GROUP);
        total[top] += t.total;
      }
      if (groupBy === 'thread') {
        top = child(top, intern('thread ' + model.threadLabel(t, false)), 0, -2, K_GROUP);
        total[top] += t.total;
      }
      var m = new Int32Array(t.parent.length);
      m[0] = top;
      self[top] += t.self[0];
      var tp = t.parent, tn = t.nameId, tf = t.fileId, tl = t.line, ts = t.self, tt = t.tot;
      var to = t.opcode;
      for (var j = 1; j < tp.length; j++) {
        var id = child(m[tp[j]], tn[j], tf[j], tl[j], 255);
        m[j] = id;
        self[id] += ts[j];
        total[id] += tt[j];
        if (to && to[j]) addOpcodes(opcodes, id, strings[to[j]]);
      }
    }

    // Kinds of frame nodes, from their file (cached per file string).
    var fileKinds = new Int8Array(strings.length).fill(-1);
    var otherId = model.strings.indexOf('(other)');
    for (i = 1; i < n; i++) {
      if (kind[i] !== 255) continue;
      if (name[i] === otherId && file[i] === 0) { kind[i] = K_OTHER; continue; }
      var f = file[i];
      var k = fileKinds[f];
      if (k < 0) k = fileKinds[f] = fileKind(strings[f]);
      kind[i] = k;
    }

    // Children, in CSR form, sorted by decreasing total then name.
    var start = new Int32Array(n + 1);
    for (i = 1; i < n; i++) start[parent[i] + 1]++;
    for (i = 0; i < n; i++) start[i + 1] += start[i];
    var kids = new Int32Array(Math.max(n - 1, 1));
    var fillPos = start.slice(0, n);
    for (i = 1; i < n; i++) kids[fillPos[parent[i]]++] = i;
    var byWeight = function (a, b) {
      return total[b] - total[a] || (strings[name[a]] < strings[name[b]] ? -1 : 1);
    };
    for (i = 0; i < n; i++) {
      if (start[i + 1] - start[i] > 1) kids.subarray(start[i], start[i + 1]).sort(byWeight);
    }

    // Pre-order walk: x offsets, depths; then the height of each subtree.
    var x = new Float64Array(n), depth = new Int32Array(n), pre = new Int32Array(n),
      stack = new Int32Array(n), sp = 0, k2 = 0;
    stack[sp++] = 0;
    while (sp > 0) {
      var v = stack[--sp];
      pre[k2++] = v;
      var xc = x[v];
      for (var c = start[v]; c < start[v + 1]; c++) {
        var ch = kids[c];
        x[ch] = xc;
        xc += total[ch];
        depth[ch] = depth[v] + 1;
      }
      for (c = start[v + 1] - 1; c >= start[v]; c--) stack[sp++] = kids[c];
    }
    var below = new Int32Array(n);
    for (i = n - 1; i > 0; i--) {
      var node = pre[i], p = parent[node];
      if (below[node] + 1 > below[p]) below[p] = below[node] + 1;
    }

    // Colours, cached per (kind, name).
    var colorCache = new Map(), fill = new Array(n), dim = new Array(n),
      dimDark = new Array(n);
    for (i = 0; i < n; i++) {
      var ck = kind[i] * 4194304 + name[i];
      var col = colorCache.get(ck);
      if (!col) { col = kindColors(kind[i], strings[name[i]]); colorCache.set(ck, col); }
      fill[i] = col[0];
      dim[i] = col[1];
      dimDark[i] = col[2];
    }

    return {
      n: n, strings: strings, parent: parent, name: name, file: file, line: line,
      kind: kind, self: self, total: total, start: start, kids: kids, x: x, depth: depth,
      pre: pre, below: below, fill: fill, dim: dim, dimDark: dimDark, stack: stack,
      opcodes: opcodes,
      textWidth: new Float32Array(strings.length).fill(-1),
      whereWidth: new Float32Array(n).fill(-1),
    };
  }

  // A search term: substring (case-insensitive), or a regex when wrapped in /.../flags.
  function makeMatcher(term) {
    var m = /^\/(.+)\/([a-z]*)$/.exec(term);
    if (m) {
      var flags = m[2].replace(/[gy]/g, '');
      if (flags.indexOf('i') < 0) flags += 'i';
      var re = new RegExp(m[1], flags);  // throws on a bad pattern
      return function (s) { return re.test(s); };
    }
    var needle = term.toLowerCase();
    return function (s) { return s.toLowerCase().indexOf(needle) >= 0; };
  }

  // ------------------------------------------------------------------ the widget
  function FlameGraph(container, data, options) {
    this.options = options = options || {};
    this.container = container;
    this.views = new Views(data);
    this.by = this.views.models[options.by] ? options.by : this.views.by;
    this.model = this.views.models[this.by];
    this.orientation = options.orientation === 'icicle' ? 'icicle' : 'flame';
    this.groupBy = options.groupBy || 'none';
    this.filterPid = null;
    this.filterThread = null;
    this.zoom = 0;
    this.history = [];
    this.hover = -1;
    this.hoverAgg = null;
    this.sel = -1;
    this.searchTerm = '';
    this.match = null;
    this.matched = 0;
    this.searchError = null;
    this.dirty = false;
    this.raf = 0;
    this.pinBottom = true;
    this.W = 0;
    this.H = 0;
    this.timings = {};
    this.drawn = { n: 0, node: new Int32Array(4096), x: new Float32Array(4096),
      w: new Float32Array(4096), y: new Float32Array(4096) };
    if (options.css) injectCss(options.css);
    this._buildDom();
    if (options.table) this._adoptTable(options.table);
    this._rebuild(false);
    if (options.search) this.setSearch(options.search);
    this._resize();
    this._drawNow();
    var self = this;
    if (typeof ResizeObserver !== 'undefined') {
      this.ro = new ResizeObserver(function () { self._resize(); self._drawNow(); });
      this.ro.observe(this.stage);
    } else {
      this._onWinResize = function () { self._resize(); self._drawNow(); };
      window.addEventListener('resize', this._onWinResize);
    }
    if (options.globalKeys) {
      this._onDocKey = function (e) {
        var t = e.target;
        if (t === document.body || t === document.documentElement || t === null) self._onKey(e);
      };
      document.addEventListener('keydown', this._onDocKey);
    }
    this.root.__spyFlame = this;
    if (typeof window !== 'undefined') window.__spyFlame = this;
  }

  function injectCss(css) {
    var style = document.getElementById('spy-flamegraph-css');
    if (style && style.textContent === css) return;
    if (style) style.parentNode.removeChild(style);  // another version's: this one wins
    document.head.appendChild(el('style', { id: 'spy-flamegraph-css', text: css }));
  }

  FlameGraph.prototype._buildDom = function () {
    var self = this, model = this.model, opts = this.options;
    var root = this.root = el('div', { class: 'sfg' });
    if (opts.height === 'fill') root.classList.add('sfg-fill');

    // Toolbar: search, filters, orientation.
    this.searchInput = el('input', {
      class: 'sfg-search', type: 'search', spellcheck: 'false', autocomplete: 'off',
      placeholder: 'Search functions and files  (/regex/)', 'aria-label': 'Search frames',
      oninput: function () { self.setSearch(self.searchInput.value); },
      onkeydown: function (e) {
        if (e.key === 'Escape') {
          e.preventDefault();
          e.stopPropagation();
          if (self.searchInput.value) self.setSearch('');
          else self.scroller.focus();
        } else if (e.key === 'Enter') {
          e.preventDefault();
          self.scroller.focus();
        }
      },
    });
    this.matchInfo = el('span', { class: 'sfg-match', 'aria-live': 'polite' });
    var searchBox = el('label', { class: 'sfg-searchbox' }, [searchIcon(), this.searchInput]);

    this.pidSelect = el('select', {
      class: 'sfg-select sfg-pid', 'aria-label': 'Process',
      onchange: function () {
        var v = self.pidSelect.value;
        self.setFilter({ pid: v === '' ? null : Number(v), thread: null });
      },
    });
    this.threadSelect = el('select', {
      class: 'sfg-select sfg-thread', 'aria-label': 'Thread',
      onchange: function () {
        var v = self.threadSelect.value;
        self.setFilter({ pid: self.filterPid, thread: v === '' ? null : Number(v) });
      },
    });
    this.groupSelect = el('select', {
      class: 'sfg-select sfg-group', 'aria-label': 'Group stacks',
      onchange: function () { self.setGroupBy(self.groupSelect.value); },
    }, [
      el('option', { value: 'none', text: 'Merge threads' }),
      model.pids.length > 1 ? el('option', { value: 'process', text: 'Split by process' }) : null,
      el('option', { value: 'thread', text: 'Split by thread' }),
    ]);
    this.groupSelect.value = this.groupBy;
    this._fillPidSelect();
    this._fillThreadSelect();

    this.flameBtn = el('button', {
      type: 'button', class: 'sfg-seg', title: 'Flame graph: root at the bottom',
      onclick: function () { self.setOrientation('flame'); },
    }, [el('span', { class: 'sfg-ico-flame', 'aria-hidden': 'true' }), 'Flame']);
    this.icicleBtn = el('button', {
      type: 'button', class: 'sfg-seg', title: 'Icicle graph: root at the top',
      onclick: function () { self.setOrientation('icicle'); },
    }, [el('span', { class: 'sfg-ico-icicle', 'aria-hidden': 'true' }), 'Icicle']);
    var orient = el('div', { class: 'sfg-segmented', role: 'group', 'aria-label': 'Orientation' },
      [this.flameBtn, this.icicleBtn]);
    var byGroup = null;
    if (this.views.models.line && this.views.models['function']) {
      this.byLineBtn = el('button', {
        type: 'button', class: 'sfg-seg sfg-by-line',
        title: 'One box per line: a function called from two lines of its caller is two boxes',
        onclick: function () { self.setBy('line'); },
      }, ['By line']);
      this.byFunctionBtn = el('button', {
        type: 'button', class: 'sfg-seg sfg-by-function',
        title: 'One box per function and call path, whatever line it was on',
        onclick: function () { self.setBy('function'); },
      }, ['By function']);
      byGroup = el('div', { class: 'sfg-segmented', role: 'group', 'aria-label': 'Boxes' },
        [this.byLineBtn, this.byFunctionBtn]);
    }

    var toolbar = el('div', { class: 'sfg-toolbar' }, [
      searchBox, this.matchInfo, el('span', { class: 'sfg-spacer-flex' }),
      model.pids.length > 1 ? this.pidSelect : null,
      model.threads.length > 1 ? this.threadSelect : null,
      model.threads.length > 1 ? this.groupSelect : null,
    ]);

    // Navigation: back, reset, breadcrumb.
    this.backBtn = el('button', {
      type: 'button', class: 'sfg-btn sfg-back', title: 'Back (Backspace)',
      'aria-label': 'Back', onclick: function () { self.back(); },
    }, ['\u2190 Back']);
    this.resetBtn = el('button', {
      type: 'button', class: 'sfg-btn sfg-reset', title: 'Reset zoom (Escape)',
      onclick: function () { self.reset(); },
    }, ['Reset zoom']);
    this.crumbs = el('nav', { class: 'sfg-crumbs', 'aria-label': 'Zoom path' });
    this.zoomInfo = el('span', { class: 'sfg-zoominfo' });
    var nav = el('div', { class: 'sfg-nav' },
      [this.backBtn, this.resetBtn, this.crumbs, this.zoomInfo, byGroup, orient]);

    // The stage: canvas under a transparent scroller that takes the events.
    this.canvas = el('canvas', { class: 'sfg-canvas', 'aria-hidden': 'true' });
    this.spacer = el('div', { class: 'sfg-spacer' });
    this.scroller = el('div', {
      class: 'sfg-scroller', tabindex: '0', role: 'application',
      'aria-roledescription': 'flame graph',
      // Jupyter's (Lumino) shortcuts stop here: in a notebook's command mode the arrow keys
      // and Enter would otherwise move the notebook's cell selection instead of ours.
      'data-lm-suppress-shortcuts': 'true',
      'aria-label': 'Flame graph. Arrow keys move between frames, Enter zooms, ' +
        'Escape resets the zoom, slash searches.',
    }, [this.spacer]);
    this.tooltip = el('div', { class: 'sfg-tooltip', role: 'tooltip', hidden: true });
    // The tooltip lives in the root, not the stage: a short graph must not clip it.
    this.stage = el('div', { class: 'sfg-stage' }, [this.canvas, this.scroller]);
    if (typeof opts.height === 'number') this.stage.style.height = opts.height + 'px';
    this.live = el('div', { class: 'sfg-sr-only', 'aria-live': 'polite' });

    var legend = el('div', { class: 'sfg-legend' }, this.views.diff ? [
      legendItem('grew', 'own share grew'), legendItem('shrank', 'own share shrank'),
      legendItem('noise', 'within noise'),
      el('span', { class: 'sfg-hint', text: 'against the baseline; the deeper, the larger' }),
    ] : [
      legendItem('user', 'your code'), legendItem('stdlib', 'standard library'),
      legendItem('library', 'installed packages'), legendItem('native', 'no file'),
      legendItem('other', 'pruned / too narrow'),
      el('span', { class: 'sfg-hint', text:
        'click: zoom \u00b7 Esc: reset \u00b7 arrows: move \u00b7 /: search' }),
    ]);
    this.footerInfo = el('span', { class: 'sfg-footinfo' });
    legend.appendChild(this.footerInfo);

    root.appendChild(toolbar);
    root.appendChild(nav);
    root.appendChild(this.stage);
    root.appendChild(legend);
    root.appendChild(this.live);
    root.appendChild(this.tooltip);
    this.container.appendChild(root);
    this.ctx = this.canvas.getContext('2d');
    this.hatch = makeHatch(this.ctx);

    this.scroller.addEventListener('scroll', function () {
      // A flame graph stays anchored at its root (bottom) through resizes, unless the
      // user scrolled away from it.
      var sc = self.scroller;
      self.pinBottom = sc.scrollTop + sc.clientHeight >= sc.scrollHeight - 2;
      self._schedule();
    });
    this.scroller.addEventListener('mousemove', function (e) { self._onMove(e); });
    this.scroller.addEventListener('mouseleave', function () {
      self.hover = -1; self.hoverAgg = null; self._hideTip(); self._schedule();
    });
    this.scroller.addEventListener('click', function (e) { self._onClick(e); });
    this.scroller.addEventListener('keydown', function (e) { self._onKey(e); });
    this.scroller.addEventListener('blur', function () {
      if (self.sel < 0) return;
      self.sel = -1;
      if (self.hover < 0) self._hideTip();
      self._schedule();
    });
    this._syncControls();
  };

  function searchIcon() {
    var ns = 'http://www.w3.org/2000/svg';
    var svg = document.createElementNS(ns, 'svg');
    svg.setAttribute('class', 'sfg-search-icon');
    svg.setAttribute('viewBox', '0 0 16 16');
    svg.setAttribute('aria-hidden', 'true');
    var circle = document.createElementNS(ns, 'circle');
    circle.setAttribute('cx', '6.5');
    circle.setAttribute('cy', '6.5');
    circle.setAttribute('r', '4.75');
    var handle = document.createElementNS(ns, 'path');
    handle.setAttribute('d', 'M10 10l4.25 4.25');
    svg.appendChild(circle);
    svg.appendChild(handle);
    return svg;
  }

  function legendItem(kind, text) {
    return el('span', { class: 'sfg-legend-item' },
      [el('span', { class: 'sfg-swatch sfg-swatch-' + kind }), text]);
  }

  function makeHatch(ctx) {
    var c = document.createElement('canvas');
    c.width = c.height = 6;
    var g = c.getContext('2d');
    g.fillStyle = '#d9dce1';
    g.fillRect(0, 0, 6, 6);
    g.strokeStyle = '#b4b9c2';
    g.lineWidth = 1;
    g.beginPath();
    g.moveTo(0, 6); g.lineTo(6, 0);
    g.moveTo(-1, 1); g.lineTo(1, -1);
    g.moveTo(5, 7); g.lineTo(7, 5);
    g.stroke();
    return ctx.createPattern(c, 'repeat');
  }

  FlameGraph.prototype._fillPidSelect = function () {
    var model = this.model, sel = this.pidSelect;
    sel.textContent = '';
    sel.appendChild(el('option', { value: '', text: 'All processes (' + model.pids.length + ')' }));
    for (var i = 0; i < model.pids.length; i++) {
      var pid = model.pids[i];
      sel.appendChild(el('option', { value: String(pid), text:
        model.processLabel(pid) + ' \u00b7 ' + fmtPct(model.pidTotals[pid] / model.total) }));
    }
    sel.value = this.filterPid === null ? '' : String(this.filterPid);
  };

  FlameGraph.prototype._fillThreadSelect = function () {
    var model = this.model, sel = this.threadSelect, pid = this.filterPid;
    var threads = model.threads.filter(function (t) { return pid === null || t.pid === pid; });
    var withPid = pid === null && model.pids.length > 1;
    sel.textContent = '';
    sel.appendChild(el('option', { value: '', text: 'All threads (' + threads.length + ')' }));
    for (var i = 0; i < threads.length; i++) {
      var t = threads[i];
      sel.appendChild(el('option', { value: String(t.index), text:
        model.threadLabel(t, withPid) + ' \u00b7 ' + fmtPct(t.total / model.total) }));
    }
    sel.value = this.filterThread === null ? '' : String(this.filterThread);
  };

  FlameGraph.prototype._selectedThreads = function () {
    var pid = this.filterPid, th = this.filterThread;
    return this.model.threads.filter(function (t) {
      return (th === null || t.index === th) && (pid === null || t.pid === pid);
    });
  };

  // Recompute the merged tree (after a filter, grouping or view change), keeping the zoom
  // on the same stack path when it still exists (`loose`: matching frames by function
  // only, when the other view's boxes carry other lines).
  FlameGraph.prototype._rebuild = function (keepZoom, loose) {
    var t0 = now();
    var path = keepZoom && this.tree ? this._pathOf(this.zoom, loose) : null;
    this.tree = buildTree(this.model, this._selectedThreads(), this.groupBy);
    if (this.views.diff) this._diffColors();
    this.timings.build = now() - t0;
    this.history = [];
    this.hover = -1;
    this.sel = -1;
    this.zoom = path ? this._findPath(path, loose) : 0;
    if (this.searchTerm) this._computeSearch();
    if (this.options.height === undefined || this.options.height === 'auto') {
      // As tall as the stack is deep where its levels show something (the tooltip lives
      // outside the stage, so a short graph needs no blank rows for it), at most
      // maxHeight: one import-time sample 40 frames deep would otherwise leave a page of
      // blank rows above the graph. A level counts when its boxes cover READABLE_SHARE of
      // the width; a thinner, deeper column is scrolled to.
      var t = this.tree, ink = [], deep = 0;
      for (var i = 0; i < t.n; i++) ink[t.depth[i]] = (ink[t.depth[i]] || 0) + t.total[i];
      for (var d = 0; d < ink.length; d++) {
        if (ink[d] >= t.total[0] * READABLE_SHARE) deep = d;
      }
      var rows = Math.max(3, deep + 1);
      var maxH = this.options.maxHeight || 600;
      this.stage.style.height = Math.min(maxH, rows * ROW + 4) + 'px';
    }
    this._layoutChanged();
  };

  // Colour every box by its function's change in own share against the baseline.
  FlameGraph.prototype._diffColors = function () {
    var t = this.tree, diff = this.views.diff;
    for (var i = 0; i < t.n; i++) {
      var col = diff.colors(i > 0 ? this._diffOf(i) : null);
      t.fill[i] = col[0];
      t.dim[i] = col[1];
      t.dimDark[i] = col[2];
    }
  };

  FlameGraph.prototype._diffOf = function (v) {
    var t = this.tree;
    return this.views.diff.entries.get(t.name[v] + ':' + t.file[v]) || null;
  };

  FlameGraph.prototype._frameKey = function (v, loose) {
    var t = this.tree, key = t.strings[t.name[v]] + '\u0000' + t.strings[t.file[v]];
    return loose ? key : key + '\u0000' + t.line[v];
  };

  FlameGraph.prototype._pathOf = function (v, loose) {
    var t = this.tree, path = [];
    for (; v > 0; v = t.parent[v]) path.push(this._frameKey(v, loose));
    return path.reverse();
  };

  FlameGraph.prototype._findPath = function (path, loose) {
    var t = this.tree, v = 0;
    for (var i = 0; i < path.length; i++) {
      var found = -1;
      for (var c = t.start[v]; c < t.start[v + 1]; c++) {  // heaviest first
        if (this._frameKey(t.kids[c], loose) === path[i]) { found = t.kids[c]; break; }
      }
      if (found < 0) break;
      v = found;
    }
    return v;
  };

  // ------------------------------------------------------------------ the function table
  var TABLE_KEYS = ['name', 'file', 'self', 'total'];
  var SORT_WORDS = { name: 'name', file: 'file', self: 'own time', total: 'total time' };

  FlameGraph.prototype._adoptTable = function (table) {
    var f = this.views.functionList, body = table.tBodies[0], head = table.tHead, self = this;
    if (!f || !body || !head || body.rows.length !== f.name.length) return;
    this.table = table;
    this.tableRows = Array.prototype.slice.call(body.rows);
    this.tableHeads = [];
    table.classList.add('sfg-live');
    var cells = head.rows[0].cells;
    for (var i = 0; i < cells.length && i < TABLE_KEYS.length; i++) {
      (function (th, key) {
        th.classList.add('sfg-sort');
        th.tabIndex = 0;
        th.addEventListener('click', function () { self._onSortClick(key); });
        th.addEventListener('keydown', function (e) {
          if (e.key !== 'Enter' && e.key !== ' ') return;
          e.preventDefault();
          self._onSortClick(key);
        });
        self.tableHeads.push({ th: th, key: key, label: th.textContent });
      })(cells[i], TABLE_KEYS[i]);
    }
    this.tableRows.forEach(function (row, k) {
      row.addEventListener('click', function () { self._findFunction(k); });
    });
    var box = table.closest ? table.closest('.sfg-table-box') : null;
    box = box || table;
    box.setAttribute('data-lm-suppress-shortcuts', 'true');  // Enter sorts, not edits a cell
    // Under the graph, inside it: one frame, and room for a tooltip over a short graph.
    if (this.options.height === undefined || this.options.height === 'auto') {
      this.root.appendChild(box);
    }
    this.tableSort = { key: 'self', descending: true };  // the data's own order
    this._drawTableSort();
  };

  FlameGraph.prototype._onSortClick = function (key) {
    var s = this.tableSort;
    this.sortTable(key, s.key === key ? !s.descending : undefined);
  };

  // Sort the function table: numbers largest first, names A to Z unless told otherwise.
  FlameGraph.prototype.sortTable = function (key, descending) {
    if (!this.table || TABLE_KEYS.indexOf(key) < 0) return;
    var f = this.views.functionList, strs = this.model.strings;
    var numeric = key === 'self' || key === 'total';
    if (descending === undefined) descending = numeric;
    var order = this.tableRows.map(function (_, k) { return k; });
    var value = numeric ? function (k) { return f[key][k]; }
      : function (k) { return strs[f[key][k]].toLowerCase(); };
    order.sort(function (a, b) {
      var x = value(a), y = value(b);
      var c = x < y ? -1 : x > y ? 1 : 0;
      return (descending ? -c : c) || a - b;
    });
    var body = this.table.tBodies[0];
    for (var i = 0; i < order.length; i++) body.appendChild(this.tableRows[order[i]]);
    this.tableSort = { key: key, descending: descending };
    this._drawTableSort();
  };

  FlameGraph.prototype._drawTableSort = function () {
    var s = this.tableSort, threads = this.model.threads.length;
    this.tableHeads.forEach(function (h) {
      var on = h.key === s.key;
      h.th.textContent = h.label + (on ? (s.descending ? ' \u25be' : ' \u25b4') : '');
      h.th.setAttribute('aria-sort', on ? (s.descending ? 'descending' : 'ascending') : 'none');
    });
    if (this.table.caption) {
      this.table.caption.textContent = this.tableRows.length + ' functions, by ' +
        SORT_WORDS[s.key] + (threads > 1 ? ', all ' + threads + ' threads' : '') +
        ' \u00b7 sort: click a heading \u00b7 find: click a row';
    }
  };

  FlameGraph.prototype._rowTerm = function (k) {
    var f = this.views.functionList;
    return '/^' + escapeRegex(this.model.strings[f.name[k]]) + '$/';
  };

  FlameGraph.prototype._findFunction = function (k) {
    var term = this._rowTerm(k);
    this.setSearch(this.searchTerm === term ? '' : term);
  };

  FlameGraph.prototype._computeSearch = function () {
    var t = this.tree, term = this.searchTerm;
    this.match = null;
    this.matched = 0;
    this.searchError = null;
    if (!term) return;
    var test;
    try {
      test = makeMatcher(term);
    } catch (err) {
      this.searchError = String(err.message || err);
      return;
    }
    var strs = t.strings, sm = new Int8Array(strs.length).fill(-1);
    var match = new Uint8Array(t.n), cover = new Uint8Array(t.n), matched = 0;
    for (var k = 1; k < t.n; k++) {  // pre-order: parents first
      var v = t.pre[k], nm = t.name[v], fl = t.file[v];
      if (sm[nm] < 0) sm[nm] = test(strs[nm]) ? 1 : 0;
      var hit = sm[nm];
      if (!hit && fl) {
        if (sm[fl] < 0) sm[fl] = test(strs[fl]) ? 1 : 0;
        hit = sm[fl];
      }
      match[v] = hit;
      var p = t.parent[v];
      if (cover[p]) cover[v] = 1;
      else if (hit) { cover[v] = 1; matched += t.total[v]; }
    }
    this.match = match;
    this.cover = cover;
    this.matched = matched;
  };

  // Samples under the zoomed node with a matching frame anywhere in their stack.
  FlameGraph.prototype._matchedInZoom = function () {
    var t = this.tree, z = this.zoom;
    if (!this.match) return 0;
    if (this.cover[z]) return t.total[z];
    var sum = 0, stack = t.stack, sp = 0;
    stack[sp++] = z;
    while (sp > 0) {
      var v = stack[--sp];
      for (var c = t.start[v]; c < t.start[v + 1]; c++) {
        var k = t.kids[c];
        if (this.match[k]) sum += t.total[k];
        else stack[sp++] = k;
      }
    }
    return sum;
  };

  // ------------------------------------------------------------------ public API
  FlameGraph.prototype.setSearch = function (term) {
    term = (term || '').trim();
    if (this.searchInput.value.trim() !== term) this.searchInput.value = term;
    this.searchTerm = term;
    this._computeSearch();
    this._syncControls();
    this._schedule();
  };

  FlameGraph.prototype.setOrientation = function (o) {
    o = o === 'icicle' ? 'icicle' : 'flame';
    if (o === this.orientation) return;
    this.orientation = o;
    this._layoutChanged();
  };

  FlameGraph.prototype.setFilter = function (f) {
    var pid = f && f.pid !== undefined && f.pid !== null ? Number(f.pid) : null;
    var th = f && f.thread !== undefined && f.thread !== null ? Number(f.thread) : null;
    if (th !== null && pid !== null && this.model.threads[th].pid !== pid) th = null;
    var pidChanged = pid !== this.filterPid;
    this.filterPid = pid;
    this.filterThread = th;
    if (pidChanged) this._fillThreadSelect();
    this.pidSelect.value = pid === null ? '' : String(pid);
    this.threadSelect.value = th === null ? '' : String(th);
    this._rebuild(true);
  };

  // Boxes by line or by function (both trees came from Python); keeps filters and zoom.
  FlameGraph.prototype.setBy = function (by) {
    var model = this.views.models[by];
    if (!model || by === this.by) return false;
    this.by = by;
    this.model = model;
    if (this.filterThread !== null && this.filterThread >= model.threads.length) {
      this.filterThread = null;
    }
    this._rebuild(true, true);
    return true;
  };

  FlameGraph.prototype.setGroupBy = function (g) {
    this.groupBy = g === 'process' || g === 'thread' ? g : 'none';
    this.groupSelect.value = this.groupBy;
    this._rebuild(false);
  };

  FlameGraph.prototype.zoomTo = function (v, noHistory) {
    var t = this.tree;
    if (typeof v === 'string') {
      var found = this.findFrames(v, true);
      if (!found.length) return false;
      v = found[0].id;
    }
    if (!(v >= 0 && v < t.n) || v === this.zoom) return false;
    if (!noHistory) this.history.push(this.zoom);
    this.zoom = v;
    this._layoutChanged();
    this._announce(v);
    return true;
  };

  FlameGraph.prototype.reset = function () {
    if (this.zoom === 0) return;
    this.history.push(this.zoom);
    this.zoom = 0;
    this._layoutChanged();
  };

  FlameGraph.prototype.back = function () {
    if (!this.history.length) return;
    this.zoom = this.history.pop();
    this._layoutChanged();
  };

  FlameGraph.prototype.destroy = function () {
    if (this.ro) this.ro.disconnect();
    if (this._onWinResize) window.removeEventListener('resize', this._onWinResize);
    if (this._onDocKey) document.removeEventListener('keydown', this._onDocKey);
    if (this.raf) cancelAnimationFrame(this.raf);
    if (this.root.parentNode) this.root.parentNode.removeChild(this.root);
    if (window.__spyFlame === this) window.__spyFlame = undefined;
  };

  FlameGraph.prototype._frameInfo = function (v) {
    var t = this.tree;
    return {
      id: v, name: t.strings[t.name[v]], file: t.strings[t.file[v]], line: t.line[v],
      kind: KIND_NAMES[t.kind[v]], self: t.self[v], total: t.total[v], depth: t.depth[v],
    };
  };

  // The state, for tests and tools: what is zoomed, drawn, searched and filtered.
  FlameGraph.prototype.state = function () {
    this._drawNow();
    var t = this.tree, names = {}, d = this.drawn, aggregated = 0;
    for (var i = 0; i < d.n; i++) {
      var v = d.node[i];
      if (v >= 0) names[t.strings[t.name[v]]] = (names[t.strings[t.name[v]]] || 0) + 1;
      else aggregated++;
    }
    var mz = this._matchedInZoom();
    return {
      zoom: this._frameInfo(this.zoom),
      history: this.history.length,
      total: t.total[0],
      modelTotal: this.model.total,
      nodes: t.n,
      rows: t.below[0] + 1,
      orientation: this.orientation,
      groupBy: this.groupBy,
      by: this.by,
      views: Object.keys(this.views.models),
      secondsPerSample: this.views.perSample,
      diff: this.views.diff ? this.views.diff.summary : null,
      table: this.table ? {
        sort: this.tableSort,
        names: Array.prototype.map.call(this.table.tBodies[0].rows, function (r) {
          return r.cells[0].textContent;
        }),
      } : null,
      filter: { pid: this.filterPid, thread: this.filterThread },
      visibleCount: d.n - aggregated,
      aggregatedCount: aggregated,
      visibleNames: names,
      search: {
        term: this.searchTerm, error: this.searchError, matched: this.matched,
        fraction: t.total[0] ? this.matched / t.total[0] : 0,
        matchedInZoom: mz, zoomFraction: t.total[this.zoom] ? mz / t.total[this.zoom] : 0,
      },
      hover: this.hover >= 0 ? this._frameInfo(this.hover) : null,
      selected: this.sel >= 0 ? this._frameInfo(this.sel) : null,
      size: { width: this.W, height: this.H },
      timings: this.timings,
    };
  };

  // Drawn frames named `name` (or whose "name (file:line)" starts with it), heaviest first,
  // with their rectangles in client coordinates. `all` also returns undrawn ones (no rect).
  FlameGraph.prototype.findFrames = function (name, all) {
    this._drawNow();
    var t = this.tree, d = this.drawn, out = [], seen = {};
    var rect = this.scroller.getBoundingClientRect();
    for (var i = 0; i < d.n; i++) {
      var v = d.node[i];
      if (v < 0 || t.strings[t.name[v]] !== name) continue;
      seen[v] = true;
      out.push({
        id: v, name: name, total: t.total[v], depth: t.depth[v],
        x: d.x[i], y: d.y[i], w: d.w[i], h: ROW - 1,
        clientX: rect.left + d.x[i] + d.w[i] / 2, clientY: rect.top + d.y[i] + ROW / 2,
      });
    }
    if (all) {
      for (var k = 0; k < t.n; k++) {
        if (!seen[k] && t.strings[t.name[k]] === name) {
          out.push({ id: k, name: name, total: t.total[k], depth: t.depth[k] });
        }
      }
    }
    out.sort(function (a, b) { return b.total - a.total; });
    return out;
  };

  // ------------------------------------------------------------------ layout + drawing
  function now() {
    return typeof performance !== 'undefined' ? performance.now() : Date.now();
  }

  FlameGraph.prototype._rows = function () {
    var t = this.tree;
    return t.depth[this.zoom] + t.below[this.zoom] + 1;
  };

  FlameGraph.prototype._contentHeight = function () {
    return Math.max(this._rows() * ROW + 4, this.H);
  };

  // Content-space y of a stack level.
  FlameGraph.prototype._rowY = function (depth) {
    if (this.orientation === 'icicle') return 2 + depth * ROW;
    return this.contentH - 2 - (depth + 1) * ROW;
  };

  FlameGraph.prototype._layoutChanged = function () {
    this.hover = -1;
    this.hoverAgg = null;
    this._hideTip();
    this.contentH = this._contentHeight();
    this.spacer.style.height = this.contentH + 'px';
    // Show the root end of the graph: the bottom for a flame graph, the top for an icicle.
    this.scroller.scrollTop = this.orientation === 'flame' ? this.contentH : 0;
    this.pinBottom = this.orientation === 'flame';
    this._syncControls();
    this._schedule();
  };

  FlameGraph.prototype._resize = function () {
    var W = this.scroller.clientWidth, H = this.scroller.clientHeight;
    if (W === this.W && H === this.H) return;
    var dpr = window.devicePixelRatio || 1;
    this.W = W;
    this.H = H;
    this.dpr = dpr;
    this.canvas.width = Math.max(1, Math.round(W * dpr));
    this.canvas.height = Math.max(1, Math.round(H * dpr));
    this.canvas.style.width = W + 'px';
    this.canvas.style.height = H + 'px';
    this.contentH = this._contentHeight();
    this.spacer.style.height = this.contentH + 'px';
    if (this.orientation === 'flame' && this.pinBottom) this.scroller.scrollTop = this.contentH;
    this.dirty = true;
  };

  FlameGraph.prototype._schedule = function () {
    this.dirty = true;
    if (this.raf) return;
    var self = this;
    this.raf = requestAnimationFrame(function () { self.raf = 0; self._drawNow(); });
  };

  FlameGraph.prototype._record = function (v, x, w, y) {
    var d = this.drawn;
    if (d.n === d.node.length) {
      var cap = d.n * 2;
      var grow = function (a, T) { var b = new T(cap); b.set(a); return b; };
      d.node = grow(d.node, Int32Array);
      d.x = grow(d.x, Float32Array);
      d.w = grow(d.w, Float32Array);
      d.y = grow(d.y, Float32Array);
    }
    d.node[d.n] = v; d.x[d.n] = x; d.w[d.n] = w; d.y[d.n] = y;
    d.n++;
  };

  FlameGraph.prototype._drawNow = function () {
    if (!this.dirty) return;
    this.dirty = false;
    var t0 = now();
    if (!this.W) this._resize();
    var ctx = this.ctx, t = this.tree, W = this.W, H = this.H, dpr = this.dpr || 1;
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, W, H);
    this.drawn.n = 0;
    if (!t.total[0]) {
      ctx.fillStyle = '#8a8f98';
      ctx.font = FONT;
      ctx.textAlign = 'center';
      ctx.fillText('No samples', W / 2, H / 2);
      ctx.textAlign = 'left';
      this.timings.draw = now() - t0;
      return;
    }
    ctx.font = FONT;
    ctx.textBaseline = 'middle';
    this.ellW = this.ellW || ctx.measureText(ELLIPSIS).width;
    var scrollTop = this.scroller.scrollTop;
    var flame = this.orientation === 'flame';
    var z = this.zoom, scale = W / t.total[z], x0 = t.x[z];
    var searching = !!this.match;
    var dark = this.dark = getComputedStyle(this.root).getPropertyValue('--sfg-scheme')
      .trim() === 'dark';

    // Ancestors of the zoomed node span the full width, faded.
    for (var a = t.parent[z]; a >= 0; a = t.parent[a]) {
      var ya = this._rowY(t.depth[a]) - scrollTop;
      if (ya + ROW > 0 && ya < H) this._frame(a, 0, W, ya, searching, true);
    }

    // The zoomed subtree, depth first; children narrower than MIN_W are summed into one
    // hatched block per parent and not descended into.
    var stack = t.stack, sp = 0;
    stack[sp++] = z;
    while (sp > 0) {
      var v = stack[--sp];
      var x = (t.x[v] - x0) * scale, w = t.total[v] * scale;
      var y = this._rowY(t.depth[v]) - scrollTop;
      if (y + ROW > 0 && y < H) this._frame(v, x, w, y, searching, false);
      // Deeper levels lie beyond this one: stop once it is off the far edge.
      if (flame ? y <= 0 : y + ROW >= H) continue;
      var s = t.start[v], e = t.start[v + 1];
      var c = s;
      for (; c < e; c++) {
        if (t.total[t.kids[c]] * scale < MIN_W) break;
      }
      if (c < e) {
        var first = t.kids[c];
        var ax = (t.x[first] - x0) * scale;
        var aw = (t.x[v] + t.total[v] - t.self[v] - t.x[first]) * scale;
        var ay = flame ? y - ROW : y + ROW;
        if (aw >= MIN_W && ay + ROW > 0 && ay < H) {
          ctx.fillStyle = this.hatch;
          ctx.fillRect(ax, ay, aw, ROW - 1);
          this._record(-2 - v, ax, aw, ay);
        }
      }
      for (var k = c - 1; k >= s; k--) stack[sp++] = t.kids[k];
    }

    // Hover and keyboard selection outlines.
    if (this.hover >= 0) this._outline(this.hover, dark ? '#f0f3f6' : '#1f2328', 1.5);
    if (this.sel >= 0 && this.sel !== this.hover) {
      this._outline(this.sel, dark ? '#4493f8' : '#2f6feb', 2);
    }
    this.timings.draw = now() - t0;
  };

  FlameGraph.prototype._frame = function (v, x, w, y, searching, ancestor) {
    var ctx = this.ctx, t = this.tree;
    var dimmed = searching && !this.match[v] && v !== 0;
    var gap = w > 3 ? 1 : 0;
    ctx.fillStyle = dimmed ? (this.dark ? t.dimDark[v] : t.dim[v]) : t.fill[v];
    ctx.globalAlpha = ancestor ? 0.55 : 1;
    ctx.fillRect(x, y, w - gap, ROW - 1);
    if (searching && !dimmed && v !== 0 && w > 2) {
      ctx.fillStyle = 'rgba(124, 58, 237, 0.9)';
      ctx.fillRect(x, y + ROW - 4, w - gap, 3);
    }
    this._record(v, x, w, y);
    var avail = w - gap - 8;
    if (avail >= LABEL_MIN - 8) {
      var nameId = t.name[v];
      var text = t.strings[nameId];
      if (v === 0) {
        text = 'all \u2014 ' + fmtInt(t.total[0]) + ' samples' + this._sec(t.total[0]);
        nameId = -1;
      }
      var label = this._fit(text, nameId, avail);
      if (label) {
        var ty = y + (ROW - 1) / 2 + 0.5;
        ctx.fillStyle = dimmed ? (this.dark ? '#7d8590' : '#9aa0a8') : '#1b1e23';
        ctx.fillText(label, x + 4, ty);
        // Room to spare: add the file's base name and line, muted.
        var fileId = t.file[v];
        if (label === text && fileId && avail - t.textWidth[nameId] > 60) {
          var where = this._where(v);
          var ww = t.whereWidth[v];
          if (ww < 0) ww = t.whereWidth[v] = ctx.measureText(where).width;
          if (t.textWidth[nameId] + 10 + ww <= avail) {
            ctx.fillStyle = dimmed ? (this.dark ? '#59616b' : '#b4b9c0')
              : 'rgba(27, 30, 35, 0.55)';
            ctx.fillText(where, x + 4 + t.textWidth[nameId] + 10, ty);
          }
        }
      }
    }
    ctx.globalAlpha = 1;
  };

  FlameGraph.prototype._where = function (v) {
    var t = this.tree, f = basename(t.strings[t.file[v]]);
    return t.line[v] > 0 ? f + ':' + t.line[v] : f;
  };

  // `text` cut to fit `avail` px, with an ellipsis; null when not even a few letters fit.
  FlameGraph.prototype._fit = function (text, id, avail) {
    var ctx = this.ctx, cache = this.tree.textWidth;
    var full = id >= 0 ? cache[id] : -1;
    if (full < 0) {
      full = ctx.measureText(text).width;
      if (id >= 0) cache[id] = full;
    }
    if (full <= avail) return text;
    var room = avail - this.ellW;
    if (room < 12) return null;
    var n = Math.floor(text.length * room / full);
    while (n > 1) {
      var s = text.slice(0, n) + ELLIPSIS;
      if (ctx.measureText(s).width <= avail) return s;
      n -= Math.max(1, Math.floor(n / 10));
    }
    return null;
  };

  FlameGraph.prototype._rectOf = function (v) {
    var d = this.drawn;
    for (var i = 0; i < d.n; i++) {
      if (d.node[i] === v) return { x: d.x[i], y: d.y[i], w: d.w[i] };
    }
    return null;
  };

  FlameGraph.prototype._outline = function (v, color, width) {
    var r = this._rectOf(v);
    if (!r) return;
    var ctx = this.ctx;
    ctx.strokeStyle = color;
    ctx.lineWidth = width;
    var gap = r.w > 3 ? 1 : 0;
    ctx.strokeRect(r.x + width / 2, r.y + width / 2,
      Math.max(1, r.w - gap - width), ROW - 1 - width);
  };

  // ------------------------------------------------------------------ interaction
  FlameGraph.prototype._hit = function (x, y) {
    var d = this.drawn;
    for (var i = d.n - 1; i >= 0; i--) {
      if (x >= d.x[i] && x < d.x[i] + Math.max(d.w[i], 1) && y >= d.y[i] && y < d.y[i] + ROW) {
        return i;
      }
    }
    return -1;
  };

  FlameGraph.prototype._local = function (e) {
    var r = this.scroller.getBoundingClientRect();
    return { x: e.clientX - r.left, y: e.clientY - r.top };
  };

  FlameGraph.prototype._onMove = function (e) {
    this._drawNow();
    var p = this._local(e), i = this._hit(p.x, p.y);
    var v = i >= 0 ? this.drawn.node[i] : -1;
    var agg = v < -1 ? -2 - v : null;
    if (v < 0) v = -1;
    if (v !== this.hover || agg !== this.hoverAgg) {
      this.hover = v;
      this.hoverAgg = agg;
      this._schedule();
      if (v >= 0) this._fillTip(v);
      else if (agg !== null) this._fillAggTip(agg);
    }
    if (v >= 0 || agg !== null) this._placeTip(p.x, p.y);
    else this._hideTip();
    this.scroller.style.cursor = v >= 0 ? 'pointer' : '';
  };

  FlameGraph.prototype._onClick = function (e) {
    this._drawNow();
    var p = this._local(e), i = this._hit(p.x, p.y);
    if (i < 0) return;
    var v = this.drawn.node[i];
    if (v < 0) return;
    this.sel = -1;
    if (v === 0) this.reset();
    else this.zoomTo(v);
  };

  FlameGraph.prototype._onKey = function (e) {
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    var key = e.key, handled = true;
    if (key === 'Escape') {
      if (this.zoom !== 0) this.reset();
      else if (this.searchTerm) this.setSearch('');
      else if (this.sel >= 0) { this.sel = -1; this._hideTip(); this._schedule(); }
    } else if (key === 'Backspace') {
      this.back();
    } else if (key === '/') {
      this.searchInput.focus();
      this.searchInput.select();
    } else if (key === 'Enter' || key === ' ') {
      if (this.sel > 0) this.zoomTo(this.sel);
      else if (this.sel === 0) this.reset();
    } else if (key.indexOf('Arrow') === 0) {
      this._moveSel(key);
    } else {
      handled = false;
    }
    if (handled) e.preventDefault();
  };

  FlameGraph.prototype._moveSel = function (key) {
    var t = this.tree, v = this.sel;
    if (v < 0) {
      this._select(this.zoom);
      return;
    }
    var deeper = this.orientation === 'flame' ? 'ArrowUp' : 'ArrowDown';
    var scale = this.W / t.total[this.zoom];
    var next = -1;
    if (key === deeper) {
      if (t.depth[v] < t.depth[this.zoom]) {
        for (var a = this.zoom; a >= 0; a = t.parent[a]) if (t.parent[a] === v) next = a;
      } else if (t.start[v + 1] > t.start[v] && t.total[t.kids[t.start[v]]] * scale >= MIN_W) {
        next = t.kids[t.start[v]];
      }
    } else if (key === 'ArrowUp' || key === 'ArrowDown') {
      next = t.parent[v];
    } else if (v !== this.zoom && t.depth[v] > t.depth[this.zoom]) {
      var p = t.parent[v], s = t.start[p], e = t.start[p + 1], pos = s;
      while (pos < e && t.kids[pos] !== v) pos++;
      pos += key === 'ArrowLeft' ? -1 : 1;
      if (pos >= s && pos < e && t.total[t.kids[pos]] * scale >= MIN_W) next = t.kids[pos];
    }
    if (next >= 0) this._select(next);
  };

  FlameGraph.prototype._select = function (v) {
    this.sel = v;
    // Keep the selected level in view.
    var y = this._rowY(this.tree.depth[v]), st = this.scroller.scrollTop;
    if (y < st) this.scroller.scrollTop = y - ROW;
    else if (y + ROW > st + this.H) this.scroller.scrollTop = y + 2 * ROW - this.H;
    this.dirty = true;
    this._drawNow();
    var r = this._rectOf(v);
    this._fillTip(v);
    if (r) this._placeTip(Math.max(0, r.x) + Math.min(r.w, this.W) / 2, r.y + ROW);
    this._announce(v);
  };

  FlameGraph.prototype._announce = function (v) {
    var t = this.tree;
    this.live.textContent = t.strings[t.name[v]] + ', ' + fmtPct(t.total[v] / t.total[0]) +
      ' of samples';
  };

  // ------------------------------------------------------------------ tooltip
  // " · 1.23 s": the time `count` samples stand for, when the data says (else "").
  FlameGraph.prototype._sec = function (count) {
    var per = this.views.perSample;
    return per ? ' \u00b7 ' + fmtSec(count * per) : '';
  };

  // The exact own/total of the function a frame node belongs to (from Python), or null.
  FlameGraph.prototype._functionOf = function (v) {
    var t = this.tree, k = t.kind[v];
    if (v <= 0 || k === K_ROOT || k === K_GROUP || k === K_OTHER) return null;
    return this.views.functions.get(t.name[v] + ':' + t.file[v]) || null;
  };

  // How many boxes of the current tree belong to the function of node v.
  FlameGraph.prototype._boxesOf = function (v) {
    var t = this.tree, nm = t.name[v], fl = t.file[v], n = 0;
    for (var i = 1; i < t.n; i++) if (t.name[i] === nm && t.file[i] === fl) n++;
    return n;
  };

  FlameGraph.prototype._fillTip = function (v) {
    var t = this.tree, tip = this.tooltip, total = t.total[0], z = this.zoom;
    var name = t.strings[t.name[v]], file = t.strings[t.file[v]], line = t.line[v];
    var kind = t.kind[v];
    tip.textContent = '';
    tip.appendChild(el('div', { class: 'sfg-tip-name', text: v === 0 ? 'all samples' : name }));
    if (file) {
      tip.appendChild(el('div', { class: 'sfg-tip-file', text: line > 0 ? file + ':' + line : file }));
    } else if (kind === K_OTHER) {
      tip.appendChild(el('div', { class: 'sfg-tip-file', text:
        'frames under ' + fmtPct(this.model.minFraction) + ' of all samples, lumped together' }));
    } else if (kind === K_NATIVE) {
      tip.appendChild(el('div', { class: 'sfg-tip-file', text: 'no source file' }));
    }
    var rows = [
      ['Samples', fmtInt(t.total[v]) + (t.self[v] ? '  (self ' + fmtInt(t.self[v]) + ')' : '')],
      ['Of total', fmtPct(t.total[v] / total) + this._sec(t.total[v])],
    ];
    if (z !== 0 && t.depth[v] >= t.depth[z]) {
      rows.push(['Of zoom', fmtPct(t.total[v] / t.total[z])]);
    }
    if (t.self[v]) rows.push(['Self', fmtPct(t.self[v] / total) + this._sec(t.self[v])]);
    var ops = t.opcodes && t.opcodes.get(v);
    if (ops) rows.push(['opcode', opcodesText(ops)]);
    // A function can fill several boxes (one per line or per call path): its own total,
    // every stack counted once, is what the table says.
    var fn = this._functionOf(v);
    var boxes = fn ? this._boxesOf(v) : 0;
    if (fn && (boxes > 1 || fn.total !== t.total[v] || t.total[0] !== this.model.total)) {
      var filtered = this.filterPid !== null || this.filterThread !== null;
      rows.push([filtered ? 'Function (all threads)' : 'Function total',
        fmtPct(fn.total / this.model.total) + this._sec(fn.total) +
        (boxes > 1 ? ', ' + boxes + ' boxes' : '')]);
    }
    if (this.views.diff && v > 0 && kind !== K_GROUP && kind !== K_OTHER) {
      var d = this._diffOf(v);
      if (d) rows.push(['Own share', fmtPct(d.base) + ' \u2192 ' + fmtPct(d.now)]);
      rows.push(['Change', this.views.diff.label(d)]);
    }
    if (kind !== K_ROOT && kind !== K_GROUP && kind !== K_OTHER) {
      rows.push(['Kind', { 1: 'your code', 2: 'standard library', 3: 'installed package',
        4: 'no file' }[kind]]);
    }
    var table = el('div', { class: 'sfg-tip-grid' });
    for (var i = 0; i < rows.length; i++) {
      table.appendChild(el('span', { class: 'sfg-tip-key', text: rows[i][0] }));
      table.appendChild(el('span', { class: 'sfg-tip-val', text: rows[i][1] }));
    }
    tip.appendChild(table);
    tip.appendChild(el('div', { class: 'sfg-tip-hint', text: v === 0 ? 'click to reset zoom' :
      v === z ? 'zoomed' : 'click to zoom' }));
    tip.hidden = false;
  };

  FlameGraph.prototype._fillAggTip = function (p) {
    var t = this.tree, tip = this.tooltip, scale = this.W / t.total[this.zoom], n = 0, sum = 0;
    for (var c = t.start[p]; c < t.start[p + 1]; c++) {
      var k = t.kids[c];
      if (t.total[k] * scale < MIN_W) { n++; sum += t.total[k]; }
    }
    tip.textContent = '';
    tip.appendChild(el('div', { class: 'sfg-tip-name', text: n + ' narrow frames' }));
    tip.appendChild(el('div', { class: 'sfg-tip-file', text: 'under ' +
      t.strings[t.name[p]] + ', each narrower than half a pixel' }));
    var grid = el('div', { class: 'sfg-tip-grid' }, [
      el('span', { class: 'sfg-tip-key', text: 'Samples' }),
      el('span', { class: 'sfg-tip-val', text: fmtInt(sum) }),
      el('span', { class: 'sfg-tip-key', text: 'Of total' }),
      el('span', { class: 'sfg-tip-val', text: fmtPct(sum / t.total[0]) + this._sec(sum) }),
    ]);
    tip.appendChild(grid);
    tip.appendChild(el('div', { class: 'sfg-tip-hint', text: 'zoom into ' +
      t.strings[t.name[p]] + ' to see them' }));
    tip.hidden = false;
  };

  // (x, y) in the stage; the tooltip is placed in the root, which may be taller.
  FlameGraph.prototype._placeTip = function (x, y) {
    var tip = this.tooltip;
    if (tip.hidden) return;
    var ox = this.stage.offsetLeft, oy = this.stage.offsetTop;
    var tw = tip.offsetWidth, th = tip.offsetHeight;
    var W = this.root.clientWidth, H = this.root.clientHeight;
    var left = ox + x + 14, top = oy + y + 16;
    if (left + tw > W - 4) left = Math.max(4, ox + x - tw - 14);
    if (top + th > H - 4) top = Math.max(4, oy + y - th - 12);
    tip.style.transform = 'translate(' + Math.round(left) + 'px,' + Math.round(top) + 'px)';
  };

  FlameGraph.prototype._hideTip = function () {
    this.tooltip.hidden = true;
  };

  // ------------------------------------------------------------------ controls
  FlameGraph.prototype._syncControls = function () {
    var t = this.tree, model = this.model;
    if (!t) return;
    var flame = this.orientation === 'flame';
    this.flameBtn.setAttribute('aria-pressed', String(flame));
    this.icicleBtn.setAttribute('aria-pressed', String(!flame));
    this.root.classList.toggle('sfg-icicle', !flame);
    if (this.byLineBtn) {
      this.byLineBtn.setAttribute('aria-pressed', String(this.by === 'line'));
      this.byFunctionBtn.setAttribute('aria-pressed', String(this.by === 'function'));
    }
    if (this.table) {
      for (var r = 0; r < this.tableRows.length; r++) {
        this.tableRows[r].classList.toggle('sfg-row-on', this.searchTerm === this._rowTerm(r));
      }
    }
    this.backBtn.disabled = !this.history.length;
    this.resetBtn.disabled = this.zoom === 0;

    // Search share.
    var info = this.matchInfo;
    info.textContent = '';
    info.className = 'sfg-match';
    this.searchInput.classList.toggle('sfg-invalid', !!this.searchError);
    if (this.searchError) {
      info.classList.add('sfg-match-error');
      info.textContent = 'bad regex: ' + this.searchError;
    } else if (this.searchTerm) {
      var total = t.total[0];
      info.classList.add('sfg-match-on');
      info.appendChild(el('b', { class: 'sfg-match-pct', text: fmtPct(total ? this.matched / total : 0) }));
      info.appendChild(document.createTextNode(' matched \u00b7 ' + fmtInt(this.matched) +
        ' samples' + this._sec(this.matched)));
      if (this.zoom !== 0) {
        var mz = this._matchedInZoom();
        info.appendChild(document.createTextNode(' \u00b7 ' + fmtPct(mz / t.total[this.zoom]) +
          ' of zoom'));
      }
    }

    // Breadcrumb: root … zoomed node (the middle folded when the path is long).
    var path = [];
    for (var v = this.zoom; v >= 0; v = t.parent[v]) path.push(v);
    path.reverse();
    var crumbs = this.crumbs, self = this;
    crumbs.textContent = '';
    var shown = path;
    if (path.length > 7) shown = path.slice(0, 2).concat([-1], path.slice(path.length - 4));
    shown.forEach(function (node, i) {
      if (i > 0) crumbs.appendChild(el('span', { class: 'sfg-crumb-sep', 'aria-hidden': 'true', text: '\u203a' }));
      if (node === -1) {
        crumbs.appendChild(el('span', { class: 'sfg-crumb-gap', text: '\u2026' }));
        return;
      }
      var label = node === 0 ? 'all' : t.strings[t.name[node]];
      if (node === self.zoom) {
        crumbs.appendChild(el('span', { class: 'sfg-crumb sfg-crumb-current', title: label,
          'aria-current': 'true', text: label }));
      } else {
        crumbs.appendChild(el('button', { type: 'button', class: 'sfg-crumb', title: label,
          text: label, onclick: function () { self.zoomTo(node); } }));
      }
    });
    var z = this.zoom;
    this.zoomInfo.textContent = z === 0
      ? fmtInt(t.total[0]) + ' samples' + this._sec(t.total[0]) +
        (t.total[0] !== model.total ? ' (filtered, of ' + fmtInt(model.total) + ')' : '')
      : fmtInt(t.total[z]) + ' samples \u00b7 ' + fmtPct(t.total[z] / t.total[0]) +
        ' of total' + this._sec(t.total[z]);
    this.footerInfo.textContent = fmtInt(t.n) + ' nodes' + (model.pruned
      ? ' \u00b7 frames under ' + fmtPct(model.minFraction) + ' of samples merged into (other)'
      : '');
  };

  function render(container, data, options) {
    if (typeof container === 'string') container = document.querySelector(container);
    return new FlameGraph(container, data, options);
  }

  var api = {
    render: render, buildTree: buildTree, Model: Model, Views: Views, fmtPct: fmtPct,
    fmtSec: fmtSec, fileKind: function (f) {
      return KIND_NAMES[fileKind(f)];
    }, color: function (name, file) {
      return kindColors(file ? fileKind(file) : K_NATIVE, name)[0];
    }, version: 1,
  };
  if (typeof window !== 'undefined') window.SpyFlameGraph = api;
  return api;
})();
// @@spy-flamegraph-exports@@ (html.py drops the lines from here on to inline a classic script)
export var render = SpyFlameGraph.render;
export default SpyFlameGraph;
