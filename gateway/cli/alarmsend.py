"""`bms-gateway alarms keygen | send`: an operator's key, and a signed command sent to a running gateway.

    bms-gateway alarms keygen alice.key [--hmac] [--user alice]
    bms-gateway alarms send ack rack-01:cell_over_voltage:m1c5 --user alice --key alice.key \\
        --reason "cell checked" -c /etc/bms-gateway/gateway.yaml

`send` makes the command (`ts`, a fresh `nonce`, `site`, `rack`, an `id`), signs it, publishes it on the
rack's command topic, waits for the gateway's answer and prints it: exit 0 when the command was
taken, 1 when it was refused or no answer came. The broker comes from the gateway's configuration
(`-c`) or from `--host` and friends on a machine without it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import stat
import sys
import time
from pathlib import Path
from typing import Any

from gateway.textsafe import json_text, printable


def cmd_keygen(args: argparse.Namespace) -> int:
    from gateway.alarms.signing import generate, write_private

    path: Path = args.file
    new = generate("hmac" if args.hmac else "ed25519")
    try:
        write_private(path, new.private, force=args.force)
    except FileExistsError:
        print(f"error: {printable(path)} exists (a key is never overwritten without --force)", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"error: cannot write {printable(path)}: {exc.strerror}", file=sys.stderr)
        return 2
    user = args.user or "<user>"
    print(f"wrote {printable(path)} (mode 0600): keep it with the operator; `alarms send --key {printable(path)}`")
    print(f"key id: {new.key_id}")
    if new.public is not None:
        path.with_name(path.name + ".pub").write_text(new.public + "\n", encoding="utf-8")
        print(f"public key: {new.public} (also in {printable(path)}.pub)")
        print(f'in gateway.yaml, alarms.commands.users:\n  {user}: {{public_key: "{new.public}"}}')
    else:
        print("the gateway checks with the same secret: install a copy there owner-only, e.g. as the systemd "
              f"credential alarm-key-{user}, and in gateway.yaml, alarms.commands.users:\n"
              f"  {user}: {{secret_credential: alarm-key-{user}}}   # or secret_file: /path/to/the/copy")  # fmt: skip
    return 0


def _rack(ids: list[str], rack: str | None) -> str:
    racks = {i.split(":", 1)[0] for i in ids if i != "*"}
    if rack is not None:
        racks.add(rack)
    if len(racks) != 1:
        raise SystemExit(f"error: name one rack (--rack, or alarm ids of one rack: rack-01:...); got {sorted(racks)}")
    return racks.pop()


def _broker(args: argparse.Namespace) -> tuple[Any, str, str | None]:
    """(MQTT settings, site, topic filter) from --host and friends, or from the gateway's configuration."""
    from gateway.sinks.config import MqttSinkConfig

    if args.host is not None:
        if args.site is None:
            raise SystemExit("error: --site is needed with --host")
        port = args.port or (1883 if args.no_tls else 8883)
        mq = MqttSinkConfig(host=args.host, port=port, tls=not args.no_tls, ca_file=args.ca_file,
                            username=args.username, password_file=args.password_file, prefix=args.prefix)  # fmt: skip
        return mq, args.site, args.topic
    from gateway.alarms.commands import command_sink, resolved
    from gateway.cli.main import load_or_exit

    loaded = load_or_exit(args)
    cmds = loaded.config.alarms.commands
    mq = resolved(command_sink(loaded.config.sinks, cmds.mqtt_sink), loaded.resolve)
    return mq, args.site or loaded.config.site.name, args.topic or cmds.topic


