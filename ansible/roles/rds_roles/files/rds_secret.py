"""Read or fill a database secret in AWS Secrets Manager, on the controller (`make provision`).

Usage: python rds_secret.py read ARN [--region R] [--endpoint-url URL]
       python rds_secret.py ensure ARN --username ROLE [--length N] [--region R] [--endpoint-url URL]

`read` prints the secret's {"username", "password"} (the RDS-managed master secret). `ensure`
prints the MLflow server role's secret, first putting a generated password into it when it has
no value yet (as Terraform creates it); the output then carries "created": true. Output goes to
Ansible only (no_log); errors name the secret and the AWS error code, never a value. Credentials
come from the default chain: the operator's, never a host's instance role.
"""

from __future__ import annotations

import argparse
import json
import secrets
import string
import sys


def _client(args: argparse.Namespace):  # noqa: ANN202 - a boto3 client
    import boto3
    from botocore.config import Config

    return boto3.client(
        "secretsmanager",
        region_name=args.region or None,
        endpoint_url=args.endpoint_url or None,
        config=Config(retries={"mode": "standard", "max_attempts": 6}, connect_timeout=5, read_timeout=10),
    )


def _fail(message: str) -> None:
    raise SystemExit(f"rds_secret: {message}")


def _value(client, arn: str) -> dict | None:  # noqa: ANN001
    """The secret's JSON value, or None when the secret exists but has no value yet."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        text = client.get_secret_value(SecretId=arn)["SecretString"]
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        message = exc.response.get("Error", {}).get("Message", "")
        # A secret without a version answers ResourceNotFoundException naming the AWSCURRENT label.
        if code == "ResourceNotFoundException" and "AWSCURRENT" in message:
            return None
        _fail(f"cannot read secret {arn}: {code or exc}")
    except BotoCoreError as exc:
        _fail(f"cannot read secret {arn}: {exc}")
    try:
        value = json.loads(text)
        if not isinstance(value, dict) or not value.get("password"):
            raise ValueError
    except ValueError:
        _fail(f"secret {arn} is not JSON with a 'password' key")
    return value


def main() -> int:
    parser = argparse.ArgumentParser(prog="rds_secret", description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["read", "ensure"])
    parser.add_argument("arn")
    parser.add_argument("--username", default="", help="ensure: the database role the secret is for")
    parser.add_argument("--length", type=int, default=32, help="ensure: length of a generated password")
    parser.add_argument("--region", default="")
    parser.add_argument("--endpoint-url", default="")
    args = parser.parse_args()

    client = _client(args)
    value = _value(client, args.arn)
    created = False
    if args.action == "read":
        if value is None:
            _fail(f"secret {args.arn} has no value")
    else:
        if not args.username:
            parser.error("ensure needs --username")
        if value is None:
            alphabet = string.ascii_letters + string.digits
            password = "".join(secrets.choice(alphabet) for _ in range(args.length))
            value = {"username": args.username, "password": password}
            from botocore.exceptions import BotoCoreError, ClientError

            try:
                client.put_secret_value(SecretId=args.arn, SecretString=json.dumps(value))
            except (BotoCoreError, ClientError) as exc:
                _fail(f"cannot put a value into secret {args.arn}: {exc}")
            created = True
        elif value.get("username") != args.username:
            _fail(f"secret {args.arn} is for role {value.get('username')!r}, not {args.username!r}")
    json.dump({"username": value.get("username", ""), "password": value["password"], "created": created}, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
