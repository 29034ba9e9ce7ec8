"""Notifications: each user's subscriptions to run events (browser notifications, webhooks)."""
