"""Notifications: Slack, Microsoft Teams and signed webhooks, sent off the evaluation path."""
