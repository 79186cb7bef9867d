"""Short-lived, prefix-scoped S3 credentials for one user (STS AssumeRole + session policy).

The platform's broker keys stay in the hub; user pods only ever get the
temporary credentials this returns.
"""
from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass

from kubelab.core.s3layout import user_segment, user_session_policy


class S3ConfigError(RuntimeError):
    """kubelab's S3 settings cannot give users scoped credentials."""


@dataclass(frozen=True)
class Broker:
    sts_endpoint_url: str
    access_key_id: str
    secret_access_key: str
    bucket: str
    region: str = "us-east-1"
    role_arn: str = "arn:aws:iam::000000000000:role/kubelab-user"

    def check(self) -> None:
        missing = [n for n in ("sts_endpoint_url", "access_key_id", "secret_access_key", "bucket") if not getattr(self, n)]
        if missing:
            raise S3ConfigError(
                "KubelabSpawner needs an S3 server with STS AssumeRole to give users scoped credentials; "
                f"set {', '.join('KubelabSpawner.s3_' + m for m in missing)}")

    def assume_sync(self, username: str, duration_seconds: int) -> dict:
        import boto3
        from botocore.exceptions import BotoCoreError, ClientError

        self.check()
        sts = boto3.client("sts", endpoint_url=self.sts_endpoint_url, aws_access_key_id=self.access_key_id,
                           aws_secret_access_key=self.secret_access_key, region_name=self.region)
        policy = json.dumps(user_session_policy(self.bucket, user_segment(username)), separators=(",", ":"))
        try:
            resp = sts.assume_role(RoleArn=self.role_arn, RoleSessionName=user_segment(username)[:64],
                                   Policy=policy, DurationSeconds=int(duration_seconds))
        except ClientError as e:
            code = e.response.get("Error", {}).get("Code", "")
            if code in ("InvalidAction", "NotImplemented", "MethodNotAllowed", "XMinioNotImplemented"):
                raise S3ConfigError(f"the S3 server at {self.sts_endpoint_url} does not support STS AssumeRole "
                                    "(kubelab needs it for per-user scoped credentials)") from None
            raise S3ConfigError(f"STS AssumeRole at {self.sts_endpoint_url} failed: {code}: "
                                f"{e.response.get('Error', {}).get('Message', '')}") from None
        except BotoCoreError as e:
            raise S3ConfigError(f"cannot reach the S3 STS endpoint {self.sts_endpoint_url}: {e}") from None
        c = resp["Credentials"]
        return {"AccessKeyId": c["AccessKeyId"], "SecretAccessKey": c["SecretAccessKey"],
                "SessionToken": c["SessionToken"], "Expiration": c["Expiration"].isoformat()}

    async def assume(self, username: str, duration_seconds: int) -> dict:
        return await asyncio.to_thread(self.assume_sync, username, duration_seconds)
