// Live filtering of the catalogue index on api/index.json.
// The grammar is the one of `gitreg search` (gitreg/catalogue/search.py):
// key=value (exact), key~regex (case-insensitive), series=/endorser=/... fields,
// plain words (substring of titles, descriptions, OS). All must match.
// The DOM is only shown and hidden here, never written from data, so no
// catalogue text is ever parsed as HTML.
"use strict";
(function () {
  var FIELDS = { series: "series", endorser: "endorser", registry: "registry_name",
                 list: "list", image: "image", status: "status" };
  var WORDS = ["title", "description", "os", "osversion", "osname", "list_title",
               "list_description"];
  var FILTER = /^([A-Za-z0-9_.:-]+)([=~])([\s\S]*)$/;

  function tokens(text) {
    var found = [], re = /"([^"]*)"|(\S+)/g, m;
    while ((m = re.exec(text)) !== null) {
      found.push(m[1] !== undefined ? m[1] : m[2]);
    }
    return found;
  }

  function parseFilters(args) {
    return args.map(function (arg) {
      var m = FILTER.exec(arg);
      if (!m) { return { kind: "word", value: arg.toLowerCase() }; }
      var key = m[1], op = m[2], value = m[3];
      if (key.indexOf(":") < 0 && !Object.prototype.hasOwnProperty.call(FIELDS, key)) {
        throw new Error("unknown field " + key);
      }
      if (op === "=") { return { kind: "equals", key: key, value: value }; }
      return { kind: "regex", key: key, value: value, pattern: new RegExp(value, "i") };
    });
  }

  function text(value) {
    if (value === true) { return "true"; }
    if (value === false) { return "false"; }
    return String(value);
  }

  // The index leaves out of row.keys what a column of the row repeats
  // (search.LIFTED, key -> column; a test keeps the two equal): such a key
  // is read from its column.
  var LIFTED = {"dc:identifier": "image",
               "dc:title": "title",
               "dc:description": "description",
               "hv:uri": "uri",
               "hv:size": "size",
               "sl:checksum:sha512": "sha512",
               "sl:arch": "arch",
               "sl:os": "os",
               "sl:osversion": "osversion",
               "sl:osname": "osname",
               "hv:version": "version",
               "hv:format": "format",
               "gitreg:series": "series",
               "dc:date:created": "list_created"};

  function keyValue(row, key) {
    if (Object.prototype.hasOwnProperty.call(row.keys, key)) { return row.keys[key]; }
    return Object.prototype.hasOwnProperty.call(LIFTED, key) ? row[LIFTED[key]] : undefined;
  }

  function matches(filter, row) {
    if (filter.kind === "word") {
      return WORDS.some(function (c) {
        return String(row[c] || "").toLowerCase().indexOf(filter.value) >= 0;
      });
    }
    var value = filter.key.indexOf(":") >= 0 ? keyValue(row, filter.key)
      : row[FIELDS[filter.key]];
    if (value === undefined || value === null) { return false; }
    if (filter.kind === "equals") { return text(value) === filter.value; }
    return filter.pattern.test(text(value));
  }

  function search(rows, args, validOnly, latestOnly) {
    var filters = parseFilters(args);
    var found = rows.filter(function (row) {
      return (!validOnly || row.status === "valid") &&
        filters.every(function (f) { return matches(f, row); });
    });
    if (!latestOnly) { return found; }
    var best = {};
    found.forEach(function (row) {
      if (row.series === null) { return; }
      var current = best[row.series];
      if (current === undefined || row.series_rank > current.series_rank) {
        best[row.series] = row;
      }
    });
    return found.filter(function (row) {
      return row.series === null || best[row.series] === row;
    });
  }

  window.gitregCatalogue = { parseFilters: parseFilters, search: search, tokens: tokens };

  function start(index) {
    var input = document.getElementById("filter");
    var valid = document.getElementById("valid-only");
    var latest = document.getElementById("latest");
    var count = document.getElementById("count");
    var rows = Array.prototype.slice.call(document.querySelectorAll("#images tr[data-key]"));
    var lists = Array.prototype.slice.call(document.querySelectorAll("#lists tr[data-list]"));
    function update() {
      var shown;
      try {
        shown = search(index.rows, tokens(input.value), valid.checked, latest.checked);
        input.setCustomValidity("");
      } catch (err) {
        input.setCustomValidity(err.message);
        count.textContent = err.message;
        return;
      }
      var keys = {}, listed = {};
      shown.forEach(function (row) {
        keys[row.registry + "/" + row.image] = true;
        listed[row.list] = true;
      });
      rows.forEach(function (tr) { tr.hidden = !keys[tr.getAttribute("data-key")]; });
      var filtering = input.value.trim() !== "";
      lists.forEach(function (tr) {
        tr.hidden = filtering && !listed[tr.getAttribute("data-list")];
      });
      count.textContent = shown.length + " image(s)";
      document.body.setAttribute("data-filtered", String(shown.length));
    }
    input.addEventListener("input", update);
    valid.addEventListener("change", update);
    latest.addEventListener("change", update);
    document.getElementById("search").addEventListener("submit", function (e) {
      e.preventDefault(); update();
    });
    var hint = document.querySelector(".noscript-hint");
    if (hint) { hint.hidden = true; }
    update();
    document.body.setAttribute("data-ready", "true");
  }

  if (!document.getElementById("filter")) { return; }
  fetch("api/index.json", { credentials: "same-origin" })
    .then(function (r) { return r.json(); })
    .then(start)
    .catch(function (err) {
      document.getElementById("count").textContent = "live filtering unavailable: " + err;
    });
})();
