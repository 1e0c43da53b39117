"""One router per resource of the alerts API; ``lyssna.alerts.api.create_app`` mounts them."""
