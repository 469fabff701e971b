// The operator console: one page per task, chosen by the address's #fragment. Served with a
// Content-Security-Policy that allows no inline script: everything is bound here with
// addEventListener, and data from the server (citizens' text, handles, reasons) only ever
// reaches the page as text nodes and data- attributes, never as markup or code.
// Chinese by default; English with the language button. No build step.
"use strict";

const $ = (id) => document.getElementById(id);
const SVG = "http://www.w3.org/2000/svg";

const T = {
  zh: {
    skip: "跳到正文", title: "govbridge 运营控制台", signout: "退出登录",
    "nav.approvals": "审批", "nav.inquiries": "诉求查询", "nav.overdue": "逾期与临期",
    "nav.dead": "死信与核对", "nav.accounts": "账号", "nav.dashboard": "部门看板", "nav.audit": "审计记录",
    "signin.title": "登录", "signin.name": "用户名", "signin.password": "密码", "signin.submit": "登录",
    "approvals.title": "待审核回复", "review.title": "待核对分类", "outbox.title": "待发送回复",
    "inquiries.title": "诉求查询", "search.q": "内容", "search.handle": "市民账号", "search.ticket": "工单号",
    "search.department": "部门", "search.status": "状态", "search.from": "从", "search.to": "到",
    "search.submit": "查询", "overdue.title": "逾期与临期工单", "dead.title": "死信",
    "reconciliation.title": "待核对工单", "accounts.title": "账号", "dashboard.title": "部门看板",
    "dashboard.period": "期间", "audit.title": "审计记录", "audit.verify": "校验记录链",
    ready: "就绪", notReady: "未就绪", none: "没有", original: "市民原文", ticket: "工单", draft: "回复草稿（可编辑）",
    approve: "批准", editApprove: "修改后批准", reject: "驳回", reason: "驳回原因", reasonCol: "原因", quota: "发布配额(已用/上限)", reference: "本系统编号", needReason: "请填写驳回原因",
    department: "部门", account: "账号", status: "状态", inquiry: "诉求", time: "时间", open: "查看经过",
    journey: "办理经过", received: "收到", routed: "分派", decidedBy: "决定者", confirm: "确认分类",
    model: "模型判断", waiting: "待发送", oldest: "最久等待", failed: "发送失败", paused: "暂停原因",
    deadline: "期限", left: "剩余", overdue: "已逾期", atRisk: "临期", stage: "环节", attempts: "次数",
    replay: "重放", drop: "丢弃", ids: "标识", attach: "关联已有工单", notCreated: "确认未建单，重新创建",
    ticketNo: "工单号", health: "状态", healthy: "正常", token: "新令牌", replaceToken: "更换令牌",
    inquiries: "诉求", tickets: "工单", resolved: "办结", inTime: "按时率", firstReply: "首次答复(中位)",
    resolution: "办结用时(中位)", zombie: "僵尸账号", perDay: "每日", perWeek: "每周", actor: "操作人",
    action: "事项", detail: "详情", chainOk: "记录链完整", chainBad: "记录链被改动", done: "已完成",
    role: "角色", noAccess: "当前角色无权执行", posted: "已发布", awaiting: "待审核",
  },
  en: {
    skip: "Skip to content", title: "govbridge operator console", signout: "Sign out",
    "nav.approvals": "Approvals", "nav.inquiries": "Inquiries", "nav.overdue": "Overdue & at risk",
    "nav.dead": "Dead letters & reconciliation", "nav.accounts": "Accounts", "nav.dashboard": "Dashboard",
    "nav.audit": "Audit trail", "signin.title": "Sign in", "signin.name": "Name", "signin.password": "Password",
    "signin.submit": "Sign in", "approvals.title": "Replies awaiting approval",
    "review.title": "Inquiries held for a category check", "outbox.title": "Replies waiting to be posted",
    "inquiries.title": "Inquiry search", "search.q": "Text", "search.handle": "Citizen handle",
    "search.ticket": "Ticket id", "search.department": "Department", "search.status": "Status",
    "search.from": "From", "search.to": "To", "search.submit": "Search",
    "overdue.title": "Overdue and at-risk tickets", "dead.title": "Dead letters",
    "reconciliation.title": "Creates awaiting reconciliation", "accounts.title": "Accounts",
    "dashboard.title": "Department dashboard", "dashboard.period": "Period", "audit.title": "Audit trail",
    "audit.verify": "Verify the chain",
    ready: "ready", notReady: "not ready", none: "None", original: "Citizen's message", ticket: "Ticket",
    draft: "Draft reply (editable)", approve: "Approve", editApprove: "Edit and approve", reject: "Reject",
    reason: "Reason for rejecting", reasonCol: "Reason", quota: "Posting quota (used / limit)", reference: "Reference", needReason: "Give a reason for rejecting", department: "Department",
    account: "Account", status: "Status", inquiry: "Inquiry", time: "Time", open: "Open journey",
    journey: "Journey", received: "Received", routed: "Routed", decidedBy: "Decided by", confirm: "Confirm",
    model: "Model's guess", waiting: "Waiting", oldest: "Oldest", failed: "Failed", paused: "Paused",
    deadline: "Deadline", left: "Left", overdue: "overdue", atRisk: "at risk", stage: "Stage",
    attempts: "Attempts", replay: "Replay", drop: "Drop", ids: "Ids", attach: "Attach existing ticket",
    notCreated: "Not created: create again", ticketNo: "Ticket id", health: "Health", healthy: "healthy",
    token: "New token", replaceToken: "Replace token", inquiries: "Inquiries", tickets: "Tickets",
    resolved: "Resolved", inTime: "In time", firstReply: "First reply (median)",
    resolution: "Resolution (median)", zombie: "zombie", perDay: "Per day", perWeek: "Per week",
    actor: "Actor", action: "Action", detail: "Detail", chainOk: "chain intact", chainBad: "chain altered",
    done: "done", role: "Role", noAccess: "your role may not do this", posted: "posted", awaiting: "awaiting",
  },
};

