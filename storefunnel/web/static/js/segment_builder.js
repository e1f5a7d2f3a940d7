/* Buying groups: the rule builder (rows of conditions in AND/OR groups, with NOT), its live count, and the
   growth chart of a segment's page. The builder edits a tree, serialises it to the rule JSON the segments
   service takes, and names each node by the same JSON path the service uses in its errors. */
(function () {
  "use strict";

  var PREVIEW_DELAY = 350;
  var CHIP_LIMIT = 12;

  function h(tag, attrs, children) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) {
      var v = attrs[k];
      if (v === null || v === undefined || v === false) { return; }
      if (k === "text") { node.textContent = v; } else if (k === "value") { node.value = v; } else { node.setAttribute(k, v === true ? "" : v); }
    });
    (children || []).forEach(function (c) {
      if (c === null || c === undefined) { return; }
      node.appendChild(typeof c === "string" ? document.createTextNode(c) : c);
    });
    return node;
  }

  function option(value, label, selected) {
    var o = h("option", { value: value, text: label });
    if (selected) { o.selected = true; }
    return o;
  }

  /* ---- the tree: groups and conditions, to and from the rule JSON ---- */

  function newGroup(mode, children) { return { kind: "group", mode: mode || "all", not: false, children: children || [] }; }

  function fromRule(raw) {
    if (!raw || typeof raw !== "object" || Array.isArray(raw)) { return { kind: "raw", not: false, json: raw }; }
    var keys = Object.keys(raw);
    if (keys.length === 1 && keys[0] === "not") {
      var inner = fromRule(raw.not);
      inner.not = !inner.not;
      return inner;
    }
    if (Array.isArray(raw.all) || Array.isArray(raw.any)) {
      var mode = Array.isArray(raw.all) ? "all" : "any";
      return newGroup(mode, raw[mode].map(fromRule));
    }
    if (typeof raw.field === "string") {
      var node = { kind: "field", not: false, field: raw.field, op: raw.op, value: raw.value === undefined ? null : raw.value };
      if (raw.field.indexOf("traits.") === 0) {
        node.kind = "trait";
        node.key = raw.field.slice(7);
        node.numeric = typeof (Array.isArray(raw.value) ? raw.value[0] : raw.value) === "number";
      }
      return node;
    }
    if ("event" in raw || "kind" in raw) {
      var byKind = !("event" in raw);
      return {
        kind: "event", not: false, by: byKind ? "kind" : "event", name: byKind ? raw.kind : raw.event,
        channel: raw.channel || "", op: raw.op || ">=", count: raw.count === undefined ? 1 : raw.count,
        within: raw.within_days === undefined ? null : raw.within_days
      };
    }
    if ("segment" in raw) { return { kind: "segment", not: false, segment: raw.segment, op: raw.op || "in" }; }
    return { kind: "raw", not: false, json: raw };
  }

  /* Serialise ``node`` found at ``path``; records each node's paths so errors can be put next to it. */
  function toRule(node, path, noValueOps) {
    node.outer = path;
    var inner = node.not ? path + ".not" : path;
    node.path = inner;
    var obj;
    if (node.kind === "group") {
      obj = {};
      obj[node.mode] = node.children.map(function (c, i) { return toRule(c, inner + "." + node.mode + "[" + i + "]", noValueOps); });
    } else if (node.kind === "field" || node.kind === "trait") {
      obj = { field: node.kind === "trait" ? "traits." + (node.key || "") : node.field, op: node.op };
      if (noValueOps.indexOf(node.op) < 0) { obj.value = node.value; }
    } else if (node.kind === "event") {
      obj = {};
      obj[node.by] = node.name;
      if (node.channel) { obj.channel = node.channel; }
      obj.op = node.op;
      obj.count = node.count;
      if (node.within !== null && node.within !== "") { obj.within_days = node.within; }
    } else if (node.kind === "segment") {
      obj = { segment: node.segment, op: node.op };
    } else {
      obj = node.json;
    }
    return node.not ? { not: obj } : obj;
  }

  function eachNode(node, fn) {
    fn(node);
    if (node.kind === "group") { node.children.forEach(function (c) { eachNode(c, fn); }); }
  }

  function pathCovers(prefix, path) {
    if (!prefix || path.indexOf(prefix) !== 0) { return false; }
    var next = path.charAt(prefix.length);
    return next === "" || next === "." || next === "[";
  }

  /* ---- values as typed and as the rule JSON holds them ---- */

  function parseInteger(text) {
    var t = String(text).trim();
    return /^-?\d+$/.test(t) ? parseInt(t, 10) : (t === "" ? null : t);
  }

  function parseNumber(text) {
    var t = String(text).trim();
    return /^-?\d+(\.\d+)?$/.test(t) ? Number(t) : (t === "" ? null : t);
  }

  function Builder(root) {
    this.root = root;
    this.cat = JSON.parse(root.querySelector("[data-catalogue]").textContent);
    this.fields = {};
    var self = this;
    this.cat.fields.forEach(function (f) { self.fields[f.name] = f; });
    this.scale = Math.pow(10, this.cat.decimals);
    this.treeEl = root.querySelector("[data-tree]");
    this.input = root.querySelector("[data-rules-input]");
    this.jsonEl = root.querySelector("[data-json]");
    this.countEl = root.querySelector("[data-preview-count]");
    this.messageEl = root.querySelector("[data-preview-message]");
    this.sampleEl = root.querySelector("[data-preview-sample]");
    this.segmentId = root.getAttribute("data-segment-id");
    this.seq = 0;
    this.timer = null;
    var initial = JSON.parse(root.querySelector("[data-initial-rules]").textContent);
    this.load(initial);
    var errors = JSON.parse(root.querySelector("[data-initial-errors]").textContent) || [];
    this.render();
    if (errors.length) { this.showErrors(errors); }
    this.schedule();
    root.querySelector("[data-apply-json]").addEventListener("click", function () { self.applyJson(); });
  }

  Builder.prototype.load = function (rule) {
    if (rule === null || rule === undefined) {
      this.tree = newGroup("all", [this.defaultCondition()]);
      return;
    }
    var node = fromRule(rule);
    this.tree = node.kind === "group" ? node : newGroup("all", [node]);
  };

  Builder.prototype.defaultCondition = function () {
    var f = this.fields.country;
    var value = f && f.values && f.values.length ? f.values[0] : "";
    return { kind: "field", not: false, field: "country", op: "eq", value: value };
  };

  Builder.prototype.serialise = function () {
    return toRule(this.tree, "rules", this.cat.no_value_ops);
  };

  /* Something changed: keep the form field and the JSON view in step now, ask for the count shortly. */
  Builder.prototype.changed = function () {
    var rule = this.serialise();
    var empty = this.tree.children.length === 0;
    this.input.value = empty ? "" : JSON.stringify(rule);
    if (document.activeElement !== this.jsonEl) { this.jsonEl.value = empty ? "" : JSON.stringify(rule, null, 2); }
    this.schedule();
  };

  Builder.prototype.schedule = function () {
    var self = this;
    clearTimeout(this.timer);
    this.countEl.setAttribute("data-state", "pending");
    this.timer = setTimeout(function () { self.preview(); }, PREVIEW_DELAY);
  };

  Builder.prototype.preview = function () {
    var self = this;
    var rule = this.serialise();
    var seq = ++this.seq;
    if (this.tree.children.length === 0) {
      this.clearErrors();
      this.showCount(null, "empty", "Add a condition to see who matches.", []);
      return;
    }
    var body = { rules: rule, sample_size: 5 };
    if (this.segmentId) { body.segment_id = parseInt(this.segmentId, 10); }
    this.countEl.setAttribute("data-state", "loading");
    fetch(this.root.getAttribute("data-preview-url"), {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", Accept: "application/json", "X-CSRF-Token": this.root.getAttribute("data-csrf") },
      body: JSON.stringify(body)
    }).then(function (r) {
      return r.json().catch(function () { return {}; }).then(function (data) { return { status: r.status, data: data }; });
    }).then(function (res) {
      if (seq !== self.seq) { return; }
      if (res.status === 200) {
        self.clearErrors();
        self.showCount(res.data.count, "ready", "", res.data.sample);
      } else if (res.status === 422) {
        self.clearErrors();
        self.showErrors(res.data.errors && res.data.errors.length && res.data.errors[0].path ? res.data.errors : [{ path: "rules", message: res.data.detail }]);
        self.showCount(null, "invalid", res.data.detail || "These rules cannot be read.", []);
      } else if (res.status === 401) {
        self.showCount(null, "error", "You were signed out: reload the page to sign in again.", []);
      } else {
        self.showCount(null, "error", (res.data && res.data.detail) || "The count could not be computed (HTTP " + res.status + ").", []);
      }
    }).catch(function (err) {
      if (seq === self.seq) { self.showCount(null, "error", "The count could not be computed: " + (err.message || err), []); }
    });
  };

  Builder.prototype.showCount = function (count, state, message, sample) {
    this.countEl.setAttribute("data-state", state);
    if (count === null) {
      this.countEl.removeAttribute("data-count");
      this.countEl.textContent = "–";
    } else {
      this.countEl.setAttribute("data-count", String(count));
      this.countEl.textContent = count.toLocaleString() + (count === 1 ? " contact" : " contacts");
    }
    this.messageEl.textContent = message;
    this.sampleEl.textContent = "";
    var self = this;
    (sample || []).forEach(function (c) {
      var label = c.email || (c.name || "contact " + c.id);
      var who = c.url ? h("a", { href: c.url, text: label }) : h("span", { text: label });
      var meta = [c.name && c.email ? c.name : "", c.country || "", c.stage || ""].filter(Boolean).join(" · ");
      self.sampleEl.appendChild(h("li", { "data-contact-id": String(c.id) }, [who, meta ? h("span", { "class": "muted", text: " " + meta }) : null]));
    });
    if (count > (sample || []).length && sample.length) {
      this.sampleEl.appendChild(h("li", { "class": "muted", text: "newest " + sample.length + " of " + count.toLocaleString() }));
    }
  };

  Builder.prototype.clearErrors = function () {
    Array.prototype.forEach.call(this.treeEl.querySelectorAll(".has-error"), function (n) { n.classList.remove("has-error"); });
    Array.prototype.forEach.call(this.treeEl.querySelectorAll("[data-row-error]"), function (n) { n.textContent = ""; });
  };

  /* Put each error next to the deepest row whose path leads to it. */
  Builder.prototype.showErrors = function (errors) {
    var self = this;
    this.serialise();
    var nodes = [];
    eachNode(this.tree, function (n) { nodes.push(n); });
    errors.forEach(function (e) {
      var best = null;
      nodes.forEach(function (n) {
        if (pathCovers(n.outer, e.path) && (!best || n.outer.length > best.outer.length)) { best = n; }
      });
      var target = best && best.el ? best.el : self.tree.el;
      if (!target) { return; }
      target.classList.add("has-error");
      var slot = target.querySelector(":scope > [data-row-error]");
      var text = e.path + ": " + e.message;
      slot.textContent = slot.textContent ? slot.textContent + "; " + text : text;
    });
  };

  Builder.prototype.applyJson = function () {
    var errorEl = this.root.querySelector("[data-json-error]");
    errorEl.textContent = "";
    var text = this.jsonEl.value.trim();
    var parsed = null;
    if (text) {
      try { parsed = JSON.parse(text); } catch (e) { errorEl.textContent = "Not valid JSON: " + e.message; return; }
      if (!parsed || typeof parsed !== "object" || Array.isArray(parsed)) { errorEl.textContent = "Expected an object: a group or a condition."; return; }
    }
    this.load(parsed);
    if (!text) { this.tree.children = []; }
    this.render();
  };

  /* ---- drawing ---- */

  Builder.prototype.render = function () {
    this.treeEl.textContent = "";
    this.treeEl.appendChild(this.groupEl(this.tree, null));
    this.changed();
  };

  Builder.prototype.notToggle = function (node, label) {
    var self = this;
    var box = h("input", { type: "checkbox", "data-role": "not" });
    box.checked = !!node.not;
    box.addEventListener("change", function () { node.not = box.checked; self.render(); });
    return h("label", { "class": "not-toggle" + (node.not ? " on" : ""), title: "Negate: exactly the contacts this leaves out" }, [box, label]);
  };

  Builder.prototype.groupEl = function (group, parent) {
    var self = this;
    var mode = h("select", { "data-role": "mode", "aria-label": "Match all or any" }, [
      option("all", "all", group.mode === "all"), option("any", "any", group.mode === "any")
    ]);
    mode.addEventListener("change", function () { group.mode = mode.value; self.render(); });
    var head = h("div", { "class": "group-head" }, [
      this.notToggle(group, "Not"), h("span", { text: "Match " }), mode,
      h("span", { text: group.mode === "all" ? " of these (AND)" : " of these (OR)" })
    ]);
    if (parent) {
      head.appendChild(this.removeButton(parent, group, "Remove group"));
    }
    var body = h("div", { "class": "group-body" });
    group.children.forEach(function (child, i) {
      if (i > 0) { body.appendChild(h("div", { "class": "joiner", text: group.mode === "all" ? "and" : "or" })); }
      body.appendChild(child.kind === "group" ? self.groupEl(child, group) : self.conditionEl(child, group));
    });
    if (!group.children.length) { body.appendChild(h("p", { "class": "muted", text: "No conditions yet." })); }
    var addCond = h("button", { type: "button", "class": "secondary small-button", "data-role": "add-condition", text: "+ Condition" });
    addCond.addEventListener("click", function () { group.children.push(self.defaultCondition()); self.render(); });
    var addGroup = h("button", { type: "button", "class": "secondary small-button", "data-role": "add-group", text: "+ Group" });
    addGroup.addEventListener("click", function () {
      group.children.push(newGroup(group.mode === "all" ? "any" : "all", [self.defaultCondition()]));
      self.render();
    });
    var el = h("div", { "class": "group" + (parent ? " nested" : " root") + (group.not ? " negated" : ""), "data-node": "group" }, [
      head, body, h("div", { "class": "group-foot" }, [addCond, addGroup]), h("div", { "class": "row-error", "data-row-error": "", role: "alert" })
    ]);
    group.el = el;
    el.setAttribute("data-path", group.outer || "rules");
    return el;
  };

  Builder.prototype.removeButton = function (parent, node, label) {
    var self = this;
    var b = h("button", { type: "button", "class": "remove", "data-role": "remove", "aria-label": label, title: label, text: "×" });
    b.addEventListener("click", function () {
      parent.children.splice(parent.children.indexOf(node), 1);
      self.render();
    });
    return b;
  };

  Builder.prototype.whatSelect = function (node) {
    var self = this;
    var current = node.kind === "field" ? node.field : "@" + node.kind;
    var select = h("select", { "data-role": "what", "aria-label": "Condition" });
    var groups = {};
    this.cat.fields.forEach(function (f) {
      if (!groups[f.group]) { groups[f.group] = h("optgroup", { label: f.group }); select.appendChild(groups[f.group]); }
      groups[f.group].appendChild(option(f.name, f.label, current === f.name));
    });
    select.appendChild(h("optgroup", { label: "Behaviour and membership" }, [
      option("@event", "Did an event…", current === "@event"),
      option("@segment", "In buying group…", current === "@segment"),
      option("@trait", "Trait…", current === "@trait")
    ]));
    if (node.kind === "raw") { select.appendChild(option("@raw", "Other (see JSON)", true)); }
    select.addEventListener("change", function () { self.replace(node, self.freshNode(select.value)); });
    return select;
  };

  Builder.prototype.freshNode = function (what) {
    if (what === "@event") {
      return { kind: "event", not: false, by: "event", name: this.cat.events[0] || "", channel: "", op: ">=", count: 1, within: 30 };
    }
    if (what === "@segment") {
      return { kind: "segment", not: false, segment: this.cat.segments.length ? this.cat.segments[0].id : null, op: "in" };
    }
    if (what === "@trait") { return { kind: "trait", not: false, key: "", op: "eq", value: "", numeric: false }; }
    var f = this.fields[what];
    var op = f.ops[0];
    return { kind: "field", not: false, field: what, op: op, value: this.defaultValue(f, op) };
  };

  Builder.prototype.defaultValue = function (f, op) {
    if (this.cat.no_value_ops.indexOf(op) >= 0) { return null; }
    if (op === "in" || op === "not_in") { return []; }
    if (op === "between") { return [null, null]; }
    if (op === "within_last_days" || op === "not_within_last_days") { return 30; }
    if (f && f.type === "string" && (op === "eq" || op === "neq")) { return f.values && f.values.length ? f.values[0] : ""; }
    if (f && f.type === "string") { return ""; }
    return null;
  };

  Builder.prototype.replace = function (node, fresh) {
    fresh.not = node.not;
    var self = this;
    eachNode(this.tree, function (n) {
      if (n.kind === "group") {
        var i = n.children.indexOf(node);
        if (i >= 0) { n.children[i] = fresh; }
      }
    });
    self.render();
  };

  Builder.prototype.conditionEl = function (node, parent) {
    var parts = [this.notToggle(node, "Not"), this.whatSelect(node)];
    if (node.kind === "field") {
      parts = parts.concat(this.fieldParts(node, this.fields[node.field]));
    } else if (node.kind === "trait") {
      parts = parts.concat(this.traitParts(node));
    } else if (node.kind === "event") {
      parts = parts.concat(this.eventParts(node));
    } else if (node.kind === "segment") {
      parts = parts.concat(this.segmentParts(node));
    } else {
      parts.push(h("code", { "class": "raw", text: JSON.stringify(node.json) }));
    }
    var line = h("div", { "class": "cond-line" }, parts);
    line.appendChild(this.removeButton(parent, node, "Remove condition"));
    var el = h("div", { "class": "cond" + (node.not ? " negated" : ""), "data-node": node.kind }, [
      line, h("div", { "class": "row-error", "data-row-error": "", role: "alert" })
    ]);
    node.el = el;
    el.setAttribute("data-path", node.outer || "");
    return el;
  };

  Builder.prototype.opSelect = function (node, ops, labels, onChange) {
    var self = this;
    var select = h("select", { "data-role": "op", "aria-label": "Operator" });
    ops.forEach(function (op) { select.appendChild(option(op, labels[op] || op, node.op === op)); });
    if (ops.indexOf(node.op) < 0) { select.appendChild(option(node.op, String(node.op), true)); }
    select.addEventListener("change", function () {
      node.op = select.value;
      if (onChange) { onChange(); }
      self.render();
    });
    return select;
  };

  Builder.prototype.fieldParts = function (node, f) {
    var self = this;
    var labels = this.cat.op_labels[f.type];
    var op = this.opSelect(node, f.ops, labels, function () { node.value = self.defaultValue(f, node.op); });
    return [op].concat(this.valueParts(node, f));
  };

  /* Inputs for a field condition's value, by the field's type and the operator. */
  Builder.prototype.valueParts = function (node, f) {
    var self = this;
    var op = node.op;
    var changed = function () { self.changed(); };
    if (this.cat.no_value_ops.indexOf(op) >= 0) { return []; }
    if (f.type === "string") {
      if (op === "in" || op === "not_in") { return [this.multiValue(node, f.values)]; }
      if ((op === "eq" || op === "neq") && f.values && f.values.length) {
        var select = h("select", { "data-role": "value", "aria-label": f.label });
        var vals = f.values.slice();
        if (typeof node.value === "string" && vals.indexOf(node.value) < 0) { vals.unshift(node.value); }
        vals.forEach(function (v) { select.appendChild(option(v, v === "" ? "(empty)" : v, node.value === v)); });
        select.addEventListener("change", function () { node.value = select.value; changed(); });
        return [select];
      }
      return [this.textInput(node.value, f.label, function (v) { node.value = v; changed(); })];
    }
    if (f.type === "number") {
      var toShown = function (v) { return f.money && typeof v === "number" ? (v / self.scale).toFixed(self.cat.decimals) : (v === null || v === undefined ? "" : String(v)); };
      var fromShown = function (t) {
        if (!f.money) { return parseInteger(t); }
        var n = parseNumber(t);
        return typeof n === "number" ? Math.round(n * self.scale) : n;
      };
      var suffix = f.money ? h("span", { "class": "unit", text: this.cat.currency }) : null;
      if (op === "between") {
        var pair = Array.isArray(node.value) ? node.value : [null, null];
        node.value = pair;
        return [
          this.numberInput(toShown(pair[0]), f, function (t) { pair[0] = fromShown(t); changed(); }), h("span", { text: "and" }),
          this.numberInput(toShown(pair[1]), f, function (t) { pair[1] = fromShown(t); changed(); }), suffix
        ];
      }
      if (op === "in") {
        var shown = Array.isArray(node.value) ? node.value.map(toShown).join(", ") : "";
        return [this.textInput(shown, f.label + " (comma-separated)", function (t) {
          node.value = t.split(",").map(function (s) { return s.trim(); }).filter(Boolean).map(fromShown);
          changed();
        }), suffix];
      }
      return [this.numberInput(toShown(node.value), f, function (t) { node.value = fromShown(t); changed(); }), suffix];
    }
    if (f.type === "date") {
      if (op === "within_last_days" || op === "not_within_last_days") {
        return [this.numberInput(node.value === null ? "" : String(node.value), { min: 1, max: this.cat.max_within_days, label: "days" },
          function (t) { node.value = parseInteger(t); changed(); }), h("span", { text: "days" })];
      }
      var dateInput = function (value, set) {
        var input = h("input", { type: "date", "data-role": "value", "aria-label": f.label });
        input.value = typeof value === "string" ? value.slice(0, 10) : "";
        input.addEventListener("input", function () { set(input.value || null); changed(); });
        return input;
      };
      if (op === "between") {
        var range = Array.isArray(node.value) ? node.value : [null, null];
        node.value = range;
        return [dateInput(range[0], function (v) { range[0] = v; }), h("span", { text: "and" }), dateInput(range[1], function (v) { range[1] = v; })];
      }
      return [dateInput(node.value, function (v) { node.value = v; })];
    }
    return [];
  };

  Builder.prototype.textInput = function (value, label, set) {
    var input = h("input", { type: "text", "data-role": "value", "aria-label": label });
    input.value = value === null || value === undefined ? "" : String(value);
    input.addEventListener("input", function () { set(input.value); });
    return input;
  };

  Builder.prototype.numberInput = function (value, f, set) {
    var input = h("input", {
      type: "text", inputmode: f.money ? "decimal" : "numeric", "class": "number", "data-role": "value", "aria-label": f.label,
      placeholder: f.money ? "0." + "0".repeat(this.cat.decimals) : (f.min !== null && f.min !== undefined && f.max ? f.min + "–" + f.max : "")
    });
    input.value = value;
    input.addEventListener("input", function () { set(input.value); });
    return input;
  };

  /* A list value: chips for a few known values, a multiple select for many, typed text when none are known. */
  Builder.prototype.multiValue = function (node, values) {
    var self = this;
    var current = Array.isArray(node.value) ? node.value.slice() : [];
    node.value = current;
    if (!values || !values.length) {
      return this.textInput(current.join(", "), "values (comma-separated)", function (t) {
        node.value = t.split(",").map(function (s) { return s.trim(); }).filter(Boolean);
        self.changed();
      });
    }
    var all = values.slice();
    current.forEach(function (v) { if (all.indexOf(v) < 0) { all.push(v); } });
    if (all.length <= CHIP_LIMIT) {
      return h("span", { "class": "chips", role: "group" }, all.map(function (v) {
        var box = h("input", { type: "checkbox", value: v, "data-role": "value" });
        box.checked = current.indexOf(v) >= 0;
        box.addEventListener("change", function () {
          var at = node.value.indexOf(v);
          if (box.checked && at < 0) { node.value.push(v); }
          if (!box.checked && at >= 0) { node.value.splice(at, 1); }
          node.value.sort(function (a, b) { return all.indexOf(a) - all.indexOf(b); });
          box.parentNode.classList.toggle("on", box.checked);
          self.changed();
        });
        return h("label", { "class": "chip-box" + (box.checked ? " on" : "") }, [box, v]);
      }));
    }
    var select = h("select", { multiple: true, size: "5", "data-role": "value", "aria-label": "values" });
    all.forEach(function (v) { select.appendChild(option(v, v, current.indexOf(v) >= 0)); });
    select.addEventListener("change", function () {
      node.value = Array.prototype.filter.call(select.options, function (o) { return o.selected; }).map(function (o) { return o.value; });
      self.changed();
    });
    return select;
  };

  Builder.prototype.traitParts = function (node) {
    var self = this;
    var key = this.textInput(node.key, "trait key", function (v) { node.key = v.trim(); self.changed(); });
    key.classList.add("trait-key");
    key.setAttribute("placeholder", "key, e.g. plan");
    var labels = Object.assign({}, this.cat.op_labels.string, this.cat.op_labels.number, this.cat.op_labels.bool);
    var op = this.opSelect(node, this.cat.trait_ops, labels, function () {
      node.value = self.defaultValue(null, node.op);
      if (["gt", "gte", "lt", "lte", "between"].indexOf(node.op) >= 0) { node.numeric = true; }
      if (["contains", "starts_with", "not_in"].indexOf(node.op) >= 0) { node.numeric = false; }
    });
    var parts = [key, op];
    if (this.cat.no_value_ops.indexOf(node.op) >= 0) { return parts; }
    var asType = h("select", { "data-role": "value-type", "aria-label": "Value type" }, [option("text", "text", !node.numeric), option("number", "number", !!node.numeric)]);
    asType.addEventListener("change", function () { node.numeric = asType.value === "number"; node.value = self.defaultValue(null, node.op); self.render(); });
    var conv = function (t) { return node.numeric ? parseNumber(t) : t; };
    if (node.op === "between") {
      var pair = Array.isArray(node.value) ? node.value : [null, null];
      node.value = pair;
      parts.push(this.textInput(pair[0], "from", function (t) { pair[0] = parseNumber(t); self.changed(); }), h("span", { text: "and" }),
        this.textInput(pair[1], "to", function (t) { pair[1] = parseNumber(t); self.changed(); }));
      return parts;
    }
    if (node.op === "in" || node.op === "not_in") {
      parts.push(this.textInput(Array.isArray(node.value) ? node.value.join(", ") : "", "values (comma-separated)", function (t) {
        node.value = t.split(",").map(function (s) { return s.trim(); }).filter(Boolean).map(conv);
        self.changed();
      }));
    } else {
      parts.push(this.textInput(node.value, "value", function (t) { node.value = conv(t); self.changed(); }));
    }
    parts.push(asType);
    return parts;
  };

  Builder.prototype.eventParts = function (node) {
    var self = this;
    var by = h("select", { "data-role": "event-by", "aria-label": "Event or touch kind" }, [
      option("event", "event", node.by === "event"), option("kind", "touch of kind", node.by === "kind")
    ]);
    by.addEventListener("change", function () { node.by = by.value; node.name = ""; self.render(); });
    var known = node.by === "event" ? this.cat.events : this.cat.touch_kinds;
    var listId = "seg-list-" + Math.random().toString(36).slice(2);
    var name = this.textInput(node.name, node.by === "event" ? "event name" : "touch kind", function (v) { node.name = v.trim(); self.changed(); });
    name.setAttribute("list", listId);
    name.setAttribute("data-role", "event");
    name.setAttribute("placeholder", node.by === "event" ? "e.g. Product Added" : "e.g. email_open");
    var datalist = h("datalist", { id: listId }, known.map(function (v) { return option(v, v); }));
    var countOps = h("select", { "data-role": "count-op", "aria-label": "How many times" });
    this.cat.count_ops.forEach(function (c) { countOps.appendChild(option(c.op, c.label, node.op === c.op)); });
    countOps.addEventListener("change", function () { node.op = countOps.value; self.changed(); });
    var count = this.numberInput(String(node.count), { label: "times" }, function (t) { node.count = parseInteger(t); self.changed(); });
    count.setAttribute("data-role", "count");
    var period = h("select", { "data-role": "period", "aria-label": "When" }, [
      option("last", "in the last", node.within !== null), option("ever", "ever", node.within === null)
    ]);
    period.addEventListener("change", function () { node.within = period.value === "ever" ? null : 30; self.render(); });
    var parts = [by, name, datalist, countOps, count, h("span", { text: "times" }), period];
    if (node.within !== null) {
      var within = this.numberInput(String(node.within), { label: "days" }, function (t) { node.within = parseInteger(t); self.changed(); });
      within.setAttribute("data-role", "within");
      parts.push(within, h("span", { text: "days" }));
    }
    return parts;
  };

  Builder.prototype.segmentParts = function (node) {
    var self = this;
    var op = h("select", { "data-role": "op", "aria-label": "In or not in" }, [
      option("in", "is a member", node.op === "in"), option("not_in", "is not a member", node.op === "not_in")
    ]);
    op.addEventListener("change", function () { node.op = op.value; self.changed(); });
    var select = h("select", { "data-role": "value", "aria-label": "Buying group" });
    var known = false;
    this.cat.segments.forEach(function (s) {
      known = known || s.id === node.segment;
      select.appendChild(option(String(s.id), s.name + " (" + s.kind + ")", s.id === node.segment));
    });
    if (!known && node.segment !== null) { select.appendChild(option(String(node.segment), "segment " + node.segment, true)); }
    if (!select.options.length) { select.appendChild(option("", "no other buying groups yet", true)); }
    select.addEventListener("change", function () { node.segment = select.value ? parseInt(select.value, 10) : null; self.changed(); });
    return [op, select];
  };

  /* ---- a segment's growth chart ---- */

  function dayToUnix(day) {
    var p = day.split("-");
    return Date.UTC(+p[0], +p[1] - 1, +p[2]) / 1000;
  }

  function drawGrowth(container) {
    var target = container.querySelector('[data-chart="growth"]');
    container.setAttribute("data-state", "loading");
    fetch(container.getAttribute("data-src"), { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (r) {
        if (!r.ok) { throw new Error("the growth data could not be loaded (HTTP " + r.status + ")"); }
        return r.json();
      })
      .then(function (data) {
        var x = data.day.map(dayToUnix);
        // A young segment has a point or two: show at least a week so the axis reads as days.
        var hi = x.length ? x[x.length - 1] : Date.now() / 1000;
        var lo = Math.min(x.length ? x[0] : hi, hi - 6 * 86400);
        var fmt = new Intl.DateTimeFormat(undefined, { timeZone: "UTC", day: "numeric", month: "short" });
        target.textContent = "";
        var plot = new uPlot({
          width: Math.max(280, target.clientWidth), height: 220,
          tzDate: function (ts) { return uPlot.tzDate(new Date(ts * 1000), "Etc/UTC"); },
          scales: { x: { time: true, range: function () { return [lo - 43200, hi + 43200]; } },
            y: { range: function (u, min, max) { return [0, Math.max(1, max * 1.15)]; } } },
          axes: [
            { stroke: "#5f6b7a", grid: { stroke: "#eef1f4" }, space: 60,
              values: function (u, splits) { return splits.map(function (ts) { return ts % 86400 ? "" : fmt.format(new Date(ts * 1000)); }); } },
            { stroke: "#5f6b7a", grid: { stroke: "#eef1f4" }, size: 56,
              values: function (u, vals) { return vals.map(function (v) { return Number.isInteger(v) ? v.toLocaleString() : ""; }); } }
          ],
          cursor: { drag: { x: false, y: false } },
          series: [
            { label: "Day", value: function (u, ts) { return ts == null ? "–" : new Date(ts * 1000).toISOString().slice(0, 10); } },
            { label: "Members", stroke: "#2563eb", width: 2, fill: "rgba(37, 99, 235, .08)", value: function (u, v) { return v == null ? "–" : v.toLocaleString(); } },
            { label: "Entered", stroke: "#16a34a", width: 1, value: function (u, v) { return v == null ? "–" : v.toLocaleString(); } },
            { label: "Left", stroke: "#b42318", width: 1, value: function (u, v) { return v == null ? "–" : v.toLocaleString(); } }
          ]
        }, [x, data.members, data.entered, data.left], target);
        window.addEventListener("resize", function () { plot.setSize({ width: Math.max(280, target.clientWidth), height: 220 }); });
        container.setAttribute("data-state", "ready");
      })
      .catch(function (err) {
        container.setAttribute("data-state", "error");
        target.textContent = "";
        target.appendChild(h("div", { "class": "chart-error", text: String(err.message || err) }));
      });
  }

  function init() {
    Array.prototype.forEach.call(document.querySelectorAll("[data-segment-builder]"), function (root) {
      if (!root.builder) { root.builder = new Builder(root); }
    });
    Array.prototype.forEach.call(document.querySelectorAll("[data-segment-growth]"), drawGrowth);
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", init);
  } else {
    init();
  }
})();
