// week.js previews how many pools the week template will create.
(function () {
  'use strict';
  var form = document.getElementById('week-form');
  var out = document.getElementById('week-count');
  if (!form || !out) { return; }
  function count(name) {
    var seen = {};
    return form.elements[name].value.split(/[\s,;]+/).filter(function (v) {
      if (!v || seen[v]) { return false; }
      seen[v] = true;
      return true;
    }).length;
  }
  function update() {
    var r = count('regions'), k = count('kinds'), s = count('slots');
    out.textContent = r + ' region(s) × ' + k + ' kind(s) × ' + s + ' slot(s) × 7 days = ' + (r * k * s * 7) + ' pools.';
  }
  form.addEventListener('input', update);
  update();
})();
