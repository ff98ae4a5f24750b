"""Ember's built-in robot plugins (installed as `ember_plugins`), one module per robot type: its card only."""