def cmd_send(args: argparse.Namespace) -> int:
    from gateway.alarms.signing import KeyProblem, load_signing_key

    try:
        key = load_signing_key(args.key)
    except KeyProblem as exc:
        print(f"error: {printable(exc)}", file=sys.stderr)
        return 2
    if args.key.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        print(f"warning: {printable(args.key)} is readable by others: chmod 600 it", file=sys.stderr)
    mq, site, topic = _broker(args)
    rack = _rack(args.alarm_ids, args.rack)
    doc: dict[str, Any] = {"action": args.action, "user": args.user, "site": site, "rack": rack,
                           "ts": int(time.time()), "nonce": secrets.token_urlsafe(18),
                           "id": args.id or secrets.token_hex(6)}  # fmt: skip
    doc.update({"alarm_id": args.alarm_ids[0]} if len(args.alarm_ids) == 1 else {"alarm_ids": args.alarm_ids})
    if args.reason is not None:
        doc["reason"] = args.reason
    if args.duration is not None:  # an integer when it is one: the same canonical bytes in every language
        doc["duration"] = int(args.duration) if float(args.duration).is_integer() else args.duration
    filter_ = topic or f"{mq.prefix}/{site}/+/alarms/command"
    command_topic = "/".join(rack if level == "+" else level for level in filter_.split("/"))
    reply = asyncio.run(_exchange(mq, command_topic, key.sign(doc), args.timeout))
    if reply is None:
        print(f"error: no answer on {printable(command_topic)}/result within {args.timeout:g} s (is the gateway "
              "running with alarms.commands.enabled?)", file=sys.stderr)  # fmt: skip
        return 1
    print(json_text(json.dumps(reply, ensure_ascii=False)))
    return 0 if reply.get("ok") is True else 1


async def _exchange(mq: Any, topic: str, doc: dict[str, Any], timeout: float) -> dict[str, Any] | None:
    """Publish the command and wait for the answer with its id (None when none comes in time)."""
    import aiomqtt

    from gateway.alarms.commands import client_args

    args = {**client_args(mq, f"bms-gateway-send-{secrets.token_hex(4)}"), "clean_session": True}
    try:
        async with asyncio.timeout(timeout), aiomqtt.Client(**args) as client:
            await client.subscribe(f"{topic}/result", qos=1)
            await client.publish(topic, json.dumps(doc, ensure_ascii=False), qos=1)
            async for msg in client.messages:
                try:
                    reply = json.loads(bytes(msg.payload)) if isinstance(msg.payload, bytes) else None
                except ValueError:
                    continue
                if isinstance(reply, dict) and reply.get("id") == doc["id"]:
                    return reply
    except TimeoutError:
        return None
    except aiomqtt.MqttError as exc:
        raise SystemExit(f"error: broker {printable(mq.host)}:{mq.port}: {printable(exc)}") from None
    return None


def register(asub: Any, add_config_arg: Any) -> None:
    q = asub.add_parser("keygen", help="make an operator's key: Ed25519 (default) or an HMAC secret; file mode 0600")
    q.add_argument("file", type=Path, help="the private key file to write (the public key goes to FILE.pub)")
    q.add_argument("--hmac", action="store_true", help="a shared HMAC-SHA256 secret instead of an Ed25519 key")
    q.add_argument("--user", help="user name for the configuration snippet printed")
    q.add_argument("--force", action="store_true", help="overwrite an existing file")
    q.set_defaults(func=cmd_keygen)

    q = asub.add_parser("send", help="sign an ack/shelve/unshelve command, publish it, print the gateway's answer")
    add_config_arg(q)
    q.add_argument("action", choices=["ack", "shelve", "unshelve"])
    q.add_argument("alarm_ids", nargs="+", help="alarm ids of one rack, or * with --rack (every alarm of the rack)")
    q.add_argument("--user", required=True, help="your user name at the gateway")
    q.add_argument("--key", type=Path, required=True, help="your key file (from `alarms keygen`)")
    q.add_argument("--reason", help="why (shelving needs one)")
    q.add_argument("--duration", type=float, help="shelve: seconds")
    q.add_argument("--rack", help="the rack (default: from the alarm ids)")
    q.add_argument("--id", help="request id (default: random)")
    q.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for the answer (30)")
    b = q.add_argument_group("broker without the gateway's configuration")
    b.add_argument("--host", help="broker host (instead of -c)")
    b.add_argument("--port", type=int, help="broker port (8883, or 1883 with --no-tls)")
    b.add_argument("--no-tls", action="store_true", help="plain MQTT")
    b.add_argument("--ca-file", type=Path, help="CA bundle to verify the broker")
    b.add_argument("--username", help="broker user name")
    b.add_argument("--password-file", type=Path, help="file holding the broker password")
    b.add_argument("--site", help="site name (from -c by default)")
    b.add_argument("--prefix", default="bms", help="topic prefix (bms)")
    b.add_argument("--topic", help="command topic filter, + for the rack (default <prefix>/<site>/+/alarms/command)")
    q.set_defaults(func=cmd_send)