let lang = localStorage.getItem("gbLang") || "zh";
let me = null; // {operator, role, csrf_token, may}
const t = (key) => (T[lang] && T[lang][key]) || T.zh[key] || key;

function applyLang() {
  document.documentElement.lang = lang === "zh" ? "zh-CN" : "en";
  for (const node of document.querySelectorAll("[data-i18n]")) node.textContent = t(node.dataset.i18n);
  $("lang").textContent = lang === "zh" ? "English" : "中文";
  $("lang").lang = lang === "zh" ? "en" : "zh-CN";
  document.title = t("title");
}

// el("td", {className: "bad", dataset: {replyId: "x"}}, "text", childNode, …)
function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === "dataset") Object.assign(node.dataset, value);
    else if (key === "aria") for (const [k, v] of Object.entries(value)) node.setAttribute("aria-" + k, v);
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
  target.replaceChildren(...nodes);
}

function table(headings, rows, caption) {
  return el("table", {},
    caption ? el("caption", {}, caption) : null,
    el("thead", {}, el("tr", {}, ...headings.map((h) => el("th", { scope: "col" }, h)))),
    el("tbody", {}, ...rows));
}

const muted = (text) => el("p", { className: "muted" }, text);
const when = (iso) => (iso ? iso.slice(0, 19).replace("T", " ") : "-");

async function api(path, options = {}) {
  const headers = { "Content-Type": "application/json" };
  if (me) headers["X-CSRF-Token"] = me.csrf_token;
  const resp = await fetch(path, { ...options, headers, credentials: "same-origin" });
  const body = await resp.json().catch(() => ({}));
  if (resp.status === 401 && path !== "/api/session") { signedOut(); }
  if (!resp.ok) throw new Error(body.error || String(resp.status));
  return body;
}

function notice(id, message, bad = true) {
  show(id, el("p", { className: bad ? "bad" : "ok", role: "alert" }, message));
}

// ------------------------------------------------------------------ session
async function signIn(event) {
  event.preventDefault();
  try {
    me = await api("/api/session", { method: "POST", body: JSON.stringify({
      name: $("signin-name").value, password: $("signin-password").value }) });
    $("signin-password").value = "";
    $("signin-error").textContent = "";
    signedIn();
  } catch (e) { $("signin-error").textContent = e.message; }
}

function signedIn() {
  $("page-signin").hidden = true;
  $("tabs").hidden = false;
  $("signout").hidden = false;
  $("who").textContent = `${me.operator} (${me.role})`;
  document.body.dataset.role = me.role;
  route();
}

