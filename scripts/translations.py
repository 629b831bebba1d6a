"""Refresh the message catalogs: extract strings, update zh (Simplified Chinese) and en, fill known texts.

Usage: python scripts/translations.py   (then `make translations` compiles them)
The zh_CN catalog is the source of truth once written; ZH below only fills empty entries.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from babel.messages.pofile import read_po, write_po

ROOT = Path(__file__).resolve().parent.parent
TRANS = ROOT / "idp" / "translations"

ZH = {
    "The login name or password is wrong.": "登录名或密码错误。",
    "Enter your login name and password.": "请输入登录名和密码。",
    "Unknown department.": "未知的部门。",
    "The department directory is unavailable; try again later.": "部门目录暂时不可用，请稍后再试。",
    "Nothing to consent to.": "没有需要授权的请求。",
    "Unknown service.": "未知的服务。",
    "The passwords do not match.": "两次输入的密码不一致。",
    "Your account": "我的账户",
    "Name": "姓名",
    "Resident ID number": "居民身份证号码",
    "Mobile phone": "手机号码",
    "E-mail": "电子邮箱",
    "Signed in at": "登录时间",
    "Services you are signed in to": "已登录的服务",
    "None yet": "暂无",
    "Sign out everywhere": "在所有服务中退出",
    "Yitong unified sign-in": "一通统一身份认证",
    "Yitong": "一通",
    "Provincial unified identity for government services": "全省政务服务统一身份认证平台",
    "Allow access": "授权访问",
    "Allow %(name)s to use your identity?": "是否允许 %(name)s 使用您的身份信息？",
    "Signed in as %(name)s": "当前登录：%(name)s",
    "Allow": "允许",
    "Deny": "拒绝",
    "Something went wrong": "出错了",
    "Error code": "错误代码",
    "Go to your account": "前往我的账户",
    "Signed out": "已退出",
    "You are signed out": "您已退出登录",
    "You have been signed out of every service that uses Yitong.": "您已从所有使用一通的服务中退出。",
    "Sign in again": "重新登录",
    "Sign in": "登录",
    "to continue to %(name)s": "以继续使用 %(name)s",
    "Account type": "账户类型",
    "Citizen (ID number, phone or e-mail)": "自然人（身份证号、手机号或邮箱）",
    "Staff of %(dept)s": "%(dept)s工作人员",
    "ID number, mobile phone or e-mail": "身份证号、手机号或邮箱",
    "Password": "密码",
    "Staff may also type username@department.": "工作人员也可输入“用户名@部门”。",
    "Cancel": "取消",
    "Create a citizen account": "注册自然人账户",
    "Sign out": "退出",
    "Sign out?": "确认退出？",
    "%(name)s asks to sign you out.": "%(name)s 请求为您退出登录。",
    "You will be signed out of every service that uses Yitong.": "您将从所有使用一通的服务中退出。",
    "Full name": "姓名",
    "Repeat password": "再次输入密码",
    "Create account": "注册",
    "At least 8 characters; a long passphrase is best. Common passwords are refused.": "至少 8 个字符，建议使用较长的口令短语；常见密码将被拒绝。",
    "Continue": "继续",
    "Sign-in security: second factors, password, recent sign-ins": "登录安全：第二因素、密码和最近登录记录",
    # registration and identifier messages (idp/messages.py)
    "name is required (at most 100 characters)": "请填写姓名（最多 100 个字符）",
    "resident ID number must have 18 characters": "居民身份证号码应为 18 位",
    "resident ID number must be 17 digits and a digit or X": "居民身份证号码应为 17 位数字加 1 位数字或 X",
    "resident ID number has an invalid region code": "居民身份证号码的地区码无效",
    "resident ID number has an invalid birth date": "居民身份证号码的出生日期无效",
    "resident ID number has an impossible birth date": "居民身份证号码的出生日期不可能成立",
    "resident ID number check character does not match": "居民身份证号码校验位不正确",
    "phone must be a mainland mobile number (11 digits, 13x-19x)": "请输入中国大陆手机号码（11 位，13x-19x 开头）",
    "e-mail address is not valid": "电子邮箱地址无效",
    "password is too common; choose another": "密码过于常见，请另选一个",
    "password must not contain your name, phone or ID number": "密码不得包含您的姓名、手机号或身份证号",
    "password repeats too few characters": "密码中不同的字符太少",
    "an account with this ID number already exists": "该身份证号码已注册",
    "an account with this phone number already exists": "该手机号码已注册",
    "an account with this e-mail address already exists": "该电子邮箱已注册",
}


def main() -> int:
    pot = TRANS / "messages.pot"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "babel.messages.frontend",
            "extract",
            "-F",
            str(ROOT / "babel.cfg"),
            "-k",
            "_",
            "-k",
            "gettext",
            "-k",
            "N_",
            "-k",
            "lazy_gettext",
            "--no-location",
            "--sort-output",
            "-o",
            str(pot),
            str(ROOT / "idp"),
        ],
        check=True,
    )
    for lang in ("zh", "en"):
        po = TRANS / lang / "LC_MESSAGES" / "messages.po"
        po.parent.mkdir(parents=True, exist_ok=True)
        cmd = "update" if po.exists() else "init"
        args = [
            sys.executable,
            "-m",
            "babel.messages.frontend",
            cmd,
            "-i",
            str(pot),
            "-d",
            str(TRANS),
            "-l",
            lang,
        ]
        if cmd == "update":
            args.append("--no-fuzzy-matching")
        subprocess.run(args, check=True)
    po_path = TRANS / "zh" / "LC_MESSAGES" / "messages.po"
    with po_path.open("rb") as fh:
        catalog = read_po(fh, locale="zh")
    missing = []
    for message in catalog:
        if not message.id:
            continue
        if not message.string:
            if message.id in ZH:
                message.string = ZH[message.id]
            elif isinstance(message.id, str):
                missing.append(message.id)
    with po_path.open("wb") as fh:
        write_po(fh, catalog, sort_output=True, omit_header=False)
    for m in missing:
        print(f"untranslated: {m}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
