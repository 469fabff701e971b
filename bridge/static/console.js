// The operator console. Served with a Content-Security-Policy that allows no inline script:
// everything is bound here with addEventListener, and data from the server (citizens' text,
// handles, reasons) only ever reaches the page as text nodes and data- attributes, never as
// markup or code.
"use strict";

const $ = (id) => document.getElementById(id);

// el("td", {className: "bad", dataset: {replyId: "x"}}, "text", childNode, …)
function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === "dataset") Object.assign(node.dataset, value);
    else node[key] = value;
  }
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

function show(id, ...nodes) {
  const target = $(id);
  target.className = "";
  target.replaceChildren(...nodes);
}

function table(headings, rows) {
  return el("table", {}, el("tr", {}, ...headings.map((h) => el("th", {}, h))), ...rows);
}

// "#token=…" in the address (never sent to the server) pre-fills the token, e.g. for a kiosk.
const fromHash = new URLSearchParams(location.hash.slice(1)).get("token");
if (fromHash) {
  sessionStorage.setItem("gbToken", fromHash);
  history.replaceState(null, "", location.pathname);
}

async function api(path, options = {}) {
  const headers = { "Authorization": "Bearer " + $("token").value, "Content-Type": "application/json" };
  const resp = await fetch(path, { ...options, headers });
  const body = await resp.json().catch(() => ({}));
  if (!resp.ok) throw new Error(body.error || resp.status);
  return body;
}

async function loadReady() {
  const r = await (await fetch("/readyz")).json();
  const status = r.ready
    ? el("span", { className: "ok" }, "就绪 ready")
    : el("span", { className: "bad" }, "未就绪 not ready: " + (r.not_ready || []).join(", "));
  const alerts = (r.alerts || []).map((a) =>
    el("div", { className: "bad" }, `⚠ ${a.kind} ${a.name}: ${a.reason}`));
  show("ready", status, ...alerts);
}

async function loadApprovals() {
  const { approvals } = await api("/api/approvals");
  if (!approvals.length) {
    show("approvals", el("span", { className: "muted" }, "没有待审核的回复"));
    return;
  }
  const rows = approvals.map((a) => {
    const decide = (label, decision, primary) => el("button", {
      type: "button", className: primary ? "primary" : "", dataset: { replyId: a.reply_id, decision },
    }, label);
    return el("tr", {},
      el("td", {}, a.department),
      el("td", {}, `${a.platform}:${a.account}`),
      el("td", {}, a.status || "官方答复", a.templated ? null : el("span", { className: "muted" }, " (自由文本)")),
      el("td", {}, el("textarea", { value: a.text, dataset: { replyText: a.reply_id } })),
      el("td", {}, decide("批准", "approve", true), decide("修改后批准", "edit"), decide("驳回", "reject")));
  });
  show("approvals", table(["部门", "账号", "状态", "回复内容（可编辑）", ""], rows));
}

async function decide(button) {
  const actor = $("actor").value.trim();
  if (!actor) { alert("请先填写值班人员姓名"); return; }
  const id = button.dataset.replyId;
  const body = { decision: button.dataset.decision, actor };
  if (body.decision === "edit") {
    const box = [...document.querySelectorAll("textarea[data-reply-text]")]
      .find((t) => t.dataset.replyText === id);
    body.text = box ? box.value : "";
  }
  try {
    await api(`/api/approvals/${encodeURIComponent(id)}`, { method: "POST", body: JSON.stringify(body) });
  } catch (e) { alert(e.message); }
  refresh();
}

const CATEGORY_LABELS = {
  consultation: "咨询", help: "求助", complaint: "投诉", report: "举报",
  suggestion: "建议", praise: "表扬", other: "其他",
};

// Inquiries the classifier was unsure of: the model's guess and why, a category to choose.
async function loadReview() {
  const { held, categories } = await api("/api/triage/review");
  if (!held.length) {
    show("review", el("span", { className: "muted" }, "没有待核对的诉求"));
    return;
  }
  const rows = held.map((h) => {
    const choice = el("select", { dataset: { reviewCategory: h.inquiry_id } },
      ...categories.map((c) => el("option", { value: c, selected: c === h.model_category },
        `${CATEGORY_LABELS[c] || c} ${c}`)));
    const why = ((h.explanation && h.explanation.evidence) || []).map((e) => e[0]).join("、");
    return el("tr", {},
      el("td", {}, h.department),
      el("td", {}, h.text),
      el("td", {}, `${CATEGORY_LABELS[h.model_category] || h.model_category} ${Math.round(h.confidence * 100)}%`,
        el("div", { className: "muted" }, why)),
      el("td", {}, el("span", { className: "muted" }, h.release_after.slice(0, 16).replace("T", " "))),
      el("td", {}, choice, " ", el("button", {
        type: "button", className: "primary", dataset: { reviewId: h.inquiry_id },
      }, "确认分类")));
  });
  show("review", table(["部门", "诉求（已脱敏）", "模型判断", "超时自动分派 (UTC)", "分类"], rows));
}

