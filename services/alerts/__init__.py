"""Alerts: windowed rules over classified mentions and signed webhook delivery."""
