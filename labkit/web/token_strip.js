// labkit token strip (anywidget): the Python side sends spans {text, kind, round, first, tip}; hover tips are CSS.
const KINDS = ["accepted", "rejected", "replacement", "bonus", "plain"];

function node(tag, cls, text) {
  const n = document.createElement(tag);
  n.className = cls;
  if (text !== undefined) n.textContent = text;
  return n;
}

function build(model, el) {
  const spans = model.get("spans") || [];
  const root = node("div", "lk-strip");
  const head = node("div", "lk-head");
  head.appendChild(node("span", "lk-title", model.get("title") || ""));
  const counts = Object.fromEntries(KINDS.map((k) => [k, 0]));
  for (const s of spans) counts[s.kind] = (counts[s.kind] || 0) + 1;
  for (const k of KINDS.slice(0, 4)) {
    const key = node("span", `lk-key lk-${k}`, `${k} ${counts[k]}`);
    key.dataset.kind = k;
    head.appendChild(key);
  }
  root.appendChild(head);
  const text = node("div", "lk-text");
  text.appendChild(node("span", "lk-prompt", model.get("prompt") || ""));
  for (const s of spans) {
    const t = node("span", `lk-tok lk-${s.kind}` + (s.first ? " lk-first" : ""), s.text);
    t.dataset.kind = s.kind;
    t.dataset.round = s.round;
    t.dataset.tip = s.tip;
    text.appendChild(t);
  }
  root.appendChild(text);
  const summary = model.get("summary");
  if (summary) {
    const foot = node("div", "lk-foot");
    foot.innerHTML = summary; // built by labkit from numbers only (escaped on the Python side)
    root.appendChild(foot);
  }
  el.replaceChildren(root);
}

export default {
  render({ model, el }) {
    build(model, el);
    const redraw = () => build(model, el);
    model.on("change:spans", redraw);
    model.on("change:summary", redraw);
    model.on("change:prompt", redraw);
    model.on("change:title", redraw);
    return () => {
      model.off("change:spans", redraw);
      model.off("change:summary", redraw);
      model.off("change:prompt", redraw);
      model.off("change:title", redraw);
    };
  },
};