async function checkCategory(button) {
  const actor = $("actor").value.trim();
  if (!actor) { alert("请先填写值班人员姓名"); return; }
  const id = button.dataset.reviewId;
  const select = [...document.querySelectorAll("select[data-review-category]")]
    .find((s) => s.dataset.reviewCategory === id);
  try {
    await api(`/api/triage/review/${encodeURIComponent(id)}`, {
      method: "POST", body: JSON.stringify({ category: select ? select.value : "", actor }),
    });
  } catch (e) { alert(e.message); }
  refresh();
}

// Creates whose outcome is unknown: an official looks in the ticket system, then attaches the
// ticket found there or declares it not created (the create runs again).
async function loadReconciliation() {
  const { needs_reconciliation: items } = await api("/api/reconciliation");
  if (!items.length) {
    show("reconciliation", el("span", { className: "muted" }, "没有待核对的工单"));
    return;
  }
  const rows = items.map((r) => el("tr", {},
    el("td", {}, r.department),
    el("td", {}, r.reference),
    el("td", {}, r.detail || ""),
    el("td", {},
      el("label", {}, "工单号 ", el("input", { size: 10, dataset: { reconcileTicket: r.inquiry_id } })),
      " ", el("button", { type: "button", className: "primary",
        dataset: { reconcile: r.inquiry_id, action: "attach" } }, "关联已有工单"),
      el("button", { type: "button", dataset: { reconcile: r.inquiry_id, action: "not_created" } },
        "确认未建单，重新创建"))));
  show("reconciliation", table(["部门", "本系统编号", "原因", "处理"], rows));
}

async function reconcile(button) {
  const actor = $("actor").value.trim();
  if (!actor) { alert("请先填写值班人员姓名"); return; }
  const id = button.dataset.reconcile;
  const body = { action: button.dataset.action, actor };
  if (body.action === "attach") {
    const box = [...document.querySelectorAll("input[data-reconcile-ticket]")]
      .find((i) => i.dataset.reconcileTicket === id);
    body.ticket_id = box ? box.value.trim() : "";
  }
  try {
    await api(`/api/reconciliation/${encodeURIComponent(id)}`, { method: "POST", body: JSON.stringify(body) });
  } catch (e) { alert(e.message); }
  refresh();
}

// What waits for each account's posting quota (or a paused account): nothing is dropped.
async function loadOutbox() {
  const { accounts } = await api("/api/outbox");
  const rows = Object.entries(accounts).map(([name, a]) => el("tr", {},
    el("td", {}, name),
    el("td", { className: a.waiting ? "bad" : "" }, a.waiting),
    el("td", {}, a.oldest_waiting_s ? `${Math.round(a.oldest_waiting_s)} s` : "-"),
    el("td", { className: a.failed ? "bad" : "" }, a.failed),
    el("td", {}, a.paused || "")));
  show("outbox", table(["账号", "待发送", "最久等待", "发送失败", "暂停原因"], rows));
}

async function loadReport() {
  const { departments, ignored } = await api("/api/report");
  const rows = departments.map((d) => el("tr", {},
    el("td", {}, d.name), el("td", {}, d.inquiries), el("td", {}, d.tickets), el("td", {}, d.resolved),
    el("td", {}, d.in_time_rate == null ? "-" : Math.round(d.in_time_rate * 100) + "%"),
    el("td", { className: d.open_overdue ? "bad" : "" }, d.open_overdue),
    el("td", {}, d.replies_posted), el("td", {}, d.awaiting_approval),
    el("td", { className: d.needs_reconciliation ? "bad" : "" }, d.needs_reconciliation)));
  const noise = Object.entries(ignored).map(([k, v]) => k + " " + v).join(", ") || "0";
  show("report",
    table(["部门", "诉求", "工单", "已办结", "按时率", "超期未结", "已回复", "待审核", "待核对"], rows),
    el("div", { className: "muted" }, "噪声已忽略: " + noise));
}

function refresh() {
  loadReady().catch((e) => { $("ready").textContent = e.message; });
  if ($("token").value) {
    loadApprovals().catch((e) => { $("approvals").textContent = e.message; });
    loadReview().catch((e) => { $("review").textContent = e.message; });
    loadReport().catch((e) => { $("report").textContent = e.message; });
    loadReconciliation().catch((e) => { $("reconciliation").textContent = e.message; });
    loadOutbox().catch((e) => { $("outbox").textContent = e.message; });
  }
}

document.addEventListener("DOMContentLoaded", () => {
  $("token").value = sessionStorage.getItem("gbToken") || "";
  $("actor").value = sessionStorage.getItem("gbActor") || "";
  $("connect").addEventListener("click", () => {
    sessionStorage.setItem("gbToken", $("token").value);
    sessionStorage.setItem("gbActor", $("actor").value);
    refresh();
  });
  // One listener for every decision button, present and future: no handler built from data.
  $("approvals").addEventListener("click", (event) => {
    const button = event.target.closest("button[data-decision]");
    if (button) decide(button);
  });
  $("reconciliation").addEventListener("click", (event) => {
    const button = event.target.closest("button[data-reconcile]");
    if (button) reconcile(button);
  });
  $("review").addEventListener("click", (event) => {
    const button = event.target.closest("button[data-review-id]");
    if (button) checkCategory(button);
  });
  refresh();
  setInterval(loadReady, 5000);
});
