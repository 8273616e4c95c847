"""Verifies deliveries with the Standard Webhooks library (PyPI
`standardwebhooks`), an implementation independent of ours. Reads
{"secret": "whsec_...", "deliveries": [{"headers": {...}, "body": "..."}]}
on stdin; prints each verified payload's JSON on a line; exits non-zero
on the first that does not verify."""

import json
import sys

from standardwebhooks import Webhook

request = json.load(sys.stdin)
webhook = Webhook(request["secret"])
for delivery in request["deliveries"]:
    payload = webhook.verify(delivery["body"], delivery["headers"])
    print(json.dumps(payload))
