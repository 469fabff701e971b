"""Reply texts: zh-CN defaults per ticket status, overridable per department."""

from __future__ import annotations

from schemas.config import DepartmentConfig
from schemas.vocab import Category, TicketStatus

DEFAULT_TEMPLATES: dict[str, str] = {
    "received": "您好，您反映的问题已受理，工单号{ticket_id}，{department}将在{deadline}前答复。",
    "referred": "您好，您反映的问题（工单号{ticket_id}）已转交承办单位办理。",
    "in_progress": "您好，工单{ticket_id}正在办理中，我们会及时告知进展。",
    "resolved": "您好，工单{ticket_id}已办结。感谢您的监督，如有疑问请继续留言。",
    "rejected": "您好，经核实，工单{ticket_id}不属于{department}受理范围，建议您向相关部门反映。",
    "returned": "您好，工单{ticket_id}正在重新分派承办单位，我们会尽快处理。",
    "reopened": "您好，工单{ticket_id}已重新办理，我们会再次答复您。",
    "closed": "您好，工单{ticket_id}已关闭。感谢您的反映。",
    # 转派: an operator re-routed the case; {department} is the new department.
    "rerouted": "您好，您反映的问题已转办至{department}办理，新工单号{ticket_id}，"
    "我们会及时告知进展。",
    "note": "{department}答复（工单{ticket_id}）：{note}",
    "extended": "您好，工单{ticket_id}的办理时限已延长至{deadline}，{department}将在此前答复您。",
    "holding": "您好，工单{ticket_id}仍在办理中，{department}将在{deadline}前答复。",
    # The holding acknowledgement of an inquiry still without a ticket before its
    # first-response limit (bridge/sla/acknowledge.py): no number yet; 已受理 brings it.
    "acknowledged": "您好，您的诉求已收到，正在登记转办，办理编号稍后告知。",
    # A follow-up's acknowledgement says what happened to it, and promises handling only
    # where it reached someone who handles it.
    "follow_up": "您好，您补充的内容已补充到工单{ticket_id}，{department}会一并办理。",
    "follow_up_new_request": "您好，您补充的内容已作为新工单{linked_ticket_id}提交，"
    "并关联原工单{ticket_id}，{department}会一并办理。",
    "follow_up_forwarded": "您好，您补充的内容已转交工单{ticket_id}的承办单位，"
    "{department}会一并办理。",
    "follow_up_recorded": "您好，您补充的内容已记录在案（工单{ticket_id}），但暂未能转入办理系统；"
    "如需补充办理，请致电{department}。",
    # An incident's later case appended to the first case's ticket (incidents = "merge"): the
    # citizen's own matter is handled there, and every status change of it answers them too.
    "incident_merged": "您好，您反映的问题已并入工单{ticket_id}（多位市民反映的同一事项），"
    "{department}将统一办理，办理进展会在此告知您。",
    # 回访: the digits mean what bridge/triage/survey.py's MENU reads them as (1 solved and
    # satisfied, 2 solved and basically satisfied, 3 solved but dissatisfied, 4 not solved);
    # a department's own wording keeps them. survey_again is the one re-ask of an unclear answer.
    "survey": "您好，工单{ticket_id}已办结。请问您反映的问题是否已解决？您对办理结果是否满意？"
    "可直接回复数字：1 已解决，满意；2 已解决，基本满意；3 已解决，不满意；4 未解决。"
    "也可以直接留言告诉我们。",
    "survey_again": "您好，抱歉没能看明白您的回复。"
    "工单{ticket_id}反映的问题是否已解决、您是否满意？"
    "请回复一个数字：1 已解决，满意；2 已解决，基本满意；3 已解决，不满意；4 未解决。",
}


def template_for(dept: DepartmentConfig, key: str) -> str:
    return dept.replies.get(key) or DEFAULT_TEMPLATES[key]


def render(
    dept: DepartmentConfig,
    key: str,
    *,
    ticket_id: str,
    status: TicketStatus | None = None,
    deadline: str = "",
    note: str = "",
    category: Category | None = None,
    linked_ticket_id: str = "",
) -> str:
    values = {
        "linked_ticket_id": linked_ticket_id,
        "ticket_id": ticket_id,
        "deadline": deadline,
        "department": dept.name,
        "status": status.label if status else "",
        "note": note,
        "category": category.label if category else "",
    }
    return template_for(dept, key).format_map(values)
