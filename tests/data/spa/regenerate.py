#!/usr/bin/env python3
"""Regenerates vectors.json with the real fwknop client and checks every
vector against the real fwknopd, inside a network namespace.

Run through regenerate.sh (root, fwknop-client and fwknop-server 2.6.10).
The current vectors.json is the recipe: each client vector's recorded
`client_command` is run again (with --test: built, not sent), derived
vectors (replay, tampered, truncated, prefixed) are derived again from their
new base with the same edit, synthetic vectors (spa_ref.py's fixed salts)
are kept as they are. Then fwknopd (UDP server mode, `-U`) judges every
fresh packet sent from 127.0.0.1 in the namespace; a verdict that differs
from the vector's `expect.accept` fails the run. Writes OUTPUT only.
"""

import base64
import hashlib
import json
import os
import shlex
import socket
import subprocess
import sys
import tempfile
import time

SPA_PORT = 62201
WAIT = 3.0  # seconds fwknopd gets to log its verdict on one packet


def client_dump(output):
    """The first 'SPA Field Values' block and the final packet."""
    fields, packet = {}, None
    for line in output.splitlines():
        if ":" not in line:
            continue
        name, value = (part.strip() for part in line.split(":", 1))
        if name == "Final SPA Data":
            packet = value
            break
        fields.setdefault(name, value)
    if packet is None:
        raise SystemExit("no 'Final SPA Data' in the client's output:\n" + output)
    null = lambda v: None if v == "<NULL>" else v
    digest = fields["Digest Type"].split("(")[1].rstrip(")").lower()
    hmac = fields["HMAC Type"]
    dump = {
        "rand_val": fields["Random Value"],
        "username": fields["Username"],
        "timestamp": int(fields["Timestamp"]),
        "version": fields["FKO Version"],
        "msg_type": int(fields["Message Type"].split()[0]),
        "message": fields["Message String"],
        "nat_access": null(fields["Nat Access"]),
        "server_auth": null(fields["Server Auth"]),
        "client_timeout": int(fields["Client Timeout"]),
        "digest_type": digest.replace("sha3_", "sha3_"),
        "hmac_type": None if "(" not in hmac else hmac.split("(")[1].rstrip(")").lower(),
        "encryption_mode": fields["Encryption Mode"],
        "encoded": fields["Encoded Data"],
        "digest": fields["SPA Data Digest"],
        "hmac": null(fields.get("HMAC", "<NULL>")),
    }
    return dump, packet


def replay_digest(packet):
    """fwknopd's replay key: unpadded base64 of SHA-256 of the packet text."""
    raw = hashlib.sha256(packet.encode()).digest()
    return base64.b64encode(raw).decode().rstrip("=")


def rederive(old_base, old_derived, new_base):
    """Applies to new_base the edit that turned old_base into old_derived."""
    if old_derived == old_base:
        return new_base
    if old_derived.endswith(old_base):
        return old_derived[: len(old_derived) - len(old_base)] + new_base
    if old_base.startswith(old_derived):
        return new_base[: len(new_base) - (len(old_base) - len(old_derived))]
    if len(old_derived) == len(old_base):
        out = list(new_base)
        for i, (a, b) in enumerate(zip(old_base, old_derived)):
            if a != b:
                out[i] = b if new_base[i] != b else ("A" if b != "A" else "B")
        return "".join(out)
    raise SystemExit("cannot tell how a derived vector was made")


def regenerate(doc):
    old = {v["name"]: dict(v) for v in doc["vectors"]}
    out = []
    for v in doc["vectors"]:
        v = dict(v)
        if v["source"].startswith("fwknop-client"):
            args = shlex.split(v["client_command"]) + ["--test"]
            run = subprocess.run(args, capture_output=True, text=True, timeout=20)
            # --test decodes its own packet again; fko refuses that for a
            # packet of 400+ characters (taken for GnuPG) after printing it.
            dump, packet = client_dump(run.stdout + run.stderr)
            assert replay_digest(old[v["name"]]["packet"]) == old[v["name"]]["expect"].get(
                "replay_digest", replay_digest(old[v["name"]]["packet"])
            ), "replay digest formula"
            # `now` is when the packet was made (the client's timestamp may
            # be offset on purpose: --time-offset-plus/minus).
            v["packet"], v["now"], v["client_dump"] = packet, int(time.time()), dump
            expect = dict(v["expect"])
            for key in ("rand_val", "username", "timestamp", "version", "msg_type",
                        "message", "nat_access", "server_auth", "client_timeout", "digest_type"):
                if key in expect:
                    expect[key] = dump[key]
            if "replay_digest" in expect:
                expect["replay_digest"] = replay_digest(packet)
            v["expect"] = expect
            v.pop("intermediate", None)  # salts and keys of the old packet
        out.append(v)
    fresh = {v["name"]: v for v in out}
    for v in out:
        base = v["source"].removeprefix("derived from ")
        if base != v["source"] and base in fresh:
            v["packet"] = rederive(old[base]["packet"], old[v["name"]]["packet"], fresh[base]["packet"])
            v["now"] = fresh[base]["now"]
    doc = dict(doc)
    doc["vectors"] = out
    doc["generated_at"] = int(time.time())
    return doc


