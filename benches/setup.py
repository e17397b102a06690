"""Creates benchmark users and writes one refresh token per line, plus an access token.

usage: setup.py BASE_URL COUNT OUT_DIR  (standard library only)
"""
import json
import sys
import urllib.request

base, count, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]


def post(path, body):
    req = urllib.request.Request(base + path, json.dumps(body).encode(), {"content-type": "application/json"})
    with urllib.request.urlopen(req) as r:
        return json.load(r)


refresh = []
access = None
for i in range(count):
    name = f"bench{i}"
    try:
        post("/v1/auth/register", {"email": f"{name}@example.com", "username": name, "password": "benchmark password"})
    except urllib.error.HTTPError as e:
        if e.code != 409:
            raise
    t = post("/v1/auth/login", {"login": name, "password": "benchmark password", "delivery": "body"})
    refresh.append(t["refresh_token"])
    access = t["access_token"]

with open(f"{out}/refresh_tokens.txt", "w") as f:
    f.write("\n".join(refresh) + "\n")
with open(f"{out}/access_token.txt", "w") as f:
    f.write(access)
