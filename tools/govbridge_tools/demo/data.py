"""The demo's data: the scripted citizens' inquiries (with personal data the bridge must keep
out of public replies and logs) and the bridge's config over the in-process simulators."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bridge.privacy import pii
from govbridge_tools.kit import amqp_url
from govbridge_tools.simulators import open311 as open311_sim
from govbridge_tools.simulators import rest as rest_sim

ADMIN_TOKEN = "demo-admin-token"
CALLBACK_SECRET = "demo-callback-secret"
WEBHOOK_SECRET = "demo-webhook-secret"


@dataclass
class Scripted:
    channel: str  # weibo-jt | weibo-cg | mastodon | hotline
    kind: str  # comment | mention | dm | push
    citizen: str
    text: str
    follow_up_of: int | None = None  # the same citizen answers their earlier item
    duplicate_of: int | None = None  # the platform delivers the same item again


def id_number() -> str:
    body = "11010519491231002"
    return body + pii.id_check_char(body)


SCRIPT: list[Scripted] = [
    # 市交通委 — Weibo @北京交通
    Scripted(
        "weibo-jt",
        "comment",
        "早高峰打工人",
        "地铁10号线早高峰太挤了，国贸站根本上不去，能不能加开班次？",
    ),
    Scripted("weibo-jt", "comment", "学生小王", "请问公交卡学生优惠在哪里办理？需要带什么材料？"),
    Scripted(
        "weibo-jt",
        "mention",
        "朝阳居民老李",
        "朝阳路公交站的站牌被车撞倒好几天了，一直没人管，太危险了",
    ),
    Scripted(
        "weibo-jt",
        "comment",
        "早高峰打工人",
        "补充一下：7点到8点半最挤，站台上全是人，希望尽快解决",
        follow_up_of=0,
    ),
    Scripted(
        "weibo-jt",
        "comment",
        "被拒载的乘客",
        "投诉出租车拒载，车牌京B12345，在西直门，我的电话13812345678，请回电",
    ),
    Scripted("weibo-jt", "comment", "路人", "谢谢"),
    Scripted("weibo-jt", "comment", "推广号", "加微信 fp8888 代开发票，兼职日结，刷单返利"),
    Scripted(
        "weibo-jt",
        "comment",
        "感动的乘客",
        "表扬一下302路公交司机，今天帮一位老人把行李搬上车，很暖心👍",
    ),
    # 市城管委 — Weibo @北京城管
    Scripted(
        "weibo-cg",
        "comment",
        "小区业主",
        "小区门口占道经营，晚上烧烤油烟很大，投诉好几次了，希望彻底整治",
    ),
    Scripted(
        "weibo-cg", "comment", "着急的居民", "求助：楼下垃圾桶三天没人清运了，臭气熏天，怎么办"
    ),
    Scripted(
        "weibo-cg",
        "mention",
        "失眠的人",
        "举报：某工地夜间施工到凌晨两点，严重扰民，没有夜间施工许可",
    ),
    Scripted(
        "weibo-cg",
        "comment",
        "个体户张女士",
        f"我的身份证号{id_number()}，办理门前三包登记一直不通过，想咨询一下需要什么材料",
    ),
    Scripted("weibo-cg", "comment", "表情包", "👍👍👍"),
    Scripted("weibo-cg", "comment", "遛弯的大爷", "建议在公园里多设几个公共厕所，老人孩子不方便"),
    Scripted("weibo-cg", "comment", "骑车上班族", "公交站旁边的共享单车乱停乱放，把盲道都挡住了"),
    # 市生态环境局 — Mastodon
    Scripted("mastodon", "mention", "river_watch", "河边有工厂偷排污水，水都变黑了，请来查一查"),
    Scripted(
        "mastodon",
        "dm",
        "near_plant",
        "我家附近垃圾焚烧厂气味很重，想咨询一下排放监测数据在哪里公开？",
    ),
    Scripted(
        "mastodon", "mention", "green_citizen", "建议在城区增加空气质量监测点，并公开实时数据"
    ),
    Scripted(
        "mastodon", "dm", "sleepless", "楼下商铺音响每天开到晚上11点，噪音扰民，我电话13987654321"
    ),
    Scripted(
        "mastodon", "mention", "river_watch", "补充：位置在小清河大桥下游200米左右", follow_up_of=15
    ),
    Scripted("mastodon", "mention", "thankful", "感谢环保局上次及时处理了噪音问题，点赞！"),
    # 12345 app pushing by webhook — routed to 市城管委
    Scripted(
        "hotline", "push", "hotline-user-1", "小区北门路灯坏了一个星期，晚上很黑，求助尽快维修"
    ),
    Scripted("hotline", "push", "hotline-user-1", "", duplicate_of=21),
]


def build_config(sims: dict[str, Any], exchange: str, store_url: str) -> dict[str, Any]:
    open311_common = {"poll": "500ms", "poll_overlap": "5m"}
    return {
        "broker": {
            "url": amqp_url(),
            "exchange": exchange,
            "retry_delays": ["1s", "3s", "10s"],
            "prefetch": 16,
        },
        "store": {"url": store_url},
        "http": {"listen": "127.0.0.1:0", "admin_token": ADMIN_TOKEN},
        "departments": [
            {
                "id": "transport",
                "name": "市交通委",
                "approval": "templated-auto",
                "sla": {
                    "consultation": "2wd",
                    "help": "10wd",
                    "complaint": "15wd",
                    "report": "15wd",
                    "suggestion": "10wd",
                    "praise": "10wd",
                    "other": "10wd",
                },
                "ticketing": {
                    **open311_sim.demo_ticketing_config(sims["open311"].base_url),
                    **open311_common,
                },
            },
            {
                "id": "urban",
                "name": "市城管委",
                "approval": "none",
                "sla": {
                    "consultation": "2wd",
                    "help": "3wd",
                    "complaint": "13wd",
                    "report": "13wd",
                    "suggestion": "13wd",
                    "other": "10wd",
                },
                "ticketing": {
                    **rest_sim.demo_ticketing_config(sims["rest"].url),
                    "poll": "0s",
                    "callback_secret": CALLBACK_SECRET,
                },
            },
            {
                "id": "environment",
                "name": "市生态环境局",
                "approval": "all-manual",
                "sla": {
                    "consultation": "2wd",
                    "complaint": "15wd",
                    "report": "15wd",
                    "suggestion": "10wd",
                    "praise": "10wd",
                    "other": "10wd",
                },
                "ticketing": {
                    **open311_sim.demo_ticketing_config(sims["open311_xml"].base_url),
                    **open311_common,
                    "format": "xml",
                },
            },
        ],
        "accounts": [
            {
                "adapter": "weibo",
                "handle": "北京交通",
                "department": "transport",
                "token": sims["weibo-jt"].token,
                "base_url": sims["weibo-jt-url"] + "/2/",
                "poll": "500ms",
            },
            {
                "adapter": "weibo",
                "handle": "北京城管",
                "department": "urban",
                "token": sims["weibo-cg"].token,
                "base_url": sims["weibo-cg-url"] + "/2/",
                "poll": "500ms",
            },
            {**sims["mastodon"].account_config("environment"), "poll": "500ms"},
            {
                "adapter": "webhook",
                "handle": "hotline12345",
                "department": "urban",
                "secret": WEBHOOK_SECRET,
                "reply_url": sims["hotline"].url + "/replies",
                "platform": "hotline12345",
            },
        ],
        "routes": [
            {"keywords": ["地铁", "公交", "出租车", "站牌"], "department": "transport"},
        ],
    }