def access_conf(doc):
    d = doc["server_defaults"]
    yn = lambda b: "Y" if b else "N"
    text = ""
    for stanza in doc["stanzas"].values():
        text += "SOURCE ANY\n"
        text += "".join(f"{k} {val}\n" for k, val in stanza["conf"].items())
        text += (f"REQUIRE_SOURCE_ADDRESS {yn(d['require_source_address'])}\n"
                 f"FW_ACCESS_TIMEOUT {d['fw_access_timeout']}\n"
                 f"MAX_FW_TIMEOUT {d['max_fw_timeout']}\n\n")
    return text


def judge(doc, workdir):
    """Runs fwknopd -U here (inside the namespace) and sends it every fresh
    packet from 127.0.0.1; returns the mismatches."""
    d = doc["server_defaults"]
    conf = os.path.join(workdir, "fwknopd.conf")
    iptables = subprocess.run(["sh", "-c", "command -v iptables"], capture_output=True,
                              text=True).stdout.strip()
    with open(conf, "w") as f:
        f.write(f"FIREWALL_EXE {iptables};\nMAX_SPA_PACKET_AGE {d['max_spa_packet_age']};\n"
                f"ENABLE_CMD_EXEC N;\nENABLE_IPT_FORWARDING {'Y' if d['nat_enabled'] else 'N'};\n"
                f"ENABLE_IPT_LOCAL_NAT {'Y' if d['nat_enabled'] else 'N'};\n"
                f"UDPSERV_PORT {SPA_PORT};\n")
    access = os.path.join(workdir, "access.conf")
    with open(access, "w") as f:
        f.write(access_conf(doc))
    for path in (conf, access):
        os.chmod(path, 0o600)
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    log = open(os.path.join(workdir, "fwknopd.log"), "w+")
    daemon = subprocess.Popen(
        ["fwknopd", "-f", "-U", "-v", "-c", conf, "-a", access,
         "-d", os.path.join(workdir, "digest.cache"), "-p", os.path.join(workdir, "fwknopd.pid"),
         "-r", workdir],
        stdout=log, stderr=subprocess.STDOUT)
    mismatches = []
    try:
        deadline = time.time() + 10
        while "Kicking off UDP server" not in read(log):
            if time.time() > deadline or daemon.poll() is not None:
                raise SystemExit("fwknopd did not start:\n" + read(log))
            time.sleep(0.1)
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        now = time.time()
        for v in doc["vectors"]:
            if abs(now - v["now"]) > d["max_spa_packet_age"] - 10:
                print(f"  {v['name']:32} not judged: made at {v['now']} (stale for fwknopd)")
                continue
            start = len(read(log))
            sock.sendto(v["packet"].encode(), ("127.0.0.1", SPA_PORT))
            accepted, lines = wait_verdict(log, start)
            # Each accept must add its own rule: an identical one left by
            # an earlier vector would be "already there", not "Added".
            subprocess.run(["iptables", "-F", "FWKNOP_INPUT"], capture_output=True)
            expected = v["expect"]["accept"]
            word = "accept" if accepted else "reject"
            v["fwknopd"] = {"verdict": word, "log_excerpt": lines[:6], "mode": "udp-server"}
            mark = "ok" if accepted == expected else "MISMATCH"
            print(f"  {v['name']:32} fwknopd: {word:6} expected: "
                  f"{'accept' if expected else 'reject'}  {mark}")
            if accepted != expected:
                mismatches.append(v["name"])
    finally:
        daemon.terminate()
        daemon.wait(timeout=10)
    return mismatches


def read(log):
    log.flush()
    log.seek(0)
    return log.read()


def wait_verdict(log, start):
    """fwknopd's lines about one packet: accepted when it added a rule."""
    deadline = time.time() + WAIT
    while time.time() < deadline:
        lines = [line for line in read(log)[start:].splitlines() if line.strip()]
        if any("Added" in line for line in lines):
            return True, lines
        time.sleep(0.1)
    return False, [line for line in read(log)[start:].splitlines() if line.strip()]


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    if sys.argv[1:2] == ["--inside"]:
        doc = json.load(open(sys.argv[2]))
        with tempfile.TemporaryDirectory() as workdir:
            bad = judge(doc, workdir)
        json.dump(doc, open(sys.argv[2], "w"), indent=1)
        sys.exit(1 if bad else 0)
    output = sys.argv[1]
    ns = sys.argv[2]
    doc = regenerate(json.load(open(os.path.join(here, "vectors.json"))))
    json.dump(doc, open(output, "w"), indent=1)
    run = subprocess.run(["ip", "netns", "exec", ns, sys.executable, __file__, "--inside", output])
    if run.returncode != 0:
        raise SystemExit(f"fwknopd disagrees with some vectors (see above); {output} kept for a look")
    print(f"wrote {output}: every fresh vector judged by fwknopd as expected")


if __name__ == "__main__":
    main()
