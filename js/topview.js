/*
 * spy_magic live "top" table: own % / total % / own seconds / function / location,
 * sortable by clicking a column header. An anywidget ES module: the kernel passes on the
 * `rows` and `status` the sampling helper sends about once a second while a cell or an
 * attachment runs; each row is [own %, total %, own seconds, function, location].
 */
var COLUMNS = [
  { key: 0, label: 'Own %', numeric: true },
  { key: 1, label: 'Total %', numeric: true },
  { key: 2, label: 'Own s', numeric: true, seconds: true },
  { key: 3, label: 'Function', numeric: false },
  { key: 4, label: 'Location', numeric: false },
];

var CSS = [
  '.spy-top { font: 12px/1.45 ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; }',
  '.spy-top .spy-top-head { color: #57606a; margin: 2px 0 6px; font-family: system-ui, sans-serif; }',
  '.spy-top table { border-collapse: collapse; width: 100%; }',
  '.spy-top th { text-align: left; cursor: pointer; user-select: none; border-bottom: 1px solid #d0d7de;',
  '  padding: 3px 10px 3px 4px; font-family: system-ui, sans-serif; font-weight: 600; }',
  '.spy-top th.num, .spy-top td.num { text-align: right; }',
  '.spy-top td { padding: 2px 10px 2px 4px; white-space: nowrap; overflow: hidden;',
  '  text-overflow: ellipsis; max-width: 46ch; }',
  '.spy-top tr:nth-child(even) td { background: rgba(175, 184, 193, 0.12); }',
  '.spy-top .bar { display: inline-block; height: 8px; background: #f0a02b; margin-right: 6px;',
  '  vertical-align: middle; border-radius: 2px; }',
].join('\n');

function fmt(value) {
  return value.toFixed(value >= 10 ? 1 : 2);
}

// As profile/summary.py's fmt_seconds (and flamegraph.js's fmtSec).
function fmtSec(s) {
  if (!(s > 0)) return '0 s';
  if (s >= 100) return s.toFixed(0) + ' s';
  if (s >= 10) return s.toFixed(1) + ' s';
  if (s >= 1) return s.toFixed(2) + ' s';
  var ms = s * 1000;
  if (ms >= 10) return ms.toFixed(0) + ' ms';
  if (ms >= 1) return ms.toFixed(1) + ' ms';
  return ms.toFixed(2) + ' ms';
}

function render({ model, el }) {
  var style = document.createElement('style');
  style.textContent = CSS;
  var root = document.createElement('div');
  root.className = 'spy-top';
  var head = document.createElement('div');
  head.className = 'spy-top-head';
  var table = document.createElement('table');
  root.append(style, head, table);
  el.appendChild(root);
  var sortKey = 0;
  var descending = true;

  function draw() {
    var rows = (model.get('rows') || []).slice();
    rows.sort(function (a, b) {
      var x = a[sortKey], y = b[sortKey];
      var order = x < y ? -1 : x > y ? 1 : 0;
      return descending ? -order : order;
    });
    head.textContent = model.get('status') || '';
    table.textContent = '';
    var tr = document.createElement('tr');
    COLUMNS.forEach(function (column) {
      var th = document.createElement('th');
      th.className = column.numeric ? 'num' : '';
      th.textContent = column.label + (column.key === sortKey ? (descending ? ' ▾' : ' ▴') : '');
      th.onclick = function () {
        if (sortKey === column.key) descending = !descending;
        else { sortKey = column.key; descending = column.numeric; }
        draw();
      };
      tr.appendChild(th);
    });
    table.appendChild(tr);
    rows.forEach(function (row) {
      var line = document.createElement('tr');
      COLUMNS.forEach(function (column) {
        var td = document.createElement('td');
        if (column.numeric) {
          td.className = 'num';
          td.textContent = column.seconds ? fmtSec(row[column.key]) : fmt(row[column.key]);
        } else {
          td.textContent = row[column.key];
          td.title = row[column.key];
        }
        if (column.key === 0) {
          var bar = document.createElement('span');
          bar.className = 'bar';
          bar.style.width = Math.max(1, Math.round(row[0] * 0.6)) + 'px';
          td.prepend(bar);
        }
        line.appendChild(td);
      });
      table.appendChild(line);
    });
  }

  model.on('change:rows', draw);
  model.on('change:status', draw);
  draw();
  return function () { model.off('change:rows', draw); model.off('change:status', draw); };
}

export default { render };
