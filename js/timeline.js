/* spy_magic timeline: per thread, the dominant stack of each time bucket (profile/timeline.py)
 * drawn as columns of boxes over time, neighbours with the same frame merged into one box,
 * coloured like the flame graph (SpyFlameGraph.color). Wheel or the buttons zoom around the
 * pointer, dragging pans, a double click resets; hovering names the frame, the time span and
 * how dominant that stack was. SpyTimeline.render(container, timeline, strings) draws one;
 * the container's __spyTimeline is the instance (a hook for tests). A classic script: html.py
 * inlines it after flamegraph.js. */
var SpyTimeline = (function () {
  'use strict';

  var ROW = 14, LABEL = 18, AXIS = 20, GAP = 8, MAX_ROWS = 16, MIN_SPAN = 4;
  var FONT = '11px system-ui, -apple-system, "Segoe UI", Roboto, sans-serif';

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text) e.textContent = text;
    return e;
  }

  function fmtSec(s) {
    return window.SpyFlameGraph ? SpyFlameGraph.fmtSec(s) : s.toFixed(3) + ' s';
  }

  function niceStep(span) {
    var raw = span / 8, p = Math.pow(10, Math.floor(Math.log10(raw))), m = raw / p;
    return p * (m < 1.5 ? 1 : m < 3.5 ? 2 : m < 7.5 ? 5 : 10);
  }

  function Timeline(container, data, strings) {
    if (!data || data.format !== 'spy_magic.timeline') throw new Error('not a spy_magic timeline');
    if (data.version !== 1) throw new Error('unsupported timeline version ' + data.version);
    this.container = container;
    this.data = data;
    this.strings = strings;
    this.B = Math.max(1, data.buckets);
    this.v0 = 0;
    this.v1 = this.B;
    var nodes = data.nodes, n = nodes.parent.length, depth = new Int32Array(n), i;
    for (i = 0; i < n; i++) depth[i] = nodes.parent[i] >= 0 ? depth[nodes.parent[i]] + 1 : 0;
    this.depth = depth;
    this.colors = new Array(n);
    for (i = 0; i < n; i++) {
      var name = strings[nodes.name[i]], file = strings[nodes.file[i]];
      this.colors[i] = window.SpyFlameGraph ? SpyFlameGraph.color(name, file) : '#f4a261';
    }
    // Per thread: each bucket's path of nodes, root first.
    var self = this;
    this.lanes = data.threads.map(function (t) {
      var paths = new Array(self.B), rows = 1;
      for (var b = 0; b < self.B; b++) {
        var v = t.stack[b], path = [];
        for (; v >= 0; v = nodes.parent[v]) path.push(v);
        path.reverse();
        paths[b] = path;
        if (path.length > rows) rows = path.length;
      }
      return { thread: t, paths: paths, rows: Math.min(rows, MAX_ROWS),
        label: (t.name || 'thread') + ' (' + t.tid + ')' };
    });
    var pids = {};
    data.threads.forEach(function (t) { pids[t.pid] = 1; });
    if (Object.keys(pids).length > 1) {
      this.lanes.forEach(function (l) { l.label = 'pid ' + l.thread.pid + ' \u203a ' + l.label; });
    }
    this._build();
    container.__spyTimeline = this;
    this.draw();
    if (typeof ResizeObserver !== 'undefined') {
      this.ro = new ResizeObserver(function () { self.draw(); });
      this.ro.observe(this.stage);
    }
  }

  Timeline.prototype._build = function () {
    var self = this, c = this.container;
    c.textContent = '';
    var root = el('div', 'sfg-tl');
    var bar = el('div', 'sfg-tl-bar');
    function button(text, title, fn) {
      var b = el('button', 'sfg-tl-btn', text);
      b.type = 'button';
      b.title = title;
      b.addEventListener('click', fn);
      bar.appendChild(b);
      return b;
    }
    button('+', 'Zoom in', function () { self.zoom(0.5, 0.5); });
    button('\u2212', 'Zoom out', function () { self.zoom(2, 0.5); });
    this.resetBtn = button('Reset', 'Show the whole recording (double click)', function () {
      self.setRange(0, self.B);
    });
    this.rangeInfo = el('span', 'sfg-tl-range');
    bar.appendChild(this.rangeInfo);
    bar.appendChild(el('span', 'sfg-tl-range',
      'wheel: zoom \u00b7 drag: pan \u00b7 each column: the stack seen most in its time slice' +
      (this.data.hidden ? ' \u00b7 ' + this.data.hidden + ' quieter threads not shown' : '')));
    this.canvas = el('canvas');
    this.stage = el('div', 'sfg-tl-stage');
    this.stage.appendChild(this.canvas);
    this.tip = el('div', 'sfg-tl-tip');
    this.tip.hidden = true;
    root.appendChild(bar);
    root.appendChild(this.stage);
    root.appendChild(this.tip);
    c.appendChild(root);
    this.root = root;
    this.ctx = this.canvas.getContext('2d');
    var H = AXIS;
    this.lanes.forEach(function (l) { l.top = H; H += LABEL + l.rows * ROW + GAP; });
    this.H = H;
    this.stage.style.height = H + 'px';

    var drag = null;
    this.stage.addEventListener('wheel', function (e) {
      e.preventDefault();
      var r = self.stage.getBoundingClientRect();
      self.zoom(Math.exp(e.deltaY * 0.0015), (e.clientX - r.left) / r.width);
    }, { passive: false });
    this.stage.addEventListener('mousedown', function (e) {
      drag = { x: e.clientX, v0: self.v0, v1: self.v1 };
      e.preventDefault();
    });
    window.addEventListener('mouseup', function () { drag = null; });
    this.stage.addEventListener('mousemove', function (e) {
      var r = self.stage.getBoundingClientRect();
      if (drag) {
        var shift = (drag.x - e.clientX) / r.width * (drag.v1 - drag.v0);
        self.setRange(drag.v0 + shift, drag.v1 + shift);
        return;
      }
      self._hover(e.clientX - r.left, e.clientY - r.top);
    });
    this.stage.addEventListener('mouseleave', function () { self.tip.hidden = true; });
    this.stage.addEventListener('dblclick', function () { self.setRange(0, self.B); });
  };

  // Zoom by `factor` (< 1: in) keeping the point at `frac` of the width in place.
  Timeline.prototype.zoom = function (factor, frac) {
    var span = this.v1 - this.v0, c = this.v0 + frac * span;
    var next = Math.min(this.B, Math.max(MIN_SPAN, span * factor));
    this.setRange(c - frac * next, c - frac * next + next);
  };

  Timeline.prototype.setRange = function (a, b) {
    var span = Math.min(this.B, Math.max(MIN_SPAN, b - a));
    a = Math.max(0, Math.min(a, this.B - span));
    this.v0 = a;
    this.v1 = a + span;
    this.draw();
  };

  Timeline.prototype.draw = function () {
    var W = this.stage.clientWidth || 600, dpr = window.devicePixelRatio || 1;
    if (this.canvas.width !== Math.round(W * dpr) || this.canvas.height !== Math.round(this.H * dpr)) {
      this.canvas.width = Math.round(W * dpr);
      this.canvas.height = Math.round(this.H * dpr);
      this.canvas.style.height = this.H + 'px';
    }
    this.W = W;
    var ctx = this.ctx, d = this.data, nodes = d.nodes, strings = this.strings;
    var dark = getComputedStyle(this.root).getPropertyValue('--sfg-scheme').trim() === 'dark';
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, W, this.H);
    ctx.font = FONT;
    ctx.textBaseline = 'middle';
    var scale = W / (this.v1 - this.v0), v0 = this.v0;
    var first = Math.max(0, Math.floor(this.v0)), last = Math.min(this.B, Math.ceil(this.v1));
    this.drawn = [];

    // Time axis, seconds from the first sample.
    var t0 = this.v0 * d.width, t1 = this.v1 * d.width, step = niceStep(t1 - t0);
    ctx.fillStyle = dark ? '#8d96a0' : '#656d76';
    ctx.strokeStyle = dark ? '#30363d' : '#d8dee4';
    for (var t = Math.ceil(t0 / step) * step; t <= t1; t += step) {
      var tx = (t / d.width - v0) * scale;
      ctx.beginPath();
      ctx.moveTo(tx + 0.5, AXIS - 4);
      ctx.lineTo(tx + 0.5, this.H);
      ctx.stroke();
      ctx.fillText(fmtSec(t), tx + 3, 9);
    }

    for (var li = 0; li < this.lanes.length; li++) {
      var lane = this.lanes[li];
      ctx.fillStyle = dark ? '#e6edf3' : '#1f2328';
      ctx.fillText(lane.label, 4, lane.top + LABEL / 2);
      for (var depth = 0; depth < lane.rows; depth++) {
        var y = lane.top + LABEL + depth * ROW, b = first;
        while (b < last) {
          var path = lane.paths[b];
          if (path.length <= depth) { b++; continue; }
          var node = path[depth], e = b + 1;
          while (e < last && lane.paths[e].length > depth && lane.paths[e][depth] === node) e++;
          var x = (b - v0) * scale, w = (e - b) * scale;
          ctx.fillStyle = this.colors[node];
          ctx.fillRect(x, y, Math.max(w - (w > 3 ? 1 : 0), 0.5), ROW - 1);
          var name = strings[nodes.name[node]];
          this.drawn.push({ lane: li, depth: depth, node: node, from: b, to: e, x: x, w: w, y: y, name: name });
          if (w > 28) {
            var text = name, avail = w - 8;
            if (ctx.measureText(text).width > avail) {
              while (text.length > 1 && ctx.measureText(text + '\u2026').width > avail) {
                text = text.slice(0, -1);
              }
              text += '\u2026';
            }
            if (text.length > 2) {
              ctx.fillStyle = '#1b1e23';
              ctx.fillText(text, Math.max(x, 0) + 4, y + ROW / 2);
            }
          }
          b = e;
        }
      }
    }
    this.rangeInfo.textContent = fmtSec(t0) + ' \u2013 ' + fmtSec(t1) + ' of ' +
      fmtSec(this.B * d.width);
    this.resetBtn.disabled = this.v0 === 0 && this.v1 === this.B;
  };

  Timeline.prototype._hover = function (x, y) {
    var hit = null;
    for (var i = 0; i < this.drawn.length; i++) {
      var r = this.drawn[i];
      if (x >= r.x && x < r.x + r.w && y >= r.y && y < r.y + ROW) { hit = r; break; }
    }
    var tip = this.tip;
    if (!hit) { tip.hidden = true; return; }
    var d = this.data, lane = this.lanes[hit.lane], th = lane.thread;
    var b = Math.min(hit.to - 1, Math.max(hit.from, Math.floor(this.v0 + x / (this.W / (this.v1 - this.v0)))));
    var file = this.strings[d.nodes.file[hit.node]];
    tip.textContent = '';
    tip.appendChild(el('b', '', hit.name));
    tip.appendChild(el('div', '', file || 'no source file'));
    tip.appendChild(el('div', '', lane.label + ' \u00b7 ' + fmtSec(hit.from * d.width) + ' \u2013 ' +
      fmtSec(hit.to * d.width)));
    tip.appendChild(el('div', '', 'at ' + fmtSec(b * d.width) + ': this stack in ' + th.top[b] +
      ' of the thread\u2019s ' + th.count[b] + ' samples there'));
    tip.hidden = false;
    var left = x + 14, top = y + 16;
    if (left + tip.offsetWidth > this.W) left = Math.max(0, x - tip.offsetWidth - 10);
    tip.style.transform = 'translate(' + Math.round(left) + 'px,' +
      Math.round(top + this.stage.offsetTop) + 'px)';
  };

  // For tests and tools: the visible range and what is drawn.
  Timeline.prototype.state = function () {
    var d = this.data, names = {};
    this.drawn.forEach(function (r) { names[r.name] = (names[r.name] || 0) + 1; });
    return {
      range: [this.v0 * d.width, this.v1 * d.width], total: this.B * d.width,
      lanes: this.lanes.map(function (l) { return { label: l.label, rows: l.rows }; }),
      boxes: this.drawn.length, names: names,
    };
  };

  // Drawn boxes named `name`, widest first, with client rectangles.
  Timeline.prototype.boxes = function (name) {
    var r = this.stage.getBoundingClientRect(), d = this.data;
    return this.drawn.filter(function (b) { return b.name === name; })
      .sort(function (a, b) { return b.w - a.w; })
      .map(function (b) {
        return { lane: b.lane, depth: b.depth, from: b.from * d.width, to: b.to * d.width,
          x: r.left + b.x, y: r.top + b.y, w: b.w, h: ROW - 1 };
      });
  };

  return {
    render: function (container, data, strings) { return new Timeline(container, data, strings); },
    version: 1,
  };
})();
if (typeof window !== 'undefined') window.SpyTimeline = SpyTimeline;
