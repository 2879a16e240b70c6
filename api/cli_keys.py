"""`ragtune keys`: create, list and revoke the API keys of the data dir (api/keys.py)."""

from __future__ import annotations

import argparse
from typing import Any

from .keys import SCOPES, KeyStore
from .settings import Settings


def add_parser(subparsers: Any) -> None:
    k = subparsers.add_parser("keys", help="create, list or revoke API keys")
    ksub = k.add_subparsers(dest="keys_command", required=True)
    c = ksub.add_parser("create", help="a new key, printed once (only its salted hash is kept)")
    c.add_argument("--name", required=True)
    c.add_argument("--scope", required=True, choices=SCOPES,
                   help="read: search, ask, list; write: also upload and delete; admin: everything")
    c.add_argument("--collections", help="comma-separated collections the key may touch "
                                         "(default: all)")
    c.set_defaults(func=cmd_create)
    ksub.add_parser("list", help="the keys, without secrets").set_defaults(func=cmd_list)
    r = ksub.add_parser("revoke", help="revoke a key by name or id (at once, also on a running "
                                       "server)")
    r.add_argument("key", help="name or id")
    r.set_defaults(func=cmd_revoke)


def cmd_create(args: argparse.Namespace, settings: Settings) -> int:
    collections = args.collections.split(",") if args.collections else None
    key, secret = KeyStore.in_data_dir(settings.data_dir).create(args.name, args.scope, collections)
    where = ", ".join(key.collections) if key.collections else "all collections"
    print(f"created key {key.name} ({key.scope}, {where}), id {key.id}; keep it now, it is not "
          f"shown again:\n{secret}")
    return 0


def cmd_list(args: argparse.Namespace, settings: Settings) -> int:
    keys = KeyStore.in_data_dir(settings.data_dir).records()
    if not keys:
        print("no keys (the API is open on loopback; `ragtune keys create` turns keys on)")
    for k in keys:
        state = f"revoked {k.revoked_at}" if k.revoked_at else "in force"
        where = ",".join(k.collections) if k.collections else "*"
        print(f"{k.id}\t{k.name}\t{k.scope}\t{where}\t{k.created_at}\t{state}")
    return 0


def cmd_revoke(args: argparse.Namespace, settings: Settings) -> int:
    key = KeyStore.in_data_dir(settings.data_dir).revoke(args.key)
    print(f"revoked key {key.name} ({key.id})")
    return 0
