"""Peer for `aisle bench sync`: boto3 (AWS's own SDK for Python, its standard
managed transfer: multipart, 10 threads) copying the same objects from the same
S3 server to disk, with no verification.

argv: endpoint bucket objects.json outdir access_key secret_key
Prints JSON: ms (all objects), bytes, peak_rss_kib.
"""
import json
import os
import sys
import time

import boto3
from botocore.config import Config


def peak_rss_kib():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return None


def main():
    endpoint, bucket, objects, outdir, key, secret = sys.argv[1:7]
    with open(objects) as f:
        keys = json.load(f)
    s3 = boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=key,
        aws_secret_access_key=secret,
        region_name="us-east-1",
        config=Config(s3={"addressing_style": "path"}),
    )
    os.makedirs(outdir, exist_ok=True)
    t = time.perf_counter()
    total = 0
    for i, k in enumerate(keys):
        dest = os.path.join(outdir, str(i))
        s3.download_file(bucket, k, dest)
        total += os.path.getsize(dest)
    ms = (time.perf_counter() - t) * 1000.0
    print(json.dumps({"ms": ms, "bytes": total, "peak_rss_kib": peak_rss_kib()}))


main()