function signedOut() {
  me = null;
  document.body.dataset.role = "";
  $("tabs").hidden = true;
  $("signout").hidden = true;
  $("who").textContent = "";
  for (const page of document.querySelectorAll("main > section")) page.hidden = page.id !== "page-signin";
  $("signin-name").focus();
}

async function signOut() {
  try { await api("/api/session", { method: "DELETE" }); } catch (e) { /* signed out anyway */ }
  signedOut();
}

// ------------------------------------------------------------------ pages
const PAGES = {
  approvals: () => Promise.all([loadApprovals(), loadReview(), loadOutbox()]),
  inquiries: () => Promise.resolve(),
  overdue: () => loadOverdue(),
  dead: () => Promise.all([loadDeadLetters(), loadReconciliation()]),
  accounts: () => loadAccounts(),
  dashboard: () => loadDashboard(),
  audit: () => loadAudit(),
};

const MAIN_BOX = {
  approvals: "approvals", inquiries: "results", overdue: "overdue", dead: "dead-letters",
  accounts: "accounts", dashboard: "dashboard", audit: "audit",
};

function route() {
  if (!me) return;
  const name = location.hash.slice(1) in PAGES ? location.hash.slice(1) : "approvals";
  for (const page of document.querySelectorAll("main > section")) page.hidden = page.id !== "page-" + name;
  for (const link of document.querySelectorAll("#tabs a")) {
    if (link.getAttribute("href") === "#" + name) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  PAGES[name]().catch((e) => notice(MAIN_BOX[name], e.message));
}

async function loadReady() {
  const r = await (await fetch("/readyz")).json();
  const status = r.ready
    ? el("span", { className: "ok" }, t("ready"))
    : el("span", { className: "bad" }, t("notReady") + ": " + (r.not_ready || []).join(", "));
  const alerts = (r.alerts || []).map((a) => el("span", { className: "bad" }, ` ⚠ ${a.kind} ${a.name}`));
  show("ready", status, ...alerts);
}

// Approvals: the draft beside the citizen's original and the ticket.
async function loadApprovals() {
  const { approvals } = await api("/api/approvals");
  if (!approvals.length) { show("approvals", muted(t("none"))); return; }
  const cards = approvals.map((a) => {
    const id = a.reply_id;
    const box = el("textarea", { id: "draft-" + id, value: a.text, dataset: { replyText: id } });
    const reason = el("input", { id: "reason-" + id, dataset: { replyReason: id } });
    const decide = (label, decision, primary) => el("button", {
      type: "button", className: primary ? "primary" : "", dataset: { replyId: id, decision },
    }, label);
    return el("article", { className: "card", dataset: { reply: id }, aria: { label: `${t("inquiry")} ${a.inquiry_id}` } },
      el("div", { className: "col" }, el("h3", {}, t("original")),
        el("p", { className: "quote" }, a.original || "-"),
        el("p", { className: "muted" }, `@${a.citizen_handle || "?"} · ${a.platform}:${a.account} · ${a.category || ""}`)),
      el("div", { className: "col" }, el("h3", {}, t("ticket")),
        el("p", {}, `${a.department} / ${a.ticket_id || "-"}`),
        el("p", { className: "muted" }, `${t("status")}: ${a.ticket_status || "-"} → ${a.status || "note"}`)),
      el("div", { className: "col wide" },
        el("label", { htmlFor: "draft-" + id }, t("draft")), box,
        el("label", { htmlFor: "reason-" + id }, t("reason")), reason,
        el("div", { className: "actions" },
          decide(t("approve"), "approve", true), decide(t("editApprove"), "edit"), decide(t("reject"), "reject")),
        el("p", { id: "msg-" + id, className: "bad", role: "alert" })));
  });
  show("approvals", ...cards);
}

async function decide(button) {
  const id = button.dataset.replyId;
  const body = { decision: button.dataset.decision };
  if (body.decision === "edit") body.text = $("draft-" + id).value;
  if (body.decision === "reject") {
    body.reason = $("reason-" + id).value.trim();
    if (!body.reason) { $("reason-" + id).focus(); $("msg-" + id).textContent = t("needReason"); return; }
  }
  try {
    await api(`/api/approvals/${encodeURIComponent(id)}`, { method: "POST", body: JSON.stringify(body) });
    await loadApprovals();
  } catch (e) { $("msg-" + id).textContent = e.message; }
}

const CATEGORY_LABELS = {
  consultation: "咨询", help: "求助", complaint: "投诉", report: "举报",
  suggestion: "建议", praise: "表扬", other: "其他",
};

async function loadReview() {
  const { held, categories } = await api("/api/triage/review");
  if (!held.length) { show("review", muted(t("none"))); return; }
  const rows = held.map((h) => {
    const choice = el("select", { id: "cat-" + h.inquiry_id, dataset: { reviewCategory: h.inquiry_id },
      aria: { label: t("confirm") } },
      ...categories.map((c) => el("option", { value: c, selected: c === h.model_category },
        `${CATEGORY_LABELS[c] || c} ${c}`)));
    const why = ((h.explanation && h.explanation.evidence) || []).map((e) => e[0]).join("、");
    return el("tr", {},
      el("td", {}, h.department), el("td", {}, h.text),
      el("td", {}, `${h.model_category} ${Math.round(h.confidence * 100)}%`, el("div", { className: "muted" }, why)),
      el("td", {}, choice, " ", el("button", { type: "button", className: "primary",
        dataset: { reviewId: h.inquiry_id } }, t("confirm"))));
  });
  show("review", table([t("department"), t("inquiry"), t("model"), ""], rows));
}

async function checkCategory(button) {
  const id = button.dataset.reviewId;
  try {
    await api(`/api/triage/review/${encodeURIComponent(id)}`, {
      method: "POST", body: JSON.stringify({ category: $("cat-" + id).value }) });
    await loadReview();
  } catch (e) { notice("review", e.message); }
}

async function loadOutbox() {
  const { accounts } = await api("/api/outbox");
  const rows = Object.entries(accounts).map(([name, a]) => el("tr", {},
    el("td", {}, name), el("td", { className: a.waiting ? "bad" : "" }, a.waiting),
    el("td", {}, a.oldest_waiting_s ? `${Math.round(a.oldest_waiting_s)} s` : "-"),
    el("td", { className: a.failed ? "bad" : "" }, a.failed), el("td", {}, a.paused || "")));
  show("outbox", table([t("account"), t("waiting"), t("oldest"), t("failed"), t("paused")], rows));
}

// Inquiry search and one inquiry's journey.
async function search(event) {
  event.preventDefault();
  const params = new URLSearchParams();
  for (const [k, v] of new FormData($("search-form")).entries()) if (String(v).trim()) params.set(k, String(v).trim());
  try {
    const { inquiries } = await api("/api/inquiries?" + params.toString());
    if (!inquiries.length) { show("results", muted(t("none"))); return; }
    show("results", table([t("time"), t("department"), t("status"), t("ticket"), t("inquiry"), ""],
      inquiries.map((i) => el("tr", {},
        el("td", {}, when(i.created_at)), el("td", {}, i.department || "-"),
        el("td", {}, i.ticket_status || i.state), el("td", {}, i.ticket_id || "-"),
        el("td", {}, i.public_text || ""),
        el("td", {}, el("button", { type: "button", dataset: { journey: i.inquiry_id } }, t("open")))))));
  } catch (e) { notice("results", e.message); }
}

async function openJourney(id) {
  try {
    const j = await api(`/api/inquiries/${encodeURIComponent(id)}`);
    const inq = j.inquiry;
    const how = inq.explanation || {};
    const steps = [
      el("li", {}, `${when(inq.created_at)} ${t("received")}: ${inq.platform}:${inq.account} ${inq.kind}`),
      inq.department ? el("li", {}, `${t("routed")}: ${inq.department} / ${inq.category || "-"} (${how.decided_by || "conversation"}` +
        (how.confidence !== undefined ? `, ${how.confidence}` : "") + ")",
        (how.evidence || []).length ? el("div", { className: "muted" }, (how.evidence || []).map((e) => e[0]).join("、")) : null) : null,
      j.ticket ? el("li", {}, `${t("ticket")}: ${j.ticket.department}/${j.ticket.ticket_id} (${j.ticket.status})`) : null,
      ...j.events.map((e) => el("li", {}, `${when(e.occurred_at)} ${t("status")}: ${e.status} (${e.native_status})`)),
      ...j.replies.map((r) => el("li", {}, `${when(r.created_at)} ${r.status || "note"}: ${r.state}` +
        (r.decided_by ? ` · ${t("decidedBy")} ${r.decided_by} (${r.decision})` : "") +
        (r.posted_at ? ` · ${t("posted")} ${when(r.posted_at)}` : ""))),
    ];
    const trail = table([t("time"), t("action"), t("actor"), t("detail")], j.audit.map((a) => el("tr", {},
      el("td", {}, when(a.at)), el("td", {}, a.action), el("td", {}, a.actor),
      el("td", {}, Object.entries(a.detail).map(([k, v]) => `${k}=${v}`).join(", ")))), t("audit.title"));
    show("journey", el("article", { className: "journey", tabIndex: -1, id: "journey-view" },
      el("h3", {}, `${t("journey")} · ${inq.inquiry_id}`),
      el("p", { className: "quote" }, inq.public_text || ""),
      el("ol", {}, ...steps), trail));
    $("journey-view").focus();
  } catch (e) { notice("journey", e.message); }
}

// Overdue and at risk, from the SLA clocks.
async function loadOverdue() {
  const { tickets } = await api("/api/overdue");
  if (!tickets.length) { show("overdue", muted(t("none"))); return; }
  const hours = (s) => `${(s / 3600).toFixed(1)} h`;
  show("overdue", table([t("department"), t("ticket"), t("status"), t("deadline"), t("left"), ""],
    tickets.map((x) => el("tr", {},
      el("td", {}, x.department_name), el("td", {}, x.ticket_id), el("td", {}, x.status),
      el("td", {}, when(x.deadline)), el("td", {}, hours(x.seconds_left)),
      el("td", { className: x.overdue ? "bad" : "warn" }, x.overdue ? t("overdue") : t("atRisk"))))));
}

// Dead letters (reason, attempts, ids: never the body) and reconciliation.
async function loadDeadLetters() {
  const { dead_letters: items } = await api("/api/dead-letters");
  const real = items.filter((d) => !d.error);
  if (!real.length) { show("dead-letters", muted(t("none"))); return; }
  const act = (d, action, label, primary) => el("button", { type: "button", className: primary ? "primary admin" : "admin",
    dataset: { dlqStage: d.stage, dlqId: d.message_id, dlqAction: action } }, label);
  show("dead-letters", table([t("stage"), t("time"), t("attempts"), t("reasonCol"), t("ids"), ""],
    real.map((d) => el("tr", {},
      el("td", {}, d.stage), el("td", {}, when(d.failed_at)), el("td", {}, d.attempts),
      el("td", {}, d.reason), el("td", {}, Object.entries(d.ids).map(([k, v]) => `${k}=${v}`).join(" ")),
      el("td", {}, act(d, "replay", t("replay"), true), act(d, "drop", t("drop")))))));
}

async function actOnDeadLetter(button) {
  const { dlqStage: stage, dlqId: id, dlqAction: action } = button.dataset;
  try {
    await api(`/api/dead-letters/${encodeURIComponent(stage)}/${action}`, {
      method: "POST", body: JSON.stringify({ message_id: id }) });
    await loadDeadLetters();
    notice("dead-letters", `${t(action)}: ${id} · ${t("done")}`, false);
  } catch (e) { notice("dead-letters", e.message); }
}

async function loadReconciliation() {
  const { needs_reconciliation: items } = await api("/api/reconciliation");
  if (!items.length) { show("reconciliation", muted(t("none"))); return; }
  show("reconciliation", table([t("department"), t("reference"), t("reasonCol"), ""], items.map((r) => el("tr", {},
    el("td", {}, r.department), el("td", {}, r.reference), el("td", {}, r.detail || ""),
    el("td", {},
      el("label", { htmlFor: "rt-" + r.inquiry_id }, t("ticketNo") + " "),
      el("input", { id: "rt-" + r.inquiry_id, size: 10 }),
      " ", el("button", { type: "button", className: "primary admin",
        dataset: { reconcile: r.inquiry_id, action: "attach" } }, t("attach")),
      el("button", { type: "button", className: "admin", dataset: { reconcile: r.inquiry_id, action: "not_created" } },
        t("notCreated")))))));
}

async function reconcile(button) {
  const id = button.dataset.reconcile;
  const body = { action: button.dataset.action };
  if (body.action === "attach") body.ticket_id = $("rt-" + id).value.trim();
  try {
    await api(`/api/reconciliation/${encodeURIComponent(id)}`, { method: "POST", body: JSON.stringify(body) });
    await loadReconciliation();
    notice("reconciliation", `${id} · ${t("done")}`, false);
  } catch (e) { notice("reconciliation", e.message); }
}

// Accounts: health, alerts, what waits, paused state, token replacement.
async function loadAccounts() {
  const { accounts } = await api("/api/accounts");
  show("accounts", table([t("account"), t("department"), t("health"), t("quota"), t("waiting"), t("failed"), t("paused"), t("token")],
    accounts.map((a) => {
      const key = `${a.adapter}-${a.handle}`;
      const out = a.outbox || {};
      return el("tr", {},
        el("td", {}, `${a.platform}:${a.handle}`), el("td", {}, a.department),
        el("td", { className: a.healthy ? "ok" : "bad" }, a.healthy ? t("healthy") : a.alerts.map((x) => x.reason).join("; ")),
        el("td", {}, a.quota ? `${a.quota.used} / ${a.quota.max_calls} (${Math.round(a.quota.period_s / 60)} min)` : "-"),
        el("td", {}, out.waiting ?? "-"), el("td", {}, out.failed ?? "-"), el("td", {}, out.paused || ""),
        el("td", {}, el("label", { htmlFor: "tok-" + key, className: "sr" }, t("token")),
          el("input", { id: "tok-" + key, type: "password", size: 12, autocomplete: "off" }),
          el("button", { type: "button", className: "admin", dataset: { tokenAdapter: a.adapter, tokenHandle: a.handle } },
            t("replaceToken"))));
    })));
}

async function replaceToken(button) {
  const { tokenAdapter: adapter, tokenHandle: handle } = button.dataset;
  const input = $(`tok-${adapter}-${handle}`);
  try {
    await api(`/api/accounts/${encodeURIComponent(adapter)}/${encodeURIComponent(handle)}/token`, {
      method: "PUT", body: JSON.stringify({ token: input.value }) });
    input.value = "";
    await loadAccounts();
  } catch (e) { notice("accounts", e.message); }
}

// Department dashboard: volumes, times, share in time, charts per day and week, zombie flag.
function chart(series, label) {
  const width = 520, height = 150, left = 28, bottom = 22, plot = height - 36;
  const top = Math.max(1, ...series.map((d) => Math.max(d.received, d.resolved)));
  const slot = (width - left - 6) / Math.max(1, series.length);
  const bar = Math.max(1, slot / 2 - 1);
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", label);
  const add = (tag, attrs, text) => {
    const node = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
    if (text !== undefined) node.textContent = text;
    svg.append(node);
    return node;
  };
  add("line", { x1: left, y1: height - bottom, x2: width, y2: height - bottom, stroke: "#444" });
  add("text", { x: 2, y: height - bottom - plot + 10, "font-size": 10 }, String(top));
  series.forEach((d, n) => {
    const x = left + n * slot;
    [["received", "#1f5fa8"], ["resolved", "#2e7d32"]].forEach(([key, colour], k) => {
      const h = (plot * d[key]) / top;
      const rect = add("rect", { x: x + k * (bar + 1), y: height - bottom - h, width: bar, height: h, fill: colour, class: key });
      const title = document.createElementNS(SVG, "title");
      title.textContent = `${d.day} ${t(key)} ${d[key]}`;
      rect.append(title);
    });
    if (series.length <= 16 || n % Math.ceil(series.length / 8) === 0)
      add("text", { x, y: height - 6, "font-size": 9 }, d.day.slice(5));
  });
  return svg;
}

function weekly(daily) {
  const weeks = new Map();
  for (const d of daily) {
    const day = new Date(d.day + "T00:00:00Z");
    const monday = new Date(day.getTime() - ((day.getUTCDay() + 6) % 7) * 86400000).toISOString().slice(0, 10);
    const w = weeks.get(monday) || { day: monday, received: 0, resolved: 0 };
    w.received += d.received; w.resolved += d.resolved;
    weeks.set(monday, w);
  }
  return [...weeks.values()];
}

async function loadDashboard() {
  const { departments } = await api("/api/report?since=" + encodeURIComponent($("period").value));
  const human = (s) => (s == null ? "-" : s < 7200 ? `${Math.round(s / 60)} min` : `${(s / 3600).toFixed(1)} h`);
  const rows = departments.map((d) => el("tr", {},
    el("td", {}, d.name, d.zombie ? el("strong", { className: "bad" }, ` ${t("zombie")}`) : null,
      d.zombie ? el("div", { className: "muted" }, (d.zombie_accounts || []).join(", ")) : null),
    el("td", {}, d.inquiries), el("td", {}, d.tickets), el("td", {}, d.resolved),
    el("td", {}, d.in_time_rate == null ? "-" : Math.round(d.in_time_rate * 100) + "%"),
    el("td", {}, human(d.median_first_reply_s)), el("td", {}, human(d.median_resolution_s)),
    el("td", { className: d.open_overdue ? "bad" : "" }, d.open_overdue), el("td", {}, d.open_at_risk),
    el("td", {}, d.awaiting_approval)));
  const charts = departments.map((d) => el("figure", { className: "chart" },
    el("figcaption", {}, d.name, " · ", el("span", { className: "k-received" }, "■ " + t("received")), " ",
      el("span", { className: "k-resolved" }, "■ " + t("resolved"))),
    el("p", { className: "muted" }, t("perDay")), chart(d.daily, `${d.name} ${t("perDay")}`),
    el("p", { className: "muted" }, t("perWeek")), chart(weekly(d.daily), `${d.name} ${t("perWeek")}`)));
  show("dashboard", table([t("department"), t("inquiries"), t("tickets"), t("resolved"), t("inTime"),
    t("firstReply"), t("resolution"), t("overdue"), t("atRisk"), t("awaiting")], rows), ...charts);
}

async function loadAudit() {
  const { records } = await api("/api/audit?limit=200");
  show("audit", table(["#", t("time"), t("action"), t("actor"), t("inquiry"), t("detail")], records.map((r) => el("tr", {},
    el("td", {}, r.seq), el("td", {}, when(r.at)), el("td", {}, r.action), el("td", {}, r.actor),
    el("td", {}, r.inquiry_id || r.subject || ""),
    el("td", {}, Object.entries(r.detail).map(([k, v]) => `${k}=${v}`).join(", "))))));
}

async function verifyChain() {
  try {
    const { chain } = await api("/api/audit?limit=1&verify=1");
    show("chain", el("span", { className: chain.ok ? "ok" : "bad" },
      chain.ok ? `${t("chainOk")} (${chain.head.slice(0, 16)}…)` : `${t("chainBad")}: ${chain.problem}`));
  } catch (e) { show("chain", el("span", { className: "bad" }, e.message)); }
}

// ------------------------------------------------------------------ wiring
function delegate(id, selector, action) {
  $(id).addEventListener("click", (event) => {
    const button = event.target.closest(selector);
    if (button) action(button);
  });
}

document.addEventListener("DOMContentLoaded", async () => {
  applyLang();
  $("lang").addEventListener("click", () => {
    lang = lang === "zh" ? "en" : "zh";
    localStorage.setItem("gbLang", lang);
    applyLang();
    route();
  });
  $("signin-form").addEventListener("submit", signIn);
  $("signout").addEventListener("click", signOut);
  $("search-form").addEventListener("submit", search);
  $("period").addEventListener("change", () => loadDashboard().catch((e) => notice("dashboard", e.message)));
  $("verify").addEventListener("click", verifyChain);
  // One listener per list for its buttons, present and future: no handler built from data.
  delegate("approvals", "button[data-decision]", decide);
  delegate("review", "button[data-review-id]", checkCategory);
  delegate("results", "button[data-journey]", (b) => openJourney(b.dataset.journey));
  delegate("dead-letters", "button[data-dlq-action]", actOnDeadLetter);
  delegate("reconciliation", "button[data-reconcile]", reconcile);
  delegate("accounts", "button[data-token-adapter]", replaceToken);
  window.addEventListener("hashchange", route);
  loadReady().catch(() => {});
  setInterval(() => loadReady().catch(() => {}), 5000);
  try {
    me = await api("/api/session");
    signedIn();
  } catch (e) { signedOut(); }
});
