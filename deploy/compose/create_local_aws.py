"""Create the local stand-ins for the AWS resources Terraform makes in production.

Run by compose's one-shot `aws-init` service against the moto server (AWS_ENDPOINT_URL):
the S3 bucket, the transcription queue with the production visibility timeout, and its
dead-letter queue with the production redrive policy. Safe to run any number of times.
"""

from __future__ import annotations

import json
import os
import sys
import time

import boto3
from botocore.exceptions import ClientError, EndpointConnectionError


def main() -> int:
    endpoint = os.environ["AWS_ENDPOINT_URL"]
    region = os.environ.get("AWS_REGION", "us-east-1")
    bucket = os.environ["AWS_STORAGE_BUCKET_NAME"]
    queue = os.environ.get("CELERY_QUEUE", "diary-transcription")
    visibility = os.environ.get("SQS_VISIBILITY_TIMEOUT", "7200")
    expected_url = os.environ.get("SQS_QUEUE_URL", "")

    s3 = boto3.client("s3", endpoint_url=endpoint, region_name=region)
    sqs = boto3.client("sqs", endpoint_url=endpoint, region_name=region)

    for _attempt in range(30):
        try:
            s3.list_buckets()
            break
        except EndpointConnectionError:
            time.sleep(1)
    else:
        print(f"no S3/SQS endpoint at {endpoint}", file=sys.stderr)
        return 1

    try:
        if region == "us-east-1":
            s3.create_bucket(Bucket=bucket)
        else:
            s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": region})
    except ClientError as error:
        if error.response["Error"]["Code"] not in {"BucketAlreadyOwnedByYou", "BucketAlreadyExists"}:
            raise
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    s3.put_public_access_block(
        Bucket=bucket,
        PublicAccessBlockConfiguration={
            "BlockPublicAcls": True,
            "IgnorePublicAcls": True,
            "BlockPublicPolicy": True,
            "RestrictPublicBuckets": True,
        },
    )

    dlq_url = sqs.create_queue(QueueName=f"{queue}-dlq", Attributes={"MessageRetentionPeriod": "1209600"})["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    queue_url = sqs.create_queue(QueueName=queue)["QueueUrl"]
    sqs.set_queue_attributes(
        QueueUrl=queue_url,
        Attributes={
            "VisibilityTimeout": visibility,
            "ReceiveMessageWaitTimeSeconds": "20",
            "MessageRetentionPeriod": "1209600",
            "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 5}),
        },
    )
    print(f"bucket {bucket}; queue {queue_url} (visibility {visibility}s); dead-letter queue {dlq_url}")
    if expected_url and expected_url.rstrip("/").split("/")[-1] != queue_url.rstrip("/").split("/")[-1]:
        print(f"SQS_QUEUE_URL={expected_url} does not name queue {queue}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
