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
    "approvals.title": "待审核回复", "review.title": "待核对分类", flood: "刷屏：同一人一小时内新诉求过多", "outbox.title": "待发送回复",
    "inquiries.title": "诉求查询", "search.q": "内容", "search.handle": "市民账号", "search.ticket": "工单号",
    "search.department": "部门", "search.status": "状态", "search.from": "从", "search.to": "到",
    "search.submit": "查询", "overdue.title": "逾期与临期工单", "dead.title": "死信",
    "reconciliation.title": "待核对工单", "accounts.title": "账号", "dashboard.title": "部门看板",
    "dashboard.period": "期间", "audit.title": "审计记录", "audit.verify": "校验记录链",
    ready: "就绪", notReady: "未就绪", none: "没有", original: "市民原文", ticket: "工单", draft: "回复草稿（可编辑）",
    approve: "批准（发布框内文字）", reject: "驳回", reason: "驳回原因", reasonCol: "原因", quota: "发布配额(已用/上限)", reference: "本系统编号", needReason: "请填写驳回原因",
    department: "部门", account: "账号", status: "状态", inquiry: "诉求", time: "时间", open: "查看经过",
    journey: "办理经过", received: "收到", routed: "分派", decidedBy: "决定者", confirm: "确认分类",
    model: "模型判断", waiting: "待发送", oldest: "最久等待", failed: "发送失败", paused: "暂停原因",
    deadline: "期限", left: "剩余", overdue: "已逾期", atRisk: "临期", stage: "环节", attempts: "次数",
    replay: "重放", drop: "丢弃", ids: "标识", attach: "关联已有工单", notCreated: "确认未建单，重新创建",
    ticketNo: "工单号", nativeStatus: "工单系统中的原始状态", health: "状态", healthy: "正常", token: "新令牌", replaceToken: "更换令牌",
    inquiries: "诉求", tickets: "工单", resolved: "办结", inTime: "按时率", firstReply: "首次答复(中位)",
    resolution: "办结用时(中位)", zombie: "僵尸账号", perDay: "每日", perWeek: "每周", actor: "操作人",
    action: "事项", detail: "详情", chainOk: "记录链完整", chainBad: "记录链被改动", done: "已完成",
    role: "角色", noAccess: "当前角色无权执行", posted: "已发布", awaiting: "待审核",
    refresh: "刷新",
    "nav.ranking": "月度排名", "ranking.title": "月度排名", "ranking.month": "月份", rank: "名次", score: "得分",
    trend: "近12个月得分", responseRate: "响应率", resolutionRate: "解决率", satisfactionRate: "满意率",
    onTimeRate: "按时率", formula: "得分 =", example: "（示例权重，非官方公式）", soFar: "（本月至今）", asOf: "数据截至",
    "nav.inspection": "账号巡检", "inspection.title": "账号巡检",
    "inspection.rules": "睡眠：14天未发布；僵尸：诉求超过一天无任何回复；零活动：从未发布也从未回复。待审核、待发送的回复计为积压，不算僵尸。",
    lastPost: "距上次发布", answered: "已答复", unanswered: "无人答复", backlog: "积压(待审核/待发送)",
    answerRate: "答复率", medianFirst: "首次响应(中位)", flags: "标记", days: "天", never: "从未",
    unknown: "未知", viaReplies: "按本系统回复", dormant: "睡眠", zero_activity: "零活动", ok: "正常",

    "ticketSystems.title": "工单系统", system: "系统", state: "状态", alerts: "告警", lastSuccess: "最近成功",
    held: "暂存待发", newKey: "新密钥", replaceKey: "更换密钥", retryNow: "立即重试", released: "已重新发送",
    "state.ok": "正常", "state.paused: auth": "暂停：凭据被拒", "state.down": "无法连接",
    "op.create": "建单", "op.append": "补充", "op.poll": "查询状态", "op.post": "发布",
    "nav.incidents": "舆情与重复件", "incidents.title": "舆情：多人反映的同一事项", size: "件数",
    growth: "近一小时", places: "地点", surgeAt: "形成舆情", answerDue: "公开答复期限", cases: "各件",
    caseRole: "关系", "role.lead": "主办件", "role.merged": "已并入", "role.linked": "关联件",
    split: "拆出（单独建单）", mergeInto: "并入本事项的事项编号", mergeIncident: "合并事项", category: "类别",
    answered: "已公开答复（停止舆情计时）", answeredAt: "已公开答复于",
    "role.is.viewer": "查看者", "role.is.approver": "审批人", "role.is.admin": "管理员",
    all: "全部", age: "等待时长", "age.1h": "超过1小时", "age.24h": "超过1天", "age.3d": "超过3天", filter: "筛选",
    "approvals.keys": "快捷键：j/k 上下移动，a 批准，e 编辑，r 驳回（先填写原因），Esc 回到卡片",
    selectAll: "全选本页模板回复", bulkApprove: "批量批准所选", prev: "上一页", next: "下一页",
    written: "起草于", ticketNow: "工单现状", draftFor: "草稿针对", templated: "模板回复", "written.byHand": "人工撰写，需逐条审核",
    draftRead: "回复草稿（只读）", pick: "选中以批量批准", approvedOne: "已批准。", rejectedOne: "已驳回。",
    pickFirst: "请先选中要批准的模板回复。",
    staleLive: "该回复已由其他审批人处理或已被新状态取代，未发布任何内容。请刷新。",
    editingBy: "正在编辑此回复：",
    backToSearch: "返回诉求查询", clock: "时限", "kind.overdue": "已逾期", "kind.at_risk": "临期",
    citizen: "市民", repliesPosted: "回复", postedText: "已发布的文字", notes: "内部备注（不公开）",
    caseActions: "办理操作", reroute: "转派", rerouteTo: "转派至", returnCase: "退单（派错了，退回核对）",
    requestExtension: "申请延期", newDeadline: "新期限", approveExt: "批准延期", refuseExt: "不批准",
    escalate: "督办", addNote: "添加备注", noteText: "备注内容", actionReason: "理由", extensions: "延期申请",
    "ext.pending": "待批准", "ext.approved": "已批准", "ext.refused": "未批准", actionDone: "已提交：",
    exportCsv: "导出CSV", handle: "市民账号", conversation: "同一对话", "search.limited": "只显示最新的 {n} 条，请缩小查询条件。",
    "search.count": "共 {n} 条", requestedBy: "申请人", oldDeadline: "原期限", earlierTickets: "此前的工单",
  },
  en: {
    skip: "Skip to content", title: "govbridge operator console", signout: "Sign out",
    "nav.approvals": "Approvals", "nav.inquiries": "Inquiries", "nav.overdue": "Overdue & at risk",
    "nav.dead": "Dead letters & reconciliation", "nav.accounts": "Accounts", "nav.dashboard": "Dashboard",
    "nav.audit": "Audit trail", "signin.title": "Sign in", "signin.name": "Name", "signin.password": "Password",
    "signin.submit": "Sign in", "approvals.title": "Replies awaiting approval",
    "review.title": "Inquiries held for a category check", flood: "flood: too many new inquiries from one person within the hour", "outbox.title": "Replies waiting to be posted",
    "inquiries.title": "Inquiry search", "search.q": "Text", "search.handle": "Citizen handle",
    "search.ticket": "Ticket id", "search.department": "Department", "search.status": "Status",
    "search.from": "From", "search.to": "To", "search.submit": "Search",
    "overdue.title": "Overdue and at-risk tickets", "dead.title": "Dead letters",
    "reconciliation.title": "Creates awaiting reconciliation", "accounts.title": "Accounts",
    "dashboard.title": "Department dashboard", "dashboard.period": "Period", "audit.title": "Audit trail",
    "audit.verify": "Verify the chain",
    ready: "ready", notReady: "not ready", none: "None", original: "Citizen's message", ticket: "Ticket",
    draft: "Draft reply (editable)", approve: "Approve (publish the text in the box)", reject: "Reject",
    reason: "Reason for rejecting", reasonCol: "Reason", quota: "Posting quota (used / limit)", reference: "Reference", needReason: "Give a reason for rejecting", department: "Department",
    account: "Account", status: "Status", inquiry: "Inquiry", time: "Time", open: "Open journey",
    journey: "Journey", received: "Received", routed: "Routed", decidedBy: "Decided by", confirm: "Confirm",
    model: "Model's guess", waiting: "Waiting", oldest: "Oldest", failed: "Failed", paused: "Paused",
    deadline: "Deadline", left: "Left", overdue: "overdue", atRisk: "at risk", stage: "Stage",
    attempts: "Attempts", replay: "Replay", drop: "Drop", ids: "Ids", attach: "Attach existing ticket",
    notCreated: "Not created: create again", ticketNo: "Ticket id", health: "Health", healthy: "healthy",
    nativeStatus: "the status as the ticket system wrote it", token: "New token", replaceToken: "Replace token", inquiries: "Inquiries", tickets: "Tickets",
    resolved: "Resolved", inTime: "In time", firstReply: "First reply (median)",
    resolution: "Resolution (median)", zombie: "zombie", perDay: "Per day", perWeek: "Per week",
    actor: "Actor", action: "Action", detail: "Detail", chainOk: "chain intact", chainBad: "chain altered",
    done: "done", role: "Role", noAccess: "your role may not do this", posted: "posted", awaiting: "awaiting",
    refresh: "Refresh",
    "nav.ranking": "Ranking", "ranking.title": "Monthly ranking", "ranking.month": "Month", rank: "Rank",
    score: "Score", trend: "Score, last 12 months", responseRate: "Response rate",
    resolutionRate: "Resolution rate", satisfactionRate: "Satisfaction rate", onTimeRate: "On time",
    formula: "Score =", example: " (an example weighting, not an official formula)", soFar: " (so far)", asOf: "Data as of",
    "nav.inspection": "Inspection", "inspection.title": "Account inspection",
    "inspection.rules": "Dormant: no own post for 14 days; zombie: inquiries without any reply for over a day; zero activity: never posted, never answered. Replies awaiting approval or a posting slot are a backlog, not a zombie.",
    lastPost: "Since last post", answered: "Answered", unanswered: "Unanswered", backlog: "Backlog (approval / posting)",
    answerRate: "Answer rate", medianFirst: "First response (median)", flags: "Flags", days: "d", never: "never",
    unknown: "unknown", viaReplies: "by the bridge's replies", dormant: "dormant", zero_activity: "zero activity", ok: "ok",

    "ticketSystems.title": "Ticket systems", system: "System", state: "State", alerts: "Alerts",
    lastSuccess: "Last success", held: "Held", newKey: "New key", replaceKey: "Replace key",
    retryNow: "Retry now", released: "sent again", "state.ok": "ok",
    "state.paused: auth": "paused: credentials refused", "state.down": "down",
    "op.create": "create", "op.append": "follow-up", "op.poll": "status poll", "op.post": "post",
    "nav.incidents": "Surges & duplicates", "incidents.title": "Surges: one matter, many citizens", size: "Cases",
    growth: "Last hour", places: "Places", surgeAt: "Surged", answerDue: "Public answer due", cases: "Cases",
    caseRole: "Role", "role.lead": "lead (holds the ticket)", "role.merged": "merged", "role.linked": "linked",
    split: "Split out (own ticket)", mergeInto: "Incident id to merge into this one", mergeIncident: "Merge incidents", category: "Category",
    answered: "Public answer given (stop the clock)", answeredAt: "Public answer given at",
    "role.is.viewer": "viewer", "role.is.approver": "approver", "role.is.admin": "admin",
    all: "All", age: "Waiting", "age.1h": "over 1 hour", "age.24h": "over 1 day", "age.3d": "over 3 days", filter: "Filter",
    "approvals.keys": "Keys: j/k move, a approve, e edit, r reject (reason first), Esc back to the card",
    selectAll: "Select this page's template drafts", bulkApprove: "Approve selected", prev: "Previous", next: "Next",
    written: "Drafted", ticketNow: "Ticket now", draftFor: "Draft for", templated: "Template reply", "written.byHand": "Written by an official: review on its own",
    draftRead: "Draft reply (read only)", pick: "Select for bulk approval", approvedOne: "Approved.", rejectedOne: "Rejected.",
    pickFirst: "Select the template drafts to approve first.",
    staleLive: "Another approver decided this reply, or a newer status superseded it; nothing was posted. Refresh.",
    editingBy: "Being edited by ",
    backToSearch: "Back to inquiry search", clock: "Clock", "kind.overdue": "Overdue", "kind.at_risk": "At risk",
    citizen: "Citizen", repliesPosted: "Replies", postedText: "Text posted", notes: "Internal notes (never public)",
    caseActions: "Case actions", reroute: "Re-route", rerouteTo: "Re-route to", returnCase: "Return (misrouted: back to review)",
    requestExtension: "Request an extension", newDeadline: "New deadline", approveExt: "Approve extension", refuseExt: "Refuse",
    escalate: "Escalate (supervise)", addNote: "Add note", noteText: "Note", actionReason: "Reason", extensions: "Extension requests",
    "ext.pending": "pending", "ext.approved": "approved", "ext.refused": "refused", actionDone: "Done: ",
    exportCsv: "Export CSV", handle: "Citizen handle", conversation: "Same conversation", "search.limited": "Only the newest {n} are shown: narrow the search.",
    "search.count": "{n} found", requestedBy: "Requested by", oldDeadline: "Old deadline", earlierTickets: "Earlier tickets",
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
  for (const id of ["approval-pager", "overdue-pager"]) $(id).setAttribute("aria-label", lang === "zh" ? "分页" : "Pages");
  $("tabs").setAttribute("aria-label", lang === "zh" ? "页面" : "Console pages");
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

// A table scrolls inside its own box (a named, focusable region) when the screen is narrower.
function table(headings, rows, caption) {
  return el("div", { className: "scroll", tabIndex: 0, role: "region",
    aria: { label: caption || headings.filter((h) => typeof h === "string" && h).slice(0, 3).join(" · ") } }, el("table", {},
    caption ? el("caption", {}, caption) : null,
    el("thead", {}, el("tr", {}, ...headings.map((h) => el("th", { scope: "col" },
      h === "" ? el("span", { className: "sr" }, lang === "zh" ? "操作" : "Actions") : h)))),
    el("tbody", {}, ...rows)));
}

const muted = (text) => el("p", { className: "muted" }, text);

async function api(path, options = {}) {
  const headers = { "Content-Type": "application/json" };
  if (me) headers["X-CSRF-Token"] = me.csrf_token;
  const resp = await fetch(path, { ...options, headers, credentials: "same-origin" });
  const body = await resp.json().catch(() => ({}));
  if (resp.status === 401 && path !== "/api/session") { signedOut(); }
  if (!resp.ok) throw Object.assign(new Error(body.error || String(resp.status)), { status: resp.status, body });
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
  $("who").textContent = `${me.operator} (${t("role.is." + me.role)})`;
  document.body.dataset.role = me.role;
  loadLabels().then(route);
  watchQueue();
}

function signedOut() {
  unwatchQueue();
  me = null;
  document.body.dataset.role = "";
  // what the last operator saw leaves the page with them
  for (const id of [...Object.values(MAIN_BOX), "approval-count", "approval-result", "approval-page", "approval-live",
    "overdue-count", "overdue-page"]) if ($(id)) show(id);
  lastResults = [];
  $("approval-filters").reset();
  QUEUE.offset = 0;
  $("tabs").hidden = true;
  $("signout").hidden = true;
  $("who").textContent = "";
  for (const page of document.querySelectorAll("main > section")) page.hidden = page.id !== "page-signin";
  $("signin-name").focus();
}

async function signOut() {
  stopEditing();
  try { await api("/api/session", { method: "DELETE" }); } catch (e) { /* signed out anyway */ }
  signedOut();
}

// ------------------------------------------------------------------ pages
const PAGES = {
  approvals: () => Promise.all([loadApprovals(), loadReview(), loadOutbox()]),
  inquiries: () => { fillSearch(); return Promise.resolve(); },
  overdue: () => loadOverdue(),
  incidents: () => loadIncidents(),
  dead: () => Promise.all([loadDeadLetters(), loadReconciliation()]),
  accounts: () => loadAccounts(),
  dashboard: () => loadDashboard(),
  ranking: () => loadRanking(),
  inspection: () => loadInspection(),
  audit: () => loadAudit(),
};

const MAIN_BOX = {
  approvals: "approvals", inquiries: "results", journey: "journey", overdue: "overdue", incidents: "incidents", dead: "dead-letters",
  accounts: "accounts", dashboard: "dashboard", ranking: "ranking", inspection: "inspection", audit: "audit",
};

// #approvals, #overdue, … one page each; #/inquiries/<id> one inquiry's journey, an address
// of its own (shareable), under the inquiries tab.
const JOURNEY_ADDRESS = /^#\/inquiries\/([^/]+)$/;
const journeyHref = (id) => "#/inquiries/" + encodeURIComponent(id);
function route() {
  if (!me) return;
  const one = location.hash.match(JOURNEY_ADDRESS);
  const name = one ? "journey" : location.hash.slice(1) in PAGES ? location.hash.slice(1) : "approvals";
  const tab = one ? "inquiries" : name;
  for (const page of document.querySelectorAll("main > section")) page.hidden = page.id !== "page-" + name;
  for (const link of document.querySelectorAll("#tabs a")) {
    if (link.getAttribute("href") === "#" + tab) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  const load = one ? () => openJourney(decodeURIComponent(one[1])) : PAGES[name];
  load().catch((e) => notice(MAIN_BOX[name], e.message)).finally(() => rendered(name));
}

// Says on <body> what was last drawn with its data (data-rendered, and a count in
// data-renders): what a browser script (scripts/bench_console_pages.py) or a test waits for.
function rendered(what) {
  document.body.dataset.rendered = what;
  document.body.dataset.renders = String(Number(document.body.dataset.renders || 0) + 1);
}

async function loadReady() {
  const r = await (await fetch("/readyz")).json();
  const status = r.ready
    ? el("span", { className: "ok" }, t("ready"))
    : el("span", { className: "bad" }, t("notReady") + ": " + (r.not_ready || []).join(", "));
  // a surge's "operation" is the category that surged (bridge/triage/incident_links.py)
  const what = (a) => a.kind === "incident_surge" ? categoryName(a.operation) : t("op." + a.operation);
  const alerts = (r.alerts || []).map((a) => el("span", { className: "bad" },
    ` ⚠ ${alertName(a.kind)} ${alertSubject(a.name)}${a.operation ? " (" + what(a) + ")" : ""}`));
  show("ready", status, ...alerts);
}

// Approvals: a paged queue, oldest first, one card per conversation (its live draft beside the
// citizen's original and the ticket). One approve button: it sends the text in the box and
// the draft version it was shown, so what is published is what the approver last saw, or
// nothing (the server answers 409 when the draft changed meanwhile). Template drafts can be
// picked and approved together, each as shown. Keys: j/k move, a approve, e edit, r reject;
// after a decision the focus stays on the card that takes the decided one's place.
const QUEUE = { offset: 0, limit: 20, total: 0, focus: 0, mark: null, editing: [] };

// A filter's <select>: "all" and the entries ([value, label]), keeping what was chosen.
function fillSelect(id, entries) {
  const select = $(id);
  const keep = select.value;
  select.replaceChildren(el("option", { value: "" }, t("all")),
    ...entries.map(([value, label]) => el("option", { value }, label)));
  select.value = entries.some(([v]) => v === keep) ? keep : "";
}

function fillFilters() {
  const fill = fillSelect;
  fill("af-department", Object.keys(labels.departments).map((id) => [id, deptName(id)]));
  fill("af-account", labels.accounts.map((a) => [a.key, accountName(a.platform, a.handle)]));
  fill("af-status", [...Object.keys(labels.statuses).map((s) => [s, statusName(s)]), ["note", statusName(null)]]);
  fill("af-category", Object.keys(labels.categories).map((c) => [c, categoryName(c)]));
  fill("af-age", [["1h", t("age.1h")], ["24h", t("age.24h")], ["3d", t("age.3d")]]);
}

function queueQuery() {
  const params = new URLSearchParams();
  for (const [key, value] of new FormData($("approval-filters"))) if (value) params.set(key, value);
  params.set("limit", QUEUE.limit);
  params.set("offset", QUEUE.offset);
  return params;
}

function approvalCards() { return [...document.querySelectorAll("#approvals article.card")]; }

async function loadApprovals(focusIndex = null) {
  fillFilters();
  const page = await api("/api/approvals?" + queueQuery());
  QUEUE.total = page.total;
  show("approval-live");
  if (page.total && QUEUE.offset >= page.total) { // the last page emptied: go back one
    QUEUE.offset = Math.max(0, Math.floor((page.total - 1) / QUEUE.limit) * QUEUE.limit);
    return loadApprovals(focusIndex);
  }
  const first = page.total ? QUEUE.offset + 1 : 0, last = QUEUE.offset + page.approvals.length;
  $("approval-count").textContent = lang === "zh"
    ? `共 ${page.total} 件待审核，当前第 ${first}–${last} 件（最早的在前）`
    : `${page.total} awaiting approval; showing ${first}–${last}, oldest first`;
  $("approval-page").textContent = lang === "zh"
    ? `第 ${Math.floor(QUEUE.offset / QUEUE.limit) + 1} / ${Math.max(1, Math.ceil(page.total / QUEUE.limit))} 页`
    : `Page ${Math.floor(QUEUE.offset / QUEUE.limit) + 1} of ${Math.max(1, Math.ceil(page.total / QUEUE.limit))}`;
  $("approval-prev").disabled = QUEUE.offset === 0;
  $("approval-next").disabled = last >= page.total;
  $("approval-select-all").checked = false;
  if (!page.approvals.length) { show("approvals", muted(t("none"))); return; }
  const may = Boolean(me && me.may && me.may.approve);
  const cards = page.approvals.map((a) => approvalCard(a, may));
  show("approvals", ...cards);
  markEditing();
  if (focusIndex !== null) {
    const all = approvalCards();
    const card = all[Math.min(focusIndex, all.length - 1)];
    if (card) { QUEUE.focus = all.indexOf(card); card.focus(); }
  }
}

function approvalCard(a, may) {
  const id = a.reply_id;
  const heading = `${deptName(a.department, a.department_name)} · ${t("ticket")} ${a.ticket_id || "-"}`;
  const meta = el("p", { className: "muted" },
    `${maskHandle(a.citizen_handle)} · ${accountName(a.platform, a.account)} · ${categoryName(a.category)}`);
  const age = el("p", { className: "muted" }, `${t("written")} ${when(a.created_at)} · ${ago(a.created_at)}`);
  const original = el("div", { className: "col" }, el("h3", {}, t("original")),
    el("p", { className: "quote" }, a.original || "-"), meta, age);
  const ticket = el("div", { className: "col" }, el("h3", {}, heading),
    el("p", { className: "muted" }, `${t("ticketNow")}: ${statusName(a.ticket_status)} · ${t("draftFor")}: ${statusName(a.status)}`),
    a.drafts > 1 ? el("p", { className: "muted" }, lang === "zh" ? `此对话还有 ${a.drafts - 1} 条草稿待审` : `${a.drafts - 1} more draft(s) of this conversation wait`) : null,
    el("p", { className: "muted" }, a.templated ? t("templated") : t("written.byHand")));
  const props = { className: "card", tabIndex: -1, dataset: { reply: id }, aria: { label: `${t("inquiry")} ${heading}` } };
  if (!may) { // viewers read; they decide nothing
    return el("article", props, original, ticket,
      el("div", { className: "col wide" }, el("h3", {}, t("draftRead")), el("p", { className: "readonly", dataset: { replyText: id } }, a.text)));
  }
  const box = el("textarea", { id: "draft-" + id, value: a.text,
    dataset: { replyText: id, version: a.version, sha: a.text_sha256, original: a.text } });
  const reason = el("input", { id: "reason-" + id, dataset: { replyReason: id } });
  const decide = (label, decision, primary) => el("button", {
    type: "button", className: primary ? "primary" : "", dataset: { replyId: id, decision },
  }, label);
  const pick = a.templated
    ? el("label", { className: "pick" }, el("input", { type: "checkbox", dataset: { pick: id } }), t("pick"))
    : null;
  return el("article", props, original, ticket,
    el("div", { className: "col wide" }, pick,
      el("label", { htmlFor: "draft-" + id }, t("draft")), box,
      el("label", { htmlFor: "reason-" + id }, t("reason")), reason,
      el("div", { className: "actions" },
        decide(t("approve"), "approve", true), decide(t("reject"), "reject")),
      el("p", { id: "msg-" + id, className: "bad", role: "alert" })));
}

function cardIndex(node) { return approvalCards().indexOf(node.closest("article.card")); }

async function decide(button) {
  const id = button.dataset.replyId;
  const box = $("draft-" + id);
  const at = cardIndex(button);
  const body = { decision: button.dataset.decision, version: Number(box.dataset.version) };
  if (body.decision === "approve") body.text = box.value;
  if (body.decision === "reject") {
    body.reason = $("reason-" + id).value.trim();
    if (!body.reason) { $("reason-" + id).focus(); $("msg-" + id).textContent = t("needReason"); return; }
  }
  try {
    await api(`/api/approvals/${encodeURIComponent(id)}`, { method: "POST", body: JSON.stringify(body) });
    if (myEdit && myEdit.id === id) stopEditing();
    $("approval-result").textContent = body.decision === "reject" ? t("rejectedOne") : t("approvedOne");
    await loadApprovals(at);
  } catch (e) {
    const reason = (e.body && e.body.reason) || "";
    // the server says why in both languages; the error line if it said nothing more
    const said = (e.body && e.body.message && e.body.message[lang]) || e.message;
    if (e.status === 422 && reason === "personal_data") {
      box.value = e.body.masked_text; // the approver sees what would be published, then approves it
      box.focus();
      $("msg-" + id).textContent = said;
    } else if (e.status === 422 && reason === "too_long") {
      box.focus();
      $("msg-" + id).textContent = `${said} (${box.value.length} / ${e.body.max_chars})`;
    } else if (e.status === 409) {
      // the draft on screen is stale: it can no longer be approved from here
      const card = button.closest("article");
      for (const b of card.querySelectorAll("button[data-decision]")) b.disabled = true;
      const pick = card.querySelector("input[data-pick]");
      if (pick) { pick.checked = false; pick.disabled = true; }
      box.readOnly = true;
      const refresh = el("button", { type: "button", dataset: { refreshApprovals: "1" } }, t("refresh"));
      show("msg-" + id, said, " ", refresh);
      card.focus();
    } else {
      $("msg-" + id).textContent = e.message;
    }
  } finally { rendered("decided"); }
}

// Live: the server says when the queue changed (GET /api/approvals/events, server-sent
// events); the cards on screen that another approver decided, or a newer status superseded,
// are marked and locked; nothing the approver is typing is reloaded.
let queueEvents = null;
function watchQueue() {
  if (queueEvents || typeof EventSource === "undefined") return;
  queueEvents = new EventSource("/api/approvals/events");
  queueEvents.addEventListener("approvals", (event) => {
    queueChanged(JSON.parse(event.data)).catch(() => { /* the next event tries again */ });
  });
  queueEvents.addEventListener("editing", (event) => {
    QUEUE.editing = JSON.parse(event.data).editing || [];
    markEditing();
  });
}
function unwatchQueue() {
  if (queueEvents) queueEvents.close();
  queueEvents = null;
  QUEUE.mark = null;
  QUEUE.editing = [];
  stopEditing();
}

// "Being edited": when the focus enters a draft's box or its reason, the console tells the
// server (POST /api/approvals/{id}/editing), renews it while the focus stays, and says when it
// leaves; every other open console marks that card with the approver's name (the "editing"
// server-sent event). A mark the server does not hear renewed lapses by itself.
const EDITING_RENEW_MS = 20000;
let myEdit = null; // {id, timer}
function sayEditing(id, on) {
  api(`/api/approvals/${encodeURIComponent(id)}/editing`, { method: "POST", body: JSON.stringify({ editing: on }) })
    .catch(() => { /* a mark is a courtesy: it lapses by itself */ });
}
function stopEditing() {
  if (!myEdit) return;
  clearInterval(myEdit.timer);
  if (me) sayEditing(myEdit.id, false);
  myEdit = null;
}
function editingField(node) {
  return node && node.closest ? node.closest("#approvals textarea[data-reply-text], #approvals input[data-reply-reason]") : null;
}
function editingStarted(event) {
  const field = editingField(event.target);
  if (!field || field.readOnly) return;
  const id = field.closest("article.card").dataset.reply;
  if (myEdit && myEdit.id === id) return;
  stopEditing();
  myEdit = { id, timer: setInterval(() => sayEditing(id, true), EDITING_RENEW_MS) };
  sayEditing(id, true);
}
function editingEnded(event) {
  if (!myEdit) return;
  const next = editingField(event.relatedTarget);
  if (next && next.closest("article.card").dataset.reply === myEdit.id) return; // box to reason
  stopEditing();
}
function markEditing() {
  const mine = me ? me.operator : null;
  for (const card of approvalCards()) {
    const id = card.dataset.reply;
    const names = (QUEUE.editing || []).filter((m) => m.reply_id === id && m.operator !== mine).map((m) => m.operator);
    const note = card.querySelector("[data-editing-note]");
    card.classList.toggle("editing", names.length > 0);
    if (!names.length) { if (note) note.remove(); continue; }
    const said = t("editingBy") + names.join(lang === "zh" ? "、" : ", ");
    if (note) note.textContent = said;
    else card.prepend(el("p", { className: "warn editing-note", dataset: { editingNote: id } }, "✎ " + said));
  }
}

async function queueChanged(mark) {
  const key = `${mark.waiting}|${mark.newest}`;
  if (QUEUE.mark === null || QUEUE.mark === key) { QUEUE.mark = key; return; }
  QUEUE.mark = key;
  if ($("page-approvals").hidden || !approvalCards().length) return;
  const page = await api("/api/approvals?" + queueQuery());
  const standing = new Set(page.approvals.map((a) => a.reply_id));
  for (const card of approvalCards()) {
    const id = card.dataset.reply;
    if (standing.has(id) || card.classList.contains("stale")) continue;
    card.classList.add("stale");
    for (const b of card.querySelectorAll("button[data-decision]")) b.disabled = true;
    const pick = card.querySelector("input[data-pick]");
    if (pick) { pick.checked = false; pick.disabled = true; }
    const box = $("draft-" + id);
    if (box) box.readOnly = true;
    const said = el("p", { className: "bad", role: "alert", dataset: { staleNote: id } }, t("staleLive"));
    const msg = $("msg-" + id);
    if (msg) msg.replaceChildren(said.textContent); else card.append(said);
  }
  // the page's whole count, not this update's: two quick changes must not read "5 of 20"
  const stale = approvalCards().filter((c) => c.classList.contains("stale")).length;
  const refresh = el("button", { type: "button", dataset: { refreshApprovals: "1" } }, t("refresh"));
  show("approval-live", lang === "zh"
    ? `队列已更新：现共 ${page.total} 件待审核${stale ? `，本页 ${stale} 件已由他人处理或已被取代` : ""}。`
    : `The queue changed: ${page.total} awaiting approval${stale ? `; ${stale} on this page decided by someone else or superseded` : ""}.`,
  " ", refresh);
}

async function bulkApprove() {
  const picked = [...document.querySelectorAll("#approvals input[data-pick]:checked")];
  if (!picked.length) { $("approval-result").textContent = t("pickFirst"); return; }
  const items = [], skipped = [];
  for (const p of picked) {
    const box = $("draft-" + p.dataset.pick);
    if (box.value !== box.dataset.original) { skipped.push(p.dataset.pick); continue; } // edited: approve it on its own
    items.push({ reply_id: p.dataset.pick, version: Number(box.dataset.version), text_sha256: box.dataset.sha });
  }
  const first = cardIndex(picked[0]);
  let outcomes = [];
  if (items.length) ({ outcomes } = await api("/api/approvals/bulk", { method: "POST", body: JSON.stringify({ items }) }));
  const done = outcomes.filter((o) => o.ok).length;
  const refused = outcomes.filter((o) => !o.ok);
  const lines = [lang === "zh" ? `已批准 ${done} 件。` : `${done} approved.`];
  if (skipped.length) lines.push(lang === "zh" ? `${skipped.length} 件框内文字已修改，请逐条批准。` : `${skipped.length} edited in the box: approve them one by one.`);
  if (refused.length) {
    const first409 = refused.find((o) => o.body && o.body.message);
    lines.push((lang === "zh" ? `${refused.length} 件未批准：` : `${refused.length} not approved: `) +
      (first409 ? first409.body.message[lang] : ""));
  }
  $("approval-result").textContent = lines.join(" ");
  await loadApprovals(Math.max(0, first));
}

// j/k move between cards, a approves, e edits (the box), r rejects (the reason first); not
// while typing in a field, so the letters still reach the box.
function queueKeys(event) {
  if (location.hash.slice(1) !== "approvals" && location.hash !== "") return;
  if (event.ctrlKey || event.metaKey || event.altKey) return;
  const typing = event.target.closest && event.target.closest("input, textarea, select");
  if (typing) {
    if (event.key === "Escape") { const card = event.target.closest("article.card"); if (card) card.focus(); }
    return;
  }
  const cards = approvalCards();
  if (!cards.length) return;
  const current = event.target.closest ? event.target.closest("article.card") : null;
  let at = current ? cards.indexOf(current) : Math.min(QUEUE.focus, cards.length - 1);
  const card = cards[at];
  const id = card.dataset.reply;
  if (event.key === "j" || event.key === "k") {
    at = Math.max(0, Math.min(cards.length - 1, at + (event.key === "j" ? 1 : -1)));
    QUEUE.focus = at;
    cards[at].focus();
    cards[at].scrollIntoView({ block: "nearest" });
  } else if (event.key === "a") {
    const button = card.querySelector('button[data-decision="approve"]:not(:disabled)');
    if (button) decide(button);
  } else if (event.key === "e") {
    const box = $("draft-" + id);
    if (box && !box.readOnly) box.focus();
  } else if (event.key === "r") {
    const reason = $("reason-" + id);
    const button = card.querySelector('button[data-decision="reject"]:not(:disabled)');
    if (!reason || !button) return;
    if (reason.value.trim()) decide(button); else reason.focus();
  } else return;
  event.preventDefault();
}

const CATEGORY_LABELS = {
  consultation: "咨询", help: "求助", complaint: "投诉", report: "举报",
  suggestion: "建议", praise: "表扬", other: "其他",
};

// What the console shows instead of codes (GET /api/labels, loaded at sign-in): department
// names, accounts, Chinese status and category names; every time in the configured zone,
// labelled; ages and deadlines relative ("逾期3天", "2小时后到期").
let labels = { timezone: "Asia/Shanghai", departments: {}, accounts: [], statuses: {}, categories: {} };
const EN_STATUS = {
  received: "Received", referred: "Referred", in_progress: "In progress", resolved: "Resolved",
  rejected: "Not accepted", returned: "Returned", reopened: "Reopened", closed: "Closed",
};
const EN_CATEGORY = {
  consultation: "Consultation", help: "Request for help", complaint: "Complaint", report: "Report",
  suggestion: "Suggestion", praise: "Praise", other: "Other",
};
const PLATFORMS = {
  zh: { weibo: "微博", mastodon: "Mastodon", hotline12345: "12345热线", webhook: "推送接口" },
  en: { weibo: "Weibo", mastodon: "Mastodon", hotline12345: "12345 hotline", webhook: "Webhook" },
};
const deptName = (id, fallback) => (id ? labels.departments[id] || fallback || id : "-");
function statusName(s) {
  if (!s) return lang === "zh" ? "人工回复" : "Official's note";
  return lang === "zh" ? labels.statuses[s] || s : EN_STATUS[s] || s;
}
function categoryName(c) {
  if (!c) return "-";
  return lang === "zh" ? labels.categories[c] || CATEGORY_LABELS[c] || c : EN_CATEGORY[c] || c;
}
function accountName(platform, handle) {
  const found = labels.accounts.find((a) => a.handle === handle && (a.platform === platform || a.key.startsWith(platform + ":")));
  const where = (PLATFORMS[lang] || PLATFORMS.zh)[platform] || platform;
  if (!found) return `${where} ${handle}`;
  return lang === "zh" ? `${where} ${handle}（${deptName(found.department)}）` : `${where} ${handle} (${deptName(found.department)})`;
}
// where an inquiry and a reply stand, by name
const STATES = {
  zh: {
    triaged: "已分类", routed: "已分派", ignored: "无需办理", held_for_review: "待核对分类", ticketed: "已建单",
    appended: "已补充到工单", kept_on_record: "已记录在案", forwarded: "已转交承办单位", needs_reconciliation: "待核对建单",
    awaiting_approval: "待审核", approved: "已批准待发送", posting: "发送中", posted: "已发布",
    undeliverable: "无法送达", failed: "发送失败", rejected: "已驳回", superseded: "已被新状态取代",
  },
  en: {
    triaged: "classified", routed: "routed", ignored: "ignored (noise)", held_for_review: "held for a category check",
    ticketed: "ticket filed", appended: "added to the ticket", kept_on_record: "kept on record", forwarded: "forwarded to the unit",
    needs_reconciliation: "create to reconcile", awaiting_approval: "awaiting approval", approved: "approved, waiting to post",
    posting: "posting", posted: "posted", undeliverable: "undeliverable", failed: "failed", rejected: "rejected",
    superseded: "superseded by a newer status",
  },
};
const ALERTS = {
  zh: { account_auth: "账号授权失效", ticketing_auth: "工单系统拒绝凭据", ingest_rejected: "有无法读取的消息",
    incident_surge: "舆情", account_flagged: "账号巡检异常" },
  en: { account_auth: "account authorisation refused", ticketing_auth: "ticket system refused the key",
    ingest_rejected: "unreadable items", incident_surge: "surge", account_flagged: "account flagged" },
};
const alertName = (kind) => (ALERTS[lang] || ALERTS.zh)[kind] || kind;
function alertSubject(name) { // a department's id or an account's key, by name
  if (labels.departments[name]) return labels.departments[name];
  const account = labels.accounts.find((a) => a.key === name);
  return account ? accountName(account.platform, account.handle) : name;
}
const stateName = (s) => (s ? (STATES[lang] || STATES.zh)[s] || s : "-");
const maskHandle = (handle) => "@" + (handle || "?");
const ACTIONS = {
  zh: {
    "inquiry.received": "收到诉求", "inquiry.routed": "已分派", "inquiry.state": "诉求状态变更", "inquiry.ignored": "无需办理",
    "ticket.created": "已建工单", "ticket.held": "工单暂缓", "ticket.release_failed": "工单放行失败",
    "reply.drafted": "草拟回复", "reply.requested": "请求发送回复", "reply.approved": "批准回复", "reply.edited": "修改后批准",
    "reply.rejected": "驳回回复", "reply.posted": "回复已发布", "reply.failed": "回复发送失败", "reply.masked": "回复已遮蔽个人信息",
    "reply.superseded": "回复被新状态取代", "reply.undeliverable": "回复无法送达", "reply.retried": "重新发送回复",
    "reply.copies_settled": "重复回复已处理",
    "operator.added": "新增操作员", "operator.changed": "修改操作员", "operator.signed_in": "操作员登录",
    "operator.sign_in_failed": "登录失败", "dead_letter.replayed": "重放死信", "dead_letter.dropped": "丢弃死信",
    "dead_letter.replay_failed": "死信重放失败", "reconciliation.settled": "建单核对完成",
    "account.flagged": "账号巡检异常", "account.token_replaced": "更换账号令牌", "credential.applied": "启用新凭据",
    "credential.reloaded": "重新读取凭据", "credential.superseded": "旧凭据停用", "credentials.rotated": "凭据轮换",
    "incident.linked": "归入同一事项", "incident.merged": "事项合并", "incident.split": "拆出事项",
    "incident.surge": "舆情触发", "incident.answered": "已公开答复", "follow_up.delivered": "追问已送达",
    "follow_up.recorded": "追问已记录", "follow_up.unknown": "追问送达未知", "survey.recorded": "回访已记录",
    "message.unauthenticated": "未通过签名校验的消息",
  },
  en: {
    "inquiry.received": "Inquiry received", "inquiry.routed": "Routed", "inquiry.state": "Inquiry state changed",
    "inquiry.ignored": "No action needed", "ticket.created": "Ticket created", "ticket.held": "Ticket held",
    "ticket.release_failed": "Ticket release failed", "reply.drafted": "Reply drafted", "reply.requested": "Reply requested",
    "reply.approved": "Reply approved", "reply.edited": "Reply edited and approved", "reply.rejected": "Reply rejected",
    "reply.posted": "Reply posted", "reply.failed": "Reply failed", "reply.masked": "Personal data masked in a reply",
    "reply.superseded": "Reply superseded", "reply.undeliverable": "Reply undeliverable", "reply.retried": "Reply sent again",
    "reply.copies_settled": "Duplicate replies settled",
    "operator.added": "Operator added", "operator.changed": "Operator changed", "operator.signed_in": "Operator signed in",
    "operator.sign_in_failed": "Sign-in failed", "dead_letter.replayed": "Dead letter replayed",
    "dead_letter.dropped": "Dead letter dropped", "dead_letter.replay_failed": "Dead letter replay failed",
    "reconciliation.settled": "Create reconciled", "account.flagged": "Account flagged",
    "account.token_replaced": "Account token replaced", "credential.applied": "New key in use",
    "credential.reloaded": "Keys reloaded", "credential.superseded": "Old key retired", "credentials.rotated": "Keys rotated",
    "incident.linked": "Linked to an incident", "incident.merged": "Incidents merged", "incident.split": "Split from an incident",
    "incident.surge": "Surge raised", "incident.answered": "Public answer recorded", "follow_up.delivered": "Follow-up delivered",
    "follow_up.recorded": "Follow-up recorded", "follow_up.unknown": "Follow-up delivery unknown",
    "survey.recorded": "Return visit recorded", "message.unauthenticated": "Unsigned message refused",
  },
};
const actorName = (a) => (a === "bridge" ? (lang === "zh" ? "系统" : "the bridge") : a);
const actionName = (a) => (ACTIONS[lang] || ACTIONS.zh)[a] || a;
const DETAIL_KEYS = {
  zh: { department: "部门", category: "类别", status: "状态", state: "状态", ticket_id: "工单号", reference: "参考号",
    confidence: "置信度", conversation: "对话", decided_by: "判定", cycle: "轮次", templated: "模板回复",
    reason: "原因", client: "来源地址", kind: "类型", inquiry_id: "诉求", reply_id: "回复", role: "角色", operator: "操作员", account: "账号",
    platform: "平台", incident: "事项", message_id: "消息", stage: "环节", action: "操作", name: "名称" },
  en: { department: "department", category: "category", status: "status", state: "state", ticket_id: "ticket",
    reference: "reference", confidence: "confidence", conversation: "conversation", decided_by: "decided by",
    cycle: "round", templated: "template reply", reason: "reason", client: "client address", kind: "kind", inquiry_id: "inquiry", reply_id: "reply",
    role: "role", operator: "operator", account: "account", platform: "platform", incident: "incident",
    message_id: "message", stage: "stage", action: "action", name: "name" },
};
const DECIDED_BY = {
  zh: { model: "模型", rule: "规则", rules: "规则", conversation: "同一对话", official: "人工", keyword: "关键词", fallback: "默认" },
  en: { model: "model", rule: "rule", rules: "rules", conversation: "same conversation", official: "official", keyword: "keyword", fallback: "default" },
};
function detailValue(key, value) {
  if (value === true) return lang === "zh" ? "是" : "yes";
  if (value === false) return lang === "zh" ? "否" : "no";
  if (value === null || value === undefined) return "-";
  if (typeof value === "object") return JSON.stringify(value);
  if (key === "department") return deptName(value);
  if (key === "category") return categoryName(value);
  if (key === "status") return statusName(value);
  if (key === "state") return stateName(value);
  if (key === "kind") return kindName(value);
  if (key === "platform") return (PLATFORMS[lang] || PLATFORMS.zh)[value] || value;
  if (key === "decided_by") return (DECIDED_BY[lang] || DECIDED_BY.zh)[value] || value;
  if (key === "reason") return reasonText(value);
  if (key === "role") return T.zh["role." + value] ? t("role." + value) : t("role.is." + value);
  return String(value);
}
function detailText(detail, sep = lang === "zh" ? "，" : ", ") {
  return Object.entries(detail || {}).map(([k, v]) =>
    `${(DETAIL_KEYS[lang] || DETAIL_KEYS.zh)[k] || k}${lang === "zh" ? "：" : ": "}${detailValue(k, v)}`).join(sep);
}
// Reasons the runtime records in developer English, in plain language.
const REASONS = [
  [/^reply \S+ is not approved \((\w+)\)$/, (m) => lang === "zh"
    ? `回复尚未批准（${stateName(m[1])}），不能发送` : `the reply is not approved (${stateName(m[1])}) and cannot be posted`],
  [/^timed out after sending$/, () => lang === "zh"
    ? "已发送但等待应答超时，无法确认工单是否已建" : "sent, but no answer came in time: whether the ticket exists is unknown"],
];
// The case API's refusals (bridge/ticketing/actions.py, bridge/sla/extension.py,
// bridge/sla/escalation.py, bridge/web/bodies.py), in plain language.
const CASE_REFUSALS = {
  zh: [
    [/^new_deadline must be after the current deadline$/, () => "新期限须晚于当前期限"],
    [/^no such extension request on this case$/, () => "此案件没有这条延期申请"],
    [/^no such inquiry$/, () => "没有这条诉求"],
    [/^the case has no deadline to extend$/, () => "此案件没有可延长的期限"],
    [/^the case has no ticket to supervise yet$/, () => "此案件尚未建单，无法督办"],
    [/^the case has no ticket yet/, () => "此案件尚未建单"],
    [/^the case is already escalated in this handling cycle$/, () => "本轮办理中已督办过"],
    [/^the case is already returned and waits in the triage review$/, () => "此案件已退单，正在等待核对分派"],
    [/^the case's ticket is not recorded$/, () => "没有此案件的工单记录"],
    [/^the deadline has passed: an extension is asked before it$/, () => "期限已过：延期须在期限之前申请"],
    [/^the old deadline has passed: too late to approve$/, () => "原期限已过，不能再批准延期"],
    [/^the request was (already )?decided/, () => "该申请已被处理"],
    [/^the ticket's create command was not kept$/, () => "建单指令未保存，无法转派"],
    [/^the case is already with (.+)$/, () => "案件已在该部门"],
    [/^the ticket is (\w+): nothing to (extend|supervise)$/, (m) => `工单${statusName(m[1])}，无需${m[2] === "extend" ? "延期" : "督办"}`],
    [/^unknown department/, () => "没有这个部门"],
    [/^reason must say why/, () => "请填写理由（1–500字）"],
    [/^text must be the note/, () => "请填写备注（1–2000字）"],
    [/^new_deadline must be an ISO 8601 time/, () => "请填写新期限"],
  ],
};
function refusalText(message) {
  for (const [pattern, say] of CASE_REFUSALS[lang] || []) {
    const m = String(message).match(pattern);
    if (m) return say(m);
  }
  return message;
}
function reasonText(reason) {
  if (!reason) return "";
  for (const [pattern, say] of REASONS) {
    const m = String(reason).match(pattern);
    if (m) return say(m);
  }
  return reason;
}
const STAGES = {
  zh: { triage: "分类分派", ticketing: "建单", reply: "回复", outbox: "发送", holding: "暂缓回复", ingest: "接收" },
  en: { triage: "triage", ticketing: "ticketing", reply: "reply", outbox: "outbox", holding: "holding replies", ingest: "ingest" },
};
const stageName = (s) => (STAGES[lang] || STAGES.zh)[s] || s;
const FIELDS = {
  zh: { "auth.bearer": "访问令牌", api_key: "接口密钥", token: "访问令牌", password: "密码", secret: "签名密钥",
    callback_secret: "回调签名密钥" },
  en: { "auth.bearer": "bearer token", api_key: "API key", token: "token", password: "password", secret: "signing secret",
    callback_secret: "callback signing secret" },
};
const fieldName = (f) => (FIELDS[lang] || FIELDS.zh)[f] || f;
const KINDS = {
  zh: { mention: "提及", comment: "评论", dm: "私信", direct: "私信" },
  en: { mention: "mention", comment: "comment", dm: "direct message", direct: "direct message" },
};
const adapterName = (a) => ({ open311: "Open311", rest: lang === "zh" ? "REST 接口" : "REST API" })[a] || a;
const kindName = (k) => (KINDS[lang] || KINDS.zh)[k] || k;
function zoneLabel() {
  if (labels.timezone === "Asia/Shanghai") return lang === "zh" ? "北京时间" : "Beijing time";
  return labels.timezone;
}
function when(iso) {
  if (!iso) return "-";
  if (/^\d{4}-\d{2}-\d{2}$/.test(iso)) return iso; // a day, not a moment
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return iso;
  const parts = Object.fromEntries(new Intl.DateTimeFormat("en-GB", {
    timeZone: labels.timezone, year: "numeric", month: "2-digit", day: "2-digit",
    hour: "2-digit", minute: "2-digit", second: "2-digit", hourCycle: "h23",
  }).formatToParts(d).map((p) => [p.type, p.value]));
  return `${parts.year}-${parts.month}-${parts.day} ${parts.hour}:${parts.minute} ${zoneLabel()}`;
}
function span(seconds) { // [number, unit key]
  const s = Math.abs(seconds);
  if (s >= 86400) return [Math.floor(s / 86400), "d"];
  if (s >= 3600) return [Math.floor(s / 3600), "h"];
  return [Math.max(1, Math.floor(s / 60)), "m"];
}
const UNITS = { zh: { d: "天", h: "小时", m: "分钟" }, en: { d: "d", h: "h", m: "min" } };
function ago(iso) {
  if (!iso) return "";
  const seconds = (Date.now() - new Date(iso).getTime()) / 1000;
  if (seconds < 60) return lang === "zh" ? "刚刚" : "just now";
  const [n, u] = span(seconds);
  return lang === "zh" ? `${n}${UNITS.zh[u]}前` : `${n} ${UNITS.en[u]} ago`;
}
function dueIn(seconds) { // "逾期3天" / "2小时后到期"
  const [n, u] = span(seconds);
  if (seconds < 0) return lang === "zh" ? `逾期${n}${UNITS.zh[u]}` : `overdue by ${n} ${UNITS.en[u]}`;
  return lang === "zh" ? `${n}${UNITS.zh[u]}后到期` : `due in ${n} ${UNITS.en[u]}`;
}
async function loadLabels() {
  try { labels = await api("/api/labels"); } catch (e) { /* codes stay shown */ }
}


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
      el("td", {}, `${h.model_category} ${Math.round(h.confidence * 100)}%`, el("div", { className: "muted" }, why),
        h.reason === "flood" ? el("div", { className: "bad" }, t("flood")) : null),
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
    el("td", {}, alertSubject(name)), el("td", { className: a.waiting ? "bad" : "" }, a.waiting),
    el("td", {}, a.oldest_waiting_s ? `${Math.round(a.oldest_waiting_s)} s` : "-"),
    el("td", { className: a.failed ? "bad" : "" }, a.failed), el("td", {}, a.paused || "")));
  show("outbox", table([t("account"), t("waiting"), t("oldest"), t("failed"), t("paused")], rows));
}

// Inquiry search (departments, statuses by name; the handle matched in part) and one
// inquiry's journey at its own address (#/inquiries/<id>).
const SEARCH_STATES = ["routed", "held_for_review", "ignored", "needs_reconciliation"];
let lastResults = [];
function fillSearch() {
  fillSelect("sf-department", Object.keys(labels.departments).map((id) => [id, deptName(id)]));
  fillSelect("sf-status", [...Object.keys(labels.statuses).map((st) => [st, statusName(st)]),
    ...SEARCH_STATES.map((st) => [st, stateName(st)])]);
}

async function search(event) {
  event.preventDefault();
  const params = new URLSearchParams();
  for (const [k, v] of new FormData($("search-form")).entries()) if (String(v).trim()) params.set(k, String(v).trim());
  try {
    const { inquiries, limit } = await api("/api/inquiries?" + params.toString());
    lastResults = inquiries;
    if (!inquiries.length) { show("results", muted(t("none"))); return; }
    const said = inquiries.length >= limit ? t("search.limited") : t("search.count");
    show("results",
      el("p", { role: "status" }, said.replace("{n}", inquiries.length), " ",
        el("button", { type: "button", id: "export-csv" }, t("exportCsv"))),
      table([t("time"), t("handle"), t("department"), t("category"), t("status"), t("ticket"), t("inquiry"), ""],
        inquiries.map((i) => el("tr", {},
          el("td", {}, when(i.created_at)), el("td", {}, maskHandle(i.citizen_handle)), el("td", {}, deptName(i.department)),
          el("td", {}, categoryName(i.category)),
          el("td", {}, i.ticket_status ? statusName(i.ticket_status) : stateName(i.state)),
          el("td", {}, i.ticket_id ? `${deptName(i.department)} ${i.ticket_id}` : "-"),
          el("td", {}, i.public_text || ""),
          el("td", {}, el("a", { href: journeyHref(i.inquiry_id), dataset: { journey: i.inquiry_id } }, t("open")))))));
  } catch (e) { notice("results", e.message); } finally { rendered("search"); }
}

// The results as CSV (UTF-8 with a byte-order mark, so a spreadsheet reads the Chinese).
function exportCsv() {
  const cell = (v) => `"${String(v ?? "").replace(/"/g, '""')}"`;
  const head = [t("time"), t("handle"), t("department"), t("category"), t("status"), t("ticket"), t("inquiry"), "id"];
  const lines = [head, ...lastResults.map((i) => [when(i.created_at), maskHandle(i.citizen_handle), deptName(i.department),
    categoryName(i.category), i.ticket_status ? statusName(i.ticket_status) : stateName(i.state), i.ticket_id || "",
    i.public_text || "", i.inquiry_id])].map((row) => row.map(cell).join(","));
  const blob = new Blob(["\ufeff" + lines.join("\r\n")], { type: "text/csv;charset=utf-8" });
  const link = el("a", { href: URL.createObjectURL(blob), download: "inquiries.csv" });
  document.body.append(link);
  link.click();
  link.remove();
}

const section = (title, ...children) => el("section", { className: "part" }, el("h3", {}, title), ...children);

async function openJourney(id) {
  const j = await api(`/api/inquiries/${encodeURIComponent(id)}`);
  const inq = j.inquiry;
  const how = inq.explanation || {};
  const ticketName = (x) => `${deptName(x.department)} ${t("ticket")} ${x.ticket_id}`;
  const steps = [
    el("li", {}, `${when(inq.created_at)} ${t("received")}: ${accountName(inq.platform, inq.account)} · ${kindName(inq.kind)}`),
    inq.department ? el("li", {}, `${t("routed")}: ${deptName(inq.department)} / ${categoryName(inq.category)} (${detailValue("decided_by", how.decided_by || "conversation")}` +
      (how.confidence !== undefined ? `, ${how.confidence}` : "") + ")",
      (how.evidence || []).length ? el("div", { className: "muted", lang: "zh-CN" }, (how.evidence || []).map((e) => e[0]).join("、")) : null) : null,
    ...(j.tickets || []).filter((x) => !j.ticket || x.ticket_id !== j.ticket.ticket_id || x.department !== j.ticket.department)
      .map((x) => el("li", {}, `${t("earlierTickets")}: ${ticketName(x)} (${statusName(x.status)})`)),
    j.ticket ? el("li", {}, `${t("ticket")}: ${ticketName(j.ticket)} (${statusName(j.ticket.status)})`) : null,
    j.incident ? el("li", {}, `${t("nav.incidents")}: ${j.incident.incident_id} · ${t("role." + j.incident.case.role)}` +
      ` · ${t("size")} ${j.incident.size || 1}` +
      (j.incident.surge_at ? ` · ${t("surgeAt")} ${when(j.incident.surge_at)} · ${t("answerDue")} ${when(j.incident.public_answer_due)}` : "")) : null,
    ...j.events.map((e) => el("li", {}, `${when(e.occurred_at)} ${t("status")}: ${statusName(e.status)} `,
      el("span", { dataset: { verbatim: "" }, title: t("nativeStatus") }, `(${e.native_status})`))),
  ];
  const replies = j.replies.map((r) => el("li", { dataset: { replyState: r.state } },
    `${when(r.created_at)} ${statusName(r.status)}: ${stateName(r.state)}` +
      (r.decided_by ? ` · ${t("decidedBy")} ${actorName(r.decided_by)}` : "") +
      (r.posted_at ? ` · ${t("posted")} ${when(r.posted_at)}` : ""),
    r.posted_text ? el("p", { className: "quote", dataset: { postedText: r.reply_id } }, r.posted_text) : null));
  const conversation = (j.conversation || []).filter((c) => !c.first).map((c) => el("li", {},
    `${when(c.created_at)} ${stateName(c.state)}: `, el("span", {}, c.public_text || "")));
  const extensions = (j.extensions || []).map((x) => el("li", { dataset: { extension: x.extension_id } },
    `${when(x.requested_at)} ${t("requestedBy")} ${actorName(x.requested_by)}: ${t("oldDeadline")} ${when(x.old_deadline)} → ${t("newDeadline")} ${when(x.new_deadline)} · ${x.reason} · ${t("ext." + x.state)}` +
      (x.decided_by ? ` · ${t("decidedBy")} ${actorName(x.decided_by)}` : ""),
    x.state === "pending" && me.may.approve ? el("span", {}, " ",
      el("button", { type: "button", className: "primary", dataset: { extDecide: x.extension_id, approve: "1" } }, t("approveExt")),
      el("button", { type: "button", dataset: { extDecide: x.extension_id, approve: "0" } }, t("refuseExt"))) : null));
  const notes = (j.notes || []).map((n) => el("li", {}, `${when(n.created_at)} ${n.author}: `, el("span", {}, n.text)));
  const trail = table([t("time"), t("action"), t("actor"), t("detail")], j.audit.map((a) => el("tr", {},
    el("td", {}, when(a.at)), el("td", {}, actionName(a.action)), el("td", {}, actorName(a.actor)),
    el("td", {}, detailText(a.detail)))), t("audit.title"));
  show("journey", el("article", { className: "journey", tabIndex: -1, id: "journey-view", dataset: { inquiry: inq.inquiry_id } },
    el("h3", {}, `${t("inquiry")} ${inq.inquiry_id}`),
    el("p", { className: "muted" }, `${t("citizen")} ${maskHandle(inq.citizen_handle)} · ${accountName(inq.platform, inq.account)}` +
      (j.ticket ? ` · ${ticketName(j.ticket)} · ${statusName(j.ticket.status)}` : "")),
    el("p", { className: "quote" }, inq.public_text || ""),
    conversation.length ? section(t("conversation"), el("ol", {}, ...conversation)) : null,
    el("ol", {}, ...steps),
    section(t("repliesPosted"), replies.length ? el("ol", {}, ...replies) : muted(t("none"))),
    extensions.length ? section(t("extensions"), el("ol", {}, ...extensions)) : null,
    section(t("notes"), notes.length ? el("ol", {}, ...notes) : muted(t("none"))),
    me.may.approve ? caseActions(inq, j) : null,
    trail));
  $("journey-view").focus();
}

// The case actions an operator's role allows (approver: 转派, 退单, 延期, notes, deciding an
// extension; admin also 督办), each a small form calling the case API.
function caseActions(inq, j) {
  const reason = (action) => el("label", {}, t("actionReason") + " ",
    el("input", { name: "reason", required: true, id: `ca-${action}-reason`, size: 24 }));
  const form = (action, label, ...fields) => el("form", { className: "filters", dataset: { caseAction: action } },
    ...fields, el("button", { type: "submit" }, label));
  const others = Object.keys(labels.departments).filter((d) => d !== (j.ticket || inq).department);
  const parts = [
    j.ticket && others.length ? form("reroute", t("reroute"),
      el("label", {}, t("rerouteTo") + " ", el("select", { name: "department", id: "ca-reroute-department" },
        ...others.map((d) => el("option", { value: d }, deptName(d))))), reason("reroute")) : null,
    j.ticket ? form("return", t("returnCase"), reason("return")) : null,
    j.ticket ? form("extension", t("requestExtension"),
      el("label", {}, lang === "zh" ? `${t("newDeadline")}（${zoneLabel()}）` : `${t("newDeadline")} (${zoneLabel()}) `,
        el("input", { name: "new_deadline", type: "datetime-local", required: true, id: "ca-extension-deadline" })),
      reason("extension")) : null,
    me.may.admin && j.ticket ? form("escalate", t("escalate"), reason("escalate")) : null,
    form("note", t("addNote"), el("label", {}, t("noteText") + " ",
      el("textarea", { name: "text", required: true, id: "ca-note-text", rows: 2 }))),
  ];
  return section(t("caseActions"), ...parts, el("p", { id: "case-result", role: "status" }));
}

// "2026-12-20T18:00" typed in the configured zone, with that zone's offset.
function zoned(local) {
  const probe = new Date(local + "Z");
  const parts = Object.fromEntries(new Intl.DateTimeFormat("en-GB", { timeZone: labels.timezone, hourCycle: "h23",
    year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit" })
    .formatToParts(probe).map((p) => [p.type, p.value]));
  const shown = Date.UTC(+parts.year, +parts.month - 1, +parts.day, +parts.hour, +parts.minute);
  const offset = Math.round((shown - probe.getTime()) / 60000);
  const sign = offset < 0 ? "-" : "+";
  const hh = String(Math.floor(Math.abs(offset) / 60)).padStart(2, "0"), mm = String(Math.abs(offset) % 60).padStart(2, "0");
  return `${local.length === 16 ? local + ":00" : local}${sign}${hh}:${mm}`;
}

const CASE_CALLS = {
  reroute: (id, f) => [`/api/cases/${id}/reroute`, { department: f.department.value, reason: f.reason.value }],
  return: (id, f) => [`/api/cases/${id}/return`, { reason: f.reason.value }],
  extension: (id, f) => [`/api/cases/${id}/extension`, { new_deadline: zoned(f.new_deadline.value), reason: f.reason.value }],
  escalate: (id, f) => [`/api/escalations/${id}`, { reason: f.reason.value }],
  note: (id, f) => [`/api/cases/${id}/notes`, { text: f.text.value }],
};

async function caseAction(event) {
  const f = event.target.closest("form[data-case-action]");
  if (!f) return;
  event.preventDefault();
  const id = $("journey-view").dataset.inquiry;
  const action = f.dataset.caseAction;
  const label = f.querySelector("button[type=submit]").textContent;
  const [path, body] = CASE_CALLS[action](encodeURIComponent(id), f.elements);
  await actOnCase(id, path, body, label);
}

async function decideExtension(button) {
  const id = $("journey-view").dataset.inquiry;
  await actOnCase(id, `/api/cases/${encodeURIComponent(id)}/extension/${encodeURIComponent(button.dataset.extDecide)}`,
    { approve: button.dataset.approve === "1" }, button.textContent);
}

async function actOnCase(id, path, body, label) {
  try {
    await api(path, { method: "POST", body: JSON.stringify(body) });
    await openJourney(id);
    $("case-result").className = "ok";
    $("case-result").textContent = t("actionDone") + label;
  } catch (e) {
    $("case-result").className = "bad";
    $("case-result").textContent = `${label}${lang === "zh" ? "：" : ": "}${refusalText(e.message)}`;
  } finally { rendered("case-action"); }
}

// Overdue and at risk, from the SLA clocks: paged, filtered, most overdue first, each linked to
// its journey; red past the deadline, amber within the warning time.
const OVERDUE = { offset: 0, limit: 50 };
async function loadOverdue() {
  fillSelect("od-department", Object.keys(labels.departments).map((id) => [id, deptName(id)]));
  fillSelect("od-kind", [["overdue", t("kind.overdue")], ["at_risk", t("kind.at_risk")]]);
  const params = new URLSearchParams();
  for (const [key, value] of new FormData($("overdue-filters"))) if (value) params.set(key, value);
  params.set("limit", OVERDUE.limit);
  params.set("offset", OVERDUE.offset);
  const r = await api("/api/overdue?" + params);
  const first = r.total ? OVERDUE.offset + 1 : 0, last = OVERDUE.offset + r.tickets.length;
  $("overdue-count").textContent = lang === "zh"
    ? `已逾期 ${r.overdue} 件，临期 ${r.at_risk} 件；符合条件 ${r.total} 件，当前第 ${first}–${last} 件（最紧急的在前）`
    : `${r.overdue} overdue, ${r.at_risk} at risk; ${r.total} match, showing ${first}–${last}, most urgent first`;
  const pages = Math.max(1, Math.ceil(r.total / OVERDUE.limit));
  $("overdue-page").textContent = lang === "zh" ? `第 ${Math.floor(OVERDUE.offset / OVERDUE.limit) + 1} / ${pages} 页`
    : `Page ${Math.floor(OVERDUE.offset / OVERDUE.limit) + 1} of ${pages}`;
  $("overdue-prev").disabled = OVERDUE.offset === 0;
  $("overdue-next").disabled = last >= r.total;
  if (!r.tickets.length) { show("overdue", muted(t("none"))); return; }
  show("overdue", table([t("clock"), t("department"), t("ticket"), t("category"), t("status"), t("deadline"), t("left"), ""],
    r.tickets.map((x) => el("tr", { dataset: { ticket: x.ticket_id } },
      el("td", { className: x.overdue ? "bad" : "warn" }, (x.overdue ? "● " : "◐ ") + t(x.overdue ? "kind.overdue" : "kind.at_risk")),
      el("td", {}, deptName(x.department, x.department_name)), el("td", {}, x.ticket_id), el("td", {}, categoryName(x.category)),
      el("td", {}, statusName(x.status)), el("td", {}, when(x.deadline)), el("td", {}, dueIn(x.seconds_left)),
      el("td", {}, el("a", { href: journeyHref(x.inquiry_id), dataset: { journey: x.inquiry_id } }, t("open")))))));
}

// Surges (size, growth, places, the 舆情 clock) and one incident's cases: split, merge.
async function loadIncidents() {
  const { surges } = await api("/api/incidents");
  if (!surges.length) { show("incidents", muted(t("none"))); return; }
  show("incidents", table([t("department"), t("category"), t("size"), t("growth"), t("places"), t("surgeAt"),
    t("answerDue"), ""], surges.map((x) => el("tr", {},
      el("td", {}, deptName(x.department)), el("td", {}, categoryName(x.category)), el("td", {}, x.size), el("td", {}, x.growth_per_hour),
      el("td", { lang: "zh-CN" }, x.places.join(" ")), el("td", {}, when(x.surge_at)),
      x.public_answer_at
        ? el("td", { className: "ok" }, `${when(x.public_answer_due)} · ${t("answeredAt")} ${when(x.public_answer_at)}`)
        : el("td", { className: x.overdue ? "bad" : "warn" }, when(x.public_answer_due) + (x.overdue ? ` (${t("overdue")})` : "")),
      el("td", {}, el("button", { type: "button", dataset: { incident: x.incident_id } }, t("cases")))))));
}

async function openIncident(id) {
  try {
    const x = await api(`/api/incidents/${encodeURIComponent(id)}`);
    const rows = x.cases.map((c) => el("tr", {},
      el("td", {}, el("button", { type: "button", dataset: { journey: c.inquiry_id } }, c.inquiry_id)),
      el("td", {}, t("role." + c.role)), el("td", {}, c.ticket_id || ""), el("td", {}, when(c.written_at)),
      el("td", {}, c.role === "lead" ? "" : el("button", { type: "button", className: "admin",
        dataset: { split: c.inquiry_id, incident: x.incident_id } }, t("split")))));
    show("incident", el("div", {},
      el("h3", {}, `${x.incident_id} · ${x.size} · ${t("tickets")} ${x.tickets}`),
      table([t("inquiry"), t("caseRole"), t("ticket"), t("time"), ""], rows),
      x.surge_at && !x.public_answer_at ? el("p", {}, el("button", { type: "button", className: "admin",
        dataset: { answered: x.incident_id } }, t("answered"))) : null,
      x.public_answer_at ? el("p", { className: "ok" }, `${t("answeredAt")} ${when(x.public_answer_at)} · ${x.public_answer_by}`) : null,
      el("p", {}, el("label", { htmlFor: "merge-other" }, t("mergeInto") + " "),
        el("input", { id: "merge-other", size: 30 }), " ",
        el("button", { type: "button", className: "admin", dataset: { mergeInto: x.incident_id } }, t("mergeIncident")))));
  } catch (e) { notice("incident", e.message); }
}

async function splitCase(button) {
  const { split, incident } = button.dataset;
  try {
    await api(`/api/incidents/${encodeURIComponent(incident)}/split`, {
      method: "POST", body: JSON.stringify({ inquiry_id: split }) });
    await openIncident(incident);
  } catch (e) { notice("incident", e.message); }
}

async function answerIncident(button) {
  const id = button.dataset.answered;
  try {
    await api(`/api/incidents/${encodeURIComponent(id)}/answered`, { method: "POST", body: "{}" });
    await Promise.all([openIncident(id), loadIncidents()]);
  } catch (e) { notice("incident", e.message); }
}

async function mergeIncident(button) {
  const into = button.dataset.mergeInto;
  const other = $("merge-other").value.trim();
  try {
    await api(`/api/incidents/${encodeURIComponent(into)}/merge`, {
      method: "POST", body: JSON.stringify({ incident_id: other }) });
    await Promise.all([openIncident(into), loadIncidents()]);
  } catch (e) { notice("incident", e.message); }
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
      el("td", {}, stageName(d.stage)), el("td", {}, when(d.failed_at)), el("td", {}, d.attempts),
      el("td", {}, reasonText(d.reason)), el("td", {}, detailText(d.ids, "; ")),
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
    el("td", {}, deptName(r.department)), el("td", {}, r.reference), el("td", {}, reasonText(r.detail || "")),
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

// Accounts: health, alerts, what waits, paused state, token replacement; then each
// department's ticket system: state, alerts, last success per operation, held commands, key
// replacement and "retry now".
async function loadAccounts() {
  const { accounts, ticket_systems: systems } = await api("/api/accounts");
  show("accounts", table([t("account"), t("department"), t("health"), t("quota"), t("waiting"), t("failed"), t("paused"), t("token")],
    accounts.map((a) => {
      const key = `${a.adapter}-${a.handle}`;
      const out = a.outbox || {};
      return el("tr", {},
        el("td", {}, accountName(a.platform, a.handle)), el("td", {}, deptName(a.department)),
        el("td", { className: a.healthy ? "ok" : "bad" }, a.healthy ? t("healthy") : a.alerts.map((x) => x.reason).join("; ")),
        el("td", {}, a.quota ? `${a.quota.used} / ${a.quota.max_calls} (${Math.round(a.quota.period_s / 60)} min)` : "-"),
        el("td", {}, out.waiting ?? "-"), el("td", {}, out.failed ?? "-"), el("td", {}, out.paused || ""),
        el("td", {}, el("label", { htmlFor: "tok-" + key, className: "sr" }, t("token")),
          el("input", { id: "tok-" + key, type: "password", size: 12, autocomplete: "off" }),
          el("button", { type: "button", className: "admin", dataset: { tokenAdapter: a.adapter, tokenHandle: a.handle } },
            t("replaceToken"))));
    })),
    el("h3", { id: "h-ticket-systems" }, t("ticketSystems.title")),
    ticketSystemsTable(systems || []));
}

function ticketSystemsTable(systems) {
  const ops = (obj) => Object.entries(obj || {}).filter(([, at]) => at)
    .map(([op, at]) => `${t("op." + op)} ${when(at)}`).join("; ") || "-";
  return table([t("department"), t("system"), t("state"), t("alerts"), t("lastSuccess"), t("held"), t("newKey"), ""],
    systems.map((s) => el("tr", { dataset: { ticketSystem: s.department } },
      el("td", {}, deptName(s.department, s.name)), el("td", {}, adapterName(s.adapter)),
      el("td", { className: s.state === "ok" ? "ok" : "bad" }, t("state." + s.state)),
      el("td", {}, s.alerts.map((a) => `${t("op." + (a.operation || ""))}: ${a.reason}`).join("; ") || "-"),
      el("td", {}, ops(s.last_success)),
      el("td", { className: s.held ? "bad" : "" }, s.held),
      el("td", {}, ...s.credential_fields.map((f) => el("span", {},
        el("label", { htmlFor: `tsk-${s.department}-${f}`, className: "sr" }, `${t("newKey")} ${fieldName(f)}`),
        el("input", { id: `tsk-${s.department}-${f}`, type: "password", size: 12, autocomplete: "off",
          placeholder: fieldName(f), dataset: { field: f } }))),
        el("button", { type: "button", className: "admin", dataset: { tsKey: s.department } }, t("replaceKey"))),
      el("td", {}, el("button", { type: "button", className: "admin", dataset: { tsRetry: s.department } },
        t("retryNow"))))));
}

async function replaceTicketSystemKey(button) {
  const dept = button.dataset.tsKey;
  const inputs = [...button.closest("td").querySelectorAll("input[data-field]")].filter((i) => i.value);
  const body = Object.fromEntries(inputs.map((i) => [i.dataset.field, i.value]));
  try {
    await api(`/api/ticket-systems/${encodeURIComponent(dept)}/credentials`, {
      method: "PUT", body: JSON.stringify(body) });
    inputs.forEach((i) => { i.value = ""; });
    await loadAccounts();
  } catch (e) { notice("accounts", e.message); }
}

async function retryTicketSystem(button) {
  const dept = button.dataset.tsRetry;
  try {
    const r = await api(`/api/ticket-systems/${encodeURIComponent(dept)}/retry`, { method: "POST", body: "{}" });
    await loadAccounts();
    $("accounts").prepend(el("p", { className: "ok", role: "status" }, `${dept}: ${r.released} ${t("released")}`));
  } catch (e) { notice("accounts", e.message); }
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
  const { departments, until } = await api("/api/report?since=" + encodeURIComponent($("period").value));
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
  show("dashboard", el("p", { className: "muted", id: "dashboard-as-of" }, `${t("asOf")} ${when(until)}`),
    table([t("department"), t("inquiries"), t("tickets"), t("resolved"), t("inTime"),
      t("firstReply"), t("resolution"), t("overdue"), t("atRisk"), t("awaiting")], rows), ...charts);
}

// Monthly ranking: each department's rates, score and rank in the chosen month, and its score
// over the last 12 months (a line; no point where a month had nothing to score).
function trend(points, label) {
  const width = 240, height = 56, left = 4, top = 6, plot = height - 2 * top;
  const slot = (width - 2 * left) / Math.max(1, points.length - 1);
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.setAttribute("width", width);
  svg.setAttribute("height", height);
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", label);
  const add = (tag, attrs) => {
    const node = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
    svg.append(node);
    return node;
  };
  add("line", { x1: left, y1: top + plot, x2: width - left, y2: top + plot, stroke: "#ccc" });
  const xy = (p, n) => [left + n * slot, top + plot - (plot * p.score) / 100];
  let run = [];
  const flush = () => {
    if (run.length > 1) add("polyline", { points: run.join(" "), fill: "none", stroke: "#163a6b", "stroke-width": 2 });
    run = [];
  };
  points.forEach((p, n) => {
    if (p.score == null) { flush(); return; }
    const [x, y] = xy(p, n);
    run.push(`${x.toFixed(1)},${y.toFixed(1)}`);
    const dot = add("circle", { cx: x, cy: y, r: 3, fill: "#163a6b", class: "score" });
    const title = document.createElementNS(SVG, "title");
    title.textContent = `${p.label} ${p.score.toFixed(2)}`;
    dot.append(title);
  });
  flush();
  return svg;
}

let ranking = null;

async function loadRanking() {
  ranking = await api("/api/ranking");
  const select = $("rank-month"), last = ranking.months.length - 1;
  const chosen = select.value === "" ? last - 1 : Number(select.value);
  select.replaceChildren(...ranking.months.map((m, n) => el("option", { value: String(n), selected: n === chosen },
    m.period.label + (n === last ? t("soFar") : ""))));
  showRanking();
}

function showRanking() {
  if (!ranking) return;
  const months = ranking.months, month = months[Number($("rank-month").value)];
  const pct = (v) => (v == null ? "-" : (v * 100).toFixed(1) + "%");
  const w = ranking.weights;
  const terms = [["response", "responseRate"], ["resolution", "resolutionRate"], ["satisfaction", "satisfactionRate"],
    ["on_time", "onTimeRate"]].filter(([k]) => w[k]).map(([k, label]) => `${w[k]} ${t(label)}`);
  const rows = month.departments.map((d) => el("tr", {},
    el("td", {}, d.rank == null ? "-" : String(d.rank)), el("td", {}, d.name),
    el("td", {}, pct(d.response_rate)), el("td", {}, pct(d.resolution_rate)),
    el("td", {}, pct(d.satisfaction_rate)), el("td", {}, pct(d.on_time_rate)),
    el("td", {}, d.score == null ? "-" : d.score.toFixed(2)),
    el("td", {}, trend(months.map((m) => ({ label: m.period.label,
      score: (m.departments.find((x) => x.key === d.key) || {}).score })), `${d.name} ${t("trend")}`))));
  show("ranking", el("p", { className: "muted" }, `${t("formula")} ${terms.join(" + ")}${t("example")}`),
    el("p", { className: "muted", id: "rank-as-of" }, `${t("asOf")} ${when(month.as_of || ranking.at)}`),
    table([t("rank"), t("department"), t("responseRate"), t("resolutionRate"), t("satisfactionRate"),
      t("onTimeRate"), t("score"), t("trend")], rows));
}

// Account inspection (巡检): each account's last own post, answers, backlog and flags.
async function loadInspection() {
  const { accounts, at } = await api("/api/inspection");
  const human = (s) => (s == null ? "-" : s < 120 ? `${Math.round(s)} s` : s < 7200 ? `${Math.round(s / 60)} min` : `${(s / 3600).toFixed(1)} h`);
  const rows = accounts.map((a) => {
    const post = a.last_post_source === "unknown" ? `${t("unknown")} (${a.timeline_error || ""})`
      : a.days_since_post == null ? t("never") : `${a.days_since_post.toFixed(1)} ${t("days")}`;
    const flags = a.flags.length ? a.flags.map((f) => el("strong", { className: "bad" }, t(f) + " ")) : [el("span", { className: "ok" }, t("ok"))];
    return el("tr", {},
      el("td", {}, alertSubject(a.account)), el("td", {}, deptName(a.department)),
      el("td", {}, post, a.last_post_source === "replies" ? el("div", { className: "muted" }, t("viaReplies")) : null),
      el("td", {}, a.received), el("td", {}, a.answered),
      el("td", { className: a.unanswered ? "bad" : "" }, a.unanswered),
      el("td", { className: a.backlog ? "warn" : "" }, `${a.backlog} (${a.awaiting_approval}/${a.waiting_to_post})`),
      el("td", {}, a.answer_rate == null ? "-" : Math.round(a.answer_rate * 100) + "%"),
      el("td", {}, human(a.median_first_response_s)), el("td", {}, ...flags));
  });
  show("inspection", el("p", { className: "muted", id: "inspection-as-of" }, `${t("asOf")} ${when(at)}`),
    table([t("account"), t("department"), t("lastPost"), t("inquiries"), t("answered"),
      t("unanswered"), t("backlog"), t("answerRate"), t("medianFirst"), t("flags")], rows));
}

async function loadAudit() {
  const { records } = await api("/api/audit?limit=200");
  show("audit", table(["#", t("time"), t("action"), t("actor"), t("inquiry"), t("detail")], records.map((r) => el("tr", {},
    el("td", {}, r.seq), el("td", {}, when(r.at)), el("td", {}, actionName(r.action)), el("td", {}, actorName(r.actor)),
    el("td", {}, r.inquiry_id || r.subject || ""),
    el("td", {}, detailText(r.detail))))));
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
  $("rank-month").addEventListener("change", showRanking);
  // One listener per list for its buttons, present and future: no handler built from data.
  delegate("approvals", "button[data-decision]", decide);
  delegate("approvals", "button[data-refresh-approvals]", () => loadApprovals());
  $("approval-filters").addEventListener("submit", (event) => {
    event.preventDefault();
    QUEUE.offset = 0;
    loadApprovals(0).catch((e) => notice("approvals", e.message));
  });
  $("approval-prev").addEventListener("click", () => {
    QUEUE.offset = Math.max(0, QUEUE.offset - QUEUE.limit);
    loadApprovals(0).catch((e) => notice("approvals", e.message));
  });
  $("approval-next").addEventListener("click", () => {
    QUEUE.offset += QUEUE.limit;
    loadApprovals(0).catch((e) => notice("approvals", e.message));
  });
  $("approval-select-all").addEventListener("change", (event) => {
    for (const box of document.querySelectorAll("#approvals input[data-pick]:not(:disabled)")) box.checked = event.target.checked;
  });
  $("approval-bulk-approve").addEventListener("click", () => bulkApprove().catch((e) => { $("approval-result").textContent = e.message; }));
  document.addEventListener("keydown", queueKeys);
  $("approvals").addEventListener("focusin", editingStarted);
  $("approvals").addEventListener("focusout", editingEnded);
  delegate("review", "button[data-review-id]", checkCategory);
  delegate("results", "#export-csv", exportCsv);
  $("journey").addEventListener("submit", (event) => { caseAction(event).catch(() => {}); });
  delegate("journey", "button[data-ext-decide]", decideExtension);
  $("overdue-filters").addEventListener("submit", (event) => {
    event.preventDefault();
    OVERDUE.offset = 0;
    loadOverdue().catch((e) => notice("overdue", e.message)).finally(() => rendered("overdue"));
  });
  $("overdue-prev").addEventListener("click", () => {
    OVERDUE.offset = Math.max(0, OVERDUE.offset - OVERDUE.limit);
    loadOverdue().catch((e) => notice("overdue", e.message)).finally(() => rendered("overdue"));
  });
  $("overdue-next").addEventListener("click", () => {
    OVERDUE.offset += OVERDUE.limit;
    loadOverdue().catch((e) => notice("overdue", e.message)).finally(() => rendered("overdue"));
  });
  delegate("incidents", "button[data-incident]", (b) => openIncident(b.dataset.incident));
  delegate("incident", "button[data-split]", splitCase);
  delegate("incident", "button[data-merge-into]", mergeIncident);
  delegate("incident", "button[data-answered]", answerIncident);
  delegate("incident", "button[data-journey]", (b) => { location.hash = journeyHref(b.dataset.journey); });
  delegate("dead-letters", "button[data-dlq-action]", actOnDeadLetter);
  delegate("reconciliation", "button[data-reconcile]", reconcile);
  delegate("accounts", "button[data-token-adapter]", replaceToken);
  delegate("accounts", "button[data-ts-key]", replaceTicketSystemKey);
  delegate("accounts", "button[data-ts-retry]", retryTicketSystem);
  window.addEventListener("hashchange", route);
  loadReady().catch(() => {});
  setInterval(() => loadReady().catch(() => {}), 5000);
  try {
    me = await api("/api/session");
    signedIn();
  } catch (e) { signedOut(); }
});
