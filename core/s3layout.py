"""Where things live in the S3 bucket, and what a user's credentials may touch.

Layout (a contract): ``users/<user-slug>/...`` is a user's home (models and
runs inside it); ``datasets/...`` is shared and read-only to users.
"""
from __future__ import annotations

import re

from .names import safe_slug

USERS_PREFIX = "users/"
DATASETS_PREFIX = "datasets/"
# Where a user's server sees its S3 credentials as files (the kubelab-s3 Secret as a
# volume, so renewals reach a running server), and the variable that names it.
CREDENTIALS_DIR = "/var/run/kubelab/s3"
CREDENTIALS_DIR_ENV = "KUBELAB_S3_CREDENTIALS_DIR"
_SEGMENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def user_segment(username: str) -> str:
    """The user's path segment: their DNS-safe slug (never contains '/')."""
    return safe_slug(username)


def user_prefix(username: str) -> str:
    return f"{USERS_PREFIX}{user_segment(username)}/"


def user_session_policy(bucket: str, segment: str) -> dict:
    """Session policy for one user: read-write ``users/<segment>/*``, read-only ``datasets/*``.

    Listing is allowed only under those two prefixes, with the trailing slash,
    so ``users/al`` cannot list ``users/alice/``.
    """
    if not _SEGMENT.match(segment) or segment in (".", ".."):
        raise ValueError(f"unsafe S3 user segment: {segment!r}")
    home = f"{USERS_PREFIX}{segment}/"
    arn = f"arn:aws:s3:::{bucket}"
    return {
        "Version": "2012-10-17",
        "Statement": [
            {"Sid": "ListOwnAndDatasets", "Effect": "Allow", "Action": ["s3:ListBucket"], "Resource": [arn],
             "Condition": {"StringLike": {"s3:prefix": [f"{home}*", f"{DATASETS_PREFIX}*"]}}},
            {"Sid": "BucketLocation", "Effect": "Allow", "Action": ["s3:GetBucketLocation"], "Resource": [arn]},
            {"Sid": "ReadWriteOwn", "Effect": "Allow",
             "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload",
                        "s3:ListMultipartUploadParts"],
             "Resource": [f"{arn}/{home}*"]},
            {"Sid": "ReadDatasets", "Effect": "Allow", "Action": ["s3:GetObject"],
             "Resource": [f"{arn}/{DATASETS_PREFIX}*"]},
        ],
    }
