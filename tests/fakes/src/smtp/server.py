"""A real SMTP server (aiosmtpd) on loopback for the tests: STARTTLS or TLS
from the first byte (or neither), AUTH with one login, and scripted replies
to DATA. Each accepted message is written to the mailbox directory as
<n>.eml, with <n>.json beside it: the message as Python's email package
parses it. Every AUTH and DATA is a line of events.jsonl.

Prints "PORT <n>" once it listens.
"""

import argparse
import asyncio
import email
import email.policy
import json
import logging
import os
import socket
import ssl
import sys
import warnings

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


def parse_args():
    p = argparse.ArgumentParser()
    p.add_argument("--security", choices=["starttls", "tls", "none"], required=True)
    p.add_argument("--cert", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--username", required=True)
    p.add_argument("--password-file", required=True)
    p.add_argument("--mailbox", required=True)
    # Replies to DATA, in order, then 250: "451", "554", "drop".
    p.add_argument("--replies", default="")
    return p.parse_args()


class Handler:
    def __init__(self, mailbox, replies):
        self.mailbox = mailbox
        self.replies = [r for r in replies.split(",") if r]
        self.count = 0

    def event(self, **fields):
        with open(os.path.join(self.mailbox, "events.jsonl"), "a") as f:
            f.write(json.dumps(fields) + "\n")

    async def handle_DATA(self, server, session, envelope):
        scripted = self.replies.pop(0) if self.replies else "250"
        self.event(event="data", reply=scripted)
        if scripted == "drop":
            # Taken, then the connection lost before the answer.
            self.store(envelope)
            server.transport.close()
            return "250 OK"
        if scripted == "451":
            return "451 4.3.0 Local error in processing, try again"
        if scripted == "554":
            return "554 5.7.1 Message rejected by policy"
        self.store(envelope)
        return "250 2.0.0 OK queued"

    def store(self, envelope):
        self.count += 1
        base = os.path.join(self.mailbox, str(self.count))
        raw = envelope.original_content or envelope.content
        with open(base + ".eml", "wb") as f:
            f.write(raw)
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        parts = []
        for part in msg.walk():
            if part.is_multipart():
                continue
            parts.append({"type": part.get_content_type(), "content": part.get_content()})
        parsed = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "content_type": msg.get_content_type(),
            "headers": {k.lower(): str(v) for k, v in msg.items()},
            "parts": parts,
        }
        with open(base + ".json.tmp", "w") as f:
            json.dump(parsed, f)
        os.rename(base + ".json.tmp", base + ".json")


def main():
    # aiosmtpd warns of the deliberately weak setups ("none") and of its own
    # deprecations: the tests' output is for the tests.
    warnings.filterwarnings("ignore")
    logging.getLogger("mail.log").setLevel(logging.CRITICAL)
    args = parse_args()
    with open(args.password_file) as f:
        password = f.read()
    handler = Handler(args.mailbox, args.replies)

    def authenticator(server, session, envelope, mechanism, auth_data):
        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login == args.username.encode()
            and auth_data.password == password.encode()
        )
        handler.event(event="auth", mechanism=mechanism, ok=ok, tls=session.ssl is not None)
        return AuthResult(success=ok, handled=False)

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(args.cert, args.key)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    common = dict(
        hostname="127.0.0.1",
        port=port,
        authenticator=authenticator,
        auth_required=True,
        ready_timeout=10,
    )
    if args.security == "starttls":
        controller = Controller(
            handler, tls_context=context, require_starttls=True, auth_require_tls=True, **common
        )
    elif args.security == "tls":
        controller = Controller(handler, ssl_context=context, auth_require_tls=False, **common)
    else:
        controller = Controller(handler, auth_require_tls=False, **common)
    controller.start()
    print(f"PORT {port}", flush=True)
    try:
        sys.stdin.read()
    finally:
        controller.stop()


if __name__ == "__main__":
    main()
