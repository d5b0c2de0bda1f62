"""The Google Cloud adapters: Cloud Run (`run_v2` over REST) and Cloud Logging (gRPC) in `cloud`,
with their types converted to `bot.domain.service` records in `convert`; the health probe;
reads shared between callers asking the same question within seconds.
"""
