// labkit token strip (anywidget): the Python side sends spans {text, kind, round, first, tip}; hover tips are CSS.
const KINDS = ["accepted", "rejected", "replacement", "bonus", "plain"];

function build(model, el) {
  const spans = model.get("spans") || [];
  const root = document.createElement("div");
  root.className = "lk-strip";
  const head = document.createElement("div");
  head.className = "lk-head";
  const title = document.createElement("span");
  title.className = "lk-title";
  title.textContent = model.get("title") || "";
  head.appendChild(title);
  const counts = Object.fromEntries(KINDS.map((k) => [k, 0]));
  for (const s of spans) counts[s.kind] = (counts[s.kind] || 0) + 1;
  for (const k of KINDS.slice(0, 4)) {
    const key = document.createElement("span");
    key.className = `lk-key lk-${k}`;
    key.dataset.kind = k;
    key.textContent = `${k} ${counts[k]}`;
    head.appendChild(key);
  }
  root.appendChild(head);
  const text = document.createElement("div");
  text.className = "lk-text";
  const prompt = document.createElement("span");
  prompt.className = "lk-prompt";
  prompt.textContent = model.get("prompt") || "";
  text.appendChild(prompt);
  for (const s of spans) {
    const t = document.createElement("span");
    t.className = `lk-tok lk-${s.kind}` + (s.first ? " lk-first" : "");
    t.dataset.kind = s.kind;
    t.dataset.round = s.round;
    t.dataset.tip = s.tip;
    t.textContent = s.text;
    text.appendChild(t);
  }
  root.appendChild(text);
  const summary = model.get("summary");
  if (summary) {
    const foot = document.createElement("div");
    foot.className = "lk-foot";
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
