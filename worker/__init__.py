"""Delivery-receipts worker: Kafka delivery events reduced into Postgres, metrics and summaries."""

__version__ = "0.1.0"
