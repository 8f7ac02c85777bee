#!/usr/bin/python3
"""Peers of insite-notify for t/604 (Debian's python3 + python3-aiosmtpd):

  notify_peers.py smtp PORT DIR            SMTP server; each message -> DIR/<n>.eml
  notify_peers.py webhook PORT SECRET LOG [ok]
                                           HTTP receiver: verifies X-Insite-Signature
                                           (HMAC-SHA256 over "<t>.<body>"), answers 500
                                           to the first request (unless "ok"), 200 (valid)
                                           or 401 after; one JSON line per request in LOG
                                           (with the Idempotency-Key, delivery and attempt)
  notify_peers.py parse FILE               an e-mail parsed with the email package -> JSON
"""
import hashlib
import hmac
import json
import sys
import time


def smtp(port, out):
    from aiosmtpd.controller import Controller

    class Handler:
        n = 0

        async def handle_DATA(self, server, session, envelope):
            Handler.n += 1
            with open(f"{out}/{Handler.n}.eml.tmp", "wb") as f:
                f.write(envelope.original_content)
            import os
            os.rename(f"{out}/{Handler.n}.eml.tmp", f"{out}/{Handler.n}.eml")
            return "250 OK"

    c = Controller(Handler(), hostname="127.0.0.1", port=int(port))
    c.start()
    print("ready", flush=True)
    while True:
        time.sleep(3600)


def webhook(port, secret, log, mode="fail-first"):
    from http.server import BaseHTTPRequestHandler, HTTPServer
    seen = {"n": 0}

    class H(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            sig = self.headers.get("X-Insite-Signature", "")
            parts = dict(p.split("=", 1) for p in sig.split(",") if "=" in p)
            want = hmac.new(secret.encode(), parts.get("t", "").encode() + b"." + body,
                            hashlib.sha256).hexdigest()
            valid = hmac.compare_digest(want, parts.get("v1", ""))
            fresh = abs(time.time() - int(parts.get("t", "0") or 0)) < 300
            seen["n"] += 1
            first_fails = mode != "ok" and seen["n"] == 1
            status = 500 if first_fails else (200 if valid and fresh else 401)
            with open(log, "a") as f:
                f.write(json.dumps({"n": seen["n"], "valid": valid, "fresh": fresh, "status": status,
                                    "event_id": self.headers.get("X-Insite-Event-Id"),
                                    "idempotency_key": self.headers.get("Idempotency-Key"),
                                    "delivery_id": self.headers.get("X-Insite-Delivery-Id"),
                                    "attempt": self.headers.get("X-Insite-Attempt"),
                                    "raw_body": body.decode(),
                                    "body": json.loads(body)}) + "\n")
            self.send_response(status)
            self.end_headers()

        def log_message(self, *a):
            pass

    s = HTTPServer(("127.0.0.1", int(port)), H)
    print("ready", flush=True)
    s.serve_forever()


def parse(path):
    import email
    from email import policy
    from email.header import decode_header, make_header
    with open(path, "rb") as f:
        raw = f.read()
    m = email.message_from_bytes(raw, policy=policy.default)
    raw_subject = email.message_from_bytes(raw)["Subject"]
    parts = []
    for p in m.walk():
        if p.is_multipart():
            continue
        parts.append({"type": p.get_content_type(), "charset": p.get_content_charset(),
                      "text": p.get_content()})
    print(json.dumps({
        "subject": str(m["Subject"]),
        "subject_raw": raw_subject,
        "subject_decoded": str(make_header(decode_header(raw_subject))),
        "message_id": m["Message-ID"], "delivery_id": m["X-Insite-Delivery-Id"], "from": m["From"], "to": m["To"], "date": m["Date"],
        "list_unsubscribe": m["List-Unsubscribe"],
        "list_unsubscribe_post": m["List-Unsubscribe-Post"],
        "content_type": m.get_content_type(), "mime_version": m["MIME-Version"],
        "defects": [str(d) for d in m.defects], "parts": parts,
        "max_line": max(len(l) for l in raw.split(b"\r\n")),
    }, ensure_ascii=False))


if __name__ == "__main__":
    {"smtp": smtp, "webhook": webhook, "parse": parse}[sys.argv[1]](*sys.argv[2:])
